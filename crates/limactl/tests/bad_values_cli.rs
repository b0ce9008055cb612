//! `limactl create` refusing values it used to accept, and its messages: exit code 1, the
//! file, line and field named, each OS error printed once, nothing created under
//! `$LIMA_HOME`. No VM is started: the built-in qemu driver accepts a config without running
//! anything.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LIMACTL: &str = env!("CARGO_BIN_EXE_limactl");

fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../limaload/tests/fixtures/templates")
}

fn command(args: &[&str], lima_home: &Path) -> Command {
    let mut c = Command::new(LIMACTL);
    c.args(args)
        .env("LIMA_HOME", lima_home)
        .env("LIMA_DRIVERS_PATH", "")
        .env("LIMA_TEMPLATES_PATH", templates())
        .env_remove("LIMA_DISABLE_INTERNAL_DRIVERS")
        .stdin(Stdio::null());
    c
}

/// Runs limactl, killing it after 60 s (a read that blocks must fail the test, not hang it).
fn limactl(args: &[&str], lima_home: &Path) -> Output {
    let mut child = command(args, lima_home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("limactl {args:?} did not finish in 60 s: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    common::stderr_text(&out.stderr).into_owned()
}

/// The names under `dir` (recursively, relative), to see what a failed command left.
fn entries(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Creates `--name x` from `text` in a fresh `$LIMA_HOME`; returns the output and what the
/// home holds afterwards.
fn create_from(text: &[u8]) -> (Output, Vec<String>) {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let file = work.path().join("bad.yaml");
    std::fs::write(&file, text).unwrap();
    let out = limactl(&["create", "--name", "x", file.to_str().unwrap()], &home);
    let left = entries(&home);
    (out, left)
}

#[test]
fn bad_values_are_refused_naming_file_line_and_field() {
    let cases: &[(&str, &str)] = &[
        (
            "user:\n  name: \"bob\\nx\"\n",
            "bad.yaml:3: user.name: must be a user name",
        ),
        (
            "user:\n  name: Bob\n",
            "bad.yaml:3: user.name: must be a user name",
        ),
        (
            "env:\n  \"A B\": x\n",
            "bad.yaml:3: env.A B: name must match ^[A-Za-z_][A-Za-z0-9_]*$",
        ),
        ("env:\n  A=B: x\n", "bad.yaml:3: env.A=B: name must match"),
        (
            "env:\n  GREETING: \"hello\\nworld\"\n",
            "bad.yaml:3: env.GREETING: value contains control character '\\n'",
        ),
        (
            "cpus: 9223372036854775807\n",
            "bad.yaml:2: cpus: must be at most 1024, got 9223372036854775807",
        ),
        (
            "memory: 8000PiB\n",
            "bad.yaml:2: memory: 8000PiB is more than this host's ",
        ),
        (
            "memory: 99999999999PiB\n",
            "bad.yaml:2: memory: 99999999999PiB is too large",
        ),
    ];
    for (body, want) in cases {
        let text = format!("base: template:_images/tiny\n{body}");
        let (out, left) = create_from(text.as_bytes());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{text}\n{err}");
        assert!(err.contains(want), "{text}\nwant {want:?} in\n{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(left.is_empty(), "{text}\nleft in LIMA_HOME: {left:?}");
    }
    // The host's figure, e.g. "8000PiB is more than this host's 15.5GiB of memory".
    let (out, _) = create_from(b"base: template:_images/tiny\nmemory: 8000PiB\n");
    let err = stderr(&out);
    assert!(err.contains("iB of memory"), "{err}");
}

#[test]
fn a_utf8_bom_is_accepted() {
    let (out, left) = create_from(b"\xef\xbb\xbfbase: template:_images/tiny\ncpus: 1\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(left.contains(&"x/lima.yaml".to_string()), "{left:?}");

    // And in a base.
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(
        work.path().join("b.yaml"),
        b"\xef\xbb\xbfbase: template:_images/tiny\ncpus: 1\n",
    )
    .unwrap();
    std::fs::write(work.path().join("top.yaml"), "base: b.yaml\n").unwrap();
    let top = work.path().join("top.yaml");
    let out = limactl(&["create", "--name", "y", top.to_str().unwrap()], &home);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_fifo_or_device_is_refused_not_waited_for() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let fifo = work.path().join("fifo.yaml");
    mkfifo(&fifo);
    std::fs::write(work.path().join("top.yaml"), "base: fifo.yaml\n").unwrap();
    let top = work.path().join("top.yaml");
    for (locator, want) in [
        (
            fifo.display().to_string(),
            format!("{}: is not a regular file (a FIFO)", fifo.display()),
        ),
        (
            top.display().to_string(),
            format!(
                "top.yaml:1: base[0]: {}: is not a regular file (a FIFO)",
                fifo.display()
            ),
        ),
        (
            "/dev/zero".to_string(),
            "/dev/zero: is not a regular file (a device)".to_string(),
        ),
    ] {
        let out = limactl(&["create", "--name", "x", &locator], &home);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{locator}: {err}");
        assert!(err.contains(&want), "want {want:?} in\n{err}");
        assert!(entries(&home).is_empty(), "{:?}", entries(&home));
    }
}

#[test]
fn an_os_error_is_printed_once() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    // A file where the instance directory would go.
    std::fs::write(home.join("x"), "").unwrap();
    let file = work.path().join("ok.yaml");
    std::fs::write(&file, "base: template:_images/tiny\n").unwrap();
    let out = limactl(&["create", "--name", "x", file.to_str().unwrap()], &home);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&home.join("x").display().to_string()), "{err}");
    assert_eq!(err.matches("(os error 17)").count(), 1, "{err}");
    assert_eq!(entries(&home), ["x"]);
}

#[test]
fn errors_about_a_base_do_not_quote_it() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let base = work.path().join("notes.yaml");
    std::fs::write(
        &base,
        "#!/bin/sh\necho TOKEN=SECRET_ONE: yes\nprovision: |\n  SECRET_TWO\n  more\n",
    )
    .unwrap();
    let top = work.path().join("top.yaml");
    std::fs::write(&top, "base: notes.yaml\n").unwrap();
    let out = limactl(&["create", "--name", "x", top.to_str().unwrap()], &home);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("SECRET"), "{err}");
    assert!(
        err.contains(&format!("{}:2: ", base.display())),
        "names the base and line: {err}"
    );
    assert!(entries(&home).is_empty(), "{:?}", entries(&home));
}

/// Fields upstream's qemu acts on but ours does not are refused by the driver's accept, naming
/// the field; nothing is left under `$LIMA_HOME` (see docs/fields.md).
#[test]
fn fields_the_qemu_driver_does_not_implement_are_refused() {
    for (body, field) in [
        ("networks:\n- lima: user-v2\n", "networks[0].lima"),
        (
            "networks:\n- socket: /var/run/socket_vmnet\n",
            "networks[0].socket",
        ),
        ("tpm: true\n", "tpm"),
        ("rosetta:\n  enabled: true\n", "rosetta.enabled"),
        ("os: FreeBSD\n", "os"),
        (
            "osOpts:\n  Windows:\n    virtioWin:\n    - location: /virtio-win.iso\n",
            "osOpts.Windows.virtioWin",
        ),
    ] {
        let text = format!("base: template:_images/tiny\nvmType: qemu\n{body}");
        let (out, left) = create_from(text.as_bytes());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{body}: {err}");
        assert!(err.contains(&format!("field `{field}`")), "{body}: {err}");
        assert!(left.is_empty(), "{body}: left {left:?}");
    }
    // Upstream's qemu ignores these too: a warning, not a refusal.
    let (out, _) =
        create_from(b"base: template:_images/tiny\nvmType: qemu\nnestedVirtualization: true\n");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("nestedVirtualization"), "{err}");
}
