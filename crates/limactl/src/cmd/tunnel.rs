//! `limactl tunnel [--socks-port N] INSTANCE`: a SOCKS proxy into the guest network through
//! `ssh -D`, which goes to the background once connected (limactl then exits), and upstream's
//! hint for using it. Experimental upstream too.

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Args)]
pub struct TunnelArgs {
    /// Tunnel type, currently only "socks" is implemented.
    #[arg(long = "type", default_value = "socks")]
    pub kind: String,
    /// SOCKS port, defaults to a random port.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub socks_port: i64,
    /// Instance name.
    pub name: String,
}

/// Returns the exit code: ssh's when it fails (as upstream's `HandleExitError`).
pub fn run(args: TunnelArgs) -> Result<i32> {
    tracing::warn!("`limactl tunnel` is experimental");
    if args.kind != "socks" {
        bail!("unknown tunnel type: `{}`", args.kind);
    }
    let port = args.socks_port;
    if port != 0 && !(1024..=65535).contains(&port) {
        bail!("invalid socks port {port}");
    }
    let inst = instance::copy::inspect_not_stopped(&args.name)?;
    let port = match u16::try_from(port) {
        Ok(0) | Err(_) => instance::copy::free_port()?,
        Ok(p) => p,
    };
    let plan = instance::copy::plan_tunnel(&inst, port)?;
    let mut cmd = plan.command();
    // ssh's own output goes to stderr; stdout is for the hint.
    cmd.stdout(std::io::stderr());
    tracing::debug!("executing ssh (may take a long time): {cmd:?}");
    let status = cmd.status().context("running ssh")?;
    if !status.success() {
        return Ok(status.code().unwrap_or(1));
    }
    let os = if cfg!(target_os = "macos") {
        "macos"
    } else if cfg!(windows) {
        "windows"
    } else {
        "linux"
    };
    print!(
        "{}",
        sshutil::copytool::tunnel_message(os, port, &inst.hostname)
    );
    Ok(0)
}
