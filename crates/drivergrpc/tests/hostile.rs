//! Drivers that misbehave after a good start: one that stops answering (every call has a
//! deadline, and the driver is killed when it passes), and limactl interrupted while drivers
//! run (SIGTERM ends them, what they started, and their socket directories).
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use driver::{Driver, ErrorKind};
use drivergrpc::conformance::testfake::HANG_PASSWORD;
use drivergrpc::{ExternalDriver, SpawnOptions};

const BIN: &str = env!("CARGO_BIN_EXE_lima-driver-testfake");

/// `lima-driver-testfake` that first starts a `sleep` in its process group (standing for the
/// VM a driver starts) and writes that sleep's pid to `vm.pid`.
fn driver_with_a_vm(dir: &Path) -> PathBuf {
    let path = dir.join("lima-driver-testfake");
    let vm_pid = dir.join("vm.pid");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nsleep 300 &\necho $! > '{}'\nexec '{BIN}'\n",
            vm_pid.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn read_pid(path: &Path) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{} not written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Alive and not a zombie (a zombie is dead; its reaper is not necessarily us).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn wait_gone(pid: i32, what: &str) {
    let t = Instant::now();
    while alive(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{what} (pid {pid}) is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_hung_call_times_out_and_the_driver_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = driver_with_a_vm(dir.path());
    let opts = SpawnOptions {
        call_timeout: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let d = ExternalDriver::spawn_with(&path, &opts).await.unwrap();
    let pid = d.pid().unwrap() as i32;
    let vm = read_pid(&dir.path().join("vm.pid"));
    // A quick call that answers is unaffected.
    d.info().await.unwrap();

    let t = Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        d.change_display_password(HANG_PASSWORD),
    )
    .await
    .expect("a call to a driver that does not answer must not hang")
    .unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    let msg = e.to_string();
    for part in [
        "driver testfake",
        &path.display().to_string(),
        "change_display_password",
        "500ms",
        drivergrpc::CALL_TIMEOUT_ENV,
    ] {
        assert!(msg.contains(part), "{part:?} missing in: {msg}");
    }
    assert!(took < Duration::from_secs(3), "{took:?}");

    wait_gone(pid, "the driver");
    wait_gone(vm, "what the driver started");
    // Later calls fail at once, saying the driver is gone.
    let e = tokio::time::timeout(Duration::from_secs(5), d.info())
        .await
        .expect("a call after the timeout must not hang")
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
}

#[tokio::test]
async fn no_deadline_when_turned_off() {
    let opts = SpawnOptions {
        call_timeout: None,
        ..Default::default()
    };
    let d = ExternalDriver::spawn_with(Path::new(BIN), &opts)
        .await
        .unwrap();
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        d.change_display_password(HANG_PASSWORD),
    )
    .await;
    assert!(hung.is_err(), "the call should still be waiting");
    d.info().await.unwrap();
}

const HELPER_DIR_ENV: &str = "DRIVERGRPC_HOSTILE_HELPER_DIR";

/// Not a test by itself: run by `sigterm_ends_drivers_and_their_socket_dirs` in a process of
/// its own (this test binary again), it is "limactl" holding a driver in a call that never
/// returns.
#[test]
fn sigterm_helper() {
    let Some(dir) = std::env::var_os(HELPER_DIR_ENV).map(PathBuf::from) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = SpawnOptions {
            call_timeout: None,
            ..Default::default()
        };
        let d = ExternalDriver::spawn_with(&driver_with_a_vm(&dir), &opts)
            .await
            .unwrap();
        std::fs::write(dir.join("driver.pid"), d.pid().unwrap().to_string()).unwrap();
        let _ = d.change_display_password(HANG_PASSWORD).await;
        unreachable!("the call never returns");
    });
}

#[test]
fn sigterm_ends_drivers_and_their_socket_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigterm_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_DIR_ENV, dir.path())
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let driver = read_pid(&dir.path().join("driver.pid"));
    let vm = read_pid(&dir.path().join("vm.pid"));
    let socket_dirs = || -> Vec<String> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("lima-driver-"))
            .collect()
    };
    assert_eq!(socket_dirs().len(), 1, "{:?}", socket_dirs());
    assert!(alive(driver) && alive(vm));
    std::thread::sleep(Duration::from_millis(200));

    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(helper.id() as libc::pid_t, libc::SIGTERM);
    }
    let t = Instant::now();
    let status = loop {
        if let Some(s) = helper.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = helper.kill();
            panic!("the helper ignored SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    wait_gone(driver, "the driver");
    wait_gone(vm, "what the driver started");
    assert_eq!(socket_dirs(), Vec::<String>::new(), "socket directory left");
}
