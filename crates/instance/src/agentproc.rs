//! The host agent as seen from `limactl`: spawning `limactl hostagent NAME` in the background
//! with the instance lock, and following its events (`ha.stdout.log`) until the instance is
//! running or has failed.

use std::io::{BufRead, Seek};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hostagent::events::Event;
use hostagent::phases::Phase;
use limatype::filenames;

use crate::error::io;
use crate::{InstanceError, Result};

/// The host agent's `ha.stdout.log` and `ha.stderr.log`, emptied for this run.
fn fresh_logs(dir: &Path) -> Result<(std::fs::File, std::fs::File)> {
    let open = |f: &str| {
        let p = dir.join(f);
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&p)
            .map_err(io("creating", p))
    };
    Ok((
        open(filenames::HOST_AGENT_STDOUT_LOG)?,
        open(filenames::HOST_AGENT_STDERR_LOG)?,
    ))
}

/// Spawns `<this executable> hostagent NAME` detached (own session, stdin closed, output to
/// `ha.stdout.log` / `ha.stderr.log`), handing it the instance lock. Returns its pid. The
/// executable is limactl, whose `hostagent` command calls [`crate::run_host_agent`].
/// `progress`: the agent sends the guest's cloud-init output as events (`--progress`).
pub fn spawn(dir: &Path, name: &str, lock: &store::InstanceLock, progress: bool) -> Result<u32> {
    let (stdout, stderr) = fresh_logs(dir)?;
    let exe = std::env::current_exe().map_err(InstanceError::SpawnAgent)?;
    let fd = lock.inheritable_fd()?;
    let mut cmd = Command::new(exe);
    cmd.arg("hostagent")
        .args(progress.then_some("--progress"))
        .arg(name)
        .env(store::LOCK_FD_ENV, fd.to_string())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: setsid is async-signal-safe; it detaches the agent from our terminal so that
    // Ctrl-C on `limactl start` does not reach it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(InstanceError::SpawnAgent)?;
    Ok(child.id())
}

/// `limactl start --foreground`: this process becomes the host agent (`exec` of `<this
/// executable> hostagent NAME`, keeping the instance lock), as upstream's does for service
/// managers such as the autostart unit. Its output goes to `ha.stdout.log`/`ha.stderr.log`
/// unless stdin is a terminal, where it stays on the terminal and the log files say so.
/// Returns only on failure.
pub fn exec_foreground(
    dir: &Path,
    name: &str,
    lock: &store::InstanceLock,
    progress: bool,
) -> InstanceError {
    use std::io::{IsTerminal, Write};
    use std::os::fd::AsRawFd;
    let run = || -> Result<std::io::Error> {
        let (mut stdout, mut stderr) = fresh_logs(dir)?;
        tracing::info!("Running the host agent in the foreground");
        if std::io::stdin().is_terminal() {
            let note = "This log file is not used because `limactl start` was launched in the \
                        terminal with the `--foreground` option.";
            let _ = stdout.write_all(note.as_bytes());
            let _ = stderr.write_all(note.as_bytes());
        } else {
            // SAFETY: dup2 onto our own standard descriptors; both files stay open.
            unsafe {
                libc::dup2(stdout.as_raw_fd(), libc::STDOUT_FILENO);
                libc::dup2(stderr.as_raw_fd(), libc::STDERR_FILENO);
            }
        }
        let exe = std::env::current_exe().map_err(InstanceError::SpawnAgent)?;
        let fd = lock.inheritable_fd()?;
        Ok(Command::new(exe)
            .arg("hostagent")
            .args(progress.then_some("--progress"))
            .arg(name)
            .env(store::LOCK_FD_ENV, fd.to_string())
            .current_dir(dir)
            .exec())
    };
    match run() {
        Ok(exec_error) => InstanceError::SpawnAgent(exec_error),
        Err(e) => e,
    }
}

/// How a start ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Running {
        ssh_local_port: u16,
        /// The phases the host agent reported, in order.
        phases: Vec<Phase>,
    },
    /// Running, but requirements (the user's probes) were not met: upstream's DEGRADED.
    Degraded {
        errors: Vec<String>,
    },
    Failed(String),
    TimedOut,
}

/// Follows `ha.stdout.log` from the beginning, handing each progress line (and each ended
/// phase, as [`Phase::line`]) to `say`, until the
/// host agent reports the instance running, reports errors, exits, or `timeout` passes.
/// With `progress`, cloud-init's lines are shown as upstream's `[cloud-init] LINE` and a
/// running instance is reported only once cloud-init's monitoring has completed.
pub async fn follow(
    dir: &Path,
    ha_pid: u32,
    timeout: Duration,
    progress: bool,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Outcome> {
    let mut running = None;
    let mut phases = Vec::new();
    let mut cloud_init_done = !progress;
    let log = dir.join(filenames::HOST_AGENT_STDOUT_LOG);
    let deadline = Instant::now() + timeout;
    let mut pos = 0u64;
    let mut partial = String::new();
    let mut exited_checks = 0;
    loop {
        let mut f = std::fs::File::open(&log).map_err(io("opening", &log))?;
        f.seek(std::io::SeekFrom::Start(pos))
            .map_err(io("reading", &log))?;
        let mut reader = std::io::BufReader::new(f);
        let mut line = String::new();
        while reader.read_line(&mut line).map_err(io("reading", &log))? > 0 {
            pos += line.len() as u64;
            if !line.ends_with('\n') {
                partial.push_str(&line);
                line.clear();
                continue;
            }
            let full = std::mem::take(&mut partial) + &line;
            line.clear();
            let Some(ev) = Event::parse(&full) else {
                continue;
            };
            if let Some(p) = &ev.status.progress {
                say(&format!("{} {p}", short_time(&ev.time)));
            }
            if let Some(ph) = &ev.status.phase {
                say(&format!("{} {}", short_time(&ev.time), ph.line()));
                phases.push(ph.clone());
            }
            if let (true, Some(c)) = (progress, &ev.status.cloud_init_progress) {
                let t = short_time(&ev.time);
                if c.active && c.log_line.is_empty() {
                    say(&format!("{t} Cloud-init provisioning started..."));
                }
                if !c.log_line.is_empty() {
                    say(&format!("{t} [cloud-init] {}", c.log_line));
                }
                if c.completed {
                    say(&format!("{t} Cloud-init progress monitoring done."));
                    cloud_init_done = true;
                }
            }
            if ev.status.running && ev.status.degraded {
                return Ok(Outcome::Degraded {
                    errors: ev.status.errors.clone(),
                });
            }
            if !ev.status.errors.is_empty() && !ev.status.running {
                return Ok(Outcome::Failed(ev.status.errors.join("\n")));
            }
            if ev.status.running {
                running = Some(ev.status.ssh_local_port);
            }
            if let (Some(ssh_local_port), true) = (running, cloud_init_done) {
                return Ok(Outcome::Running {
                    ssh_local_port,
                    phases,
                });
            }
            if ev.status.exiting {
                return Ok(Outcome::Failed("the host agent is exiting".into()));
            }
        }
        if !store::pid_alive(ha_pid as i32) {
            // Read once more in case the last events landed just before it exited.
            exited_checks += 1;
            if exited_checks > 1 {
                return Ok(Outcome::Failed(format!(
                    "the host agent (pid {ha_pid}) exited without reporting the instance running"
                )));
            }
        }
        if Instant::now() > deadline {
            return Ok(Outcome::TimedOut);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The host agent's latest event in `ha.stdout.log`, if any.
pub fn last_event(dir: &Path) -> Option<Event> {
    let text = std::fs::read_to_string(dir.join(filenames::HOST_AGENT_STDOUT_LOG)).ok()?;
    text.lines().rev().find_map(Event::parse)
}

/// Whether the host agent's last event says it is shutting down (or has failed).
pub fn agent_is_exiting(dir: &Path) -> bool {
    last_event(dir)
        .is_some_and(|ev| ev.status.exiting || (!ev.status.errors.is_empty() && !ev.status.running))
}

/// Whether the host agent has reported the instance ready (and nothing since).
pub fn agent_reported_ready(dir: &Path) -> bool {
    last_event(dir).is_some_and(|ev| ev.status.running)
}

fn short_time(rfc3339: &str) -> &str {
    // "2024-01-01T12:34:56.789Z" -> "12:34:56"
    rfc3339.get(11..19).unwrap_or(rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostagent::events::Status;

    /// The events a host agent writes: progress lines and phase lines reach `say` in order,
    /// and the phases come back with the ready outcome.
    #[tokio::test]
    async fn follow_prints_and_returns_the_phases() {
        let dir = tempfile::tempdir().unwrap();
        let ev = |status: Status| Event::now(status).to_line();
        let phase = |name: &str, ms: u64| Status {
            phase: Some(Phase::new(name, Duration::from_millis(ms))),
            ..Default::default()
        };
        let log = [
            ev(Status {
                progress: Some("Starting the VM".into()),
                ..Default::default()
            }),
            ev(phase("driver start", 120)),
            ev(phase("ssh", 41_500)),
            // An upstream host agent's line without the extension still parses.
            "{\"time\":\"2024-01-01T00:00:00.000Z\",\"status\":{\"sshLocalPort\":2222}}\n"
                .to_string(),
            ev(Status {
                running: true,
                ssh_local_port: 2222,
                progress: Some("READY".into()),
                ..Default::default()
            }),
        ]
        .concat();
        std::fs::write(dir.path().join(filenames::HOST_AGENT_STDOUT_LOG), log).unwrap();
        let said = std::sync::Mutex::new(Vec::new());
        let say = |l: &str| {
            said.lock()
                .unwrap()
                .push(l.get(9..).unwrap_or(l).to_string())
        };
        let out = follow(
            dir.path(),
            std::process::id(),
            Duration::from_secs(5),
            false,
            &say,
        )
        .await
        .unwrap();
        let Outcome::Running {
            ssh_local_port,
            phases,
        } = out
        else {
            panic!("{out:?}");
        };
        assert_eq!(ssh_local_port, 2222);
        let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["driver start", "ssh"]);
        assert_eq!(
            said.into_inner().unwrap(),
            [
                "Starting the VM",
                "[phase] driver start: 0.12s",
                "[phase] ssh: 41.5s",
                "READY"
            ]
        );
    }
}
