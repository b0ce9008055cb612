//! `limactl stop [-f] [INSTANCE...]`: asks each host agent to stop its VM (SIGTERM) and
//! waits; `-f` kills host agent and driver at once and cleans up. Every instance is tried;
//! the errors are reported together (upstream's `errors.Join`).

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct StopArgs {
    /// Instance names (default: `default`).
    pub names: Vec<String>,
    /// Force stop the instance.
    #[arg(long, short = 'f')]
    pub force: bool,
}

pub fn run(args: StopArgs) -> Result<()> {
    let names = if args.names.is_empty() {
        vec!["default".to_string()]
    } else {
        args.names
    };
    super::join_errors(
        names
            .iter()
            .map(|name| Ok(instance::ops::stop(name, args.force, &super::say)?)),
    )
}
