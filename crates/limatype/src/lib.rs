//! `limatype` — layer 1: the types of a lima.yaml and of an instance, the host a config is
//! for ([`HostFacts`], [`Os`], [`Arch`]), and the well-known file and directory names of
//! `$LIMA_HOME` and of driver executables. No workspace dependencies.
//!
//! Every config field is an `Option` (or an optional collection), so "not set" and "set to the
//! default" stay distinguishable until `limadefaults` fills them; [`Filled`] is the config
//! after that, its defaulted fields typed and no longer optional. Unknown keys are rejected by
//! serde (`deny_unknown_fields`); the error names the key and its line.

mod bytesize;
mod drivername;
pub mod filenames;
mod filled;
mod host;
mod instance;
pub mod network;
mod yaml;

pub use bytesize::{ByteSize, ParseByteSizeError};
pub use drivername::{
    driver_file_name, driver_name_from_file, valid_driver_name, DRIVER_FILE_PREFIX,
};
pub use filled::{Filled, FilledUser, MountType, NotFilled};
pub use host::{Arch, HostFacts, Os, ParseArchError, ParseOsError};
pub use instance::*;
pub use yaml::*;

/// The Lima release whose config schema and behaviour this implementation follows.
/// `minimumLimaVersion` in a template is compared with it.
pub const LIMA_COMPAT_VERSION: &str = "2.2.0";

pub const OS_TYPES: &[&str] = &["Linux", "Darwin", "FreeBSD", "Windows"];
pub const ARCH_TYPES: &[&str] = &["x86_64", "aarch64", "armv7l", "ppc64le", "riscv64", "s390x"];
pub const MOUNT_TYPES: &[&str] = &["reverse-sshfs", "9p", "virtiofs", "wsl2"];
pub const PROVISION_MODES: &[&str] = &[
    "system",
    "user",
    "boot",
    "dependency",
    "ansible",
    "data",
    "yq",
];
pub const PROBE_MODES: &[&str] = &["readiness"];
pub const PORT_PROTOS: &[&str] = &["tcp", "udp", "any"];
