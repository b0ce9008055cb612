//! The qemu driver's own fields through the real binary, without booting anything:
//! `video.vnc.display` and remote `firmware.images` refused by `create` (exit 1, nothing left
//! in `$LIMA_HOME`), and `vmOpts.qemu.minimumVersion` refused by `start` against a fake
//! `qemu-system-*` on PATH that only answers `--version` (so a regression cannot boot a VM).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const LIMACTL: &str = env!("CARGO_BIN_EXE_limactl");

fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../limaload/tests/fixtures/templates")
}

fn limactl(args: &[&str], home: &Path, path: &std::ffi::OsStr) -> Output {
    Command::new(LIMACTL)
        .args(args)
        .env("LIMA_HOME", home)
        .env("LIMA_DRIVERS_PATH", "")
        .env("LIMA_TEMPLATES_PATH", templates())
        .env("PATH", path)
        .env_remove("LIMA_DISABLE_INTERNAL_DRIVERS")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Work { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn yaml(&self, body: &str) -> String {
        let f = self.dir.path().join("t.yaml");
        std::fs::write(&f, format!("base: template:_images/tiny\n{body}")).unwrap();
        f.display().to_string()
    }
}

#[test]
fn create_refuses_bad_vnc_display_and_firmware_location() {
    let cases = [
        (
            "video:\n  display: vnc\n  vnc:\n    display: localhost\n",
            "field `video.vnc.display` must be HOST:DISPLAY[,OPTIONS] or unix:PATH[,OPTIONS], got \"localhost\"",
        ),
        (
            "firmware:\n  images:\n  - location: ftp://example.com/OVMF_CODE.fd\n",
            "field `firmware.images[0].location`: an absolute path, file://, http:// or https:// URL is needed",
        ),
    ];
    for (body, want) in cases {
        let w = Work::new();
        let out = limactl(
            &["create", "--name", "x", &w.yaml(body)],
            &w.home(),
            &std::env::var_os("PATH").unwrap(),
        );
        let err = common::stderr_text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{body}\n{err}");
        assert!(err.contains(want), "{body}\nwant {want:?} in\n{err}");
        assert!(
            std::fs::read_dir(w.home()).unwrap().next().is_none(),
            "{body}: something left in LIMA_HOME"
        );
    }
    // A VNC display on a unix socket is accepted, and so is a remote firmware image (fetched
    // at start, not at create).
    for body in [
        "video:\n  display: vnc\n  vnc:\n    display: unix:/tmp/x-vnc.sock\n",
        "firmware:\n  images:\n  - location: https://example.com/OVMF_CODE.fd\n",
    ] {
        let w = Work::new();
        let out = limactl(
            &["create", "--name", "x", &w.yaml(body)],
            &w.home(),
            &std::env::var_os("PATH").unwrap(),
        );
        assert!(
            out.status.success(),
            "{body}: {}",
            common::stderr_text(&out.stderr)
        );
    }
}

#[test]
fn start_refuses_a_qemu_older_than_minimum_version() {
    let w = Work::new();
    let bin = w.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = w.dir.path().join("calls");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        other => {
            eprintln!("SKIPPED: no fake qemu for {other}");
            return;
        }
    };
    let fake = bin.join(format!("qemu-system-{arch}"));
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\n[ \"$1\" = --version ] && {{ echo 'QEMU emulator version 7.2.0 (fake)'; exit 0; }}\nexit 1\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = std::ffi::OsString::from(&bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap());
    let yaml = w.yaml("vmOpts:\n  qemu:\n    minimumVersion: 8.1.0\n");
    let out = limactl(
        &["start", "--tty=false", "--name", "x", &yaml],
        &w.home(),
        &path,
    );
    let err = common::stderr_text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("QEMU 7.2.0 is too old, template requires `8.1.0` or later"),
        "{err}"
    );
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert!(
        calls.lines().all(|l| l == "--version"),
        "qemu was run for more than its version: {calls}"
    );
    let out = limactl(&["delete", "-f", "x"], &w.home(), &path);
    assert!(out.status.success(), "{}", common::stderr_text(&out.stderr));
}
