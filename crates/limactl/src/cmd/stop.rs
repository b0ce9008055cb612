//! `limactl stop [-f] NAME`: asks the host agent to stop the VM (SIGTERM) and waits; `-f`
//! kills host agent and driver at once and cleans up.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use limatype::{filenames, Status};

use super::instutil;

#[derive(Args)]
pub struct StopArgs {
    /// Instance name.
    #[arg(default_value = "default")]
    pub name: String,
    /// Kill at once, without a graceful shutdown.
    #[arg(long, short = 'f')]
    pub force: bool,
}

pub fn run(args: StopArgs) -> Result<()> {
    let inst = instutil::inspect(&args.name)?;
    if args.force {
        instutil::force_stop(&inst)?;
        eprintln!("Instance {:?} was forcibly stopped", inst.name);
        return Ok(());
    }
    if inst.status == Status::Stopped {
        bail!("instance {:?} is not running", inst.name);
    }
    if inst.host_agent_pid == 0 {
        bail!(
            "instance {:?} is {}: {}; use `limactl stop -f {}`",
            inst.name,
            inst.status,
            inst.errors.join("; "),
            inst.name
        );
    }
    eprintln!(
        "Sending SIGTERM to the host agent (pid {})",
        inst.host_agent_pid
    );
    instutil::signal(inst.host_agent_pid, libc::SIGTERM);
    let timeout = Duration::from_secs(
        std::env::var("LIMA_STOP_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(180),
    );
    if !instutil::wait_gone(inst.host_agent_pid, timeout) {
        bail!(
            "the host agent of {:?} did not exit within {timeout:?}; use `limactl stop -f {}`\n{}",
            inst.name,
            inst.name,
            instutil::failure_logs(Path::new(&inst.dir))
        );
    }
    // The driver is the host agent's child; make sure it is gone too.
    if inst.driver_pid > 0 && !instutil::wait_gone(inst.driver_pid, Duration::from_secs(10)) {
        instutil::signal(inst.driver_pid, libc::SIGKILL);
    }
    instutil::stop_ssh_master(&inst);
    let dir = Path::new(&inst.dir);
    store::remove_stale_runtime_files(dir)?;
    let _ = std::fs::remove_file(dir.join(filenames::SSH_SOCK));
    eprintln!("Instance {:?} is stopped", inst.name);
    Ok(())
}
