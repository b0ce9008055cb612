//! limactl against external drivers that answer the handshake and then stop answering: `info`
//! asks all drivers at once (six hung drivers cost one call deadline, not six), every hung
//! driver is killed with what it started, `create --list-drivers` starts none, and a limactl
//! interrupted by SIGTERM leaves no driver process and no socket directory behind.
//!
//! The hung drivers are this test binary run again (`hanging_driver_helper`) behind a
//! `lima-driver-hangN` script: a real gRPC driver whose `info` answers the handshake and then
//! never returns.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use driver::{DriverError, ErrorStream, Info, InstanceConfig, LimaYaml, Result};

const LIMACTL: &str = env!("CARGO_BIN_EXE_limactl");
const NAME_ENV: &str = "LIMACTL_TEST_HANGING_DRIVER";
const DIR_ENV: &str = "LIMACTL_TEST_HANGING_DIR";

/// A driver whose first `info` (the handshake) answers and every later one hangs.
struct Hangs {
    name: String,
    dir: PathBuf,
    infos: AtomicUsize,
}

#[async_trait::async_trait]
impl driver::Driver for Hangs {
    async fn info(&self) -> Result<Info> {
        if self.infos.fetch_add(1, Ordering::SeqCst) > 0 {
            let _ = std::fs::write(self.dir.join(format!("{}.hung", self.name)), "");
            futures_pending().await;
        }
        Ok(Info {
            name: self.name.clone(),
            version: "0.0.1".into(),
            vm_type: self.name.clone(),
            ..Default::default()
        })
    }
    async fn configure(&self, _: InstanceConfig) -> Result<()> {
        Err(unsupported())
    }
    async fn accept_config(&self, _: &LimaYaml, _: &driver::ConfigContext) -> Result<()> {
        Err(unsupported())
    }
    async fn validate(&self) -> Result<()> {
        Err(unsupported())
    }
    async fn create(&self) -> Result<()> {
        Err(unsupported())
    }
    async fn create_disk(&self) -> Result<()> {
        Err(unsupported())
    }
    async fn start(&self) -> Result<ErrorStream> {
        Err(unsupported())
    }
    async fn stop(&self) -> Result<()> {
        Err(unsupported())
    }
    async fn delete(&self) -> Result<()> {
        Err(unsupported())
    }
}

fn unsupported() -> DriverError {
    DriverError::unsupported("hung test driver")
}

async fn futures_pending() {
    std::future::pending::<()>().await
}

/// Not a test by itself: the body of a `lima-driver-hangN` script (see the module doc).
#[test]
fn hanging_driver_helper() {
    let (Ok(name), Some(dir)) = (std::env::var(NAME_ENV), std::env::var_os(DIR_ENV)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    // The script moved limactl's stdout pipe to fd 3 and sent libtest's own output to
    // /dev/null: the ready line goes to fd 3.
    // SAFETY: plain descriptor syscalls before any other thread of ours writes to stdout.
    unsafe {
        libc::dup2(3, 1);
        libc::close(3);
    }
    // What a driver starts (a VM) stays in its process group.
    let vm = Command::new("sleep")
        .arg("300")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(dir.join(format!("{name}.vm.pid")), vm.id().to_string()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.pid")),
        std::process::id().to_string(),
    )
    .unwrap();
    let code = drivergrpc::serve_main(Arc::new(Hangs {
        name,
        dir,
        infos: AtomicUsize::new(0),
    }));
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

struct Setup {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    drivers: PathBuf,
    /// limactl's TMPDIR: where the driver socket directories go.
    tmpdir: PathBuf,
}

fn setup(names: &[&str]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let drivers = tmp.path().join("drivers");
    let tmpdir = tmp.path().join("tmp");
    for d in [&home, &drivers, &tmpdir] {
        std::fs::create_dir(d).unwrap();
    }
    let me = std::env::current_exe().unwrap();
    for name in names {
        let p = drivers.join(format!("lima-driver-{name}"));
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\nexport {NAME_ENV}='{name}' {DIR_ENV}='{}'\n\
                 exec '{}' --exact hanging_driver_helper --nocapture --test-threads=1 3>&1 1>/dev/null\n",
                drivers.display(),
                me.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    Setup {
        _tmp: tmp,
        home,
        drivers,
        tmpdir,
    }
}

fn limactl(s: &Setup, call_timeout: &str, args: &[&str]) -> Child {
    Command::new(LIMACTL)
        .args(args)
        .env("LIMA_HOME", &s.home)
        .env("LIMA_DRIVERS_PATH", &s.drivers)
        .env("LIMA_DRIVER_CALL_TIMEOUT", call_timeout)
        .env("TMPDIR", &s.tmpdir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_within(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
            t.elapsed() < Duration::from_secs(15),
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

fn assert_gone(pid: i32, what: &str) {
    let t = Instant::now();
    while alive(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{what} (pid {pid}) outlived limactl's use of it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn socket_dirs(s: &Setup) -> Vec<String> {
    std::fs::read_dir(&s.tmpdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lima-driver-"))
        .collect()
}

fn output(child: Child) -> (String, String) {
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        common::stderr_text(&out.stderr).into_owned(),
    )
}

#[test]
fn info_with_six_hung_drivers_costs_one_deadline() {
    let names = ["hang1", "hang2", "hang3", "hang4", "hang5", "hang6"];
    let s = setup(&names);
    let t = Instant::now();
    let mut child = limactl(&s, "2s", &["info"]);
    let status = wait_within(&mut child, Duration::from_secs(40), "limactl info");
    let took = t.elapsed();
    let (stdout, stderr) = output(child);
    assert!(status.success(), "{status}: {stderr}");
    // Sequentially this would be six deadlines (12 s).
    assert!(took < Duration::from_secs(8), "limactl info took {took:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for name in names {
        let d = &v["vmTypesEx"][name];
        let err = d["error"].as_str().unwrap_or_else(|| panic!("{name}: {d}"));
        assert!(
            err.contains("info timed out") && err.contains("2s") && err.contains(name),
            "{name}: {err}"
        );
        assert_gone(
            read_pid(&s.drivers.join(format!("{name}.pid"))),
            "a hung driver",
        );
        assert_gone(
            read_pid(&s.drivers.join(format!("{name}.vm.pid"))),
            "what a hung driver started",
        );
    }
    assert_eq!(socket_dirs(&s), Vec::<String>::new());
}

#[test]
fn list_drivers_starts_none_of_them() {
    let s = setup(&["hang1", "hang2"]);
    let mut child = limactl(&s, "2s", &["create", "--list-drivers"]);
    let status = wait_within(
        &mut child,
        Duration::from_secs(10),
        "limactl create --list-drivers",
    );
    let (stdout, stderr) = output(child);
    assert!(status.success(), "{status}: {stderr}");
    assert!(stdout.lines().any(|l| l == "hang1 (external)"), "{stdout}");
    assert!(
        !s.drivers.join("hang1.pid").exists(),
        "a driver was started"
    );
    assert!(
        !s.drivers.join("hang2.pid").exists(),
        "a driver was started"
    );
}

#[test]
fn sigterm_ends_the_drivers_and_their_socket_dirs() {
    let s = setup(&["hang1"]);
    let mut child = limactl(&s, "60s", &["info"]);
    let driver = read_pid(&s.drivers.join("hang1.pid"));
    let vm = read_pid(&s.drivers.join("hang1.vm.pid"));
    // limactl is now waiting for the driver's answer to `info`.
    let hung = s.drivers.join("hang1.hung");
    let t = Instant::now();
    while !hung.exists() {
        if t.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("limactl never called info: {:?}", output(child));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(socket_dirs(&s).len(), 1);

    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = wait_within(&mut child, Duration::from_secs(10), "limactl after SIGTERM");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    assert_gone(driver, "the driver");
    assert_gone(vm, "what the driver started");
    assert_eq!(
        socket_dirs(&s),
        Vec::<String>::new(),
        "socket directory left"
    );
}
