//! `cargo xtask bench drivers`: what the external form of a driver costs per call. The same
//! driver (the `testfake` fixture: no VM, so only the call overhead is measured) answers
//! in-process through the trait object and as `lima-driver-testfake` over gRPC on a unix
//! socket. Medians of a read-only call (info) and of the configure -> accept_config -> create
//! path, side by side, with the ratio and the absolute time the external form adds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use driver::{ConfigContext, Driver, InstanceConfig, LimaYaml};
use drivergrpc::conformance::testfake::TestFake;
use drivergrpc::ExternalDriver;

#[derive(clap::Args)]
pub struct Args {
    /// Measured calls of each kind and form (after as many warm-up calls as a tenth of it).
    #[arg(long, default_value_t = 2000)]
    pub iterations: usize,
}

pub fn run(args: Args) -> Result<()> {
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let bin = build_testfake()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(bin, args.iterations))
}

fn build_testfake() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    duct::cmd!(
        cargo,
        "build",
        "-q",
        "-p",
        "drivergrpc",
        "--features",
        "conformance",
        "--bin",
        "lima-driver-testfake"
    )
    .dir(crate::project_root())
    .run()
    .context("building lima-driver-testfake")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("target"));
    let exe = target.join("debug/lima-driver-testfake");
    if !exe.exists() {
        bail!("built lima-driver-testfake not found at {}", exe.display());
    }
    Ok(exe)
}

struct Row {
    what: &'static str,
    calls: usize,
    internal: Duration,
    external: Duration,
}

async fn bench(bin: PathBuf, iterations: usize) -> Result<()> {
    let internal: Arc<dyn Driver> = Arc::new(TestFake::new());
    let external: Arc<dyn Driver> = Arc::new(
        ExternalDriver::spawn(&bin)
            .await
            .with_context(|| format!("starting {}", bin.display()))?,
    );
    let dirs = (tempfile::tempdir()?, tempfile::tempdir()?);

    let info_in = median(iterations, || async { internal.info().await.map(drop) }).await?;
    let info_ex = median(iterations, || async { external.info().await.map(drop) }).await?;
    let path_in = median(iterations, || path(internal.as_ref(), dirs.0.path())).await?;
    let path_ex = median(iterations, || path(external.as_ref(), dirs.1.path())).await?;

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
async fn path(d: &dyn Driver, dir: &std::path::Path) -> driver::Result<()> {
    let config = LimaYaml {
        cpus: Some(2),
        memory: Some("2GiB".into()),
        ..Default::default()
    };
    d.configure(InstanceConfig {
        name: "bench".into(),
        dir: dir.to_path_buf(),
        config: config.clone(),
        ssh_local_port: 60022,
    })
    .await?;
    d.accept_config(&config, &ConfigContext::current()).await?;
    d.create().await
}

async fn median<F, Fut>(iterations: usize, mut call: F) -> Result<Duration>
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

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
