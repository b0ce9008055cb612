//! `limactl factory-reset [INSTANCE]` (upstream's `factory-reset.go`): stops the instance
//! forcibly and removes everything in its directory but its configs, so that the next start
//! boots it like a new one. A missing instance is not an error.

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct FactoryResetArgs {
    /// The instance (`default` if none).
    pub instance: Option<String>,
}

pub fn run(args: FactoryResetArgs) -> Result<()> {
    let name = args.instance.as_deref().unwrap_or("default");
    let say = |line: &str| tracing::info!("{line}");
    let reset = instance::reset::factory_reset(name, &say)
        .with_context(|| format!("failed to factory-reset instance {name:?}"))?;
    match reset {
        instance::reset::Reset::NotFound => tracing::info!("Instance {name:?} not found"),
        instance::reset::Reset::Done => {
            tracing::info!("Instance {name:?} has been factory reset")
        }
    }
    Ok(())
}
