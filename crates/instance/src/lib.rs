//! `instance` — layer 7.3: the one flow of an instance, from `lima.yaml` to a running VM and
//! back. It owns create / start / stop / delete / inspect: the config is loaded, filled and
//! validated once per process ([`load`]), the driver is resolved once per process through the
//! `registry` and reached only through the `driver` trait, called in the trait's order
//! (validate → create → create_disk → start), and the host agent is spawned and followed
//! ([`agentproc`]). The host agent process itself opens the instance through this crate too
//! ([`run_host_agent`]). `limactl`'s commands are thin clap code over it, `limactl disk`'s
//! over [`datadisk`] (additional disks: images through `qemu-img`, locked to an instance from
//! its start until it stops).

pub mod agentbin;
pub mod agentproc;
pub mod ansible;
mod clone;
pub mod containerd;
pub mod copy;
pub mod datadisk;
mod disks;
mod edit;
pub mod editor;
mod error;
mod firmware;
pub mod load;
pub mod manage;
mod open;
pub mod ops;
pub mod reset;
pub mod snapshot;
pub mod target;

pub use clone::clone_or_rename;
pub use edit::{edit, edit_file, edit_file_in_editor, edit_in_editor, Edited};
pub use error::{InstanceError, Result};
pub use open::{create, create_edited, open, run_host_agent, Edit, Opened, SshPort};

/// A duration in whole seconds from environment variable `name`, else `default` seconds.
fn env_seconds(name: &str, default: u64) -> std::time::Duration {
    let secs = std::env::var(name).ok().and_then(|v| v.parse().ok());
    std::time::Duration::from_secs(secs.unwrap_or(default))
}
