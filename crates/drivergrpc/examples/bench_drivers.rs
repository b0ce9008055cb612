//! The measuring half of `cargo xtask bench drivers` (which builds and runs this example):
//! the `testfake` fixture driver answers in-process through the trait object and as
//! `lima-driver-testfake` over gRPC on a unix socket; medians of a read-only call (info) and
//! of the configure -> accept_config -> create path, side by side.
//!
//! Usage: bench_drivers PATH-TO-lima-driver-testfake [ITERATIONS]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driver::{ConfigContext, Driver, InstanceConfig, LimaYaml};
use drivergrpc::conformance::testfake::TestFake;
use drivergrpc::ExternalDriver;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let bin = PathBuf::from(
        args.next()
            .ok_or("usage: bench_drivers PATH-TO-lima-driver-testfake [ITERATIONS]")?,
    );
    let iterations: usize = match args.next() {
        Some(n) => n
            .parse()
            .map_err(|_| format!("ITERATIONS {n:?} is not a number"))?,
        None => 2000,
    };
    if iterations == 0 {
        return Err("ITERATIONS must be at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(bin, iterations))
}

struct Row {
    what: &'static str,
    calls: usize,
    internal: Duration,
    external: Duration,
}

async fn bench(bin: PathBuf, iterations: usize) -> Result<(), Error> {
    let internal: Arc<dyn Driver> = Arc::new(TestFake::new());
    let spawned = Arc::new(
        ExternalDriver::spawn(&bin)
            .await
            .map_err(|e| format!("starting {}: {e}", bin.display()))?,
    );
    let driver_pid = spawned.pid().ok_or("driver process has no pid")?;
    let external: Arc<dyn Driver> = spawned;
    let dirs = (tempfile::tempdir()?, tempfile::tempdir()?);

    let info_in = median(iterations, || async { internal.info().await.map(drop) }).await?;
    let cpu_before = (cpu_time("self"), cpu_time(&driver_pid.to_string()));
    let info_ex = median(iterations, || async { external.info().await.map(drop) }).await?;
    let cpu_after = (cpu_time("self"), cpu_time(&driver_pid.to_string()));
    let config = limadefaults::fill_in_memory(
        &LimaYaml {
            cpus: Some(2),
            memory: Some("2GiB".into()),
            ..Default::default()
        },
        &limadefaults::detect_host(),
        "bench",
    )?;
    let path_in = median(iterations, || {
        path(internal.as_ref(), dirs.0.path(), &config)
    })
    .await?;
    let path_ex = median(iterations, || {
        path(external.as_ref(), dirs.1.path(), &config)
    })
    .await?;

    let rows = [
        Row {
            what: "info (read-only)",
            calls: 1,
            internal: info_in,
            external: info_ex,
        },
        Row {
            what: "configure -> accept -> create",
            calls: 3,
            internal: path_in,
            external: path_ex,
        },
    ];
    println!(
        "driver call latency, median of {iterations} (testfake driver, {} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "{:<32} {:>12} {:>12} {:>8} {:>12} {:>14}",
        "call", "internal", "external", "ratio", "added", "added/call"
    );
    for r in &rows {
        let added = r.external.saturating_sub(r.internal);
        println!(
            "{:<32} {:>12} {:>12} {:>7.0}x {:>12} {:>14}",
            r.what,
            micros(r.internal),
            micros(r.external),
            r.external.as_secs_f64() / r.internal.as_secs_f64().max(1e-9),
            micros(added),
            micros(added / r.calls as u32),
        );
    }
    let calls = (iterations + iterations / 10) as u32;
    if let ((Some(c0), Some(d0)), (Some(c1), Some(d1))) = (cpu_before, cpu_after) {
        println!(
            "CPU time per external info call: limactl side {}, driver side {} (load average {})",
            micros((c1 - c0) / calls),
            micros((d1 - d0) / calls),
            std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
                .unwrap_or_else(|| "?".into()),
        );
    }
    let worst = rows
        .iter()
        .map(|r| r.external.saturating_sub(r.internal) / r.calls as u32)
        .max()
        .unwrap_or_default();
    println!(
        "goal: external adds under 100 µs per call: {} (worst {})",
        if worst < Duration::from_micros(100) {
            "met"
        } else {
            "NOT met"
        },
        micros(worst)
    );
    Ok(())
}

/// One configure -> accept_config -> create round, as the create path of limactl runs it.
async fn path(
    d: &dyn Driver,
    dir: &std::path::Path,
    config: &driver::Filled,
) -> driver::Result<()> {
    d.configure(InstanceConfig {
        name: "bench".into(),
        dir: dir.to_path_buf(),
        config: config.clone(),
        ssh_local_port: 60022,
    })
    .await?;
    d.accept_config(config, &ConfigContext::current()).await?;
    d.create().await
}

async fn median<F, Fut>(iterations: usize, mut call: F) -> Result<Duration, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = driver::Result<()>>,
{
    for _ in 0..iterations / 10 {
        call().await?;
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        call().await?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// User + system CPU time of a process (`self` or a pid), from /proc (Linux only).
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
