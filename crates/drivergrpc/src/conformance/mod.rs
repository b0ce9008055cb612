//! The conformance kit: one suite run against a driver in both forms — internal (the trait
//! object, in this process) and external (its `lima-driver-<name>` executable over the
//! socket) — checking that every call answers the same (values, and errors with their kind
//! and message), that the start stream carries the same errors, that concurrent read-only
//! calls agree, and that a driver process killed mid-call gives a clean error within seconds,
//! with no hang and no process left behind.
//!
//! A driver crate runs it with one test (enable feature `conformance` in dev-dependencies):
//!
//! ```no_run
//! # struct MyDriver; impl MyDriver { fn new() -> drivergrpc::conformance::testfake::TestFake { todo!() } }
//! #[test]
//! fn conformance() {
//!     drivergrpc::conformance::check(
//!         MyDriver::new,
//!         "path/to/lima-driver-mine", // env!("CARGO_BIN_EXE_lima-driver-mine") in a real test
//!         &drivergrpc::conformance::ConformanceConfig::default(),
//!     );
//! }
//! ```

pub mod testfake;

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use driver::{
    Arch, ConfigContext, Driver, DynDriver, ErrorKind, Filled, HostFacts, Instance, InstanceConfig,
    LimaYaml, Os, Result,
};
use futures::StreamExt;

use crate::{ExternalDriver, SpawnOptions};

/// What the suite feeds the driver.
#[derive(Debug, Clone)]
pub struct ConformanceConfig {
    /// Configs for `fill_config` and `accept_config`, each with a label for the report.
    pub configs: Vec<(String, LimaYaml)>,
    /// Hosts `fill_config` and `accept_config` are asked about (host facts are arguments, so
    /// a Linux machine can ask about macOS too). Only OS and arch reach an external driver:
    /// build them with [`crate::host_for`] so both forms see the same facts.
    pub hosts: Vec<HostFacts>,
    /// The config of the instance passed to `configure` (filled for this host first).
    pub instance_config: LimaYaml,
    /// Also run the lifecycle (validate, create, create_disk, start, snapshots, stop, delete).
    /// Only for drivers that can do that inside a test (no VM, or a cheap one).
    pub lifecycle: bool,
    /// How long to collect start-stream errors before stopping.
    pub start_stream_window: Duration,
    /// Read-only calls issued at once in the concurrency step.
    pub concurrency: usize,
    /// Limit for "a clean error within seconds" after the driver process is killed.
    pub kill_deadline: Duration,
    pub spawn: SpawnOptions,
}

impl Default for ConformanceConfig {
    fn default() -> Self {
        let mut platforms = vec![
            (Os::Linux, Arch::X86_64),
            (Os::Linux, Arch::Aarch64),
            (Os::Darwin, Arch::Aarch64),
            (Os::Windows, Arch::X86_64),
        ];
        if !platforms.contains(&(Os::host(), Arch::host())) {
            platforms.push((Os::host(), Arch::host()));
        }
        let hosts = platforms
            .into_iter()
            .map(|(os, arch)| crate::convert::host_for(os, arch))
            .collect();
        ConformanceConfig {
            configs: vec![("empty".into(), LimaYaml::default())],
            hosts,
            instance_config: LimaYaml::default(),
            lifecycle: false,
            start_stream_window: Duration::from_secs(2),
            concurrency: 16,
            kill_deadline: Duration::from_secs(5),
            spawn: SpawnOptions::default(),
        }
    }
}

/// One call and what it answered, paths inside the instance directory written `$DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub call: String,
    pub outcome: String,
}

/// The suite's findings.
#[derive(Debug, Default)]
pub struct Report {
    pub internal: Vec<Step>,
    pub external: Vec<Step>,
    pub failures: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Run the suite and panic with every failure (for `#[test]`s). Builds its own runtime.
pub fn check<D, F>(make: F, binary: impl AsRef<Path>, cfg: &ConformanceConfig) -> Report
where
    D: Driver + 'static,
    F: FnOnce() -> D,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime.block_on(run(Arc::new(make()), binary.as_ref(), cfg));
    if !report.passed() {
        panic!(
            "driver conformance failed for {}:\n  - {}",
            binary.as_ref().display(),
            report.failures.join("\n  - ")
        );
    }
    report
}

/// The whole suite, collecting failures instead of panicking.
pub async fn run(internal: DynDriver, binary: &Path, cfg: &ConformanceConfig) -> Report {
    let mut report = Report::default();
    let dirs = match (tempfile::tempdir(), tempfile::tempdir()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            report
                .failures
                .push("cannot create temporary instance directories".into());
            return report;
        }
    };

    report.internal = transcript(
        internal.as_ref(),
        &instance_dir(dirs.0.path()),
        cfg,
        &mut report.failures,
        "internal",
    )
    .await;

    let external = match ExternalDriver::spawn_with(binary, &cfg.spawn).await {
        Ok(d) => d,
        Err(e) => {
            report
                .failures
                .push(format!("external form does not start: {e}"));
            return report;
        }
    };
    let internal_name = internal.info().await.map(|i| i.name).unwrap_or_default();
    if external.handshake().driver_name != internal_name {
        report.failures.push(format!(
            "handshake names the driver {:?}, but the internal form's info says {internal_name:?}",
            external.handshake().driver_name
        ));
    }
    let internal_features = internal
        .info()
        .await
        .map(|i| crate::convert::feature_names(&i.features))
        .unwrap_or_default();
    if external.handshake().features != internal_features {
        report.failures.push(format!(
            "handshake lists features {:?}, but the internal form's info has {internal_features:?}",
            external.handshake().features
        ));
    }
    report.external = transcript(
        &external,
        &instance_dir(dirs.1.path()),
        cfg,
        &mut report.failures,
        "external",
    )
    .await;
    drop(external);

    compare(
        &report.internal.clone(),
        &report.external.clone(),
        &mut report.failures,
    );
    killed_mid_call(binary, cfg, &mut report.failures).await;
    dropped_leaves_no_process(binary, cfg, &mut report.failures).await;
    report
}

fn instance_dir(base: &Path) -> PathBuf {
    let dir = base.join("conformance");
    let _ = std::fs::create_dir(&dir);
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    dir
}

fn compare(internal: &[Step], external: &[Step], failures: &mut Vec<String>) {
    if internal.len() != external.len() {
        failures.push(format!(
            "the two forms ran a different number of calls: internal {}, external {}",
            internal.len(),
            external.len()
        ));
    }
    for (i, e) in internal.iter().zip(external) {
        if i != e {
            failures.push(format!(
                "{} differs:\n      internal: {}\n      external: {}",
                i.call, i.outcome, e.outcome
            ));
        }
    }
}

fn outcome<T: Debug>(r: &Result<T>, dir: &str) -> String {
    let text = match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("err[{}] {}", e.kind, e.message),
    };
    mask_mac(&text.replace(dir, "$DIR"))
}

/// Info's MAC address derives from the instance directory, which differs between the two
/// forms: a non-empty one is written `$MAC`.
fn mask_mac(text: &str) -> String {
    const FIELD: &str = "mac_address: \"";
    let Some(start) = text.find(FIELD).map(|i| i + FIELD.len()) else {
        return text.to_string();
    };
    match text[start..].find('"') {
        Some(0) | None => text.to_string(),
        Some(len) => format!("{}$MAC{}", &text[..start], &text[start + len..]),
    }
}

async fn transcript(
    d: &dyn Driver,
    dir: &Path,
    cfg: &ConformanceConfig,
    failures: &mut Vec<String>,
    form: &str,
) -> Vec<Step> {
    let dir_s = dir.to_string_lossy().into_owned();
    let mut steps = Vec::new();
    let mut record = |call: String, out: String| steps.push(Step { call, outcome: out });

    record(
        "info (unconfigured)".into(),
        outcome(&d.info().await, &dir_s),
    );

    for (label, config) in &cfg.configs {
        for host in &cfg.hosts {
            let ctx = ConfigContext {
                host: host.clone(),
                config_path: Some(PathBuf::from(format!("{label}.yaml"))),
            };
            let mut filled = config.clone();
            let r = d
                .fill_config(&mut filled, &ctx)
                .await
                .map(|()| filled.clone());
            let shown = r
                .as_ref()
                .map(|c| serde_yaml::to_string(c).unwrap_or_default())
                .map_err(|e| (*e).clone());
            record(
                format!("fill_config {label} on {}/{}", host.os, host.arch),
                outcome(&shown, &dir_s),
            );
            let to_accept = r.unwrap_or_else(|_| config.clone());
            record(
                format!("accept_config {label} on {}/{}", host.os, host.arch),
                outcome(&d.accept_config(&to_accept, &ctx).await, &dir_s),
            );
        }
    }

    let instance = Instance {
        name: "conformance".into(),
        dir: dir_s.clone(),
        ..Default::default()
    };
    record(
        "inspect_status".into(),
        outcome(&d.inspect_status(&instance).await, &dir_s),
    );
    record(
        "validate (unconfigured)".into(),
        outcome(&d.validate().await, &dir_s),
    );

    // As the instance flow does: the defaults, then the driver's own filling.
    let host = limadefaults::detect_host();
    let mut config = limadefaults::fill_in_memory(&cfg.instance_config, &host, "conformance")
        .map(Filled::into_yaml)
        .unwrap_or_else(|_| cfg.instance_config.clone());
    let _ = d.fill_config(&mut config, &ConfigContext::current()).await;
    let config = match Filled::try_from(config) {
        Ok(c) => c,
        Err(e) => {
            failures.push(format!(
                "{form}: the config is not filled after fill_config: {e}"
            ));
            return steps;
        }
    };
    let configured = d
        .configure(InstanceConfig {
            name: "conformance".into(),
            dir: dir.to_path_buf(),
            config,
            ssh_local_port: 60022,
        })
        .await;
    record("configure".into(), outcome(&configured, &dir_s));
    record("info".into(), outcome(&d.info().await, &dir_s));

    // Read-only calls, once in a row, then all at once: the answers must not change.
    let sequential = read_only_calls(d, &dir_s).await;
    for (call, out) in &sequential {
        record(call.to_string(), out.clone());
    }
    let rounds = cfg.concurrency.max(1).div_ceil(sequential.len().max(1));
    let concurrent =
        futures::future::join_all((0..rounds).map(|_| read_only_calls(d, &dir_s))).await;
    let mismatches: Vec<String> = concurrent
        .iter()
        .flatten()
        .zip(sequential.iter().cycle())
        .filter(|(c, s)| c != s)
        .map(|(c, s)| format!("{}: {} (alone: {})", c.0, c.1, s.1))
        .collect();
    if !mismatches.is_empty() {
        failures.push(format!(
            "{form}: concurrent read-only calls answered differently: {}",
            mismatches.join("; ")
        ));
    }
    record(
        format!("{} concurrent read-only calls", rounds * sequential.len()),
        format!("{} differ from the sequential answers", mismatches.len()),
    );
    // A driver that shows no GUI must answer run_gui at once (else it would block the host
    // agent); one that does may block until its window closes, so it is not called.
    if matches!(d.can_run_gui().await, Ok(false)) {
        let r = tokio::time::timeout(Duration::from_secs(5), d.run_gui()).await;
        let shown = match r {
            Ok(r) => outcome(&r, &dir_s),
            Err(_) => {
                failures.push(format!(
                    "{form}: run_gui blocks although can_run_gui is false"
                ));
                "timed out".into()
            }
        };
        record("run_gui (no GUI)".into(), shown);
    }
    record(
        "change_display_password".into(),
        outcome(&d.change_display_password("conformance").await, &dir_s),
    );

    if cfg.lifecycle {
        record("validate".into(), outcome(&d.validate().await, &dir_s));
        record("create".into(), outcome(&d.create().await, &dir_s));
        record(
            "create (again: idempotent)".into(),
            outcome(&d.create().await, &dir_s),
        );
        record(
            "create_disk".into(),
            outcome(&d.create_disk().await, &dir_s),
        );
        match d.start().await {
            Ok(stream) => {
                record("start".into(), "ok".into());
                let deadline = tokio::time::sleep(cfg.start_stream_window);
                let errors: Vec<String> = stream
                    .take_until(deadline)
                    .map(|e| outcome::<()>(&Err(e), &dir_s))
                    .collect()
                    .await;
                record("start stream errors".into(), format!("{errors:?}"));
            }
            Err(e) => record("start".into(), outcome::<()>(&Err(e), &dir_s)),
        }
        record(
            "additional_setup_for_ssh".into(),
            outcome(&d.additional_setup_for_ssh().await, &dir_s),
        );
        record(
            "create_snapshot".into(),
            outcome(&d.create_snapshot("conformance").await, &dir_s),
        );
        record(
            "create_snapshot (again)".into(),
            outcome(&d.create_snapshot("conformance").await, &dir_s),
        );
        record(
            "list_snapshots (one)".into(),
            outcome(&d.list_snapshots().await, &dir_s),
        );
        record(
            "apply_snapshot".into(),
            outcome(&d.apply_snapshot("conformance").await, &dir_s),
        );
        record(
            "apply_snapshot (unknown)".into(),
            outcome(&d.apply_snapshot("no-such-tag").await, &dir_s),
        );
        record(
            "delete_snapshot".into(),
            outcome(&d.delete_snapshot("conformance").await, &dir_s),
        );
        record("stop".into(), outcome(&d.stop().await, &dir_s));
        record("stop (again)".into(), outcome(&d.stop().await, &dir_s));
        record("delete".into(), outcome(&d.delete().await, &dir_s));
        record("delete (again)".into(), outcome(&d.delete().await, &dir_s));
    }
    steps
}

async fn read_only_calls(d: &dyn Driver, dir: &str) -> Vec<(&'static str, String)> {
    let ctx = ConfigContext::current();
    let cfg = LimaYaml::default();
    let (info, scripts, gui, addr, ga, snaps, display, accept) = futures::join!(
        d.info(),
        d.boot_scripts(),
        d.can_run_gui(),
        d.ssh_address(),
        d.guest_agent_conn(),
        d.list_snapshots(),
        d.display_connection(),
        d.accept_config(&cfg, &ctx),
    );
    vec![
        ("info (read-only)", outcome(&info, dir)),
        (
            "boot_scripts",
            outcome(
                &scripts.map(|m| {
                    m.into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                        .collect::<Vec<_>>()
                }),
                dir,
            ),
        ),
        ("can_run_gui", outcome(&gui, dir)),
        ("ssh_address", outcome(&addr, dir)),
        ("guest_agent_conn", outcome(&ga, dir)),
        ("list_snapshots", outcome(&snaps, dir)),
        ("display_connection", outcome(&display, dir)),
        ("accept_config empty (read-only)", outcome(&accept, dir)),
    ]
}

fn process_exists(pid: u32) -> bool {
    // Signal 0: existence check only. A reaped process is gone (ESRCH).
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

async fn wait_gone(pid: u32, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if !process_exists(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    !process_exists(pid)
}

/// Kill the driver process while read-only calls are in flight: every call must end within
/// the deadline, the first failure must be `unavailable`, and the process must be reaped.
async fn killed_mid_call(binary: &Path, cfg: &ConformanceConfig, failures: &mut Vec<String>) {
    let d = match ExternalDriver::spawn_with(binary, &cfg.spawn).await {
        Ok(d) => Arc::new(d),
        Err(e) => return failures.push(format!("kill test: driver does not start: {e}")),
    };
    let Some(pid) = d.pid() else {
        return failures.push("kill test: driver has no pid".into());
    };
    let loops: Vec<_> = (0..cfg.concurrency.max(1))
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = d.info().await {
                        return e;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed_at = Instant::now();
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    match tokio::time::timeout(cfg.kill_deadline, futures::future::join_all(loops)).await {
        Err(_) => failures.push(format!(
            "kill test: calls in flight still hang {:?} after the driver was killed",
            cfg.kill_deadline
        )),
        Ok(results) => {
            for r in results {
                match r {
                    Ok(e) if e.kind == ErrorKind::Unavailable => {}
                    Ok(e) => failures.push(format!(
                        "kill test: a call in flight failed with kind {} (want unavailable): {e}",
                        e.kind
                    )),
                    Err(e) => failures.push(format!("kill test: a call task panicked: {e}")),
                }
            }
        }
    }
    match tokio::time::timeout(cfg.kill_deadline, d.info()).await {
        Err(_) => failures.push("kill test: a call after the kill hangs".into()),
        Ok(Ok(_)) => failures.push("kill test: a call after the kill succeeded".into()),
        Ok(Err(e)) if e.kind != ErrorKind::Unavailable => failures.push(format!(
            "kill test: a call after the kill failed with kind {} (want unavailable): {e}",
            e.kind
        )),
        Ok(Err(_)) => {}
    }
    if !wait_gone(pid, cfg.kill_deadline).await {
        failures.push(format!(
            "kill test: process {pid} still exists (not reaped)"
        ));
    }
    let took = killed_at.elapsed();
    if took > cfg.kill_deadline {
        failures.push(format!("kill test: took {took:?} to settle"));
    }
}

/// Dropping the client must end the driver process.
async fn dropped_leaves_no_process(
    binary: &Path,
    cfg: &ConformanceConfig,
    failures: &mut Vec<String>,
) {
    let d = match ExternalDriver::spawn_with(binary, &cfg.spawn).await {
        Ok(d) => d,
        Err(e) => return failures.push(format!("drop test: driver does not start: {e}")),
    };
    let Some(pid) = d.pid() else {
        return failures.push("drop test: driver has no pid".into());
    };
    drop(d);
    if !wait_gone(pid, cfg.kill_deadline).await {
        failures.push(format!(
            "drop test: driver process {pid} still exists {:?} after its client was dropped",
            cfg.kill_deadline
        ));
    }
}
