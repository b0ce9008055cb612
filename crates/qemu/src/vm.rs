//! Running qemu: disks with qemu-img, the process itself, and a graceful stop through QMP.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use limatype::filenames;

use crate::qmp;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {stderr}")]
    Failed { program: String, stderr: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("qemu exited during startup ({status}); last lines of {log}:\n{tail}")]
    EarlyExit {
        status: String,
        log: String,
        tail: String,
    },
    #[error("qemu did not write {0} in time")]
    NoPidFile(String),
    #[error("image {path}: unsupported format {format:?} (qcow2 and raw can be used)")]
    UnsupportedFormat { path: PathBuf, format: String },
}

pub type Result<T, E = VmError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> VmError + '_ {
    move |source| VmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) async fn run_tool(program: &str, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| VmError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(VmError::Failed {
            program: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The disk format `qemu-img info` reports (`qcow2`, `raw`, `iso`...).
pub async fn image_format(path: &Path) -> Result<String> {
    let p = path.display().to_string();
    let json = run_tool("qemu-img", &["info", "--output=json", &p]).await?;
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| VmError::Failed {
        program: format!("qemu-img info {p}"),
        stderr: e.to_string(),
    })?;
    Ok(v["format"].as_str().unwrap_or("").to_string())
}

/// The virtual size in bytes.
pub async fn virtual_size(path: &Path) -> Result<u64> {
    let p = path.display().to_string();
    let json = run_tool("qemu-img", &["info", "--output=json", &p]).await?;
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| VmError::Failed {
        program: format!("qemu-img info {p}"),
        stderr: e.to_string(),
    })?;
    Ok(v["virtual-size"].as_u64().unwrap_or(0))
}

/// `diffdisk`: a qcow2 overlay on the existing `basedisk` (qcow2 or raw; other formats are
/// refused), grown to `disk_bytes` (never shrunk below the base). Does nothing if `diffdisk`
/// exists.
pub async fn create_diffdisk(inst_dir: &Path, disk_bytes: u64) -> Result<()> {
    let diff = inst_dir.join(filenames::DIFF_DISK);
    if diff.exists() {
        return Ok(());
    }
    let base = inst_dir.join(filenames::BASE_DISK);
    let format = image_format(&base).await?;
    if format != "qcow2" && format != "raw" {
        return Err(VmError::UnsupportedFormat { path: base, format });
    }
    let size = disk_bytes.max(virtual_size(&base).await?);
    let diff_tmp = inst_dir.join("diffdisk.tmp");
    // A relative backing path keeps the instance dir movable.
    run_tool(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            &format,
            "-b",
            filenames::BASE_DISK,
            &diff_tmp.display().to_string(),
            &size.to_string(),
        ],
    )
    .await?;
    tokio::fs::rename(&diff_tmp, &diff)
        .await
        .map_err(io_err(&diff))
}

/// Why [`spawn_logged`] failed: the log file, or the program itself.
pub(crate) enum SpawnError {
    Log(std::io::Error),
    Spawn(std::io::Error),
}

/// Starts one of the instance's daemons (qemu, virtiofsd) in the instance dir: stdin closed,
/// stdout and stderr into `log` (created anew), left running when the handle is dropped.
pub(crate) fn spawn_logged(
    program: &Path,
    args: &[String],
    inst_dir: &Path,
    log: &Path,
) -> std::result::Result<tokio::process::Child, SpawnError> {
    let out = std::fs::File::create(log).map_err(SpawnError::Log)?;
    let err = out.try_clone().map_err(SpawnError::Log)?;
    tokio::process::Command::new(program)
        .args(args)
        .current_dir(inst_dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(false)
        .spawn()
        .map_err(SpawnError::Spawn)
}

/// A started qemu: the child process (when we are its parent) and where its files are.
pub struct Running {
    pub child: tokio::process::Child,
    pub pid: u32,
    /// The virtiofsd daemons serving qemu's virtiofs mounts (set by the caller after spawn).
    pub virtiofsd: Vec<crate::virtiofsd::Daemon>,
}

/// Starts qemu in the background, logging to `qemu.stderr.log`; returns once qemu has written
/// its pid file and QMP socket, or fails with the tail of the log if it exits first.
pub async fn spawn(program: &str, args: &[String], inst_dir: &Path) -> Result<Running> {
    let log_path = inst_dir.join(QEMU_LOG);
    let pid_file = inst_dir.join(filenames::QEMU_PID);
    let qmp_sock = inst_dir.join(filenames::QMP_SOCK);
    let _ = std::fs::remove_file(&pid_file);
    tracing::info!("starting {program} {}", args.join(" "));
    let mut child =
        spawn_logged(Path::new(program), args, inst_dir, &log_path).map_err(|e| match e {
            SpawnError::Log(e) => io_err(&log_path)(e),
            SpawnError::Spawn(source) => VmError::Spawn {
                program: program.to_string(),
                source,
            },
        })?;
    let pid = child.id().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().map_err(io_err(&log_path))? {
            return Err(VmError::EarlyExit {
                status: status.to_string(),
                log: log_path.display().to_string(),
                tail: tail_lines(&log_path, 20),
            });
        }
        let pid_written = std::fs::read_to_string(&pid_file)
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false);
        if pid_written && qmp_sock.exists() {
            return Ok(Running {
                child,
                pid,
                virtiofsd: Vec::new(),
            });
        }
        if Instant::now() > deadline {
            let _ = child.start_kill();
            return Err(VmError::NoPidFile(pid_file.display().to_string()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// qemu's own output (warnings, errors), kept in the instance dir.
pub const QEMU_LOG: &str = "qemu.stderr.log";

/// The last `n` lines of a text file ("" if unreadable).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether the qemu named by the instance's pid file is alive (it may belong to another
/// process's driver, e.g. the host agent's, while `limactl` asks).
pub fn qemu_running(inst_dir: &Path) -> bool {
    qemu_pid(inst_dir).is_some_and(osutil::pid_alive)
}

/// The pid in `qemu.pid`; never 0, 1 or negative (kill(-1) would signal every process).
fn qemu_pid(inst_dir: &Path) -> Option<i32> {
    let s = std::fs::read_to_string(inst_dir.join(filenames::QEMU_PID)).ok()?;
    s.trim().parse().ok().filter(|&pid: &i32| pid > 1)
}

/// Stops qemu: ACPI power-down through QMP, then QMP `quit` after `grace`, then SIGKILL.
/// `child` is reaped when given (we started it); otherwise the pid file is followed.
pub async fn stop(
    inst_dir: &Path,
    mut child: Option<&mut tokio::process::Child>,
    grace: Duration,
) -> Result<()> {
    let pid = child
        .as_ref()
        .and_then(|c| c.id().map(|p| p as i32))
        .or_else(|| qemu_pid(inst_dir));
    let qmp_sock = inst_dir.join(filenames::QMP_SOCK);
    let gone = async |child: &mut Option<&mut tokio::process::Child>, within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            let exited = match child {
                Some(c) => c.try_wait().ok().flatten().is_some(),
                None => pid.is_none_or(|p| !osutil::pid_alive(p)),
            };
            if exited || Instant::now() > deadline {
                return exited;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if gone(&mut child, Duration::ZERO).await {
        cleanup(inst_dir);
        return Ok(());
    }
    match qmp::system_powerdown(&qmp_sock).await {
        Ok(()) => {
            if gone(&mut child, grace).await {
                cleanup(inst_dir);
                return Ok(());
            }
            tracing::warn!("guest did not power off within {grace:?}; quitting qemu");
        }
        Err(e) => tracing::warn!("graceful power-down failed: {e}"),
    }
    if qmp::quit(&qmp_sock).await.is_ok() && gone(&mut child, Duration::from_secs(5)).await {
        cleanup(inst_dir);
        return Ok(());
    }
    if let Some(p) = pid {
        tracing::warn!("killing qemu (pid {p})");
        // SAFETY: plain signal to a pid we started or read from its pid file.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    gone(&mut child, Duration::from_secs(5)).await;
    cleanup(inst_dir);
    Ok(())
}

/// Removes what a stopped qemu leaves behind.
pub fn cleanup(inst_dir: &Path) {
    for f in [
        filenames::QEMU_PID,
        filenames::QMP_SOCK,
        filenames::SERIAL_SOCK,
        filenames::GUEST_AGENT_SOCK,
    ] {
        let _ = std::fs::remove_file(inst_dir.join(f));
    }
    crate::virtiofsd::cleanup(inst_dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance dir under `dir` with `image` downloaded as its basedisk, then its disks.
    async fn disks_from(dir: &Path, inst: &str, image: &Path, disk_bytes: u64) -> Result<PathBuf> {
        let inst = dir.join(inst);
        std::fs::create_dir_all(&inst).unwrap();
        std::fs::copy(image, inst.join(filenames::BASE_DISK)).unwrap();
        create_diffdisk(&inst, disk_bytes).await.map(|()| inst)
    }

    #[tokio::test]
    async fn disks_from_qcow2_and_raw_images() {
        for fmt in ["qcow2", "raw"] {
            let dir = tempfile::tempdir().unwrap();
            let img = dir.path().join(format!("img.{fmt}"));
            run_tool(
                "qemu-img",
                &["create", "-q", "-f", fmt, img.to_str().unwrap(), "64M"],
            )
            .await
            .unwrap();
            let inst = disks_from(dir.path(), "inst", &img, 1 << 30).await.unwrap();
            assert_eq!(image_format(&inst.join("basedisk")).await.unwrap(), fmt);
            let diff = inst.join("diffdisk");
            assert_eq!(image_format(&diff).await.unwrap(), "qcow2");
            assert_eq!(virtual_size(&diff).await.unwrap(), 1 << 30);
            let info = run_tool(
                "qemu-img",
                &["info", "--output=json", diff.to_str().unwrap()],
            )
            .await
            .unwrap();
            assert!(
                info.contains("\"backing-filename\": \"basedisk\""),
                "{info}"
            );
            // Idempotent: a second call keeps the existing disk.
            create_diffdisk(&inst, 2 << 30).await.unwrap();
            assert_eq!(virtual_size(&diff).await.unwrap(), 1 << 30);
        }
    }

    #[tokio::test]
    async fn disk_never_smaller_than_image_and_bad_format_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img");
        run_tool(
            "qemu-img",
            &["create", "-q", "-f", "qcow2", img.to_str().unwrap(), "2G"],
        )
        .await
        .unwrap();
        let inst = disks_from(dir.path(), "inst", &img, 1 << 30).await.unwrap();
        assert_eq!(virtual_size(&inst.join("diffdisk")).await.unwrap(), 2 << 30);

        let vmdk = dir.path().join("x.vmdk");
        run_tool(
            "qemu-img",
            &["create", "-q", "-f", "vmdk", vmdk.to_str().unwrap(), "1M"],
        )
        .await
        .unwrap();
        let e = disks_from(dir.path(), "inst2", &vmdk, 1 << 30)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("vmdk") && e.contains("basedisk"), "{e}");
    }

    #[test]
    fn pid_file_never_names_init_or_every_process() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            ("-1", None),
            ("0", None),
            ("1", None),
            ("4242\n", Some(4242)),
        ] {
            std::fs::write(dir.path().join(filenames::QEMU_PID), text).unwrap();
            assert_eq!(qemu_pid(dir.path()), want, "{text:?}");
        }
    }

    #[tokio::test]
    async fn early_exit_reports_log() {
        let dir = tempfile::tempdir().unwrap();
        let e = spawn("qemu-system-x86_64", &["-no-such-flag".into()], dir.path())
            .await
            .err()
            .expect("qemu accepted a bad flag")
            .to_string();
        assert!(e.contains("no-such-flag"), "{e}");
    }
}
