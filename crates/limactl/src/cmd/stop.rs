//! `limactl stop [-f] NAME`: asks the host agent to stop the VM (SIGTERM) and waits; `-f`
//! kills host agent and driver at once and cleans up.

use anyhow::Result;
use clap::Args;

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
    Ok(instance::ops::stop(&args.name, args.force, &super::say)?)
}
