//! `limactl hostagent NAME`: the host agent of one instance, started in the background by
//! `limactl start` (not meant to be run by hand).

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct HostagentArgs {
    /// Instance name.
    pub name: String,
    /// Show provision script progress by tailing cloud-init logs.
    #[arg(long)]
    pub progress: bool,
}

pub fn run(args: HostagentArgs) -> Result<()> {
    // SIGTERM/SIGINT here mean "stop the VM cleanly": the host agent handles them and stops
    // its driver through it, so drivergrpc must not kill the driver first.
    drivergrpc::leave_signals_to_caller();
    super::runtime()?.block_on(instance::run_host_agent(
        crate::drivers::registry(),
        &args.name,
        args.progress,
    ))?;
    Ok(())
}
