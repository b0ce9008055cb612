//! What the VM benchmarks (`bench portfwd`, `bench mounts`) share: building limactl and the
//! guest agent (release or debug), the local image's lima.yaml as a value with absolute image
//! paths, medians and per-cell summaries of repeated runs, the date, and a one-line
//! description of the host the figures came from.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Builds limactl and the guest agent (beside limactl, where a development limactl finds it),
/// and `lima-driver-qemu` too when `external_qemu`; returns the directory holding them.
pub fn build(release: bool, external_qemu: bool) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let profile: &[&str] = if release { &["--release"] } else { &[] };
    let mut builds: Vec<&[&str]> = vec![&["-p", "limactl", "-p", "guestagent"]];
    let mut files = vec!["limactl", "lima-guestagent"];
    if external_qemu {
        builds.push(&["-p", "qemu", "--bin", "lima-driver-qemu"]);
        files.push("lima-driver-qemu");
    }
    for what in builds {
        let mut argv = vec!["build", "-q"];
        argv.extend_from_slice(what);
        argv.extend_from_slice(profile);
        eprintln!("==> cargo {}", argv.join(" "));
        duct::cmd(&cargo, &argv)
            .dir(crate::project_root())
            .run()
            .with_context(|| format!("cargo {}", argv.join(" ")))?;
    }
    let dir = crate::build::target_dir().join(if release { "release" } else { "debug" });
    for f in files {
        if !dir.join(f).is_file() {
            bail!("built file not found: {}", dir.join(f).display());
        }
    }
    Ok(dir)
}

/// The image's lima.yaml as a value, its relative `location`s made absolute (relative to the
/// yaml's directory), so a copy written elsewhere still finds the image.
pub fn image_yaml(yaml: &Path) -> Result<serde_yaml::Value> {
    let base = yaml.parent().context("yaml without a directory")?;
    let text =
        std::fs::read_to_string(yaml).with_context(|| format!("reading {}", yaml.display()))?;
    let mut v: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", yaml.display()))?;
    absolutize(&mut v, base);
    Ok(v)
}

fn absolutize(v: &mut serde_yaml::Value, base: &Path) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                match val.as_str() {
                    Some(s)
                        if k.as_str() == Some("location")
                            && !s.contains("://")
                            && !s.starts_with('/') =>
                    {
                        *val = base.join(s).display().to_string().into();
                    }
                    _ => absolutize(val, base),
                }
            }
        }
        serde_yaml::Value::Sequence(s) => s.iter_mut().for_each(|x| absolutize(x, base)),
        _ => {}
    }
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One table cell's runs: the median of the successful ones with the failed ones' errors, or
/// the first error when every run failed; `None` when nothing ran.
pub fn summarize(runs: &[Result<f64, String>]) -> Option<Result<(f64, Vec<String>), String>> {
    if runs.is_empty() {
        return None;
    }
    let mut ok: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let failed: Vec<String> = runs
        .iter()
        .filter_map(|r| r.as_ref().err().cloned())
        .collect();
    if ok.is_empty() {
        return Some(Err(failed.into_iter().next().unwrap_or_default()));
    }
    Some(Ok((median(&mut ok), failed)))
}

pub fn now() -> String {
    duct::cmd!("date", "-u", "+%Y-%m-%d %H:%M:%S UTC")
        .read()
        .unwrap_or_else(|_| "(date unknown)".into())
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// "host: CPU model, N CPUs, M GiB RAM, Linux release, qemu version, accel": what a reader
/// needs to compare figures from two machines.
pub fn host_line() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qemu = format!("qemu-system-{}", std::env::consts::ARCH);
    let qemu_version = duct::cmd!(&qemu, "--version")
        .stderr_null()
        .read()
        .ok()
        .and_then(|v| v.lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("{qemu}: not found"));
    let accel = std::env::var("LIMA_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
    format!(
        "host: {}, {cpus} CPUs, {} RAM, Linux {}, {qemu_version}, LIMA_QEMU_ACCEL={accel}",
        cpu_model(&cpuinfo).unwrap_or("CPU model unknown"),
        mem_total(&meminfo).map_or("unknown".into(), |g| format!("{g:.1} GiB")),
        kernel.trim(),
    )
}

/// The first `model name` of /proc/cpuinfo.
fn cpu_model(cpuinfo: &str) -> Option<&str> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim())
    })
}

/// `MemTotal` of /proc/meminfo in GiB.
fn mem_total(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn summaries() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(
            summarize(&[Ok(3.0), Err("x".into()), Ok(1.0)]),
            Some(Ok((2.0, vec!["x".to_string()])))
        );
        assert_eq!(
            summarize(&[Err("first".into()), Err("second".into())]),
            Some(Err("first".into()))
        );
    }

    #[test]
    fn host_facts_from_proc() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(cpu_model(cpuinfo), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
        let meminfo = "MemTotal:        8152316 kB\nMemFree:          212345 kB\n";
        assert!((mem_total(meminfo).unwrap() - 7.775).abs() < 0.01);
        assert_eq!(mem_total(""), None);
    }

    #[test]
    fn relative_locations_become_absolute() {
        let mut v: serde_yaml::Value = serde_yaml::from_str(
            "images:\n- location: disk.qcow2\n  kernel: {location: kernel}\n- location: https://x/y.img\nmounts:\n- location: /abs\n",
        )
        .unwrap();
        absolutize(&mut v, Path::new("/img"));
        assert_eq!(v["images"][0]["location"], "/img/disk.qcow2");
        assert_eq!(v["images"][0]["kernel"]["location"], "/img/kernel");
        assert_eq!(v["images"][1]["location"], "https://x/y.img");
        assert_eq!(v["mounts"][0]["location"], "/abs");
    }
}
