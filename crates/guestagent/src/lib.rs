//! `guestagent` — layer 1.1, guest-side kind: `lima-guestagent`, the agent that runs inside
//! the Linux VM (as upstream Lima's `pkg/guestagent`). It depends on no host-side workspace
//! crate (only `gamux`, the wire protocol, and `limayq`, the shared yq evaluator its `yq`
//! subcommand runs for `yq` provisioning steps).
//!
//! - [`ports`]: port discovery. [`ports::listening`] asks the kernel, through netlink
//!   `sock_diag` (not by parsing `/proc/net/*` text), for every listening TCP socket and every
//!   bound, unconnected UDP socket, IPv4 and IPv6; [`ports::Watcher`] polls it and reports
//!   what appeared and what went away, so the host can open and release forwards.
//! - [`proto`]: the control messages sent to the host agent (port snapshot, added, removed),
//!   as JSON.
//! - [`daemon`]: `lima-guestagent daemon`: serves the host agent over the virtio-serial port
//!   with `gamux` — announces ports, connects the host's TCP and unix-socket streams to their
//!   targets, relays UDP datagrams per flow, and reopens the channel whenever it ends.
//! - `channel` (unix): the virtio-serial port opened non-blocking and driven by epoll.
//!
//! The binary `lima-guestagent` (`src/main.rs`) runs the daemon (started by systemd, see
//! `cidata`'s `boot.sh`) and prints ports as JSON lines for debugging.

#[cfg(unix)]
pub mod channel;
pub mod daemon;
pub mod ports;
pub mod proto;
