//! `qemu` — layer 6: the QEMU driver. Builds the qemu command line per host and arch (KVM,
//! HVF or TCG; UEFI firmware from [`firmware`]; display, VNC and audio devices; see
//! docs/qemu.md), checks the installed qemu's version, prepares disks
//! with qemu-img (basedisk + copy-on-write diffdisk), shares host directories (9p, or virtiofs
//! with one `virtiofsd` per mount), runs qemu and stops it through QMP, and takes snapshots
//! (monitor or `qemu-img`).
//! [`QemuDriver`] is its `driver::Driver`; [`config`] holds qemu's fill/accept rules.

pub mod cmdline;
pub mod config;
pub mod firmware;
pub mod machine;
pub mod qemu_driver;
pub mod qmp;
pub mod snapshot;
pub mod virtiofsd;
pub mod vm;

pub use qemu_driver::QemuDriver;

pub const NAME: &str = "qemu";
