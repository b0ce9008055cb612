//! `limactl protect|unprotect INSTANCE...`: a protected instance (its `protected` file) is
//! refused by `limactl delete`. Every instance is tried; errors are reported together.

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct ProtectArgs {
    /// Instance names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn protect(args: ProtectArgs) -> Result<()> {
    super::join_errors(args.names.iter().map(|name| {
        let done = instance::manage::protect(name)
            .with_context(|| format!("failed to protect instance {name:?}"))?;
        if done {
            tracing::info!("Protected {name:?}");
        } else {
            tracing::warn!("Instance {name:?} is already protected. Skipping.");
        }
        Ok(())
    }))
}

pub fn unprotect(args: ProtectArgs) -> Result<()> {
    super::join_errors(args.names.iter().map(|name| {
        let done = instance::manage::unprotect(name)
            .with_context(|| format!("failed to unprotect instance {name:?}"))?;
        if done {
            tracing::info!("Unprotected {name:?}");
        } else {
            tracing::warn!("Instance {name:?} isn't protected. Skipping.");
        }
        Ok(())
    }))
}
