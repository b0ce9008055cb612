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

/// A temporary `$LIMA_HOME` (`home`) with the `testfake` driver on `LIMA_DRIVERS_PATH` and
/// `HOME` in the same temporary directory (`tmp`), for running the real binary.
pub struct TestHome {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub drivers: PathBuf,
}

impl TestHome {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let drivers = testfake_drivers_dir(tmp.path());
        TestHome {
            home: tmp.path().join("home"),
            drivers,
            tmp,
        }
    }

    /// `limactl ARGS` in this home, stdin closed.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(LIMACTL);
        c.args(args)
            .env("LIMA_HOME", &self.home)
            .env("LIMA_DRIVERS_PATH", &self.drivers)
            .env("HOME", self.tmp.path())
            .stdin(std::process::Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    /// Stdout of a run that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "limactl {args:?} failed: {}",
            stderr_text(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Stderr (messages unescaped) of a run that must exit 1.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = stderr_text(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "limactl {args:?} must exit 1: {err}"
        );
        err
    }
}
