//! `hostagent` — layer 7.1: the host agent of one instance (`limactl hostagent NAME`). It
//! resolves the driver through the registry, starts the VM, waits for the guest to be usable
//! over SSH, reports progress as JSON-line events (in `ha.stdout.log` and on `ha.sock`), and on
//! SIGTERM/SIGINT stops the VM and cleans up.

pub mod agent;
pub mod events;
pub mod requirements;
pub mod server;
