//! `limactl completion SHELL`: a completion script for bash, zsh, fish or powershell,
//! generated from the clap definition (so it never lags behind the commands).

use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish or powershell.
    pub shell: String,
}

pub fn run(args: CompletionArgs) -> anyhow::Result<()> {
    // Elvish is clap_complete's too, not upstream's.
    let shell: Shell = match args.shell.as_str() {
        "bash" | "zsh" | "fish" | "powershell" => args.shell.parse().map_err(anyhow::Error::msg)?,
        other => anyhow::bail!("unsupported shell {other:?}: one of bash, zsh, fish, powershell"),
    };
    let mut cmd = crate::Cli::command();
    clap_complete::generate(shell, &mut cmd, "limactl", &mut std::io::stdout());
    Ok(())
}
