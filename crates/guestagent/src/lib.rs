//! `guestagent` — layer 1.1, guest-side kind: `lima-guestagent`, the agent that runs inside
//! the Linux VM (as upstream Lima's `pkg/guestagent`). It depends on no host-side workspace
//! crate.
//!
//! What it holds so far:
//!
//! - [`ports`]: port discovery. [`ports::listening`] asks the kernel, through netlink
//!   `sock_diag` (not by parsing `/proc/net/*` text), for every listening TCP socket and every
//!   bound, unconnected UDP socket, IPv4 and IPv6; [`ports::Watcher`] polls it and reports
//!   what appeared and what went away, so the host can open and release forwards.
//!
//! The binary `lima-guestagent` (`src/main.rs`) prints these as JSON lines for debugging inside
//! a guest. Serving the host agent over virtio-serial (the `gamux` protocol) and the tunnels it
//! carries are not part of this crate yet.

pub mod ports;
