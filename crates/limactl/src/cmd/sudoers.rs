//! `limactl sudoers [--check [FILE]]`: upstream generates `/etc/sudoers.d/lima` for
//! socket_vmnet, which exists on macOS only; elsewhere it refuses, in upstream's words.

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct SudoersArgs {
    /// The sudoers file to check (with --check).
    pub file: Option<String>,
    /// Check that the sudoers file is up-to-date with the networks config.
    #[arg(long)]
    pub check: bool,
}

pub fn run(_args: SudoersArgs) -> Result<()> {
    bail!("sudoers command is only supported on macOS right now")
}
