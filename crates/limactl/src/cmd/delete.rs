//! `limactl delete [-f] NAME...`: removes stopped instances; `-f` stops running ones first.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::instutil;

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
    for name in &args.names {
        let inst = instutil::inspect(name)?;
        if inst.protected {
            bail!(
                "instance {name:?} is protected (remove the `protected` file to allow deleting it)"
            );
        }
        if instutil::anything_alive(&inst) {
            if !args.force {
                bail!(
                    "instance {name:?} is {} (not stopped); run `limactl stop {name}` first or use `limactl delete -f {name}`",
                    inst.status
                );
            }
            instutil::force_stop(&inst)?;
        }
        let dir = Path::new(&inst.dir);
        // A start in progress holds the lock; do not pull the directory from under it. After
        // a forced stop, the killed agent's driver process may take a moment to let go.
        let wait = if args.force {
            Duration::from_secs(15)
        } else {
            Duration::ZERO
        };
        let _lock = store::InstanceLock::acquire_within(dir, name, wait)
            .with_context(|| format!("cannot delete {name:?} now"))?;
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        eprintln!("Deleted {name:?} ({})", dir.display());
    }
    Ok(())
}
