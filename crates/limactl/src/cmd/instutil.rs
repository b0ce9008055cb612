//! Helpers shared by the instance subcommands (start, stop, shell, delete, list).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use limatype::{filenames, Instance};

/// Inspects an existing instance, with a clear error if there is none.
pub fn inspect(name: &str) -> Result<Instance> {
    match store::inspect(name) {
        Err(store::StoreError::NotFound(_)) => {
            anyhow::bail!("instance {name:?} does not exist, run `limactl create {name}` to create a new instance")
        }
        other => Ok(other?),
    }
}

/// The last `n` lines of a file, indented, or a note that it is empty/missing.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return format!("  ({} is empty or missing)", path.display());
    }
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The log excerpts that explain a failed start.
pub fn failure_logs(dir: &Path) -> String {
    let mut s = String::new();
    for (file, n) in [
        (filenames::HOST_AGENT_STDERR_LOG, 20),
        ("qemu.stderr.log", 10),
        (filenames::SERIAL_LOG, 20),
    ] {
        let p = dir.join(file);
        if p.exists() {
            s.push_str(&format!(
                "--- last lines of {} ---\n{}\n",
                p.display(),
                tail(&p, n)
            ));
        }
    }
    s
}

/// Sends `sig` to `pid` (no error if it is already gone).
pub fn signal(pid: i64, sig: i32) {
    if pid > 0 {
        // SAFETY: plain kill(2) on a pid read from our own pid files.
        unsafe { libc::kill(pid as i32, sig) };
    }
}

/// Waits until `pid` is gone; false on timeout.
pub fn wait_gone(pid: i64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while store::pid_alive(pid as i32) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Ends whatever runs for an instance at once (SIGKILL to host agent and driver), then
/// removes pid files, sockets and the ssh control master.
pub fn force_stop(inst: &Instance) -> Result<()> {
    let dir = Path::new(&inst.dir);
    stop_ssh_master(inst);
    for pid in [inst.host_agent_pid, inst.driver_pid] {
        signal(pid, libc::SIGKILL);
    }
    for pid in [inst.host_agent_pid, inst.driver_pid] {
        wait_gone(pid, Duration::from_secs(10));
    }
    store::remove_stale_runtime_files(dir).with_context(|| format!("cleaning {}", dir.display()))
}

/// `ssh -O exit` on the instance's control socket, if one is there.
pub fn stop_ssh_master(inst: &Instance) {
    let dir = Path::new(&inst.dir);
    if !dir.join(filenames::SSH_SOCK).exists() {
        return;
    }
    let cfg = dir.join(filenames::SSH_CONFIG);
    let _ = std::process::Command::new("ssh")
        .args(["-O", "exit"])
        .args(sshutil::args_from_config(&cfg, &inst.name))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_file(dir.join(filenames::SSH_SOCK));
}

/// Whether anything of the instance is still alive (host agent or driver).
pub fn anything_alive(inst: &Instance) -> bool {
    inst.host_agent_pid > 0 || inst.driver_pid > 0
}
