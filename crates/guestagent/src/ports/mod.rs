//! Port discovery: which TCP and UDP ports the guest listens on.
//!
//! [`listening`] takes one snapshot: every TCP socket in state `LISTEN` and every UDP socket
//! that is bound to a port and not connected (state `CLOSE` in the kernel's terms: a server
//! socket waiting for datagrams; connected UDP sockets are clients and left out, as upstream
//! Lima does), for IPv4 and IPv6. On Linux the kernel answers four netlink `sock_diag` dumps
//! (`tcp4`, `tcp6`, `udp4`, `udp6`); elsewhere it is [`PortsError::Unsupported`].
//!
//! [`snapshot`] is the same with what was left out: answers that did not parse (skipped, never
//! a panic) and dumps the kernel has no handler for (a kernel built without `udp_diag`, for
//! instance), so one missing protocol does not hide the others.
//!
//! [`Watcher`] polls [`listening`] and turns consecutive snapshots into [`Event`]s.
//!
//! A socket listening on `[::]` without `IPV6_V6ONLY` also accepts IPv4; it is reported once,
//! as the IPv6 socket it is. Sockets are those of the network namespace the caller runs in.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

#[cfg(target_os = "linux")]
mod sockdiag;
mod watch;

pub use watch::{watch, Event, Watcher, DEFAULT_INTERVAL};

/// The transport protocol of a [`Listener`]. Serialized as `"tcp"` / `"udp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// The address family of a [`Listener`]. Serialized as `"ipv4"` / `"ipv6"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        })
    }
}

/// One dump the kernel is asked for: a protocol in a family. Shown as `tcp4`, `udp6`, ….
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Query {
    pub proto: Proto,
    pub family: Family,
}

impl Query {
    /// The four dumps a snapshot is made of, in the order they are asked.
    pub const ALL: [Query; 4] = [
        Query {
            proto: Proto::Tcp,
            family: Family::Ipv4,
        },
        Query {
            proto: Proto::Tcp,
            family: Family::Ipv6,
        },
        Query {
            proto: Proto::Udp,
            family: Family::Ipv4,
        },
        Query {
            proto: Proto::Udp,
            family: Family::Ipv6,
        },
    ];
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = match self.family {
            Family::Ipv4 => '4',
            Family::Ipv6 => '6',
        };
        write!(f, "{}{n}", self.proto)
    }
}

/// A listening socket: where it listens, and whose it is.
///
/// JSON: `{"proto":"tcp","family":"ipv4","ip":"127.0.0.1","port":8080,"uid":1000,"inode":4242}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Listener {
    pub proto: Proto,
    pub family: Family,
    /// The local address (`0.0.0.0` / `::` for every address). An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) stays as the kernel reports it.
    pub ip: IpAddr,
    pub port: u16,
    /// The socket owner's uid.
    pub uid: u32,
    /// The socket's inode (as in `/proc/PID/fd/N -> socket:[INODE]`): tells apart two sockets on
    /// the same address (`SO_REUSEPORT`) and a socket from its successor.
    pub inode: u32,
}

impl Listener {
    /// The local address and port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// What a forward is about: protocol, address and port. Two sockets with the same key
    /// (`SO_REUSEPORT`, or a socket closed and opened again between two polls) are one port
    /// to forward; [`Watcher`] reports keys, not sockets.
    pub fn key(&self) -> (Proto, IpAddr, u16) {
        (self.proto, self.ip, self.port)
    }
}

/// One snapshot with what was left out of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The listeners, sorted, without duplicates.
    pub listeners: Vec<Listener>,
    /// Socket records in the kernel's answers that did not parse (too short, an unknown address
    /// family): skipped.
    pub skipped: usize,
    /// Dumps the kernel has no `sock_diag` handler for (`ENOENT`: e.g. `udp_diag` neither built
    /// in nor loadable); their sockets are missing from `listeners`.
    pub unsupported: Vec<Query>,
}

/// Why listing sockets failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortsError {
    #[error(
        "listing listening sockets is not supported on {os}: it needs Linux's netlink sock_diag"
    )]
    Unsupported { os: &'static str },
    #[error("opening a netlink sock_diag socket: {0}")]
    Open(#[source] std::io::Error),
    #[error("sock_diag {query}: sending the dump request: {source}")]
    Send {
        query: Query,
        #[source]
        source: std::io::Error,
    },
    #[error("sock_diag {query}: receiving the answer: {source}")]
    Receive {
        query: Query,
        #[source]
        source: std::io::Error,
    },
    #[error("sock_diag {query}: no answer from the kernel within {secs} s")]
    Timeout { query: Query, secs: u64 },
    #[error("sock_diag {query}: the kernel refused the dump: {source}")]
    Kernel {
        query: Query,
        #[source]
        source: std::io::Error,
    },
    #[error("sock_diag {query}: malformed answer: {detail}")]
    Malformed { query: Query, detail: String },
    #[error("sock_diag {query}: a {len}-byte message does not fit the {cap}-byte receive buffer")]
    Truncated {
        query: Query,
        len: usize,
        cap: usize,
    },
    #[error("the listing task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Every listening TCP socket and every bound, unconnected UDP socket, IPv4 and IPv6, sorted.
/// A dump the kernel has no handler for is left out (see [`snapshot`]).
pub fn listening() -> Result<Vec<Listener>, PortsError> {
    snapshot().map(|s| s.listeners)
}

/// [`listening`], with the records that were skipped and the dumps the kernel could not answer.
pub fn snapshot() -> Result<Snapshot, PortsError> {
    #[cfg(target_os = "linux")]
    {
        sockdiag::snapshot()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(PortsError::Unsupported {
            os: std::env::consts::OS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names() {
        let names: Vec<String> = Query::ALL.iter().map(|q| q.to_string()).collect();
        assert_eq!(names, ["tcp4", "tcp6", "udp4", "udp6"]);
    }

    #[test]
    fn listener_json_fields() {
        let l = Listener {
            proto: Proto::Udp,
            family: Family::Ipv6,
            ip: "::1".parse().unwrap(),
            port: 5353,
            uid: 1000,
            inode: 77,
        };
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "proto": "udp", "family": "ipv6", "ip": "::1", "port": 5353, "uid": 1000, "inode": 77
            })
        );
        assert_eq!(l.addr().to_string(), "[::1]:5353");
        let back: Listener = serde_json::from_value(v).unwrap();
        assert_eq!(back, l);
    }

    #[cfg(not(target_os = "linux"))]
    #[test]
    fn unsupported_elsewhere() {
        assert!(matches!(listening(), Err(PortsError::Unsupported { .. })));
    }
}
