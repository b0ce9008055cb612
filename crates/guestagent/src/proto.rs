//! The control messages the guest agent sends to the host agent over `gamux`'s control
//! channel ([`gamux::Mux::send_control`]): JSON objects with a `"type"` field. Protocol
//! version [`VERSION`] (carried in the snapshot; a host that knows only version 1 ignores
//! `boot`).
//!
//! | type | when | JSON |
//! | --- | --- | --- |
//! | `ports` | on every new host session (the first Hello, and each time the host agent reconnects): every port listening now, replacing whatever the host knew | `{"type":"ports","version":1,"ports":[PORT,...]}` |
//! | `added` | a port started listening | `{"type":"added","port":PORT}` |
//! | `removed` | a port stopped listening (the same PORT its `added` or snapshot carried) | `{"type":"removed","port":PORT}` |
//! | `boot` | the boot scripts have all run ([`BOOT_DONE_FILE`] exists): once per host session, as soon as it holds | `{"type":"boot","done":true}` |
//!
//! where PORT is `{"proto":"tcp"|"udp","family":"ipv4"|"ipv6","ip":"127.0.0.1","port":8080}`
//! (`ip` is `0.0.0.0` / `::` for a socket on every address). Ports are keyed by
//! (proto, ip, port): two sockets on one port are one port.
//!
//! A reader should ignore unknown fields and unknown `type`s (later versions may add some).
//!
//! The host sends [`HostMessage`]s the same way:
//!
//! | type | when | JSON |
//! | --- | --- | --- |
//! | `time` | on every new session and every 10 s | `{"type":"time","unix_ms":1764438000000}`: the host's clock; the agent steps the guest's clock when it is off by more than [`CLOCK_TOLERANCE_MS`] (after the host slept, the guest's clock lags) |
//!
//! Streams (not control messages): the host opens a `gamux` stream with proto `tcp` and the
//! address to connect to as the guest sees it (`127.0.0.1:8080`, `[::1]:8080`,
//! `10.0.2.15:8080`), or proto `unix` and a socket path; the agent connects and copies bytes
//! both ways with half-close, or rejects the open with the connect error's text. UDP goes as
//! `gamux` datagrams: the host picks a flow id per client and names the guest address in
//! each datagram; the agent answers on the same flow (proto `udp` streams are rejected).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ports::{Family, Listener, Proto};

/// The control protocol's version, sent in [`Message::Ports`]. Version 2 added
/// [`Message::Boot`].
pub const VERSION: u32 = 2;

/// Created by the boot scripts (from the seed) when they have all run, provisioning
/// included; the host agent's final requirement. The agent announces it ([`Message::Boot`]),
/// so the host need not poll for it over SSH.
pub const BOOT_DONE_FILE: &str = "/run/lima-boot-done";

/// A listening port as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Port {
    /// `"tcp"` or `"udp"`.
    pub proto: Proto,
    /// `"ipv4"` or `"ipv6"`.
    pub family: Family,
    /// The address the socket is bound to (`0.0.0.0` / `::`: every address).
    pub ip: IpAddr,
    /// The port.
    pub port: u16,
}

impl From<&Listener> for Port {
    fn from(l: &Listener) -> Port {
        Port {
            proto: l.proto,
            family: l.family,
            ip: l.ip,
            port: l.port,
        }
    }
}

/// One control message from the guest (see the module docs for the JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Message {
    /// Every port listening now; replaces what the host knew.
    Ports {
        /// [`VERSION`] of the sender (0 when absent).
        #[serde(default)]
        version: u32,
        /// The ports, sorted.
        ports: Vec<Port>,
    },
    /// A port started listening.
    Added {
        /// The port.
        port: Port,
    },
    /// A port stopped listening.
    Removed {
        /// The port.
        port: Port,
    },
    /// The boot scripts have all run (sent once per host session, when it holds).
    Boot {
        /// Always true (a later version may report steps on the way).
        done: bool,
    },
}

/// How far the guest's clock may be from the host's before the agent sets it.
pub const CLOCK_TOLERANCE_MS: i64 = 1000;

/// One control message from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HostMessage {
    /// The host's wall clock, in milliseconds since the Unix epoch.
    Time {
        /// Milliseconds since 1970-01-01 UTC.
        unix_ms: i64,
    },
    /// A file changed on the host under a mount (`mountInotify`): the agent sets the guest
    /// path's times to the host's modification time, which raises inotify events in the guest
    /// (upstream's `PostInotify`).
    Inotify {
        /// The path in the guest (under the mount point).
        path: String,
        /// The file's modification time on the host, in milliseconds since the epoch.
        unix_ms: i64,
    },
}

/// The correction to apply to the guest's clock (`host - guest`, in ms) when it is off by
/// more than [`CLOCK_TOLERANCE_MS`]; `None` when it is close enough.
pub fn clock_correction(host_ms: i64, guest_ms: i64) -> Option<i64> {
    let off = host_ms.saturating_sub(guest_ms);
    (off.saturating_abs() > CLOCK_TOLERANCE_MS).then_some(off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p() -> Port {
        Port {
            proto: Proto::Tcp,
            family: Family::Ipv4,
            ip: "127.0.0.1".parse().unwrap(),
            port: 8080,
        }
    }

    #[test]
    fn clock_is_set_only_beyond_the_tolerance() {
        assert_eq!(clock_correction(10_000, 9_500), None);
        assert_eq!(clock_correction(10_000, 10_999), None);
        assert_eq!(clock_correction(3_600_000, 0), Some(3_600_000));
        assert_eq!(clock_correction(0, 5_000), Some(-5_000));
        assert_eq!(clock_correction(i64::MAX, i64::MIN), Some(i64::MAX));
        let m: HostMessage =
            serde_json::from_value(json!({"type":"time","unix_ms":1764438000000_i64})).unwrap();
        assert_eq!(
            m,
            HostMessage::Time {
                unix_ms: 1_764_438_000_000
            }
        );
    }

    #[test]
    fn json_shapes() {
        let port = json!({"proto":"tcp","family":"ipv4","ip":"127.0.0.1","port":8080});
        let cases = [
            (
                Message::Ports {
                    version: VERSION,
                    ports: vec![p()],
                },
                json!({"type":"ports","version":2,"ports":[port.clone()]}),
            ),
            (
                Message::Added { port: p() },
                json!({"type":"added","port":port.clone()}),
            ),
            (
                Message::Removed { port: p() },
                json!({"type":"removed","port":port}),
            ),
            (
                Message::Boot { done: true },
                json!({"type":"boot","done":true}),
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(serde_json::to_value(&msg).unwrap(), want);
            assert_eq!(serde_json::from_value::<Message>(want).unwrap(), msg);
        }
        // Unknown fields are ignored; a snapshot without a version reads as version 0.
        let m: Message = serde_json::from_value(json!({"type":"ports","ports":[],"x":1})).unwrap();
        assert_eq!(
            m,
            Message::Ports {
                version: 0,
                ports: vec![]
            }
        );
    }
}
