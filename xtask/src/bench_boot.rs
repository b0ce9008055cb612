//! `cargo xtask bench boot`: time from `limactl start` to ready (SSH up and boot scripts done)
//! against the same VM booted by a bare qemu command with the same arguments, disk and seed,
//! polled the same way. Medians over a few runs, side by side, with the ratio.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::demo;

#[derive(clap::Args)]
pub struct Args {
    /// Runs of each kind.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

pub fn run(args: Args) -> Result<()> {
    let exe = demo::build_limactl()?;
    let yaml = demo::ensure_local_image()?;
    let work = crate::project_root().join("_output/bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut lima_times = vec![];
    let mut bare_times = vec![];
    for i in 0..args.runs {
        let home = work.join(format!("h{i}"));
        std::fs::create_dir_all(&home)?;
        let t = Instant::now();
        demo::limactl(
            &exe,
            &home,
            &[
                "start",
                "--name",
                "b",
                "--tty=false",
                yaml.to_str().unwrap(),
            ],
        )
        .stderr_null()
        .run()
        .context("limactl start")?;
        let lima = t.elapsed();
        // The qemu command limactl ran, to replay bare.
        let inst = home.join("b");
        let qpid: i32 = std::fs::read_to_string(inst.join("qemu.pid"))?
            .trim()
            .parse()?;
        let argv = qemu_argv(qpid)?;
        let port = std::fs::read_to_string(inst.join("ssh.config"))?
            .lines()
            .find_map(|l| l.trim().strip_prefix("Port ").map(|p| p.trim().to_string()))
            .context("no Port in ssh.config")?;
        let user = std::fs::read_to_string(inst.join("ssh.config"))?
            .lines()
            .find_map(|l| l.trim().strip_prefix("User ").map(|p| p.trim().to_string()))
            .context("no User in ssh.config")?;
        demo::limactl(&exe, &home, &["stop", "b"])
            .stderr_null()
            .run()?;
        let bare_dir = work.join(format!("bare{i}"));
        prepare_bare_dir(&inst, &bare_dir)?;
        demo::limactl(&exe, &home, &["delete", "-f", "b"])
            .stderr_null()
            .run()?;

        let bare = bare_boot(&bare_dir, &argv, &inst, &home, &port, &user)?;
        eprintln!(
            "run {}: limactl {:.1?}, bare qemu {:.1?}",
            i + 1,
            lima,
            bare
        );
        lima_times.push(lima);
        bare_times.push(bare);
    }
    let ml = median(&mut lima_times);
    let mb = median(&mut bare_times);
    println!("boot to ready (median of {}):", args.runs);
    println!("  limactl start : {:>7.1}s", ml.as_secs_f64());
    println!("  bare qemu     : {:>7.1}s", mb.as_secs_f64());
    println!(
        "  ratio         : {:.3} (limactl adds {:+.1}%)",
        ml.as_secs_f64() / mb.as_secs_f64(),
        (ml.as_secs_f64() / mb.as_secs_f64() - 1.0) * 100.0
    );
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn qemu_argv(pid: i32) -> Result<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

/// Boots the same qemu command in a scratch dir (fresh overlay on a copy of the instance's
/// base image, the same seed) and polls ssh like the host agent does.
fn bare_boot(
    dir: &Path,
    argv: &[String],
    inst: &Path,
    home: &Path,
    port: &str,
    user: &str,
) -> Result<Duration> {
    let inst_s = inst.display().to_string();
    let dir_s = dir.display().to_string();
    let args: Vec<String> = argv[1..]
        .iter()
        .map(|a| a.replace(&inst_s, &dir_s))
        .collect();
    let key = home.join("_config/user");
    let t = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting bare qemu")?;
    let ready = loop {
        let ok = Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
            ])
            .args([
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("-i")
            .arg(&key)
            .args([
                "-p",
                port,
                &format!("{user}@127.0.0.1"),
                "test",
                "-e",
                "/run/lima-boot-done",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        if ok {
            break t.elapsed();
        }
        if t.elapsed() > Duration::from_secs(900) {
            let _ = child.kill();
            bail!("bare qemu did not become ready in 15 minutes");
        }
        if let Some(st) = child.try_wait()? {
            bail!("bare qemu exited early: {st}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = child.kill();
    let _ = child.wait();
    Ok(ready)
}

/// Copies what the replayed command reads (base image, kernel, initrd, seed) and makes a fresh
/// overlay, so the bare boot is a first boot like limactl's, prepared before its clock starts.
fn prepare_bare_dir(inst: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for f in ["basedisk", "kernel", "initrd", "cidata.iso"] {
        let from = inst.join(f);
        if from.exists() {
            std::fs::copy(&from, dir.join(f))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    let size = duct::cmd!("qemu-img", "info", "--output=json", inst.join("diffdisk")).read()?;
    let size: serde_json::Value = serde_json::from_str(&size)?;
    let size = size["virtual-size"].as_u64().context("diffdisk size")?;
    let format = duct::cmd!("qemu-img", "info", "--output=json", dir.join("basedisk")).read()?;
    let format: serde_json::Value = serde_json::from_str(&format)?;
    let format = format["format"].as_str().unwrap_or("qcow2").to_string();
    duct::cmd!(
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        format,
        "-b",
        "basedisk",
        dir.join("diffdisk"),
        size.to_string()
    )
    .run()?;
    Ok(())
}
