//! The control messages the guest agent sends to the host agent over `gamux`'s control
//! channel ([`gamux::Mux::send_control`]): JSON objects with a `"type"` field. Protocol
//! version [`VERSION`] (carried in the snapshot).
//!
//! | type | when | JSON |
//! | --- | --- | --- |
//! | `ports` | on every new host session (the first Hello, and each time the host agent reconnects): every port listening now, replacing whatever the host knew | `{"type":"ports","version":1,"ports":[PORT,...]}` |
//! | `added` | a port started listening | `{"type":"added","port":PORT}` |
//! | `removed` | a port stopped listening (the same PORT its `added` or snapshot carried) | `{"type":"removed","port":PORT}` |
//!
//! where PORT is `{"proto":"tcp"|"udp","family":"ipv4"|"ipv6","ip":"127.0.0.1","port":8080}`
//! (`ip` is `0.0.0.0` / `::` for a socket on every address). Ports are keyed by
//! (proto, ip, port): two sockets on one port are one port.
//!
//! A reader should ignore unknown fields and unknown `type`s (later versions may add some).
//! The host sends nothing on the control channel yet; the agent logs and ignores whatever
//! arrives.
//!
//! Streams (not control messages): the host opens a `gamux` stream with proto `tcp` and the
//! address to connect to as the guest sees it (`127.0.0.1:8080`, `[::1]:8080`,
//! `10.0.2.15:8080`); the agent connects and copies bytes both ways with half-close, or
//! rejects the open with the connect error's text. Proto `udp` streams and datagrams are
//! rejected / dropped for now (UDP forwarding is not done yet).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ports::{Family, Listener, Proto};

/// The control protocol's version, sent in [`Message::Ports`].
pub const VERSION: u32 = 1;

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
    fn json_shapes() {
        let port = json!({"proto":"tcp","family":"ipv4","ip":"127.0.0.1","port":8080});
        let cases = [
            (
                Message::Ports {
                    version: VERSION,
                    ports: vec![p()],
                },
                json!({"type":"ports","version":1,"ports":[port.clone()]}),
            ),
            (
                Message::Added { port: p() },
                json!({"type":"added","port":port.clone()}),
            ),
            (
                Message::Removed { port: p() },
                json!({"type":"removed","port":port}),
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
