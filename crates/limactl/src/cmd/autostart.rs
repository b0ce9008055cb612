//! `limactl autostart enable|disable INSTANCE` and the deprecated
//! `limactl start-at-login [--enabled=false] [INSTANCE]`: a systemd user unit
//! (`lima-vm@INSTANCE.service`) written or removed by `instance::manage`, then enabled or
//! disabled with `systemctl --user`.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use instance::manage::{self, Registered};
use instance::InstanceError;

#[derive(Subcommand)]
pub enum AutostartCmd {
    /// Register an instance to start automatically.
    Enable(EnableArgs),
    /// Unregister an instance from automatic startup.
    Disable(NameArg),
}

#[derive(Args)]
pub struct EnableArgs {
    pub name: String,
    /// When to start the instance: "login" (user session) or "boot" (macOS only).
    #[arg(long, default_value = "login")]
    pub condition: String,
}

#[derive(Args)]
pub struct NameArg {
    pub name: String,
}

#[derive(Args)]
pub struct StartAtLoginArgs {
    /// Instance name.
    #[arg(default_value = "default")]
    pub name: String,
    /// Automatically start the instance when the user logs in.
    #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enabled: bool,
}

pub fn run(cmd: AutostartCmd) -> Result<()> {
    match cmd {
        AutostartCmd::Enable(a) => {
            if a.condition != "login" {
                bail!(
                    "--condition {:?} is not supported on this host; use \"login\"",
                    a.condition
                );
            }
            enable(&a.name)
        }
        AutostartCmd::Disable(a) => disable(&a.name),
    }
}

pub fn start_at_login(args: StartAtLoginArgs) -> Result<()> {
    tracing::warn!("Command \"start-at-login\" is deprecated, use \"limactl autostart\" instead");
    match instance::ops::inspect(&args.name) {
        Err(InstanceError::NotFound(_)) => {
            tracing::info!("Instance {:?} not found", args.name);
            return Ok(());
        }
        other => other?,
    };
    if args.enabled {
        enable(&args.name)
    } else {
        disable(&args.name)
    }
}

fn enable(name: &str) -> Result<()> {
    let exe = std::env::current_exe().context("finding limactl's path")?;
    let verb = manage::register_autostart(name, &exe)
        .with_context(|| format!("failed to register the autostart entry for instance {name:?}"))?;
    let verb = match verb {
        Registered::Created => "created",
        Registered::Updated => "updated",
    };
    tracing::info!("The autostart entry for instance {name:?} has been {verb}");
    Ok(())
}

fn disable(name: &str) -> Result<()> {
    let removed = manage::unregister_autostart(name).with_context(|| {
        format!("failed to unregister the autostart entry for instance {name:?}")
    })?;
    if removed {
        tracing::info!("The autostart entry for instance {name:?} has been unregistered");
    } else {
        tracing::info!("The autostart entry for instance {name:?} is not registered");
    }
    Ok(())
}
