//! End to end: real qemu-system (TCG), qemu-img and OpenSSH against the offline local Debian
//! image built by `cargo xtask local-image`. One instance per driver form, reused across steps
//! to keep the number of (slow, software-emulated) boots small.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
#[path = "e2e_qemu/copy.rs"]
mod copy;
#[path = "e2e_qemu/disks.rs"]
mod disks;
#[path = "e2e_qemu/forwarding.rs"]
mod forwarding;
#[path = "e2e_qemu/mounts.rs"]
mod mounts;
#[path = "e2e_qemu/probes.rs"]
mod probes;
#[path = "e2e_qemu/provision.rs"]
mod provision;
#[path = "e2e_qemu/snapshots.rs"]
mod snapshots;
#[path = "e2e_qemu/sshproxy.rs"]
mod sshproxy;
#[path = "e2e_qemu/vnc.rs"]
mod vnc;

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The local image's lima.yaml, or None when the test is skipped on purpose.
fn local_image() -> Option<PathBuf> {
    if let Some(y) = std::env::var_os("LIMA_E2E_IMAGE_YAML") {
        return Some(PathBuf::from(y));
    }
    let yaml = project_root().join("_output/images/debian-12-local/lima.yaml");
    if yaml.exists() {
        return Some(yaml);
    }
    if std::env::var("LIMA_E2E_SKIP").as_deref() == Ok("1") {
        eprintln!("SKIPPED: {} is missing and LIMA_E2E_SKIP=1", yaml.display());
        return None;
    }
    panic!(
        "{} is missing: run `cargo xtask local-image` first (CI builds it before the tests), \
         or set LIMA_E2E_SKIP=1 to skip the end-to-end tests",
        yaml.display()
    );
}

struct Env {
    home: tempfile::TempDir,
    extra_env: Vec<(String, String)>,
}

/// A failed assertion must not leave VMs behind: kill whatever the instances still run.
impl Drop for Env {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.home.path()) else {
            return;
        };
        for dir in entries.flatten().map(|e| e.path()) {
            for file in ["ha.pid", "qemu.pid"] {
                let pid = std::fs::read_to_string(dir.join(file))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok());
                if let Some(pid) = pid.filter(|p| *p > 0) {
                    // SAFETY: plain signal to a process this test's instances started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

impl Env {
    fn new() -> Self {
        // Short path: unix socket paths in the instance dir must stay under 108 bytes.
        let home = tempfile::Builder::new()
            .prefix("lima-e2e")
            .tempdir_in("/tmp")
            .unwrap();
        Self {
            home,
            extra_env: vec![],
        }
    }

    fn limactl(&self, args: &[&str]) -> Output {
        let started = Instant::now();
        let out = self.command(args).output().unwrap();
        eprintln!(
            "$ limactl {} -> {} in {:.1?}\n{}{}",
            args.join(" "),
            out.status,
            started.elapsed(),
            String::from_utf8_lossy(&out.stdout),
            common::stderr_text(&out.stderr)
        );
        out
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_limactl"));
        cmd.args(args)
            .env("LIMA_HOME", self.home.path())
            // KVM exists on the test machines but guests hang on it.
            .env("LIMA_QEMU_ACCEL", "tcg")
            .stdin(std::process::Stdio::null());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.limactl(args);
        assert!(out.status.success(), "limactl {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    }

    fn status(&self, name: &str) -> Option<serde_json::Value> {
        let out = self.ok(&["list", "--json"]);
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["name"] == name)
    }

    fn status_str(&self, name: &str) -> String {
        self.status(name)
            .map(|v| v["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| "<absent>".into())
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    fn pid(&self, name: &str, file: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir(name).join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only probes.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    exists && !zombie
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One driver form's run of [`lifecycle`].
struct Case<'a> {
    name: &'a str,
    /// Counts the driver processes started so far (an external driver's; `None` for internal).
    driver_starts: Option<&'a dyn Fn() -> usize>,
    /// The guest HTTP server's port (forwarded to the same host port).
    http_port: u16,
    /// Host ports of the forwarding checks (distinct per case: cases run in parallel).
    fwd: forwarding::Ports,
    /// Also reboot the guest and check forwarding comes back.
    reboot: bool,
    /// The instance's mounts, of the first mount type, then the second after stop/start.
    shares: &'a mounts::Shares,
    mount_types: [&'a str; 2],
    /// The additional disk (made with `limactl disk create`, in the yaml's additionalDisks).
    disk: &'a str,
    /// The yaml has `probes::add_to_yaml`'s probes: check them at the first two starts.
    probes: bool,
    /// `video.display: vnc` is in the yaml (`vnc::add_to_yaml`).
    vnc: bool,
    /// The fake HOME whose `~/.ssh` key `sshproxy::check` logs in with (the case's yaml went
    /// through `sshproxy::setup`); `None` skips those checks.
    dot_ssh_home: Option<&'a Path>,
}

/// The full lifecycle on one instance: start, shell, port forwarding, list, refuse delete,
/// stop, start again, qemu killed behind our back and recovered, delete; nothing left running.
fn lifecycle(env: &Env, yaml: &Path, case: &Case) {
    let Case {
        name,
        driver_starts,
        http_port,
        fwd,
        reboot,
        shares,
        mount_types,
        disk,
        probes: with_probes,
        vnc,
        dot_ssh_home,
    } = *case;
    let yaml = yaml.to_str().unwrap();
    // Two starts of one instance at once: one starts it, the other fails clearly.
    // `--progress`: the guest's cloud-init output is shown, and READY waits for its end.
    let first = env.spawn(&["start", "--progress", "--name", name, "--tty=false", yaml]);
    wait_until("the host agent to start", Duration::from_secs(300), || {
        env.dir(name).join("ha.pid").exists()
    });
    let out = env.limactl(&["start", name]);
    assert!(!out.status.success(), "a concurrent start must fail");
    let err = common::stderr_text(&out.stderr);
    assert!(
        err.contains("being started"),
        "unclear concurrent-start error: {err}"
    );
    let out = first.wait_with_output().unwrap();
    eprintln!("first start: {}", common::stderr_text(&out.stderr));
    assert!(out.status.success(), "the first start failed");
    let said = common::stderr_text(&out.stderr);
    let ready_at = said.find("READY. Run").expect("READY line");
    let cloud_init_at = said
        .find("[cloud-init] Cloud-init v.")
        .expect("cloud-init lines");
    let done_at = said
        .find("Cloud-init progress monitoring done.")
        .expect("cloud-init monitoring end");
    assert!(cloud_init_at < done_at && done_at < ready_at, "{said}");
    // The first boot installs the guest agent late in the boot script, so the end of the
    // boot may be seen over SSH first; the restart below must see the agent's event.
    assert!(
        said.contains("is satisfied (announced by the guest agent)")
            || said.contains("is satisfied (checked over SSH)"),
        "no boot-done line: {said}"
    );
    if with_probes {
        probes::check_first_start(env, name, &said);
    }
    assert_eq!(env.status_str(name), "Running");
    provision::check(env, name, &said);
    if let Some(count) = driver_starts {
        // create + prepare in limactl share one driver process; the host agent has its own.
        // The refused concurrent start and `list` start none.
        assert!(
            count() <= 2,
            "first start started the driver {} times",
            count()
        );
    }

    let uname = env.ok(&["shell", name, "uname", "-a"]);
    assert!(uname.starts_with("Linux "), "uname -a printed {uname:?}");
    // Upstream's compatibility link: the pre-2.1 home name leads to the guest home.
    let link = env.ok(&[
        "shell",
        name,
        "sh",
        "-c",
        "readlink /home/$(id -un).linux; id -un",
    ]);
    let lines: Vec<&str> = link.lines().collect();
    assert_eq!(
        lines,
        [format!("{}.guest", lines[1]).as_str(), lines[1]],
        "{link:?}"
    );

    mounts::check(env, name, shares, mount_types[0]);
    if vnc {
        vnc::check(env, name, &said);
    }
    disks::check_running(env, name, disk);
    guest_port_is_forwarded(env, name, http_port);
    forwarding::check(env, name, fwd);
    if reboot {
        forwarding::reboot(env, name);
        forwarding::check_again(env, name, fwd, "a reboot of the guest");
    }
    copy::check(env, name);
    // Distinct per case (cases run in parallel), like the forwarding ports.
    copy::check_tunnel(env, name, http_port + 100);
    copy::check_sync_refused(env, name);
    if let Some(home) = dot_ssh_home {
        sshproxy::check(env, name, home);
    }
    let out = env.limactl(&["shell", name, "sh", "-c", "echo 'a b'; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "exit code must propagate");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a b\n");

    // The generated ssh.config works with plain ssh.
    let cfg = env.dir(name).join("ssh.config");
    let ssh = Command::new("ssh")
        .args([
            "-F",
            cfg.to_str().unwrap(),
            &format!("lima-{name}"),
            "cat",
            "/run/lima-boot-done",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(ssh.status.success(), "{}", common::stderr_text(&ssh.stderr));

    let st = env.status(name).unwrap();
    assert_eq!(st["vmType"], "qemu");
    assert!(st["sshLocalPort"].as_i64().unwrap() > 0, "{st}");

    // Starting a running instance is a no-op.
    env.ok(&["start", name]);

    let out = env.limactl(&["delete", name]);
    assert!(
        !out.status.success(),
        "delete of a running instance must be refused"
    );
    assert!(
        common::stderr_text(&out.stderr).contains("stop"),
        "refusal should say how"
    );

    let ha = env.pid(name, "ha.pid").unwrap();
    let qemu = env.pid(name, "qemu.pid").unwrap();
    snapshots::before_stop(env, name);
    if with_probes {
        probes::mark_failing(env, name);
    }
    let starts_before_stop = driver_starts.map(|c| c());
    env.ok(&["stop", name]);
    assert_eq!(env.status_str(name), "Stopped");
    assert!(
        !alive(ha) && !alive(qemu),
        "host agent or qemu still running after stop"
    );
    // The guest powered itself off on qemu's ACPI request (the image keeps evdev, which
    // logind reads the power button through), rather than qemu being quit after the grace.
    let agent_log = std::fs::read_to_string(env.dir(name).join("ha.stderr.log")).unwrap();
    assert!(
        !agent_log.contains("did not power off"),
        "the guest ignored the ACPI power-down: {agent_log}"
    );
    if let (Some(count), Some(before)) = (driver_starts, starts_before_stop) {
        assert_eq!(count(), before, "`stop` started a driver");
    }
    provision::after_stop(env, name);

    disks::check_released(env, disk);
    // Each snapshot command opens the driver (an external one's process): not counted below.
    snapshots::while_stopped(env, name);
    mounts::switch_type(env, name, mount_types[1]);
    let starts_before_start = driver_starts.map(|c| c());
    if with_probes {
        probes::degraded_start(env, name);
    } else {
        env.ok(&["start", name]);
    }
    if let (Some(count), Some(before)) = (driver_starts, starts_before_start) {
        // `start`: one in limactl and one in the host agent.
        let n = count() - before;
        assert!(n <= 2, "a start started the driver {n} times");
    }
    assert_eq!(env.status_str(name), "Running");
    // Readiness by event: on this boot the agent runs from early on (its unit is enabled), so
    // the end of the boot scripts comes as its announcement, not from polling over SSH.
    let events = std::fs::read_to_string(env.dir(name).join("ha.stdout.log")).unwrap();
    assert!(
        events.contains("is satisfied (announced by the guest agent)"),
        "the restart's boot-done requirement was not met by the guest agent's event: {events}"
    );
    forwarding::check_again(env, name, fwd, "limactl stop and start");
    mounts::check(env, name, shares, mount_types[1]);
    disks::check_after_restart(env, name, disk);
    snapshots::after_start(env, name);

    // qemu killed behind our back: the status says so, and start recovers.
    let qemu = env.pid(name, "qemu.pid").unwrap();
    // SAFETY: killing the qemu this test started.
    unsafe { libc::kill(qemu, libc::SIGKILL) };
    wait_until("status to leave Running", Duration::from_secs(30), || {
        env.status_str(name) != "Running"
    });
    let out = env.limactl(&["shell", name, "true"]);
    assert!(!out.status.success(), "shell into a dead VM must fail");
    snapshots::while_dead(env, name);
    // `start --foreground` (what the autostart unit runs): this process becomes the host agent.
    let mut foreground = env.spawn(&["start", "--foreground", name]);
    wait_until(
        "the foreground start to be ready",
        Duration::from_secs(600),
        || {
            assert!(
                foreground.try_wait().unwrap().is_none(),
                "start --foreground exited before the instance was ready"
            );
            env.status_str(name) == "Running"
                && env.limactl(&["shell", name, "true"]).status.success()
        },
    );
    assert_eq!(
        env.pid(name, "ha.pid"),
        Some(foreground.id() as i32),
        "the foreground process is the host agent"
    );
    let uname = env.ok(&["shell", name, "uname"]);
    assert_eq!(uname.trim(), "Linux");
    snapshots::after_apply(env, name);

    let ha = env.pid(name, "ha.pid").unwrap();
    let qemu = env.pid(name, "qemu.pid").unwrap();
    env.ok(&["delete", "-f", name]);
    let _ = foreground.wait();
    assert_eq!(env.status_str(name), "<absent>");
    assert!(!env.dir(name).exists());
    wait_until("processes to end", Duration::from_secs(20), || {
        !alive(ha) && !alive(qemu)
    });
}

/// An HTTP server started in the guest on 127.0.0.1 is reachable on the host's 127.0.0.1 at
/// the same port (the guest agent reports it, the host agent forwards it through the guest
/// agent's channel), and its port is released when the server stops.
fn guest_port_is_forwarded(env: &Env, name: &str, port: u16) {
    use std::io::{Read, Write};
    env.ok(&[
        "shell",
        name,
        "sh",
        "-c",
        &format!("nohup python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 &"),
    ]);
    let get = || -> Option<String> {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        c.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let started = Instant::now();
    wait_until(
        "the guest's HTTP server on the host",
        Duration::from_secs(60),
        || get().is_some_and(|r| r.starts_with("HTTP/1.0 200")),
    );
    eprintln!(
        "guest port {port} reachable on the host after {:?}",
        started.elapsed()
    );
    let log = std::fs::read_to_string(env.dir(name).join("ha.stderr.log")).unwrap();
    assert!(
        log.contains(&format!(
            "Forwarding TCP from 127.0.0.1:{port} to 127.0.0.1:{port}"
        )),
        "{log}"
    );
    // Many connections, one after another and at once: none fails, nothing leaks in the host
    // agent (its open descriptors come back to where they were).
    let ha_fds = || {
        let pid = env.pid(name, "ha.pid").unwrap();
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let fds_before = ha_fds();
    let t = Instant::now();
    for i in 0..1000 {
        let r = get().unwrap_or_default();
        assert!(r.starts_with("HTTP/1.0 200"), "request {i}: {r:?}");
    }
    eprintln!("1000 sequential requests in {:?}", t.elapsed());
    let threads: Vec<_> = (0..64)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let mut out = String::new();
                c.read_to_string(&mut out).unwrap();
                out
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap().starts_with("HTTP/1.0 200"));
    }
    wait_until(
        "the host agent's descriptors to settle",
        Duration::from_secs(10),
        || ha_fds() <= fds_before + 2,
    );

    // The guest agent killed in the guest: systemd restarts it and the forward works again.
    env.ok(&[
        "shell",
        name,
        "sudo",
        "pkill",
        "-KILL",
        "-x",
        "lima-guestagent",
    ]);
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    wait_until(
        "forwarding after the guest agent restarted",
        Duration::from_secs(20),
        || get().is_some_and(|r| r.starts_with("HTTP/1.0 200")),
    );
    eprintln!(
        "forwarding back {:?} after the guest agent was killed",
        t.elapsed()
    );

    env.ok(&["shell", name, "pkill", "-f", "http.server"]);
    wait_until(
        "the host port to be released",
        Duration::from_secs(10),
        || std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
    );
}

#[test]
fn e2e_qemu_internal_driver() {
    let Some(yaml) = local_image() else { return };
    let mut env = Env::new();
    let fwd = forwarding::Ports { base: 19000 };
    let mount_types = ["virtiofs", "reverse-sshfs"];
    let home = mounts::fake_home(&mut env, "int");
    disks::create(&env, "intdisk");
    let mut shares = None;
    let mut sshproxy_yaml = serde_yaml::Value::Mapping(Default::default());
    sshproxy::setup(&mut env, &home, &mut sshproxy_yaml);
    let yaml = edited_yaml(&env, &yaml, |v| {
        forwarding::add_rules(&env, v, fwd);
        shares = Some(mounts::add_mounts(
            &env,
            v,
            "int",
            mount_types[0],
            home.clone(),
        ));
        disks::add_to_yaml(v, "intdisk");
        probes::add_to_yaml(v);
        vnc::add_to_yaml(v);
        provision::add_to_yaml(&env, v, "e2e-int");
        for (k, val) in sshproxy_yaml.as_mapping().unwrap() {
            v.as_mapping_mut().unwrap().insert(k.clone(), val.clone());
        }
    });
    let case = Case {
        name: "e2e-int",
        driver_starts: None,
        http_port: 18781,
        fwd,
        reboot: true,
        shares: shares.as_ref().unwrap(),
        mount_types,
        disk: "intdisk",
        probes: true,
        vnc: true,
        dot_ssh_home: Some(&home),
    };
    lifecycle(&env, &yaml, &case);
}

/// The `lima-driver-qemu` executable of this build: beside limactl when the workspace was
/// built, else built now (`cargo build -p qemu --bin lima-driver-qemu`).
fn external_qemu_driver() -> PathBuf {
    let limactl = Path::new(env!("CARGO_BIN_EXE_limactl"));
    let driver = limactl.with_file_name("lima-driver-qemu");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Always ask cargo: it rebuilds only when the driver's sources changed.
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "qemu", "--bin", "lima-driver-qemu"])
        .current_dir(project_root())
        .status()
        .unwrap();
    assert!(status.success(), "building lima-driver-qemu failed");
    assert!(driver.exists(), "{} is missing", driver.display());
    driver
}

/// The same lifecycle with qemu as an external driver: the built `lima-driver-qemu` (behind a
/// wrapper that counts its starts) given in `LIMA_DRIVERS_PATH`, and the compiled-in qemu left
/// out with `LIMA_DISABLE_INTERNAL_DRIVERS=qemu`, so the host agent drives qemu over gRPC.
#[test]
fn e2e_qemu_external_driver() {
    use std::os::unix::fs::PermissionsExt;
    let Some(image) = local_image() else { return };
    let driver = external_qemu_driver();
    let mut env = Env::new();
    let wrapper_dir = env.home.path().join("_drivers");
    std::fs::create_dir(&wrapper_dir).unwrap();
    let starts = wrapper_dir.join("starts.log");
    let wrapper = wrapper_dir.join("lima-driver-qemu");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho $$ >> '{}'\nexec '{}' \"$@\"\n",
            starts.display(),
            driver.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.extra_env.extend([
        ("LIMA_DRIVERS_PATH".into(), wrapper.display().to_string()),
        ("LIMA_DISABLE_INTERNAL_DRIVERS".into(), "qemu".into()),
    ]);
    let drivers = env.ok(&["create", "--list-drivers"]);
    assert!(
        drivers.lines().any(|l| l == "qemu (external)"),
        "qemu is not external: {drivers}"
    );
    assert!(!starts.exists(), "listing drivers must not start one");
    let count = || {
        std::fs::read_to_string(&starts)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let fwd = forwarding::Ports { base: 19100 };
    let mount_types = ["9p", "virtiofs"];
    let home = mounts::fake_home(&mut env, "ext");
    disks::create(&env, "extdisk");
    let mut shares = None;
    let yaml = edited_yaml(&env, &image, |v| {
        forwarding::add_rules(&env, v, fwd);
        shares = Some(mounts::add_mounts(&env, v, "ext", mount_types[0], home));
        disks::add_to_yaml(v, "extdisk");
        provision::add_to_yaml(&env, v, "e2e-ext");
    });
    let case = Case {
        name: "e2e-ext",
        driver_starts: Some(&count),
        http_port: 18782,
        fwd,
        reboot: false,
        shares: shares.as_ref().unwrap(),
        mount_types,
        disk: "extdisk",
        probes: false,
        vnc: false,
        dot_ssh_home: None,
    };
    lifecycle(&env, &yaml, &case);
    mounts::failing_mount_fails_start(&env, &image, "9p");
    let n = count();
    // At least one driver process per host agent (first start, restart, recovery).
    assert!(n >= 3, "the external driver was started {n} times");
}

/// A copy of the image's lima.yaml with `edit` applied, local paths made absolute.
fn edited_yaml(env: &Env, yaml: &Path, edit: impl FnOnce(&mut serde_yaml::Value)) -> PathBuf {
    let base = yaml.parent().unwrap();
    let mut v: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(yaml).unwrap()).unwrap();
    fn absolutize(v: &mut serde_yaml::Value, base: &Path) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, val) in m.iter_mut() {
                    if k.as_str() == Some("location") {
                        if let Some(s) = val.as_str() {
                            if !s.contains("://") && !s.starts_with('/') {
                                *val = base.join(s).display().to_string().into();
                            }
                        }
                    } else {
                        absolutize(val, base);
                    }
                }
            }
            serde_yaml::Value::Sequence(s) => s.iter_mut().for_each(|x| absolutize(x, base)),
            _ => {}
        }
    }
    absolutize(&mut v, base);
    edit(&mut v);
    let out = env
        .home
        .path()
        .join(format!("edited-{}.yaml", std::process::id()));
    let n = std::fs::read_dir(env.home.path()).unwrap().count();
    let out = out.with_extension(format!("{n}.yaml"));
    std::fs::write(&out, serde_yaml::to_string(&v).unwrap()).unwrap();
    out
}

/// Bad inputs fail before anything boots, with errors that name the problem.
#[test]
fn e2e_qemu_bad_inputs() {
    let Some(yaml) = local_image() else { return };
    let env = Env::new();

    let bad_digest = edited_yaml(&env, &yaml, |v| {
        v["images"][0]["digest"] = format!("sha256:{}", "0".repeat(64)).into();
    });
    let out = env.limactl(&[
        "start",
        "--name",
        "baddigest",
        "--tty=false",
        bad_digest.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = common::stderr_text(&out.stderr);
    assert!(
        err.contains("digest"),
        "error should name the digest: {err}"
    );
    assert_ne!(env.status_str("baddigest"), "Running");
    assert!(
        !env.dir("baddigest").join("diffdisk").exists(),
        "no disk from a bad image"
    );
    env.ok(&["delete", "baddigest"]);

    let no_kernel = edited_yaml(&env, &yaml, |v| {
        v["images"][0]["kernel"]["location"] = "/nonexistent/vmlinuz".into();
        v["images"][0]["kernel"]["digest"] = serde_yaml::Value::Null;
    });
    let out = env.limactl(&[
        "start",
        "--name",
        "nokernel",
        "--tty=false",
        no_kernel.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = common::stderr_text(&out.stderr);
    assert!(
        err.contains("/nonexistent/vmlinuz"),
        "error should name the kernel: {err}"
    );
    env.ok(&["delete", "nokernel"]);

    let out = env.limactl(&["shell", "nosuch", "true"]);
    assert!(!out.status.success());
    let out = env.limactl(&["start", "--name", "../escape", bad_digest.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "path traversal in a name must be refused"
    );
}
