//! `cargo xtask bench boot`: `limactl start` (first start, instance created), `limactl stop`
//! and the restart of the stopped instance, against the same VM run by a bare qemu command with
//! the same arguments, disk and seed (ready polled the same way; stopped by the guest's own
//! `sudo poweroff` until qemu exits). Release build by default, as users run it. Medians over
//! a few runs, side by side, with the ratio, and limactl's phase breakdown (the `[phase]`
//! lines `limactl start` prints, see docs/speed.md). `--parallel N`: N instances started at
//! once against N bare boots at once (total time until all are ready).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{bench_util, demo};

#[derive(clap::Args)]
pub struct Args {
    /// Runs of each kind.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Use a debug build (quick to build) instead of the release build.
    #[arg(long)]
    pub debug: bool,
    /// Also start this many instances at once, against as many bare boots at once.
    #[arg(long)]
    pub parallel: Option<usize>,
}

/// One timed `limactl start` and the phases it printed.
struct Timed {
    took: Duration,
    phases: Vec<(String, f64)>,
}

/// What replays an instance's VM bare: its qemu command, SSH port and user, and a scratch dir
/// with copies of its disks and seed.
struct BareVm {
    argv: Vec<String>,
    inst: PathBuf,
    dir: PathBuf,
    port: String,
    user: String,
}

pub fn run(args: Args) -> Result<()> {
    let exe = bench_util::build(!args.debug, false)?.join("limactl");
    let yaml = demo::ensure_local_image()?;
    let yaml_s = yaml.to_str().context("image path is not UTF-8")?;
    let work = crate::project_root().join("_output/bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let (mut first, mut restart, mut stop) = (vec![], vec![], vec![]);
    let (mut bare_first, mut bare_restart, mut bare_stop) = (vec![], vec![], vec![]);
    let mut phases_first: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut phases_restart: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut order: Vec<String> = vec![];
    for i in 0..args.runs {
        let home = work.join(format!("h{i}"));
        std::fs::create_dir_all(&home)?;
        let f = timed_start(
            &exe,
            &home,
            &["start", "--name", "b", "--tty=false", yaml_s],
        )?;
        let bare = BareVm::of(&home.join("b"), work.join(format!("bare{i}")))?;
        // The first start's seed, for the bare first boot; the bare reboot gets the restart's
        // (another instance id, as every limactl start writes: cloud-init's per-instance
        // steps run again, on both sides).
        let first_seed = work.join(format!("seed-first{i}.iso"));
        std::fs::copy(home.join("b/cidata.iso"), &first_seed).context("copying the seed")?;
        let t = Instant::now();
        limactl(&exe, &home, &["stop", "b"])?;
        let s = t.elapsed();
        let r = timed_start(&exe, &home, &["start", "--tty=false", "b"])?;
        limactl(&exe, &home, &["stop", "b"])?;
        bare.prepare()?;
        limactl(&exe, &home, &["delete", "-f", "b"])?;
        let key = home.join("_config/user");
        let restart_seed = work.join(format!("seed-restart{i}.iso"));
        std::fs::rename(bare.dir.join("cidata.iso"), &restart_seed)?;
        let (bf, bs) = bare.boot_and_poweroff(&key, Some(&first_seed))?;
        // Second boot of the same disk: what a restart is for the bare guest.
        let (br, _) = bare.boot_and_poweroff(&key, Some(&restart_seed))?;
        eprintln!(
            "run {}: limactl start {:.1?} stop {:.1?} restart {:.1?}; bare qemu boot {:.1?} \
             poweroff {:.1?} reboot {:.1?}",
            i + 1,
            f.took,
            s,
            r.took,
            bf,
            bs,
            br
        );
        for (name, secs) in &f.phases {
            if !order.contains(name) {
                order.push(name.clone());
            }
            phases_first.entry(name.clone()).or_default().push(*secs);
        }
        for (name, secs) in &r.phases {
            if !order.contains(name) {
                order.push(name.clone());
            }
            phases_restart.entry(name.clone()).or_default().push(*secs);
        }
        first.push(f.took.as_secs_f64());
        restart.push(r.took.as_secs_f64());
        stop.push(s.as_secs_f64());
        bare_first.push(bf.as_secs_f64());
        bare_restart.push(br.as_secs_f64());
        bare_stop.push(bs.as_secs_f64());
    }
    println!("{}", bench_util::host_line());
    println!(
        "limactl {} build, median of {} (load {})",
        if args.debug { "debug" } else { "release" },
        args.runs,
        bench_util::load_average()
    );
    let n = args.runs;
    compare(
        &format!("boot to ready, first start (median of {n}):"),
        ("limactl start", &mut first),
        ("bare qemu", &mut bare_first),
    );
    compare(
        &format!("restart of the stopped instance to ready (median of {n}):"),
        ("limactl start", &mut restart),
        ("bare qemu", &mut bare_restart),
    );
    compare(
        &format!("stop until the VM is gone (median of {n}):"),
        ("limactl stop", &mut stop),
        ("sudo poweroff", &mut bare_stop),
    );
    println!("phases (median; first start | restart):");
    for name in &order {
        let cell = |m: &mut BTreeMap<String, Vec<f64>>| {
            m.get_mut(name).map_or("-".to_string(), |v| {
                format!("{:.2}s", bench_util::median(v))
            })
        };
        println!(
            "  {name:<34}{:>9} | {:>9}",
            cell(&mut phases_first),
            cell(&mut phases_restart)
        );
    }
    for (what, f, r) in [
        ("limactl start (wall clock)", &mut first, &mut restart),
        (
            "bare qemu, boot to ready",
            &mut bare_first,
            &mut bare_restart,
        ),
    ] {
        println!(
            "  {what:<34}{:>8.2}s | {:>8.2}s",
            bench_util::median(f),
            bench_util::median(r)
        );
    }
    if let Some(n) = args.parallel {
        parallel(&exe, &work, yaml_s, n)?;
    }
    Ok(())
}

/// One block of the report: both medians and their ratio.
fn compare(title: &str, lima: (&str, &mut [f64]), bare: (&str, &mut [f64])) {
    let (l, b) = (bench_util::median(lima.1), bench_util::median(bare.1));
    println!("{title}");
    println!("  {:<14}: {l:>7.1}s", lima.0);
    println!("  {:<14}: {b:>7.1}s", bare.0);
    println!(
        "  {:<14}: {:.3} (limactl adds {:+.1}%)",
        "ratio",
        l / b,
        (l / b - 1.0) * 100.0
    );
}

/// `n` instances started at once (one `LIMA_HOME`), then `n` bare boots of them at once.
fn parallel(exe: &Path, work: &Path, yaml: &str, n: usize) -> Result<()> {
    let home = work.join("parallel");
    std::fs::create_dir_all(&home)?;
    let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let t = Instant::now();
    let children: Vec<Child> = names
        .iter()
        .map(|name| {
            limactl_cmd(exe, &home, &["start", "--name", name, "--tty=false", yaml])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("spawning limactl start")
        })
        .collect::<Result<_>>()?;
    for (name, mut c) in names.iter().zip(children) {
        if !c.wait()?.success() {
            bail!(
                "limactl start {name} failed (logs under {})",
                home.display()
            );
        }
    }
    let lima = t.elapsed();
    let mut bares = vec![];
    for name in &names {
        let bare = BareVm::of(&home.join(name), work.join(format!("bare-{name}")))?;
        limactl(exe, &home, &["stop", name])?;
        bare.prepare()?;
        limactl(exe, &home, &["delete", "-f", name])?;
        bares.push(bare);
    }
    let key = home.join("_config/user");
    let bare = std::thread::scope(|s| -> Result<Duration> {
        let t = Instant::now();
        let joins: Vec<_> = bares
            .iter()
            .map(|b| s.spawn(|| b.boot_and_poweroff(&key, None).map(|(ready, _)| ready)))
            .collect();
        let offsets: Vec<Duration> = joins.iter().map(|_| t.elapsed()).collect();
        let mut last = Duration::ZERO;
        for (j, started) in joins.into_iter().zip(offsets) {
            let ready = j
                .join()
                .map_err(|_| anyhow::anyhow!("bare boot panicked"))??;
            // Until the last one is ready; the power-offs after it are not counted.
            last = last.max(started + ready);
        }
        Ok(last)
    })?;
    compare(
        &format!("{n} at once, first start until all are ready:"),
        ("limactl start", &mut [lima.as_secs_f64()]),
        ("bare qemu", &mut [bare.as_secs_f64()]),
    );
    Ok(())
}

fn limactl_cmd(exe: &Path, home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(exe);
    c.args(args).env("LIMA_HOME", home).stdin(Stdio::null());
    if std::env::var_os("LIMA_QEMU_ACCEL").is_none() {
        // KVM guests hang on the project's machines; TCG always works.
        c.env("LIMA_QEMU_ACCEL", "tcg");
    }
    c
}

fn limactl(exe: &Path, home: &Path, args: &[&str]) -> Result<()> {
    let out = limactl_cmd(exe, home, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if !out.status.success() {
        bail!(
            "limactl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Runs `limactl start ...` and reads the phases from its `[phase] NAME: 1.23s` lines.
fn timed_start(exe: &Path, home: &Path, args: &[&str]) -> Result<Timed> {
    let t = Instant::now();
    let out = limactl_cmd(exe, home, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("limactl {}: {text}", args.join(" "));
    }
    Ok(Timed {
        took,
        phases: text.lines().filter_map(phase_of_line).collect(),
    })
}

/// `time="..." level=info msg="12:00:01 [phase] ssh: 41.5s"` -> ("ssh", 41.5).
fn phase_of_line(line: &str) -> Option<(String, f64)> {
    let rest = &line[line.find("[phase] ")? + "[phase] ".len()..];
    let rest = rest.trim_end().trim_end_matches('"');
    let (name, secs) = rest.rsplit_once(": ")?;
    let secs = secs.strip_suffix('s')?.parse().ok()?;
    Some((name.replace("\\\"", "\""), secs))
}

impl BareVm {
    /// Reads what replays instance `inst`'s running VM; `dir` is its scratch dir.
    fn of(inst: &Path, dir: PathBuf) -> Result<Self> {
        let qpid: i32 = std::fs::read_to_string(inst.join("qemu.pid"))?
            .trim()
            .parse()?;
        let ssh_config = std::fs::read_to_string(inst.join("ssh.config"))?;
        let field = |key: &str| {
            ssh_config
                .lines()
                .find_map(|l| l.trim().strip_prefix(key).map(|p| p.trim().to_string()))
                .with_context(|| format!("no {key}in ssh.config"))
        };
        Ok(Self {
            argv: qemu_argv(qpid)?,
            inst: inst.to_path_buf(),
            dir,
            port: field("Port ")?,
            user: field("User ")?,
        })
    }

    /// Copies what the replayed command reads (base image, kernel, initrd, seed) and makes a
    /// fresh overlay, so the bare boot is a first boot like limactl's, prepared before its
    /// clock starts.
    fn prepare(&self) -> Result<()> {
        let (inst, dir) = (&self.inst, &self.dir);
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
        let format =
            duct::cmd!("qemu-img", "info", "--output=json", dir.join("basedisk")).read()?;
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

    /// Boots the command in the scratch dir, polls ssh like the host agent does until the
    /// boot scripts are done, then powers the guest off from inside (`sudo poweroff`) and
    /// waits for qemu to exit: (boot to ready, power-off to exit). `seed`: another cidata ISO
    /// to boot with (copied in before the clock starts) instead of the one [`Self::prepare`]
    /// copied.
    fn boot_and_poweroff(&self, key: &Path, seed: Option<&Path>) -> Result<(Duration, Duration)> {
        if let Some(seed) = seed {
            std::fs::copy(seed, self.dir.join("cidata.iso")).context("copying the seed")?;
        }
        let inst_s = self.inst.display().to_string();
        let dir_s = self.dir.display().to_string();
        let args: Vec<String> = self.argv[1..]
            .iter()
            .map(|a| a.replace(&inst_s, &dir_s))
            .collect();
        let t = Instant::now();
        let mut child = Command::new(&self.argv[0])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bare qemu")?;
        let ready = loop {
            if self.ssh(key, &["test", "-e", "/run/lima-boot-done"])? {
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
        let t = Instant::now();
        // ssh may end with an error as the guest goes down; qemu's exit is what counts.
        let _ = self.ssh(key, &["sudo", "poweroff"]);
        let off = loop {
            if child.try_wait()?.is_some() {
                break t.elapsed();
            }
            if t.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("bare qemu did not exit within 5 minutes of poweroff");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok((ready, off))
    }

    fn ssh(&self, key: &Path, cmd: &[&str]) -> Result<bool> {
        Ok(Command::new("ssh")
            .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
            .arg("-i")
            .arg(key)
            .args(["-p", &self.port, &format!("{}@127.0.0.1", self.user)])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success())
    }
}

fn qemu_argv(pid: i32) -> Result<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_lines_as_limactl_prints_them() {
        assert_eq!(
            phase_of_line(r#"time="2026-12-06T14:00:00Z" level=info msg="[phase] load: 0.02s""#),
            Some(("load".into(), 0.02))
        );
        assert_eq!(
            phase_of_line(
                r#"time="2026-12-06T14:00:00Z" level=info msg="14:00:00 [phase] ssh: 41.5s""#
            ),
            Some(("ssh".into(), 41.5))
        );
        assert_eq!(
            phase_of_line(r#"INFO[0001] 14:00:00 [phase] probe \"x: y\": 1.00s"#),
            Some(("probe \"x: y\"".into(), 1.0))
        );
        assert_eq!(phase_of_line("level=info msg=\"phases: load 0.02s\""), None);
    }
}
