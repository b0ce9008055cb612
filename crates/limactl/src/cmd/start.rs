//! `limactl start [--name N] [FILE.yaml|URL|template:NAME|NAME]`: creates the instance if a
//! config is given, prepares its disks through the driver, spawns the host agent in the
//! background and follows its events until the instance is running (exit 0) or has failed
//! (exit 1, naming the failed requirement and the relevant log lines).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use limatype::Status;

use super::{instutil, startutil};

#[derive(Args, Clone)]
pub struct StartArgs {
    /// An existing instance name, or a config to create one from (FILE.yaml, URL,
    /// template:NAME).
    pub target: Option<String>,
    /// Name of the instance to create.
    #[arg(long)]
    pub name: Option<String>,
    /// Interactive prompts (none are implemented; kept for compatibility).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tty: bool,
    /// Seconds to wait for the instance to become ready.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

pub fn run(args: StartArgs) -> Result<()> {
    let name = match super::create::existing_or_create(&args.target, &args.name)? {
        super::create::Target::Existing(name) => name,
        super::create::Target::Create { name, locator } => {
            super::create::create(&name, &locator)?;
            name
        }
    };
    start_existing(&name, Duration::from_secs(args.timeout))
}

/// How long `start` waits for a host agent that is already shutting down (its VM died, or a
/// stop is under way) to release the instance.
const EXITING_AGENT_GRACE: Duration = Duration::from_secs(20);

/// The instance lock, or None when another process keeps it. A host agent that has said it is
/// exiting (its VM died, or a stop is under way) is on its way out: wait a little for it
/// instead of failing at once.
fn acquire_or_wait(dir: &Path, name: &str) -> Result<Option<store::InstanceLock>> {
    let deadline = std::time::Instant::now() + EXITING_AGENT_GRACE;
    let mut said = false;
    loop {
        match store::InstanceLock::try_acquire(dir, name) {
            Ok(l) => return Ok(Some(l)),
            Err(store::StoreError::Locked { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // A VM that died after the agent reported it ready: the agent notices within a
        // moment and exits.
        let vm_died =
            startutil::agent_reported_ready(dir) && instutil::inspect(name)?.driver_pid == 0;
        let exiting = vm_died || startutil::agent_is_exiting(dir);
        if !exiting || std::time::Instant::now() > deadline {
            return Ok(None);
        }
        if !said {
            eprintln!("Waiting for the host agent of {name:?} to finish shutting down");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn start_existing(name: &str, timeout: Duration) -> Result<()> {
    let inst = instutil::inspect(name)?;
    let dir = Path::new(&inst.dir).to_path_buf();
    let lock = match acquire_or_wait(&dir, name)? {
        Some(l) => l,
        None => {
            let inst = instutil::inspect(name)?;
            // Running pid files alone also describe a VM still booting: only a host agent
            // that has reported the instance ready makes this start a no-op.
            if inst.status == Status::Running && startutil::agent_reported_ready(&dir) {
                eprintln!("The instance {name:?} is already running. Run `limactl shell {name}` to open the shell.");
                return Ok(());
            }
            bail!(
                "instance {name:?} is being started or stopped by another process (status {}); \
                 wait for it, or run `limactl stop -f {name}`",
                inst.status
            );
        }
    };
    // Nothing runs (we hold the lock): leftovers of a crash or a killed qemu can go.
    let inst = instutil::inspect(name)?;
    if instutil::anything_alive(&inst) {
        eprintln!(
            "Instance {name:?} was {} ({}); cleaning up before starting",
            inst.status,
            inst.errors.join("; ")
        );
        instutil::force_stop(&inst)?;
    } else {
        store::remove_stale_runtime_files(&dir)?;
    }
    super::create::prepare(name)?;
    let pid = startutil::spawn_hostagent(&dir, name, &lock)?;
    eprintln!(
        "Started the host agent (pid {pid}); logs: {}/ha.stderr.log",
        dir.display()
    );
    match startutil::follow(&dir, pid, timeout)? {
        startutil::Outcome::Running { ssh_local_port } => {
            eprintln!(
                "READY. Run `limactl shell {name}` to open the shell (ssh port {ssh_local_port})."
            );
            Ok::<(), anyhow::Error>(())
        }
        startutil::Outcome::Failed(why) => {
            // Leave nothing running behind a failed start.
            if store::pid_alive(pid as i32) {
                instutil::signal(pid as i64, libc::SIGTERM);
                instutil::wait_gone(pid as i64, Duration::from_secs(60));
            }
            bail!("{why}\n{}", instutil::failure_logs(&dir))
        }
    }
    .with_context(|| format!("starting instance {name:?}"))
}
