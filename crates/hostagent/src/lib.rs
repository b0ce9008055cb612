//! `hostagent` — layer 7.2: the host agent of one instance (`limactl hostagent NAME`). It
//! drives the instance's `driver::Driver` (handed over by limactl from the registry, internal
//! or external alike), starts the VM, waits for the guest to be usable
//! over SSH, forwards guest ports (`portfwd` on the driver's guest agent channel; reverse
//! unix sockets over SSH, [`reverse`]), makes reverse-sshfs mounts ([`sshfs`]) and checks
//! that every mount is there before the instance counts as ready, passes host file changes
//! under mounts to the guest ([`inotify`], `mountInotify`), copies `copyToHost` files to the
//! host once the guest is ready ([`copytohost`]), reports progress as JSON-line
//! events (in `ha.stdout.log` and on `ha.sock`; the guest's cloud-init output too with
//! `--progress`, [`cloudinit`]; each startup phase's duration, [`phases`]), and on
//! SIGTERM/SIGINT stops the VM and cleans up.

pub mod agent;
pub mod cloudinit;
pub mod copytohost;
pub mod events;
pub mod inotify;
pub mod phases;
pub mod requirements;
pub mod reverse;
pub mod server;
pub mod sshfs;
pub mod vnc;
