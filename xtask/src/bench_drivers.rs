//! `cargo xtask bench drivers`: what the external form of a driver costs per call. Builds
//! the `testfake` fixture driver (no VM: only the call overhead is measured) and
//! `drivergrpc`'s `bench_drivers` example, which times the same driver in-process (trait
//! object) and as `lima-driver-testfake` over gRPC on a unix socket: medians of a read-only
//! call (info) and of the configure -> accept_config -> create path, side by side, with the
//! ratio, the absolute time added and the CPU time each side spends per call.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Measured calls of each kind and form (after a tenth as many warm-up calls).
    #[arg(long, default_value_t = 2000)]
    pub iterations: usize,
    /// Measure optimized builds (the figure that matters; builds the gRPC stack in release
    /// mode once, which takes minutes). Default: debug builds, far slower per call.
    #[arg(long)]
    pub release: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let profile: &[&str] = if args.release { &["--release"] } else { &[] };
    let build = |what: &[&str]| {
        let mut argv = vec![
            "build",
            "-q",
            "-p",
            "drivergrpc",
            "--features",
            "conformance",
        ];
        argv.extend_from_slice(what);
        argv.extend_from_slice(profile);
        duct::cmd(&cargo, &argv)
            .dir(crate::project_root())
            .run()
            .with_context(|| format!("cargo {}", argv.join(" ")))
    };
    build(&["--bin", "lima-driver-testfake"])?;
    build(&["--example", "bench_drivers"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("target"))
        .join(if args.release { "release" } else { "debug" });
    let driver = target.join("lima-driver-testfake");
    let bench = target.join("examples/bench_drivers");
    for f in [&driver, &bench] {
        if !f.exists() {
            bail!("built file not found: {}", f.display());
        }
    }
    duct::cmd!(bench, driver, args.iterations.to_string())
        .run()
        .context("running the drivers benchmark")?;
    Ok(())
}
