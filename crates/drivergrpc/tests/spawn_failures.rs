//! Files that are not working drivers fail fast with a clear error, never a hang.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drivergrpc::{probe, ExternalDriver, SpawnError, SpawnOptions, PROTOCOL_VERSION};

const BIN: &str = env!("CARGO_BIN_EXE_lima-driver-testfake");

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn spawn_err(path: &Path, timeout: Duration) -> (SpawnError, Duration) {
    let t = Instant::now();
    let opts = SpawnOptions {
        ready_timeout: timeout,
        ..Default::default()
    };
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        ExternalDriver::spawn_with(path, &opts),
    )
    .await
    .expect("spawn must not hang");
    match r {
        Ok(_) => panic!("{} should not be accepted as a driver", path.display()),
        Err(e) => (e, t.elapsed()),
    }
}

#[tokio::test]
async fn exits_immediately() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "lima-driver-quits",
        "echo 'boom: missing config' >&2; exit 3",
    );
    let (e, took) = spawn_err(&p, Duration::from_secs(5)).await;
    let msg = e.to_string();
    assert!(matches!(e, SpawnError::ExitedEarly { .. }), "{msg}");
    assert!(msg.contains("exit status 3"), "{msg}");
    assert!(msg.contains("boom: missing config"), "{msg}");
    assert!(msg.contains(&p.display().to_string()), "{msg}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn crashes() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(dir.path(), "lima-driver-crashes", "kill -SEGV $$");
    let (e, _) = spawn_err(&p, Duration::from_secs(5)).await;
    assert!(e.to_string().contains("killed by signal 11"), "{e}");
}

#[tokio::test]
async fn prints_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "lima-driver-chatty",
        "echo 'Hello, I am a shell script'; sleep 30",
    );
    let (e, took) = spawn_err(&p, Duration::from_secs(5)).await;
    assert!(matches!(e, SpawnError::Garbage { .. }), "{e}");
    assert!(e.to_string().contains("Hello, I am a shell script"), "{e}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[tokio::test]
async fn never_opens_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(dir.path(), "lima-driver-sleepy", "sleep 30");
    let (e, took) = spawn_err(&p, Duration::from_millis(800)).await;
    assert!(matches!(e, SpawnError::NotReady { .. }), "{e}");
    assert!(e.to_string().contains("not ready within"), "{e}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn announces_a_socket_it_does_not_serve() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "lima-driver-liar",
        "echo \"LIMA_DRIVER_READY 1.0 unix:$LIMA_DRIVER_SOCKET\"; sleep 30",
    );
    let (e, took) = spawn_err(&p, Duration::from_secs(1)).await;
    assert!(matches!(e, SpawnError::Connect { .. }), "{e}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[tokio::test]
async fn other_major_protocol_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "lima-driver-future",
        "echo \"LIMA_DRIVER_READY 2.3 unix:$LIMA_DRIVER_SOCKET\"; sleep 30",
    );
    let (e, _) = spawn_err(&p, Duration::from_secs(5)).await;
    let msg = e.to_string();
    assert!(matches!(e, SpawnError::ProtocolMismatch { .. }), "{msg}");
    assert!(msg.contains("2.3"), "{msg}");
    assert!(msg.contains(&PROTOCOL_VERSION.to_string()), "{msg}");
    assert!(msg.contains(&p.display().to_string()), "{msg}");
}

#[tokio::test]
async fn not_executable() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lima-driver-missing");
    let (e, _) = spawn_err(&p, Duration::from_secs(1)).await;
    assert!(matches!(e, SpawnError::Exec { .. }), "{e}");
}

#[tokio::test]
async fn file_name_and_handshake_name_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lima-driver-other");
    std::fs::copy(BIN, &p).unwrap();
    let (e, _) = spawn_err(&p, Duration::from_secs(5)).await;
    let msg = e.to_string();
    assert!(matches!(e, SpawnError::NameMismatch { .. }), "{msg}");
    assert!(
        msg.contains("\"other\"") && msg.contains("\"testfake\""),
        "{msg}"
    );
}

#[tokio::test]
async fn probe_answers_the_handshake() {
    let hs = probe(Path::new(BIN), &SpawnOptions::default())
        .await
        .unwrap();
    assert_eq!(hs.protocol, PROTOCOL_VERSION);
    assert_eq!(hs.driver_name, "testfake");
    assert_eq!(hs.driver_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(hs.features, ["noCloudInit", "snapshots"]);
}

#[test]
fn run_by_hand_it_says_what_it_is() {
    let out = std::process::Command::new(BIN)
        .env_remove(drivergrpc::SOCKET_ENV)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("this is a Lima VM driver"), "{stderr}");
}

#[tokio::test]
async fn socket_is_owner_only() {
    let d = ExternalDriver::spawn(BIN).await.unwrap();
    let pid = d.pid().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let socket = environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("LIMA_DRIVER_SOCKET="))
        .unwrap()
        .to_string();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket {socket}");
    let dir_mode = std::fs::metadata(Path::new(&socket).parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn stderr_lines_are_logged_with_level_and_driver_name() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "lima-driver-noisy",
        "echo 'WARN disk image is slow' >&2; echo 'plain line' >&2; exit 1",
    );
    let (e, _) = spawn_err(&p, Duration::from_secs(5)).await;
    assert!(matches!(e, SpawnError::ExitedEarly { .. }), "{e}");
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warn = log
        .lines()
        .find(|l| l.contains("disk image is slow"))
        .unwrap_or_else(|| panic!("not logged: {log}"));
    assert!(
        warn.contains("WARN") && warn.contains("driver=noisy"),
        "{warn}"
    );
    assert!(
        !warn.contains("WARN disk"),
        "level word kept in the message: {warn}"
    );
    let plain = log.lines().find(|l| l.contains("plain line")).unwrap();
    assert!(
        plain.contains("INFO") && plain.contains("driver=noisy"),
        "{plain}"
    );
}

/// limactl killed without a chance to clean up: the driver notices its stdin closing and
/// exits by itself, so it does not outlive limactl.
#[test]
fn driver_exits_when_its_parent_goes_away() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let mut child = std::process::Command::new(BIN)
        .env(drivergrpc::SOCKET_ENV, &socket)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim_end(),
        drivergrpc::ready_line(PROTOCOL_VERSION, &socket)
    );
    drop(child.stdin.take());
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "driver outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!socket.exists(), "socket left behind");
}

/// What a driver started (here a `sleep`, standing for a VM) ends with it.
#[tokio::test]
async fn a_failed_driver_leaves_no_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let p = script(
        dir.path(),
        "lima-driver-parent",
        &format!(
            "sleep 30 & echo $! > {}; echo garbage; wait",
            pidfile.display()
        ),
    );
    let (e, _) = spawn_err(&p, Duration::from_secs(5)).await;
    assert!(matches!(e, SpawnError::Garbage { .. }), "{e}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let t = Instant::now();
    // The grandchild is not ours to reap: it is gone once it is a zombie or absent.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    while alive() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "child {pid} of the driver outlived it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
