//! `limactl delete [-f] NAME...`: removes stopped instances; `-f` stops running ones first.

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct DeleteArgs {
    /// Instance names.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Stop a running instance first (forcibly).
    #[arg(long, short = 'f')]
    pub force: bool,
}

pub fn run(args: DeleteArgs) -> Result<()> {
    let rt = super::runtime()?;
    for name in &args.names {
        rt.block_on(instance::ops::delete(
            crate::drivers::registry(),
            name,
            args.force,
            &super::say,
        ))?;
    }
    Ok(())
}
