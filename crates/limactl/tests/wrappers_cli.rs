//! The wrapper scripts installed beside limactl (`crates/limactl/wrappers/`, upstream's
//! `cmd/lima` and friends): the arguments they hand to `limactl`, checked with a fake
//! `limactl` on PATH, and `lima` against the real binary.

mod common;

const LIMACTL: &str = env!("CARGO_BIN_EXE_limactl");

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn wrapper(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("wrappers")
        .join(name)
}

/// A directory with a `limactl` that prints its arguments, one a line.
fn fake_limactl() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("limactl");
    std::fs::write(&p, "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn run(name: &str, args: &[&str], envs: &[(&str, &str)], bin: &Path) -> (i32, String, String) {
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = Command::new(wrapper(name))
        .args(args)
        .env_clear()
        .env("PATH", path)
        .env("HOME", bin)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        common::stderr_text(&out.stderr).into_owned(),
    )
}

#[test]
fn lima_runs_limactl_shell_on_the_instance() {
    let bin = fake_limactl();
    let (code, out, _) = run("lima", &["uname", "-a"], &[], bin.path());
    assert_eq!(code, 0);
    assert_eq!(out, "shell\n--instance\ndefault\nuname\n-a\n");
    let (_, out, _) = run(
        "lima",
        &["ls", "a b"],
        &[
            ("LIMA_INSTANCE", "x"),
            ("LIMA_SHELL", "/bin/zsh"),
            ("LIMA_WORKDIR", "/w"),
        ],
        bin.path(),
    );
    assert_eq!(
        out,
        "shell\n--workdir\n/w\n--shell\n/bin/zsh\n--instance\nx\nls\na b\n"
    );
    let (code, out, _) = run("lima", &["--help"], &[], bin.path());
    assert_eq!(code, 0);
    assert!(
        out.contains("is an alias for \"limactl shell default\""),
        "{out}"
    );
    let (_, out, _) = run("lima", &["--version"], &[], bin.path());
    assert_eq!(out, "--version\n");
    let (_, out, _) = run("nerdctl.lima", &["ps"], &[], bin.path());
    assert_eq!(out, "shell\n--preserve-env\ndefault\nnerdctl\nps\n");
}

#[test]
fn lima_with_the_real_limactl() {
    let bin = tempfile::tempdir().unwrap();
    let home = bin.path().join("lima-home");
    let (code, _, err) = run(
        "lima",
        &["uname"],
        &[
            ("LIMACTL", LIMACTL),
            ("LIMA_HOME", home.to_str().unwrap()),
            ("LIMA_INSTANCE", "nope"),
        ],
        bin.path(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("instance \"nope\" does not exist"), "{err}");
}
