//! `registry` — layer 7.0: which VM drivers this limactl has. Internal drivers are registered
//! explicitly by the caller (limactl compiles them in by cargo feature `driver-<name>`);
//! external ones are `lima-driver-<name>` executables found in `$LIMA_DRIVERS_PATH` and in
//! `<prefix>/libexec/lima/`, spawned only when a caller needs them. An internal driver wins
//! over an external one of the same name.

pub mod discovery;

pub use discovery::{driver_file_name, driver_name_from_file, TargetOs};

/// The drivers tried, in order, when a config has no `vmType` (as in Lima: vz on macOS, qemu
/// elsewhere; qemu also runs every other case, e.g. a non-native arch on macOS). A driver not
/// listed here is used only when named by `vmType`.
pub fn preferred_order(os: TargetOs) -> &'static [&'static str] {
    match os {
        TargetOs::MacOs => &["vz", "qemu"],
        TargetOs::Windows => &["qemu", "wsl2"],
        TargetOs::Linux | TargetOs::OtherUnix => &["qemu"],
    }
}
