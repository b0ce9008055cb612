//! `cargo xtask bench mounts`: how fast a host directory is in the guest through each
//! `mountType` (9p, virtiofs, reverse-sshfs), against the guest's own disk as the baseline.
//!
//! One instance per mount type, booted one after another from the local image (TCG, a fresh
//! `LIMA_HOME`) with a writable mount of a host temporary directory; every job runs through
//! `limactl shell`, then the instance is deleted. The guest disk is measured in the first
//! instance that boots, interleaved with its mount's runs. Jobs, each timed inside the guest
//! by a small python3 script (`bench_mounts_guest.py`) so ssh does not count:
//!
//! - sequential write of `--mib` MiB in 1 MiB writes, then fsync (random bytes: nothing on the
//!   way may compress or skip zeros) → MB/s;
//! - sequential read of a `--mib` MiB file made on the host (the guest disk's own copy is made
//!   in the guest) → MB/s;
//! - metadata: create `--files` files of 1 KiB, stat them, delete them, each phase timed →
//!   seconds, and their sum (the report names the mount type fastest at it);
//! - `tar -xf` of a source tarball (`git archive HEAD` of this repository unless `--tarball`)
//!   copied to the guest disk beforehand, into the mount → seconds.
//!
//! Every timed part starts after `sync` and dropping the guest's caches, so it reaches the
//! disk or the host instead of guest memory; writing parts end with fsync/sync, so the guest
//! disk's figures include writing back what the mounts had to send to the host anyway. The
//! host's page cache is left alone (other work runs on the machine): the host-made file is
//! read from the host's memory, which is what a shared directory usually does.
//!
//! Medians over `--runs`, one table, ratios against the guest disk. A mount type that does
//! not start or mount (9p needs 9p in the guest kernel, reverse-sshfs needs sshfs in the
//! guest) gets a line saying why, and the others go on.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use limatype::MountType;

use crate::bench_util::{self, now};
use crate::demo;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Runs of every measurement; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Mount types to measure, comma-separated (9p, virtiofs, reverse-sshfs); one instance
    /// each, booted one after another.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = parse_type,
        default_value = "9p,virtiofs,reverse-sshfs"
    )]
    pub types: Vec<MountType>,
    /// Size of the sequential write and read files, in MiB.
    #[arg(long, default_value_t = 256)]
    pub mib: u64,
    /// Small files the metadata job creates, stats and deletes.
    #[arg(long, default_value_t = 2000)]
    pub files: u32,
    /// Tarball to unpack [default: `git archive HEAD` of this repository], e.g. one crate of
    /// ~/.cargo/registry/src for more files.
    #[arg(long)]
    pub tarball: Option<PathBuf>,
    /// The image's lima.yaml [default: _output/images/debian-12-local/lima.yaml, built by
    /// `cargo xtask local-image` if missing]; in a git worktree, point it at the main
    /// checkout's image.
    #[arg(long, env = "LIMA_BENCH_IMAGE")]
    pub image: Option<PathBuf>,
    /// Host directory in which to make the shared directory [default: /tmp]; its filesystem
    /// is the host side of every mount.
    #[arg(long)]
    pub host_dir: Option<PathBuf>,
    /// Seconds one job may take in the guest before it is stopped and counted as failed.
    #[arg(long, default_value_t = 900)]
    pub job_timeout: u64,
    /// Use debug builds (quick to build) instead of release builds.
    #[arg(long)]
    pub debug: bool,
}

fn parse_type(s: &str) -> Result<MountType, String> {
    match s.parse::<MountType>() {
        Ok(MountType::Wsl2) | Err(_) => {
            Err(format!("{s:?} is not one of 9p, virtiofs, reverse-sshfs"))
        }
        Ok(t) => Ok(t),
    }
}

/// Where things live in the guest: the script, the tarball, and the guest disk's job
/// directory (/var/tmp is on the root filesystem; /tmp may be a tmpfs).
const GUEST_WORK: &str = "/var/tmp/lima-bench";
const GUEST_DISK_DIR: &str = "/var/tmp/lima-bench/disk";
const GUEST_SCRIPT: &str = "/var/tmp/lima-bench/bench.py";
const GUEST_TARBALL: &str = "/var/tmp/lima-bench/src.tar";
const GUEST_PY: &str = include_str!("bench_mounts_guest.py");
/// The file the host makes in the shared directory for the read job.
const READ_FILE: &str = "read.bin";

/// A table column: the guest disk (`None`) or a mount type.
type Col = Option<MountType>;

/// One table row.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Row {
    Write,
    Read,
    Create,
    Stat,
    Delete,
    FilesTotal,
    Untar,
}

const ROWS: [Row; 7] = [
    Row::Write,
    Row::Read,
    Row::Create,
    Row::Stat,
    Row::Delete,
    Row::FilesTotal,
    Row::Untar,
];

/// What the row labels mention.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    mib: u64,
    files: u32,
    tar_files: usize,
}

impl Row {
    /// What the row measures and its unit.
    fn parts(self, s: &Sizes) -> (String, &'static str) {
        match self {
            Row::Write => (format!("seq write {} MiB", s.mib), "MB/s"),
            Row::Read => (format!("seq read {} MiB", s.mib), "MB/s"),
            Row::Create => (format!("create {} files", s.files), "s"),
            Row::Stat => (format!("stat {} files", s.files), "s"),
            Row::Delete => (format!("delete {} files", s.files), "s"),
            Row::FilesTotal => ("create+stat+delete".to_string(), "s"),
            Row::Untar => (format!("untar {} files", s.tar_files), "s"),
        }
    }

    /// The table's label: the unit right-aligned.
    fn label(self, s: &Sizes) -> String {
        let (what, unit) = self.parts(s);
        format!("{what:<25}{unit:>5}")
    }

    /// The label in running text: "seq write 256 MiB (MB/s)".
    fn name(self, s: &Sizes) -> String {
        let (what, unit) = self.parts(s);
        format!("{what} ({unit})")
    }
}

/// A guest job and the rows it fills.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Job {
    Write,
    Read,
    Files,
    Untar,
}

const JOBS: [Job; 4] = [Job::Write, Job::Read, Job::Files, Job::Untar];

impl Job {
    fn rows(self) -> &'static [Row] {
        match self {
            Job::Write => &[Row::Write],
            Job::Read => &[Row::Read],
            Job::Files => &[Row::Create, Row::Stat, Row::Delete, Row::FilesTotal],
            Job::Untar => &[Row::Untar],
        }
    }
}

/// One `RESULT name ns [bytes]` line of the guest script.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sample {
    name: String,
    ns: u64,
    bytes: Option<u64>,
}

fn parse_samples(out: &str) -> Result<Vec<Sample>, String> {
    let mut samples = vec![];
    for line in out.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("RESULT") {
            continue;
        }
        let bad = || format!("bad result line from the guest: {line:?}");
        let name = words.next().ok_or_else(bad)?.to_string();
        let ns = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let bytes = match words.next() {
            None => None,
            Some(w) => Some(w.parse().map_err(|_| bad())?),
        };
        if words.next().is_some() || ns == 0 {
            return Err(bad());
        }
        samples.push(Sample { name, ns, bytes });
    }
    Ok(samples)
}

/// A job's figures from its samples: MB/s (10^6 bytes per second) for write and read,
/// seconds for the rest; the metadata job's total is the sum of its phases.
fn job_figures(job: Job, samples: &[Sample]) -> Result<Vec<(Row, f64)>, String> {
    let find = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("the guest printed no {name:?} result"))
    };
    let mb_per_s = |name: &str| -> Result<f64, String> {
        let s = find(name)?;
        let bytes = s
            .bytes
            .ok_or_else(|| format!("the guest's {name:?} result has no byte count"))?;
        Ok(bytes as f64 * 1e3 / s.ns as f64)
    };
    let secs = |name: &str| -> Result<f64, String> { Ok(find(name)?.ns as f64 / 1e9) };
    Ok(match job {
        Job::Write => vec![(Row::Write, mb_per_s("write")?)],
        Job::Read => vec![(Row::Read, mb_per_s("read")?)],
        Job::Files => {
            let (c, s, d) = (secs("create")?, secs("stat")?, secs("delete")?);
            vec![
                (Row::Create, c),
                (Row::Stat, s),
                (Row::Delete, d),
                (Row::FilesTotal, c + s + d),
            ]
        }
        Job::Untar => vec![(Row::Untar, secs("untar")?)],
    })
}

/// The guest script's `PROBE` line: where a directory is mounted and what the guest has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Probe {
    mountpoint: String,
    fstype: String,
    options: String,
    /// Of 9p, virtiofs, fuse: those in /proc/filesystems (built in or loaded).
    filesystems: Vec<String>,
    /// Of 9p, virtiofs, fuse: those with a module under /lib/modules/RELEASE/kernel/fs.
    modules: Vec<String>,
    sshfs: bool,
    kernel: String,
}

fn parse_probe(out: &str) -> Result<Probe, String> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("PROBE "))
        .ok_or_else(|| format!("no PROBE line in the guest's answer: {}", tail(out, 5)))?;
    let mut p = Probe::default();
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    for word in line.split_whitespace() {
        let Some((k, v)) = word.split_once('=') else {
            continue;
        };
        match k {
            "mountpoint" => p.mountpoint = v.into(),
            "fstype" => p.fstype = v.into(),
            "options" => p.options = v.into(),
            "filesystems" => p.filesystems = list(v),
            "modules" => p.modules = list(v),
            "sshfs" => p.sshfs = v == "yes",
            "kernel" => p.kernel = v.into(),
            _ => {}
        }
    }
    if p.mountpoint.is_empty() || p.fstype.is_empty() {
        return Err(format!("incomplete PROBE line: {line:?}"));
    }
    Ok(p)
}

/// The filesystem type a mount of this type shows in the guest's /proc/mounts.
fn guest_fstype(ty: MountType) -> &'static str {
    match ty {
        MountType::NineP => "9p",
        MountType::Virtiofs => "virtiofs",
        MountType::ReverseSshfs => "fuse.sshfs",
        MountType::Wsl2 => "wsl2",
    }
}

/// Whether `dir` is a mount of type `ty` in the guest: its description, or why not (with the
/// likeliest reason from what the guest has).
fn check_mount(p: &Probe, dir: &str, ty: MountType) -> Result<String, String> {
    let want = guest_fstype(ty);
    if p.mountpoint == dir && p.fstype == want {
        return Ok(format!("{} ({})", p.fstype, p.options));
    }
    let mut why = format!(
        "not mounted: in the guest {dir} is on {} ({}), not a {want} mount",
        p.mountpoint, p.fstype
    );
    let has = |fs: &str| p.filesystems.iter().chain(&p.modules).any(|x| x == fs);
    match ty {
        MountType::NineP | MountType::Virtiofs if !has(want) => why.push_str(&format!(
            "; the guest kernel {} has no {want} (neither built in nor a module)",
            p.kernel
        )),
        MountType::ReverseSshfs if !p.sshfs => {
            why.push_str("; sshfs is not installed in the guest")
        }
        MountType::ReverseSshfs if !has("fuse") => {
            why.push_str(&format!("; the guest kernel {} has no fuse", p.kernel))
        }
        _ => why.push_str("; the guest's journal (journalctl -b) may say why"),
    }
    Err(why)
}

/// The guest disk directory must be on the guest's disk, not in memory or on a share.
fn check_disk(p: &Probe) -> Result<String, String> {
    let fs = p.fstype.as_str();
    if matches!(fs, "tmpfs" | "ramfs" | "9p" | "virtiofs" | "overlay") || fs.starts_with("fuse") {
        return Err(format!(
            "{GUEST_DISK_DIR} is on {} ({fs}), not the guest's disk",
            p.mountpoint
        ));
    }
    Ok(format!(
        "{GUEST_DISK_DIR} on {} ({fs} {})",
        p.mountpoint, p.options
    ))
}

/// The last `n` non-empty lines of a command's output, on one line.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let t = lines[lines.len().saturating_sub(n)..].join(" | ");
    if t.is_empty() {
        "(no output)".into()
    } else {
        t
    }
}

/// Every run's outcome of one (row, column) cell.
type Results = HashMap<(Row, Col), Vec<Result<f64, String>>>;

/// The instance of the moment, its `LIMA_HOME`, the host's shared directory and the work
/// directory (yaml files, tarball, command logs). Dropping it deletes the instance and
/// removes the three directories, even when a step failed.
struct Bench {
    exe: PathBuf,
    home: PathBuf,
    share: PathBuf,
    work: PathBuf,
    job_timeout: Duration,
    /// The running (or half-started) instance, deleted by [`Bench::delete`] or on drop.
    instance: Option<String>,
}

impl Bench {
    /// Fresh directories: `LIMA_HOME` and the work directory under /tmp (short paths: unix
    /// sockets in the instance dir must stay under 108 bytes), the shared directory in
    /// `--host-dir`, open to every user so the guest user may write whichever user the host
    /// side of a mount type acts as.
    fn new(exe: PathBuf, args: &Args) -> Result<Bench> {
        let pid = std::process::id();
        let share = args
            .host_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join(format!("lima-bm-{pid}-share"));
        let mut bench = Bench {
            exe,
            home: PathBuf::from(format!("/tmp/lima-bm-{pid}")),
            share,
            work: PathBuf::from(format!("/tmp/lima-bm-{pid}-work")),
            job_timeout: Duration::from_secs(args.job_timeout),
            instance: None,
        };
        for d in [&bench.home, &bench.work, &bench.share] {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        bench.share = bench.share.canonicalize()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bench.share, std::fs::Permissions::from_mode(0o777))?;
        Ok(bench)
    }

    fn limactl(&self, args: &[&str]) -> duct::Expression {
        demo::limactl(&self.exe, &self.home, args)
    }

    fn name(&self) -> Result<&str> {
        self.instance.as_deref().context("no instance is running")
    }

    /// Runs `expr` (stdout and stderr into a log file, so a stuck grandchild holding a pipe
    /// cannot block us); its exit status and output, or an error if it outlived `timeout`.
    fn run_logged(
        &self,
        expr: duct::Expression,
        timeout: Duration,
    ) -> Result<(std::process::ExitStatus, String)> {
        let log = self.work.join("command.log");
        let handle = expr
            .stderr_to_stdout()
            .stdout_path(&log)
            .unchecked()
            .start()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(out) = handle.try_wait()? {
                let text =
                    String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
                return Ok((out.status, text));
            }
            if Instant::now() > deadline {
                let _ = handle.kill();
                bail!("no answer within {} s", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn start(&mut self, name: &str, yaml: &Path) -> Result<()> {
        self.instance = Some(name.to_string());
        let argv = [
            "start",
            "--name",
            name,
            "--tty=false",
            yaml.to_str().context("non-UTF-8 path")?,
        ];
        let (status, text) = self
            .run_logged(
                self.limactl(&argv).stdin_null(),
                Duration::from_secs(30 * 60),
            )
            .with_context(|| format!("limactl {}", argv.join(" ")))?;
        if !status.success() {
            bail!("limactl start failed: {}", tail(&text, 8));
        }
        Ok(())
    }

    /// Deletes the instance (stopping it), and kills whatever a failed delete left running.
    fn delete(&mut self) {
        let Some(name) = self.instance.take() else {
            return;
        };
        let inst = self.home.join(&name);
        if !inst.exists() {
            return;
        }
        eprintln!("==> bench mounts: deleting {name}");
        let _ = self.run_logged(
            self.limactl(&["delete", "-f", &name]).stdin_null(),
            Duration::from_secs(300),
        );
        for file in ["ha.pid", "qemu.pid"] {
            if let Ok(pid) = std::fs::read_to_string(inst.join(file)) {
                let _ = duct::cmd!("kill", "-KILL", pid.trim())
                    .stderr_null()
                    .unchecked()
                    .run();
            }
        }
    }

    /// Writes `input` to `path` in the guest (through `limactl shell`'s stdin), making the
    /// guest's work directories first.
    fn put(&self, path: &str, input: Input) -> Result<()> {
        let script = format!("mkdir -p {GUEST_WORK} {GUEST_DISK_DIR} && cat > {path}");
        let e = self.limactl(&["shell", self.name()?, "sh", "-c", &script]);
        let e = match input {
            Input::Bytes(b) => e.stdin_bytes(b),
            Input::File(f) => e.stdin_path(f),
        };
        let (status, text) = self.run_logged(e, Duration::from_secs(600))?;
        if !status.success() {
            bail!("writing {path} in the guest: {}", tail(&text, 4));
        }
        Ok(())
    }

    /// Runs one guest script job; its output, or why it failed.
    fn guest_job(&self, argv: &[&str]) -> Result<String, String> {
        let name = self.name().map_err(|e| e.to_string())?;
        let secs = self.job_timeout.as_secs().to_string();
        let mut full = vec![
            "shell",
            name,
            "timeout",
            "-k",
            "10",
            &secs,
            "python3",
            GUEST_SCRIPT,
        ];
        full.extend_from_slice(argv);
        let what = format!("guest job {:?}", argv.join(" "));
        let (status, text) = self
            .run_logged(
                self.limactl(&full).stdin_null(),
                self.job_timeout + Duration::from_secs(120),
            )
            .map_err(|e| format!("{what}: {e:#}"))?;
        match status.code() {
            Some(0) => Ok(text),
            // timeout(1): 124 after TERM, 137 after the KILL that follows.
            Some(124 | 137) => Err(format!(
                "{what}: stopped after {secs} s in the guest: {}",
                tail(&text, 4)
            )),
            _ => Err(format!("{what}: {status}: {}", tail(&text, 4))),
        }
    }

    fn probe(&self, dir: &str) -> Result<Probe, String> {
        parse_probe(&self.guest_job(&["probe", dir])?)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.delete();
        for dir in [&self.home, &self.share, &self.work] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What [`Bench::put`] sends.
enum Input<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// The image's yaml with `mountType: ty` and one writable mount of `share` (at the same path
/// in the guest).
fn bench_yaml(mut base: serde_yaml::Value, ty: MountType, share: &Path) -> Result<String> {
    let m = base
        .as_mapping_mut()
        .context("the image's lima.yaml is not a mapping")?;
    m.insert("mountType".into(), ty.as_str().into());
    let mut mount = serde_yaml::Mapping::new();
    mount.insert("location".into(), share.display().to_string().into());
    mount.insert("writable".into(), true.into());
    m.insert("mounts".into(), vec![serde_yaml::Value::from(mount)].into());
    Ok(serde_yaml::to_string(&base)?)
}

/// Regular files in a tarball.
fn tar_files(tarball: &Path) -> Result<usize> {
    let file =
        std::fs::File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut n = 0;
    for entry in archive.entries()? {
        if entry?.header().entry_type().is_file() {
            n += 1;
        }
    }
    Ok(n)
}

/// `mib` MiB of random bytes repeating every 16 MiB (as the guest script writes).
fn make_random_file(path: &Path, mib: u64) -> Result<()> {
    let mut pattern = vec![0u8; 16 << 20];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut pattern)?;
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for i in 0..mib {
        let off = ((i % 16) << 20) as usize;
        f.write_all(&pattern[off..off + (1 << 20)])?;
    }
    f.into_inner()?.sync_all()?;
    Ok(())
}

fn reproduce_line(args: &Args) -> String {
    let types: Vec<&str> = args.types.iter().map(|t| t.as_str()).collect();
    let mut s = format!(
        "cargo xtask bench mounts --runs {} --types {} --mib {} --files {} --job-timeout {}",
        args.runs,
        types.join(","),
        args.mib,
        args.files,
        args.job_timeout
    );
    if let Some(t) = &args.tarball {
        s.push_str(&format!(" --tarball {}", t.display()));
    }
    if let Some(d) = &args.host_dir {
        s.push_str(&format!(" --host-dir {}", d.display()));
    }
    if args.debug {
        s.push_str(" --debug");
    }
    s
}

pub fn run(mut args: Args) -> Result<()> {
    if args.runs == 0 || args.mib == 0 || args.files == 0 || args.job_timeout == 0 {
        bail!("--runs, --mib, --files and --job-timeout must be at least 1");
    }
    let mut seen = vec![];
    args.types.retain(|t| {
        let new = !seen.contains(t);
        seen.push(*t);
        new
    });
    if args.types.is_empty() {
        bail!("--types names no mount type");
    }
    let image = match &args.image {
        Some(p) if p.is_file() => p.clone(),
        Some(p) => bail!("--image {}: no such file", p.display()),
        None => demo::ensure_local_image()?,
    };
    let base_yaml = bench_util::image_yaml(&image)?;
    let exe = bench_util::build(!args.debug, false)?.join("limactl");
    let mut bench = Bench::new(exe, &args)?;
    let share_dir = bench.share.to_str().context("non-UTF-8 path")?.to_string();

    let tarball = match &args.tarball {
        Some(t) => t.clone(),
        None => {
            let t = bench.work.join("src.tar");
            duct::cmd!("git", "archive", "--format=tar", "-o", &t, "HEAD")
                .dir(crate::project_root())
                .run()
                .context("git archive HEAD")?;
            t
        }
    };
    let plan = Plan {
        args: &args,
        sizes: Sizes {
            mib: args.mib,
            files: args.files,
            tar_files: tar_files(&tarball)?,
        },
        base_yaml: &base_yaml,
        tarball: &tarball,
        share_dir: &share_dir,
    };
    let read_file = bench.share.join(READ_FILE);
    eprintln!(
        "==> bench mounts: {} MiB of random bytes in {}",
        args.mib,
        read_file.display()
    );
    make_random_file(&read_file, args.mib)?;

    let started_at = now();
    let mut state = State {
        notes: vec![
            bench_util::host_line(),
            format!(
                "host side of the mounts: {share_dir} on {}",
                host_fs(&bench.share)
            ),
            format!(
                "tarball: {} ({} files, {:.1} MiB)",
                args.tarball
                    .as_ref()
                    .map_or("git archive HEAD".into(), |t| t.display().to_string()),
                plan.sizes.tar_files,
                std::fs::metadata(&tarball)?.len() as f64 / (1 << 20) as f64
            ),
        ],
        ..State::default()
    };
    for ty in &args.types {
        measure_type(&mut bench, *ty, &plan, &mut state)?;
    }
    state.notes.push(format!(
        "load average at the end: {}",
        bench_util::load_average()
    ));
    drop(bench);
    print_report(&plan, &started_at, &state);
    Ok(())
}

/// What every instance gets and does.
struct Plan<'a> {
    args: &'a Args,
    sizes: Sizes,
    /// The image's lima.yaml, locations absolute.
    base_yaml: &'a serde_yaml::Value,
    /// The tarball on the host, copied to each guest's disk.
    tarball: &'a Path,
    /// The shared directory, the same path on the host and in the guest.
    share_dir: &'a str,
}

/// What the instances measured so far.
#[derive(Default)]
struct State {
    results: Results,
    /// Per mount type: its mount's description, or why it was not measured.
    status: Vec<(MountType, Result<String, String>)>,
    /// The guest disk's description or why it is not measured; `None` until an instance
    /// boots.
    disk: Option<Result<String, String>>,
    notes: Vec<String>,
}

/// Boots `ty`'s instance, measures its mount (and the guest disk, in the first instance that
/// boots) and deletes it. A guest-side failure lands in `state`; only host-side ones return.
fn measure_type(bench: &mut Bench, ty: MountType, plan: &Plan, state: &mut State) -> Result<()> {
    let name = format!("bench-{ty}");
    let yaml = bench.work.join(format!("{name}.yaml"));
    std::fs::write(
        &yaml,
        bench_yaml(plan.base_yaml.clone(), ty, Path::new(plan.share_dir))?,
    )?;
    eprintln!("==> bench mounts: {ty}: limactl start --name {name}");
    let t = Instant::now();
    let ready = bench.start(&name, &yaml).and_then(|_| {
        eprintln!("    ready in {:.1?}", t.elapsed());
        bench
            .put(GUEST_SCRIPT, Input::Bytes(GUEST_PY.as_bytes()))
            .and_then(|_| bench.put(GUEST_TARBALL, Input::File(plan.tarball)))
            .context("preparing the guest")
    });
    if let Err(e) = ready {
        eprintln!("    {ty}: {e:#}");
        state.status.push((ty, Err(format!("{e:#}"))));
        bench.delete();
        return Ok(());
    }
    let mounted = bench
        .probe(plan.share_dir)
        .and_then(|p| check_mount(&p, plan.share_dir, ty));
    match &mounted {
        Ok(d) => eprintln!("    {ty}: mounted as {d}"),
        Err(e) => eprintln!("    {ty}: {e}"),
    }
    let disk_read = if state.disk.is_none() {
        let (disk, read) = prepare_disk(bench, &name, plan.args.mib);
        state.disk = Some(disk);
        read
    } else {
        None
    };
    state.notes.push(format!(
        "load average before {name}'s runs: {}",
        bench_util::load_average()
    ));
    let disk_read_file = format!("{GUEST_DISK_DIR}/{READ_FILE}");
    let share_read_file = format!("{}/{READ_FILE}", plan.share_dir);
    let runs = plan.args.runs;
    for run in 0..runs {
        if let Some(read_ready) = &disk_read {
            eprintln!("==> run {}/{runs}: guest disk", run + 1);
            let target = Target {
                col: None,
                dir: GUEST_DISK_DIR,
                read_file: &disk_read_file,
                read_ready,
            };
            run_jobs(bench, &target, plan, &mut state.results);
        }
        if mounted.is_ok() {
            eprintln!("==> run {}/{runs}: {ty}", run + 1);
            let target = Target {
                col: Some(ty),
                dir: plan.share_dir,
                read_file: &share_read_file,
                read_ready: &Ok(()),
            };
            run_jobs(bench, &target, plan, &mut state.results);
        }
    }
    state.status.push((ty, mounted));
    bench.delete();
    Ok(())
}

/// Checks that the guest disk's directory is on the disk and makes its file for the read
/// job: the disk's description (or why it cannot be measured), and, when it can, whether the
/// read job's file is there.
fn prepare_disk(
    bench: &Bench,
    name: &str,
    mib: u64,
) -> (Result<String, String>, Option<Result<(), String>>) {
    let disk = bench
        .probe(GUEST_DISK_DIR)
        .and_then(|p| check_disk(&p))
        .map(|d| format!("{d}, measured in {name}"));
    match &disk {
        Ok(d) => {
            eprintln!("    guest disk: {d}");
            let file = format!("{GUEST_DISK_DIR}/{READ_FILE}");
            let read = bench
                .guest_job(&["mkfile", &file, &mib.to_string()])
                .map(|_| ());
            (disk, Some(read))
        }
        Err(e) => {
            eprintln!("    guest disk: {e}");
            (disk, None)
        }
    }
}

fn print_report(plan: &Plan, started_at: &str, state: &State) {
    let args = plan.args;
    println!();
    println!(
        "a host directory in the guest by mountType vs the guest's own disk, medians of {} \
         run(s), {} build",
        args.runs,
        if args.debug { "debug" } else { "release" }
    );
    println!("date: {started_at}");
    println!("reproduce: {}", reproduce_line(args));
    println!();
    let outcome = Outcome {
        types: &args.types,
        sizes: plan.sizes,
        status: &state.status,
        disk: state.disk.as_ref(),
    };
    print!("{}", render(&state.results, &outcome));
    for line in [
        "write: 1 MiB writes of random bytes, then fsync; read: 1 MiB reads of a file the host \
         made (the guest disk's was made in the guest), guest caches dropped first;",
        "files: 1 KiB each, guest caches dropped before each phase, create and delete end with \
         sync; untar: tar -xf from the guest disk (tarball in the guest's cache), then sync.",
        "Timed inside the guest (python3 perf_counter_ns); the host's page cache is not dropped.",
    ] {
        println!("{line}");
    }
    for n in &state.notes {
        println!("{n}");
    }
}

/// Where one column's jobs run in the guest.
struct Target<'a> {
    col: Col,
    dir: &'a str,
    read_file: &'a str,
    /// Why the read job cannot run (its file could not be made), if so.
    read_ready: &'a Result<(), String>,
}

/// One run of every job on `t`; failures are recorded, not fatal.
fn run_jobs(bench: &Bench, t: &Target, plan: &Plan, results: &mut Results) {
    let mib = plan.args.mib.to_string();
    let files = plan.args.files.to_string();
    let sizes = &plan.sizes;
    for job in JOBS {
        let argv: Vec<&str> = match job {
            Job::Write => vec!["write", t.dir, &mib],
            Job::Read => vec!["read", t.read_file],
            Job::Files => vec!["files", t.dir, &files],
            Job::Untar => vec!["untar", GUEST_TARBALL, t.dir],
        };
        let figures = match (job, t.read_ready) {
            (Job::Read, Err(e)) => Err(format!("making the guest disk's file: {e}")),
            _ => bench
                .guest_job(&argv)
                .and_then(|out| parse_samples(&out))
                .and_then(|samples| job_figures(job, &samples)),
        };
        match figures {
            Ok(figures) => {
                for (row, v) in figures {
                    eprintln!("    {:<30} {}", row.label(sizes), fmt_value(v));
                    results.entry((row, t.col)).or_default().push(Ok(v));
                }
            }
            Err(e) => {
                for row in job.rows() {
                    eprintln!("    {:<30} error: {e}", row.label(sizes));
                    results
                        .entry((*row, t.col))
                        .or_default()
                        .push(Err(e.clone()));
                }
            }
        }
    }
}

/// The host filesystem holding `dir` ("SOURCE FSTYPE"), for the notes.
fn host_fs(dir: &Path) -> String {
    duct::cmd!("findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", dir)
        .stderr_null()
        .read()
        .or_else(|_| duct::cmd!("stat", "-f", "-c", "%T", dir).read())
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "an unknown filesystem".into())
}

/// A figure with about three significant digits (at most six decimals).
fn fmt_value(v: f64) -> String {
    let a = v.abs();
    let decimals = if a >= 100.0 || a == 0.0 {
        0
    } else {
        // 2 for [1, 10), 3 for [0.1, 1), ...
        (2 - a.log10().floor() as i32).clamp(0, 6) as usize
    };
    format!("{v:.decimals$}")
}

fn col_header(c: Col) -> &'static str {
    c.map_or("guest disk", MountType::as_str)
}

/// What the report prints besides the figures.
struct Outcome<'a> {
    types: &'a [MountType],
    sizes: Sizes,
    /// Per mount type: its mount's description, or why it was not measured.
    status: &'a [(MountType, Result<String, String>)],
    /// The guest disk's description, or why it was not measured; `None` if no instance booted.
    disk: Option<&'a Result<String, String>>,
}

/// The table (medians, ratios against the guest disk), the fastest mount types, one line per
/// column saying what it measured or why not, footnotes for partly failed cells and the
/// errors they refer to.
fn render(results: &Results, o: &Outcome) -> String {
    let mut out = String::new();
    let mut errors: Vec<String> = vec![];
    let mut partial: Vec<String> = vec![];
    let cols: Vec<Col> = std::iter::once(None)
        .chain(o.types.iter().copied().map(Some))
        .collect();
    let ratio_headers: Vec<String> = o.types.iter().map(|t| format!("{t}/disk")).collect();
    let label_width = 30;
    out.push_str(&format!("{:<label_width$}", ""));
    for c in &cols {
        out.push_str(&format!(" {:>13}", col_header(*c)));
    }
    for h in &ratio_headers {
        out.push_str(&format!(" {h:>w$}", w = h.len().max(8)));
    }
    out.push('\n');
    for row in ROWS {
        out.push_str(&format!("{:<label_width$}", row.label(&o.sizes)));
        let mut med: HashMap<Col, f64> = HashMap::new();
        for c in &cols {
            let runs = results.get(&(row, *c)).map_or(&[][..], Vec::as_slice);
            let text = match bench_util::summarize(runs) {
                None => "n/a".to_string(),
                Some(Err(e)) => {
                    let i = errors.iter().position(|x| *x == e).unwrap_or_else(|| {
                        errors.push(e.clone());
                        errors.len() - 1
                    });
                    format!("error[{}]", i + 1)
                }
                Some(Ok((v, failed))) => {
                    med.insert(*c, v);
                    if failed.is_empty() {
                        fmt_value(v)
                    } else {
                        partial.push(format!(
                            "{} / {}: {} of {} runs failed (median of the rest): {}",
                            row.name(&o.sizes),
                            col_header(*c),
                            failed.len(),
                            runs.len(),
                            failed.join("; ")
                        ));
                        format!("{}*", fmt_value(v))
                    }
                }
            };
            out.push_str(&format!(" {text:>13}"));
        }
        for (t, h) in o.types.iter().zip(&ratio_headers) {
            let text = match (med.get(&Some(*t)), med.get(&None)) {
                (Some(x), Some(d)) if *d != 0.0 => fmt_value(x / d),
                _ => "-".into(),
            };
            out.push_str(&format!(" {text:>w$}", w = h.len().max(8)));
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&fastest_line(
        results,
        o.types,
        Row::FilesTotal,
        &format!(
            "metadata (create, stat, delete {} files; median total)",
            o.sizes.files
        ),
    ));
    out.push_str(&fastest_line(
        results,
        o.types,
        Row::Untar,
        &format!("untar ({} files)", o.sizes.tar_files),
    ));
    match o.disk {
        None => out.push_str("guest disk: not measured: no instance started\n"),
        Some(Ok(d)) => out.push_str(&format!("guest disk: {d}\n")),
        Some(Err(e)) => out.push_str(&format!("guest disk: not measured: {e}\n")),
    }
    for (t, s) in o.status {
        match s {
            Ok(d) => out.push_str(&format!("{t}: mounted as {d}\n")),
            Err(e) => out.push_str(&format!("{t}: not measured: {e}\n")),
        }
    }
    out.push_str(
        "MB/s (10^6 bytes/s): higher is better; seconds: lower is better. Ratios are of \
         medians, mount / guest disk.\n",
    );
    for p in &partial {
        out.push_str(&format!("* {p}\n"));
    }
    for (i, e) in errors.iter().enumerate() {
        out.push_str(&format!("error[{}]: {e}\n", i + 1));
    }
    out
}

/// "fastest for WHAT: TYPE X s (then ...; guest disk Y s)", lowest median first.
fn fastest_line(results: &Results, types: &[MountType], row: Row, what: &str) -> String {
    let median_of = |c: Col| {
        let runs = results.get(&(row, c))?;
        bench_util::summarize(runs)?.ok().map(|(v, _)| v)
    };
    let mut meds: Vec<(MountType, f64)> = types
        .iter()
        .filter_map(|t| median_of(Some(*t)).map(|v| (*t, v)))
        .collect();
    meds.sort_by(|a, b| a.1.total_cmp(&b.1));
    let Some(((best, v), rest)) = meds.split_first() else {
        return format!("fastest for {what}: no mount type was measured\n");
    };
    let mut line = format!("fastest for {what}: {best} {} s", fmt_value(*v));
    if !rest.is_empty() {
        let rest: Vec<String> = rest
            .iter()
            .map(|(t, v)| format!("{t} {} s", fmt_value(*v)))
            .collect();
        line.push_str(&format!(", then {}", rest.join(", ")));
    }
    if let Some(d) = median_of(None) {
        line.push_str(&format!("; guest disk {} s", fmt_value(d)));
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        let mut all = vec!["bench-mounts"];
        all.extend_from_slice(argv);
        Cli::try_parse_from(all).map(|c| c.args)
    }

    #[test]
    fn options() {
        let a = parse(&[]).unwrap();
        assert_eq!(
            a.types,
            [
                MountType::NineP,
                MountType::Virtiofs,
                MountType::ReverseSshfs
            ]
        );
        assert_eq!((a.runs, a.mib, a.files), (3, 256, 2000));
        let a = parse(&["--types", "virtiofs,9p", "--runs", "5"]).unwrap();
        assert_eq!(a.types, [MountType::Virtiofs, MountType::NineP]);
        assert_eq!(a.runs, 5);
        assert!(parse(&["--types", "wsl2"]).is_err());
        assert!(parse(&["--types", "9p,nfs"]).is_err());
        assert_eq!(
            reproduce_line(&parse(&["--types", "9p", "--debug"]).unwrap()),
            "cargo xtask bench mounts --runs 3 --types 9p --mib 256 --files 2000 \
             --job-timeout 900 --debug"
        );
    }

    #[test]
    fn samples_from_the_guest_output() {
        let out = "Warning: something\nRESULT create 1500000000\nRESULT stat 250000000\n\
                   RESULT delete 750000000\n";
        let s = parse_samples(out).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            Sample {
                name: "create".into(),
                ns: 1_500_000_000,
                bytes: None
            }
        );
        assert_eq!(
            job_figures(Job::Files, &s).unwrap(),
            [
                (Row::Create, 1.5),
                (Row::Stat, 0.25),
                (Row::Delete, 0.75),
                (Row::FilesTotal, 2.5)
            ]
        );
        // 256 MiB in 2 s: 134.2 MB/s (10^6 bytes).
        let s = parse_samples("RESULT write 2000000000 268435456\n").unwrap();
        let f = job_figures(Job::Write, &s).unwrap();
        assert_eq!(f[0].0, Row::Write);
        assert!((f[0].1 - 134.217_728).abs() < 1e-6, "{f:?}");

        assert!(job_figures(Job::Read, &s)
            .unwrap_err()
            .contains("no \"read\" result"));
        let no_bytes = parse_samples("RESULT read 5\n").unwrap();
        assert!(job_figures(Job::Read, &no_bytes)
            .unwrap_err()
            .contains("no byte count"));
        for bad in [
            "RESULT write\n",
            "RESULT write x\n",
            "RESULT write 5 y\n",
            "RESULT write 5 6 7\n",
            "RESULT write 0 6\n",
        ] {
            assert!(parse_samples(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_samples("no results\n").unwrap(), []);
    }

    const SHARE: &str = "/tmp/lima-bm-1-share";

    fn probe(line: &str) -> Probe {
        parse_probe(&format!("noise\nPROBE {line}\n")).unwrap()
    }

    #[test]
    fn mounts_are_checked_in_the_guest() {
        let p = probe(
            "mountpoint=/tmp/lima-bm-1-share fstype=9p options=rw,sync,trans=virtio \
             filesystems=9p modules=9p,fuse sshfs=no kernel=6.1.0-28-cloud-amd64",
        );
        assert_eq!(p.filesystems, ["9p"]);
        assert_eq!(p.modules, ["9p", "fuse"]);
        assert!(!p.sshfs);
        assert_eq!(
            check_mount(&p, SHARE, MountType::NineP).unwrap(),
            "9p (rw,sync,trans=virtio)"
        );
        // Mounted, but not by the type asked for.
        assert!(check_mount(&p, SHARE, MountType::Virtiofs).is_err());

        // nofail: the boot went on without the 9p mount.
        let p = probe(
            "mountpoint=/ fstype=ext4 options=rw,relatime filesystems= modules=fuse \
             sshfs=no kernel=6.1.0-28-cloud-amd64",
        );
        assert_eq!(p.filesystems, Vec::<String>::new());
        assert_eq!(
            check_mount(&p, SHARE, MountType::NineP).unwrap_err(),
            "not mounted: in the guest /tmp/lima-bm-1-share is on / (ext4), not a 9p mount; \
             the guest kernel 6.1.0-28-cloud-amd64 has no 9p (neither built in nor a module)"
        );
        assert!(check_mount(&p, SHARE, MountType::ReverseSshfs)
            .unwrap_err()
            .ends_with("; sshfs is not installed in the guest"));
        let p =
            probe("mountpoint=/ fstype=ext4 options=rw filesystems=virtiofs sshfs=yes kernel=k");
        assert!(check_mount(&p, SHARE, MountType::Virtiofs)
            .unwrap_err()
            .ends_with("may say why"));
        assert!(check_mount(&p, SHARE, MountType::ReverseSshfs)
            .unwrap_err()
            .ends_with("has no fuse"));
        let p = probe(&format!(
            "mountpoint={SHARE} fstype=fuse.sshfs options=rw,nosuid filesystems=fuse sshfs=yes kernel=k"
        ));
        assert!(check_mount(&p, SHARE, MountType::ReverseSshfs).is_ok());

        assert!(parse_probe("PROBE fstype=ext4\n").is_err());
        assert!(parse_probe("Traceback\nOSError: x\n")
            .unwrap_err()
            .contains("OSError: x"));
    }

    #[test]
    fn the_guest_disk_must_be_a_disk() {
        let p = probe("mountpoint=/ fstype=ext4 options=rw,relatime kernel=k");
        assert_eq!(
            check_disk(&p).unwrap(),
            "/var/tmp/lima-bench/disk on / (ext4 rw,relatime)"
        );
        for fs in ["tmpfs", "virtiofs", "fuse.sshfs"] {
            let p = probe(&format!(
                "mountpoint=/var/tmp fstype={fs} options=rw kernel=k"
            ));
            assert!(check_disk(&p).is_err(), "{fs}");
        }
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\n\nb\n c \nd\n", 3), "b | c | d");
        assert_eq!(tail("a\n", 3), "a");
        assert_eq!(tail("\n \n", 3), "(no output)");
    }

    #[test]
    fn yaml_gets_the_mount_type_and_one_writable_mount() {
        let base: serde_yaml::Value =
            serde_yaml::from_str("vmType: qemu\ncpus: 2\nmounts: []\n").unwrap();
        let text = bench_yaml(base, MountType::ReverseSshfs, Path::new(SHARE)).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["vmType"], "qemu");
        assert_eq!(v["cpus"], 2);
        assert_eq!(v["mountType"], "reverse-sshfs");
        assert_eq!(v["mounts"].as_sequence().unwrap().len(), 1);
        assert_eq!(v["mounts"][0]["location"], SHARE);
        assert_eq!(v["mounts"][0]["writable"], true);
    }

    #[test]
    fn tarball_files_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        for (name, kind) in [
            ("src/", tar::EntryType::Directory),
            ("src/a.rs", tar::EntryType::Regular),
            ("src/b.rs", tar::EntryType::Regular),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(0);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, std::io::empty()).unwrap();
        }
        b.finish().unwrap();
        drop(b);
        assert_eq!(tar_files(&path).unwrap(), 2);
    }

    #[test]
    fn values() {
        assert_eq!(fmt_value(1234.4), "1234");
        assert_eq!(fmt_value(45.67), "45.7");
        assert_eq!(fmt_value(4.567), "4.57");
        assert_eq!(fmt_value(10.0), "10.0");
        assert_eq!(fmt_value(1.0), "1.00");
        assert_eq!(fmt_value(0.1), "0.100");
        assert_eq!(fmt_value(0.5), "0.500");
        assert_eq!(fmt_value(0.01234), "0.0123");
        assert_eq!(fmt_value(0.000_123_4), "0.000123");
        assert_eq!(fmt_value(0.0), "0");
    }

    fn put(r: &mut Results, row: Row, col: Col, runs: &[Result<f64, &str>]) {
        r.insert(
            (row, col),
            runs.iter().map(|x| x.map_err(str::to_string)).collect(),
        );
    }

    /// virtiofs and reverse-sshfs measured (one run of a cell failed, one cell failed every
    /// time), 9p not mounted.
    #[test]
    fn report() {
        use MountType::*;
        let mut r = Results::new();
        let disk = None;
        let vfs = Some(Virtiofs);
        let sshfs = Some(ReverseSshfs);
        put(&mut r, Row::Write, disk, &[Ok(200.0), Ok(220.0), Ok(210.0)]);
        put(&mut r, Row::Write, vfs, &[Ok(100.0), Ok(105.0), Ok(95.0)]);
        put(
            &mut r,
            Row::Write,
            sshfs,
            &[Ok(20.0), Err("ssh died"), Ok(30.0)],
        );
        put(&mut r, Row::Read, disk, &[Ok(400.0)]);
        put(&mut r, Row::Read, vfs, &[Ok(300.0)]);
        put(
            &mut r,
            Row::Read,
            sshfs,
            &[Err("tar: boom"), Err("tar: boom")],
        );
        for (col, c, s, d) in [
            (disk, 0.2, 0.05, 0.1),
            (vfs, 1.0, 0.5, 0.5),
            (sshfs, 4.0, 2.0, 3.0),
        ] {
            put(&mut r, Row::Create, col, &[Ok(c)]);
            put(&mut r, Row::Stat, col, &[Ok(s)]);
            put(&mut r, Row::Delete, col, &[Ok(d)]);
            put(&mut r, Row::FilesTotal, col, &[Ok(c + s + d)]);
        }
        put(&mut r, Row::Untar, disk, &[Ok(0.5)]);
        put(&mut r, Row::Untar, vfs, &[Ok(3.0)]);
        put(&mut r, Row::Untar, sshfs, &[Ok(1.5)]);
        let status = [
            (NineP, Err("not mounted: no 9p".to_string())),
            (Virtiofs, Ok("virtiofs (rw,relatime)".to_string())),
            (ReverseSshfs, Ok("fuse.sshfs (rw)".to_string())),
        ];
        let disk_status =
            Ok("/var/tmp/lima-bench/disk on / (ext4 rw), measured in bench-9p".into());
        let o = Outcome {
            types: &[NineP, Virtiofs, ReverseSshfs],
            sizes: Sizes {
                mib: 256,
                files: 2000,
                tar_files: 342,
            },
            status: &status,
            disk: Some(&disk_status),
        };
        let want = [
            "                                  guest disk            9p      virtiofs \
             reverse-sshfs  9p/disk virtiofs/disk reverse-sshfs/disk",
            "seq write 256 MiB         MB/s           210           n/a           100         \
             25.0*        -         0.476              0.119",
            "seq read 256 MiB          MB/s           400           n/a           300      \
             error[1]        -         0.750                  -",
            "create 2000 files            s         0.200           n/a          1.00          \
             4.00        -          5.00               20.0",
            "stat 2000 files              s        0.0500           n/a         0.500          \
             2.00        -          10.0               40.0",
            "delete 2000 files            s         0.100           n/a         0.500          \
             3.00        -          5.00               30.0",
            "create+stat+delete           s         0.350           n/a          2.00          \
             9.00        -          5.71               25.7",
            "untar 342 files              s         0.500           n/a          3.00          \
             1.50        -          6.00               3.00",
            "",
            "fastest for metadata (create, stat, delete 2000 files; median total): virtiofs \
             2.00 s, then reverse-sshfs 9.00 s; guest disk 0.350 s",
            "fastest for untar (342 files): reverse-sshfs 1.50 s, then virtiofs 3.00 s; guest \
             disk 0.500 s",
            "guest disk: /var/tmp/lima-bench/disk on / (ext4 rw), measured in bench-9p",
            "9p: not measured: not mounted: no 9p",
            "virtiofs: mounted as virtiofs (rw,relatime)",
            "reverse-sshfs: mounted as fuse.sshfs (rw)",
            "MB/s (10^6 bytes/s): higher is better; seconds: lower is better. Ratios are of \
             medians, mount / guest disk.",
            "* seq write 256 MiB (MB/s) / reverse-sshfs: 1 of 3 runs failed (median of the \
             rest): ssh died",
            "error[1]: tar: boom",
            "",
        ]
        .join("\n");
        let got = render(&r, &o);
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn nothing_measured() {
        let r = Results::new();
        assert_eq!(
            fastest_line(&r, &[MountType::NineP], Row::FilesTotal, "metadata"),
            "fastest for metadata: no mount type was measured\n"
        );
        let o = Outcome {
            types: &[MountType::NineP],
            sizes: Sizes {
                mib: 1,
                files: 1,
                tar_files: 1,
            },
            status: &[(MountType::NineP, Err("limactl start failed: x".into()))],
            disk: None,
        };
        let got = render(&r, &o);
        assert!(
            got.contains("guest disk: not measured: no instance started\n"),
            "{got}"
        );
        assert!(
            got.contains("9p: not measured: limactl start failed: x\n"),
            "{got}"
        );
    }

    /// The guest script run on the host, in a temporary directory, with a `sudo` that does
    /// nothing (so no cache of the host is dropped): every job's output parses into figures.
    #[test]
    fn guest_script_output_parses() {
        if duct::cmd!("python3", "-c", "").stderr_null().run().is_err() {
            eprintln!("skipped: no python3 on this host");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        let dir = tmp.path().join("d");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(bin.join("sudo"), "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(bin.join("sudo"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = tmp.path().join("bench.py");
        std::fs::write(&script, GUEST_PY).unwrap();
        let tarball = tmp.path().join("src.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
        for i in 0..5 {
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("src/f{i}"), &b"abc"[..])
                .unwrap();
        }
        b.into_inner().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let d = dir.to_str().unwrap();
        let read_file = format!("{d}/{READ_FILE}");
        let run = |argv: &[&str]| -> String {
            duct::cmd(
                "python3",
                std::iter::once(script.to_str().unwrap()).chain(argv.iter().copied()),
            )
            .env("PATH", &path)
            .stderr_to_stdout()
            .read()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
        };
        let p = parse_probe(&run(&["probe", d])).unwrap();
        assert!(!p.mountpoint.is_empty() && !p.fstype.is_empty(), "{p:?}");
        run(&["mkfile", &read_file, "2"]);
        assert_eq!(std::fs::metadata(&read_file).unwrap().len(), 2 << 20);
        let tar = tarball.to_str().unwrap();
        for (job, argv) in [
            (Job::Write, vec!["write", d, "2"]),
            (Job::Read, vec!["read", &read_file]),
            (Job::Files, vec!["files", d, "20"]),
            (Job::Untar, vec!["untar", tar, d]),
        ] {
            let out = run(&argv);
            let figures = parse_samples(&out)
                .and_then(|s| job_figures(job, &s))
                .unwrap_or_else(|e| panic!("{job:?}: {e}\n{out}"));
            let rows: Vec<Row> = figures.iter().map(|f| f.0).collect();
            assert_eq!(rows, job.rows(), "{job:?}");
            assert!(figures.iter().all(|f| f.1 > 0.0), "{job:?}: {figures:?}");
        }
        // Each job cleans up after itself; only the read job's file is left.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [READ_FILE]);
    }
}
