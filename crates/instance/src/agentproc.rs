//! The host agent as seen from `limactl`: spawning `limactl hostagent NAME` in the background
//! with the instance lock, and following its events (`ha.stdout.log`) until the instance is
//! running or has failed.

use std::io::{BufRead, Seek};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hostagent::events::Event;
use limatype::filenames;

use crate::error::io;
use crate::{InstanceError, Result};

/// Spawns `<this executable> hostagent NAME` detached (own session, stdin closed, output to
/// `ha.stdout.log` / `ha.stderr.log`), handing it the instance lock. Returns its pid. The
/// executable is limactl, whose `hostagent` command calls [`crate::run_host_agent`].
pub fn spawn(dir: &Path, name: &str, lock: &store::InstanceLock) -> Result<u32> {
    let open = |f: &str| {
        let p = dir.join(f);
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&p)
            .map_err(io("creating", p))
    };
    let stdout = open(filenames::HOST_AGENT_STDOUT_LOG)?;
    let stderr = open(filenames::HOST_AGENT_STDERR_LOG)?;
    let exe = std::env::current_exe().map_err(InstanceError::SpawnAgent)?;
    let fd = lock.inheritable_fd()?;
    let mut cmd = Command::new(exe);
    cmd.arg("hostagent")
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

/// How a start ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Running { ssh_local_port: u16 },
    Failed(String),
    TimedOut,
}

/// Follows `ha.stdout.log` from the beginning, handing each progress line to `say`, until the
/// host agent reports the instance running, reports errors, exits, or `timeout` passes.
pub async fn follow(
    dir: &Path,
    ha_pid: u32,
    timeout: Duration,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Outcome> {
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
            if !ev.status.errors.is_empty() {
                return Ok(Outcome::Failed(ev.status.errors.join("\n")));
            }
            if ev.status.running {
                return Ok(Outcome::Running {
                    ssh_local_port: ev.status.ssh_local_port,
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
    last_event(dir).is_some_and(|ev| ev.status.exiting || !ev.status.errors.is_empty())
}

/// Whether the host agent has reported the instance ready (and nothing since).
pub fn agent_reported_ready(dir: &Path) -> bool {
    last_event(dir).is_some_and(|ev| ev.status.running)
}

fn short_time(rfc3339: &str) -> &str {
    // "2024-01-01T12:34:56.789Z" -> "12:34:56"
    rfc3339.get(11..19).unwrap_or(rfc3339)
}
