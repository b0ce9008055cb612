//! `limatype` — layer 1: the types of a lima.yaml and of an instance, and the well-known file
//! and directory names of `$LIMA_HOME`. No workspace dependencies.
//!
//! Every config field is an `Option` (or an optional collection), so "not set" and "set to the
//! default" stay distinguishable until `limadefaults` fills them. Unknown keys are rejected by
//! serde (`deny_unknown_fields`); the error names the key and its line.

mod bytesize;
pub mod filenames;
mod instance;
mod yaml;

pub use bytesize::{ByteSize, ParseByteSizeError};
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

/// Whether `name` is well-formed as a driver name (`vmType`, `lima-driver-<name>`): ASCII
/// letters, digits, `-` and `_`, starting with a letter or digit.
pub fn valid_driver_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Lima's name for a Rust `std::env::consts::ARCH`.
pub fn arch_from_rust(arch: &str) -> String {
    match arch {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        "arm" => "armv7l",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
    .to_string()
}

/// Lima's name for a Rust `std::env::consts::OS`.
pub fn os_from_rust(os: &str) -> String {
    match os {
        "linux" => "Linux",
        "macos" => "Darwin",
        "freebsd" => "FreeBSD",
        "windows" => "Windows",
        other => other,
    }
    .to_string()
}

/// This host's arch in Lima's naming.
pub fn host_arch() -> String {
    arch_from_rust(std::env::consts::ARCH)
}
