//! `limactl delete [-f] INSTANCE...`: removes stopped instances; `-f` stops running ones
//! first. A missing instance is skipped with a warning, as upstream; a protected one is
//! refused. The autostart entry of a deleted instance goes with it.

use anyhow::{Context, Result};
use clap::Args;
use instance::InstanceError;

#[derive(Args)]
pub struct DeleteArgs {
    /// Instance names.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Forcibly kill the processes.
    #[arg(long, short = 'f')]
    pub force: bool,
}

pub fn run(args: DeleteArgs) -> Result<()> {
    let rt = super::runtime()?;
    for name in &args.names {
        let deleted = rt.block_on(instance::ops::delete(
            crate::drivers::registry(),
            name,
            args.force,
            &super::say,
        ));
        match deleted {
            Err(InstanceError::NotFound(_)) if !store::instance_dir(name)?.exists() => {
                tracing::warn!("Ignoring non-existent instance {name:?}");
                continue;
            }
            other => other.with_context(|| format!("failed to delete instance {name:?}"))?,
        }
        match instance::manage::autostart_registered(name) {
            Ok(true) => match instance::manage::unregister_autostart(name) {
                Ok(_) => tracing::info!(
                    "The autostart entry for instance {name:?} has been unregistered"
                ),
                Err(e) => tracing::warn!(
                    "Failed to unregister the autostart entry for instance {name:?}: {e}"
                ),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(
                "Failed to check if the autostart entry for instance {name:?} is registered: {e}"
            ),
        }
    }
    Ok(())
}
