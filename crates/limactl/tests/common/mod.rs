//! Helpers shared by limactl's CLI tests.
#![allow(dead_code)] // each test binary uses some of them

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
pub fn testfake_drivers_dir(dir: &Path) -> PathBuf {
    let drivers = dir.join("drivers");
    std::fs::create_dir(&drivers).unwrap();
    std::os::unix::fs::symlink(testfake_driver(), drivers.join("lima-driver-testfake")).unwrap();
    drivers
}

/// A command's stderr as the tests read it: each logrus text record (`time=... level=...
/// msg="..."`, how limactl prints its progress and its final error when stderr is not a
/// terminal, as upstream) with its message unescaped (`time="T" level=fatal msg=instance "a"
/// ...`, newlines kept), so that a test can look for a message as people read it; other
/// lines as they are.
pub fn stderr_text(bytes: &[u8]) -> std::borrow::Cow<'static, str> {
    let raw = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for line in raw.lines() {
        match (line.starts_with("time="), line.find(" msg=\"")) {
            (true, Some(at)) => {
                out.push_str(&line[..at + 5]);
                let (msg, rest) = unescape_debug(&line[at + 6..]);
                out.push_str(&msg);
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    std::borrow::Cow::Owned(out)
}

/// The text of a Rust `{:?}`-quoted string whose opening quote is already gone, and what
/// follows its closing quote.
fn unescape_debug(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return (out, chars.as_str()),
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('u') => {
                    let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                    if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        out.push(c);
                    }
                }
                Some(other) => out.push(other),
                None => {}
            },
            c => out.push(c),
        }
    }
    (out, "")
}
