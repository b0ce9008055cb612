//! The instance commands' flows: inspect (as `limactl list` shows it), start, stop and delete.
//! Each takes `say` for the lines a user sees; the caller decides where they go.

use std::path::Path;
use std::time::{Duration, Instant};

use hostagent::phases::{Clock, Phase};
use limatype::{filenames, Instance, Status};
use registry::Registry;

use crate::agentproc::{self, Outcome};
use crate::{open, InstanceError, Opened, Result, SshPort};

/// An instance as `limactl list` shows it: the values the VM runs with (the config filled by
/// the defaults, not the raw file) and its status from pid files. Starts no driver.
pub fn inspect(name: &str) -> Result<Instance> {
    let loader = |path: &Path| {
        let dir = path.parent().unwrap_or(Path::new("."));
        let config = crate::load::load_instance(dir, name)?;
        if config.vm_type().is_some() {
            return Ok(config);
        }
        // Made before `create` recorded the driver it chose: that is the host's first.
        let mut yaml = config.into_yaml();
        yaml.vm_type = registry::preferred_order(limatype::Os::host())
            .first()
            .map(|s| s.to_string());
        Ok(limatype::Filled::try_from(yaml)?)
    };
    match store::inspect(name, &loader) {
        Err(store::StoreError::NotFound(_)) => Err(InstanceError::NotFound(name.to_string())),
        // Deleted while we read it (its files went one by one): it does not exist any more.
        Ok(_) if !store::instance_dir(name)?.is_dir() => {
            Err(InstanceError::NotFound(name.to_string()))
        }
        other => Ok(other?),
    }
}

/// How `start` runs the host agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// Spawned in the background and followed until ready, failed, or `timeout`;
    /// `progress`: the guest's cloud-init output shown meanwhile (`--progress`).
    Background { timeout: Duration, progress: bool },
    /// This process becomes the host agent (`start --foreground`); `start` returns only if
    /// that fails.
    Foreground { progress: bool },
}

/// How `start` ended.
#[derive(Debug, PartialEq)]
pub enum Started {
    /// Another host agent had already reported the instance ready.
    AlreadyRunning,
    Ready {
        ssh_local_port: u16,
        /// Each startup phase with its duration: this process's (load, image, disk, ...),
        /// then the host agent's, in order.
        phases: Vec<Phase>,
    },
}

/// How long `start` waits for a host agent that is already shutting down (its VM died, or a
/// stop is under way) to release the instance.
const EXITING_AGENT_GRACE: Duration = Duration::from_secs(20);

/// Starts instance `name`: takes its lock, cleans up what a crash left, prepares the disks
/// through the driver (`created`, when the caller has just created the instance, is reused so
/// that an external driver is started once), then spawns the host agent and follows it until
/// the instance is ready, has failed, or `timeout` passed.
pub async fn start(
    reg: &Registry,
    name: &str,
    created: Option<Opened>,
    launch: Launch,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Started> {
    let mut clock = Clock::start();
    let local_phases = std::sync::Mutex::new(Vec::new());
    let phase = |p: Phase| {
        say(&p.line());
        local_phases.lock().unwrap().push(p);
    };
    let inst = inspect(name)?;
    let dir = Path::new(&inst.dir).to_path_buf();
    let Some(lock) = acquire_or_wait(&dir, name, say).await? else {
        let inst = inspect(name)?;
        // Running pid files alone also describe a VM still booting: only a host agent that
        // has reported the instance ready makes this start a no-op.
        if inst.status == Status::Running && agentproc::agent_reported_ready(&dir) {
            return Ok(Started::AlreadyRunning);
        }
        return Err(InstanceError::Busy {
            name: name.to_string(),
            status: inst.status,
        });
    };
    // Nothing runs (we hold the lock): leftovers of a crash or a killed VM can go.
    let inst = inspect(name)?;
    if anything_alive(&inst) {
        say(&format!(
            "Instance {name:?} was {} ({}); cleaning up before starting",
            inst.status,
            inst.errors.join("; ")
        ));
        force_stop(&inst)?;
    } else {
        store::remove_stale_runtime_files(&dir)?;
    }
    // Before anything is prepared or booted: a disk another instance uses (or a missing one)
    // fails the start here, with nothing to undo but these locks.
    crate::datadisk::lock_for_instance(&dir, &inst.additional_disks, say)?;
    let prepared = async {
        let opened = match created {
            Some(o) => o,
            None => open(reg, name, SshPort::Unchosen).await?,
        };
        phase(clock.lap("load"));
        opened.prepare(&phase).await?;
        // This process's driver (an external one's process) is done; the host agent opens
        // its own.
        Ok(opened.info.log_files.clone())
    };
    let (timeout, progress) = match launch {
        Launch::Background { timeout, progress } => (timeout, progress),
        Launch::Foreground { progress } => {
            let e = match prepared.await {
                Ok(_) => agentproc::exec_foreground(&dir, name, &lock, progress),
                Err(e) => e,
            };
            crate::datadisk::unlock_of(&dir);
            return Err(e);
        }
    };
    let spawned = match prepared.await {
        Ok(log_files) => agentproc::spawn(&dir, name, &lock, progress).map(|pid| (pid, log_files)),
        Err(e) => Err(e),
    };
    let (pid, log_files) = match spawned {
        Ok(v) => v,
        Err(e) => {
            crate::datadisk::unlock_of(&dir);
            return Err(e);
        }
    };
    phase(clock.lap("host agent spawn"));
    say(&format!(
        "Started the host agent (pid {pid}); logs: {}/{}",
        dir.display(),
        filenames::HOST_AGENT_STDERR_LOG
    ));
    let fail = |why: String| {
        // Leave nothing running behind a failed start. The agent releases the disks as it
        // exits; this covers one that died without doing so, unless its VM outlived it.
        let gone = !store::pid_alive(pid as i32) || {
            signal(pid as i64, libc::SIGTERM);
            wait_gone(pid as i64, Duration::from_secs(60))
        };
        if gone && inspect(name).is_ok_and(|i| i.driver_pid == 0) {
            crate::datadisk::unlock_of(&dir);
        }
        InstanceError::StartFailed {
            name: name.to_string(),
            why,
            logs: failure_logs(&dir, &log_files),
        }
    };
    match agentproc::follow(&dir, pid, timeout, progress, say).await? {
        Outcome::Running {
            ssh_local_port,
            phases,
        } => {
            let mut all = local_phases.into_inner().unwrap_or_default();
            all.extend(phases);
            Ok(Started::Ready {
                ssh_local_port,
                phases: all,
            })
        }
        Outcome::Degraded { errors } => Err(InstanceError::Degraded {
            name: name.to_string(),
            errors: errors.join("\n"),
            log: dir.join(filenames::HOST_AGENT_STDERR_LOG),
        }),
        Outcome::Failed(why) => Err(fail(why)),
        Outcome::TimedOut => Err(InstanceError::StartTimeout {
            name: name.to_string(),
            timeout,
        }),
    }
}

/// The instance lock, or None when another process keeps it. A host agent that has said it is
/// exiting (its VM died, or a stop is under way) is on its way out: wait a little for it
/// instead of failing at once.
async fn acquire_or_wait(
    dir: &Path,
    name: &str,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Option<store::InstanceLock>> {
    let deadline = Instant::now() + EXITING_AGENT_GRACE;
    let mut said = false;
    loop {
        match store::InstanceLock::try_acquire(dir, name) {
            Ok(l) => return Ok(Some(l)),
            Err(store::StoreError::Locked { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // A VM that died after the agent reported it ready: the agent notices within a
        // moment and exits.
        let vm_died = agentproc::agent_reported_ready(dir) && inspect(name)?.driver_pid == 0;
        let exiting = vm_died || agentproc::agent_is_exiting(dir);
        if !exiting || Instant::now() > deadline {
            return Ok(None);
        }
        if !said {
            say(&format!(
                "Waiting for the host agent of {name:?} to finish shutting down"
            ));
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long a graceful stop waits for the host agent (`LIMA_STOP_TIMEOUT` seconds, 180).
fn stop_timeout() -> Duration {
    crate::env_seconds("LIMA_STOP_TIMEOUT", 180)
}

/// Stops instance `name`: SIGTERM to its host agent, which stops the VM through the driver,
/// and waits for it; `force` kills host agent and VM at once and cleans up. Starts no driver.
pub fn stop(name: &str, force: bool, say: &dyn Fn(&str)) -> Result<()> {
    let inst = inspect(name)?;
    if force {
        force_stop(&inst)?;
        say(&format!("Instance {name:?} was forcibly stopped"));
        return Ok(());
    }
    if inst.status == Status::Stopped {
        return Err(InstanceError::NotRunning(name.to_string()));
    }
    if inst.host_agent_pid == 0 {
        return Err(InstanceError::NoHostAgent {
            name: name.to_string(),
            status: inst.status,
            errors: inst.errors.join("; "),
        });
    }
    say(&format!(
        "Sending SIGTERM to the host agent (pid {})",
        inst.host_agent_pid
    ));
    signal(inst.host_agent_pid, libc::SIGTERM);
    let timeout = stop_timeout();
    let dir = Path::new(&inst.dir);
    if !wait_gone(inst.host_agent_pid, timeout) {
        return Err(InstanceError::StopTimeout {
            name: name.to_string(),
            timeout,
            logs: failure_logs(dir, &[]),
        });
    }
    // The driver is the host agent's child; make sure it is gone too.
    if inst.driver_pid > 0 && !wait_gone(inst.driver_pid, Duration::from_secs(10)) {
        signal(inst.driver_pid, libc::SIGKILL);
        // Gone before its disks are released below.
        wait_gone(inst.driver_pid, Duration::from_secs(10));
    }
    sshutil::stop_master(dir, name);
    store::remove_stale_runtime_files(dir)?;
    // The agent released them as it exited, unless it was killed on the way.
    crate::datadisk::unlock_of(dir);
    say(&format!("Instance {name:?} is stopped"));
    Ok(())
}

/// Deletes a stopped instance (`force`: stops a running one first, forcibly). The driver's
/// `delete` removes what it set up outside the directory; a driver that cannot be reached (its
/// executable removed, the config broken) does not keep the directory from going.
pub async fn delete(reg: &Registry, name: &str, force: bool, say: &dyn Fn(&str)) -> Result<()> {
    let inst = inspect(name)?;
    if inst.protected {
        return Err(InstanceError::Protected(name.to_string()));
    }
    if anything_alive(&inst) {
        if !force {
            return Err(InstanceError::NotStopped {
                name: name.to_string(),
                status: inst.status,
            });
        }
        force_stop(&inst)?;
    }
    let dir = Path::new(&inst.dir);
    // A start in progress holds the lock; do not pull the directory from under it. After a
    // forced stop, the killed agent's driver process may take a moment to let go.
    let wait = if force {
        Duration::from_secs(15)
    } else {
        Duration::ZERO
    };
    let _lock = store::InstanceLock::acquire_within(dir, name, wait).map_err(|source| {
        InstanceError::DeleteLocked {
            name: name.to_string(),
            source,
        }
    })?;
    // A disk left locked to a directory that is going away would stay locked for good.
    crate::datadisk::unlock_of(dir);
    let has_config = dir.join(filenames::LIMA_YAML).exists();
    match open(reg, name, SshPort::Unchosen).await {
        // A directory a killed create left has no config and no driver to ask.
        Err(InstanceError::NotFound(_)) if !has_config => {}
        Ok(opened) => {
            if let Err(e) = opened.driver.delete().await {
                say(&format!("warning: {}", opened.call_failed("delete")(e)));
            }
        }
        Err(e) => say(&format!(
            "warning: not asking the driver to delete {name:?}: {e}"
        )),
    }
    // Out of sight in one step (a rename), then removed: `list` never sees half an instance.
    let doomed = dir.with_file_name(format!(".deleting-{name}-{}", std::process::id()));
    std::fs::rename(dir, &doomed).map_err(crate::error::io("moving away", dir))?;
    std::fs::remove_dir_all(&doomed).map_err(crate::error::io("removing", &doomed))?;
    say(&format!("Deleted {name:?} ({})", dir.display()));
    Ok(())
}

/// The log excerpts that explain a failed start: the host agent's, the driver's own
/// (`driver_logs`, from its Info) and the serial console.
pub fn failure_logs(dir: &Path, driver_logs: &[String]) -> String {
    let mut files = vec![(filenames::HOST_AGENT_STDERR_LOG, 20)];
    files.extend(driver_logs.iter().map(|f| (f.as_str(), 10)));
    files.push((filenames::SERIAL_LOG, 20));
    let mut s = String::new();
    for (file, n) in files {
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

/// The last `n` lines of a file, indented, or a note that it is empty/missing.
fn tail(path: &Path, n: usize) -> String {
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

/// Sends `sig` to `pid` (no error if it is already gone).
fn signal(pid: i64, sig: i32) {
    if pid > 0 {
        // SAFETY: plain kill(2) on a pid read from our own pid files.
        unsafe { libc::kill(pid as i32, sig) };
    }
}

/// Waits until `pid` is gone; false on timeout.
fn wait_gone(pid: i64, timeout: Duration) -> bool {
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
/// removes pid files, sockets and the ssh control master, and releases its disks.
pub(crate) fn force_stop(inst: &Instance) -> Result<()> {
    let dir = Path::new(&inst.dir);
    sshutil::stop_master(dir, &inst.name);
    for pid in [inst.host_agent_pid, inst.driver_pid] {
        signal(pid, libc::SIGKILL);
    }
    // Both waited for, each up to 10 s.
    let agent_gone = wait_gone(inst.host_agent_pid, Duration::from_secs(10));
    let driver_gone = wait_gone(inst.driver_pid, Duration::from_secs(10));
    let gone = agent_gone && driver_gone;
    store::remove_stale_runtime_files(dir)?;
    // Not while a killed VM might still write to them.
    if gone {
        crate::datadisk::unlock_of(dir);
    } else {
        tracing::warn!(
            "the processes of {:?} did not exit; its disks stay locked (`limactl disk unlock`)",
            inst.name
        );
    }
    Ok(())
}

/// Whether anything of the instance is still alive (host agent or driver).
fn anything_alive(inst: &Instance) -> bool {
    inst.host_agent_pid > 0 || inst.driver_pid > 0
}
