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
    osutil::pid_alive(pid)
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
async fn a_long_call_has_the_long_deadline() {
    let opts = SpawnOptions {
        call_timeout: Some(Duration::from_millis(200)),
        long_call_timeout: Some(Duration::from_millis(1500)),
        ..Default::default()
    };
    let d = ExternalDriver::spawn_with(Path::new(BIN), &opts)
        .await
        .unwrap();
    // A quick call first: it answers well within its (shorter) deadline.
    d.info().await.unwrap();
    let t = Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        d.create_snapshot(drivergrpc::conformance::testfake::HANG_SNAPSHOT_TAG),
    )
    .await
    .expect("a long call must not hang")
    .unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("create_snapshot")
            && msg.contains("1.5s")
            && msg.contains(drivergrpc::LONG_CALL_TIMEOUT_ENV),
        "{msg}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "{took:?}"
    );
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

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `VmHWM` (peak resident set) of this process in KiB, after resetting it when the kernel
/// allows, so that what follows is measured from now.
fn reset_peak_kib() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmHWM")
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Peak memory may grow by this much while a driver floods us (the flood is 200 MB).
const MAX_GROWTH_KIB: u64 = 48 * 1024;

#[tokio::test]
async fn endless_stdout_without_a_newline_is_refused_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "lima-driver-flood",
        "head -c 200000000 /dev/zero; sleep 30",
    );
    let before = reset_peak_kib();
    let t = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        ExternalDriver::spawn_with(&p, &SpawnOptions::default()),
    )
    .await
    .expect("spawn must not hang");
    let took = t.elapsed();
    let e = match r {
        Ok(_) => panic!("a flood is not a driver"),
        Err(e) => e,
    };
    let grew = status_kib("VmHWM").saturating_sub(before);
    let msg = e.to_string();
    assert!(
        msg.contains("ready line") && msg.contains(&p.display().to_string()),
        "{msg}"
    );
    assert!(took < Duration::from_secs(3), "refused after {took:?}");
    assert!(grew < MAX_GROWTH_KIB, "peak memory grew by {grew} KiB");
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

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    async fn wait_for(&self, needle: &str, within: Duration) -> String {
        let t = Instant::now();
        loop {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                t.elapsed() < within,
                "{needle:?} not logged within {within:?}; log has {} bytes",
                text.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn a_huge_stderr_line_is_cut_and_the_driver_still_works() {
    let (log, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "lima-driver-testfake",
        &format!(
            "{{ head -c 200000000 /dev/zero | tr '\\0' x; echo; echo 'WARN flood over'; }} >&2 &\nexec '{BIN}'"
        ),
    );
    let before = reset_peak_kib();
    let d = ExternalDriver::spawn(&p).await.unwrap();
    let text = log.wait_for("flood over", Duration::from_secs(20)).await;
    d.info().await.unwrap();
    let grew = status_kib("VmHWM").saturating_sub(before);
    let cut = text
        .lines()
        .find(|l| l.contains("xxxxxxxx"))
        .expect("the long line is logged, cut");
    assert!(
        cut.contains("… [truncated 199991808 bytes]"),
        "{}",
        &cut[cut.len().saturating_sub(200)..]
    );
    assert!(cut.len() < 8192 + 200, "logged line of {} bytes", cut.len());
    assert!(grew < MAX_GROWTH_KIB, "peak memory grew by {grew} KiB");
}

#[tokio::test]
async fn a_flood_of_stderr_lines_is_rate_limited() {
    let (log, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "lima-driver-testfake",
        &format!("seq 1 5000 | sed 's/^/noise /' >&2\nexec '{BIN}'"),
    );
    let d = ExternalDriver::spawn(&p).await.unwrap();
    let text = log
        .wait_for("log lines dropped", Duration::from_secs(10))
        .await;
    d.info().await.unwrap();
    let logged = text.lines().filter(|l| l.contains("noise ")).count();
    assert!(
        (1..=200).contains(&logged),
        "{logged} of 5000 flood lines logged"
    );
    let note = text
        .lines()
        .find(|l| l.contains("log lines dropped"))
        .unwrap();
    assert!(note.contains("driver=testfake"), "{note}");
}
