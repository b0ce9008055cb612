//! `cargo xtask demo`: builds limactl and the guest agent (and the local image if missing),
//! boots a fresh instance from the local image's lima.yaml, and shows
//! `limactl shell NAME uname -a`. The guest agent is cargo's `lima-guestagent` beside the
//! built limactl, which limactl takes for a guest of the host's arch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Instance name.
    #[arg(long, default_value = "demo")]
    pub name: String,
    /// Keep the instance running afterwards (in the demo's LIMA_HOME).
    #[arg(long)]
    pub keep: bool,
}

/// Where the local image's lima.yaml is.
pub fn local_image_yaml() -> PathBuf {
    crate::project_root().join("_output/images/debian-12-local/lima.yaml")
}

/// Builds limactl and the guest agent (next to it, where limactl looks for a development
/// build) and returns limactl's path (in the target dir cargo uses for this xtask run).
pub fn build_limactl() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    duct::cmd!(&cargo, "build", "-q", "-p", "limactl")
        .dir(crate::project_root())
        .run()
        .context("building limactl")?;
    crate::build::cargo_build_guestagent(false)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("target"));
    let exe = target.join("debug/limactl");
    if !exe.exists() {
        bail!("built limactl not found at {}", exe.display());
    }
    Ok(exe)
}

/// Builds the local image if its lima.yaml is missing.
pub fn ensure_local_image() -> Result<PathBuf> {
    let yaml = local_image_yaml();
    if !yaml.exists() {
        eprintln!("==> building the local image (cargo xtask local-image)");
        let me = std::env::current_exe()?;
        duct::cmd!(me, "local-image")
            .run()
            .context("cargo xtask local-image")?;
    }
    if !yaml.exists() {
        bail!(
            "{} is still missing after `cargo xtask local-image`",
            yaml.display()
        );
    }
    Ok(yaml)
}

pub fn limactl(exe: &Path, home: &Path, args: &[&str]) -> duct::Expression {
    let mut e = duct::cmd(exe, args).env("LIMA_HOME", home);
    if std::env::var_os("LIMA_QEMU_ACCEL").is_none() {
        // KVM guests hang on the project's machines; TCG always works.
        e = e.env("LIMA_QEMU_ACCEL", "tcg");
    }
    e
}

pub fn run(args: Args) -> Result<()> {
    let exe = build_limactl()?;
    let yaml = ensure_local_image()?;
    let home = crate::project_root().join("_output/demo-home");
    std::fs::create_dir_all(&home)?;
    let name = args.name.as_str();
    let _ = limactl(&exe, &home, &["delete", "-f", name])
        .stderr_null()
        .unchecked()
        .run();
    println!("$ export LIMA_HOME={}", home.display());
    println!(
        "$ limactl start --name {name} --tty=false {}",
        yaml.display()
    );
    let t = Instant::now();
    limactl(
        &exe,
        &home,
        &[
            "start",
            "--name",
            name,
            "--tty=false",
            yaml.to_str().unwrap(),
        ],
    )
    .run()
    .context("limactl start")?;
    println!("(ready in {:.1?})", t.elapsed());
    println!("$ limactl shell {name} uname -a");
    let out = limactl(&exe, &home, &["shell", name, "uname", "-a"])
        .read()
        .context("limactl shell")?;
    println!("{out}");
    println!("$ limactl list");
    limactl(&exe, &home, &["list"]).run()?;
    if args.keep {
        println!(
            "Kept running. Stop with: LIMA_HOME={} {} stop {name}",
            home.display(),
            exe.display()
        );
    } else {
        println!("$ limactl delete -f {name}");
        limactl(&exe, &home, &["delete", "-f", name]).run()?;
    }
    Ok(())
}
