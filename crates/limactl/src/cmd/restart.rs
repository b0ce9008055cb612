//! `limactl restart [-f] [INSTANCE]`: stops a running instance (gracefully, or forcibly with
//! `-f`) and starts it again through the same flows as `stop` and `start`.

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct RestartArgs {
    /// Instance name.
    #[arg(default_value = "default")]
    pub name: String,
    /// Force stop and restart the instance.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Show provision script progress by tailing cloud-init logs.
    #[arg(long)]
    pub progress: bool,
}

pub fn run(args: RestartArgs) -> Result<()> {
    let name = &args.name;
    // Fails before stopping anything when the instance does not exist.
    instance::ops::inspect(name)?;
    if args.force {
        tracing::info!("Restarting the instance forcibly");
    }
    instance::ops::stop(name, args.force, &super::say)?;
    super::start::run(super::start::StartArgs {
        progress: args.progress,
        ..super::start::StartArgs::existing(name)
    })
}
