//! `portfwd` — layer 7.0: the host side of port forwarding. The guest agent reports the guest's
//! listening ports over the guest agent channel (`gamux` over the driver's connection, e.g.
//! qemu's virtio-serial `ga.sock`); for each, the `portForwards` rules ([`rules`]) decide the
//! host address, a listener there (127.0.0.1 unless a rule says otherwise) accepts
//! connections, and each connection is tunnelled to the guest through the guest agent. The
//! bytes never pass through a driver process, so internal and external drivers forward alike.
//!
//! UDP ports are relayed per client address as `gamux` datagrams (idle flows expire);
//! `static: true` rules and unix-socket rules (`guestSocket` → `hostSocket`) listen from the
//! start. Reverse socket rules need SSH and are the host agent's.

pub mod forward;
pub mod rules;

pub use forward::{run, run_with, GuestStatus, Report, UDP_IDLE_TIMEOUT};
pub use rules::{
    decide, effective_rules, static_forwards, Decision, GuestPort, StaticForward,
    MAX_STATIC_PORTS_PER_RULE,
};
