//! Helpers shared by limactl's CLI tests.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const LIMACTL: &str = env!("CARGO_BIN_EXE_limactl");

/// The `lima-driver-testfake` test-fixture executable, built now if needed (cargo rebuilds
/// only when its sources changed).
pub fn testfake_driver() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            "drivergrpc",
            "--features",
            "conformance",
        ])
        .args(["--bin", "lima-driver-testfake"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success(), "building lima-driver-testfake failed");
    let exe = Path::new(LIMACTL).with_file_name("lima-driver-testfake");
    assert!(exe.exists(), "{} is missing", exe.display());
    exe
}

/// `DIR/drivers` holding only `lima-driver-testfake` (for `LIMA_DRIVERS_PATH`).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn testfake_drivers_dir(dir: &Path) -> PathBuf {
    let drivers = dir.join("drivers");
    std::fs::create_dir(&drivers).unwrap();
    std::os::unix::fs::symlink(testfake_driver(), drivers.join("lima-driver-testfake")).unwrap();
    drivers
}
