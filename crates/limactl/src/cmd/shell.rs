//! `limactl shell NAME [COMMAND...]`: a shell or a command in the guest over SSH, through the
//! instance's generated `ssh.config`. The command's exit code becomes ours.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use limatype::{filenames, Status};

#[derive(Args)]
pub struct ShellArgs {
    /// Instance name.
    pub name: String,
    /// Command and arguments (a login shell if none).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Working directory in the guest.
    #[arg(long)]
    pub workdir: Option<String>,
}

/// Returns the exit code to exit with.
pub fn run(args: ShellArgs) -> Result<i32> {
    let inst = instance::ops::inspect(&args.name)?;
    if inst.status != Status::Running {
        bail!(
            "instance {:?} is {}, not running; run `limactl start {}`",
            inst.name,
            inst.status,
            inst.name
        );
    }
    let cfg = Path::new(&inst.dir).join(filenames::SSH_CONFIG);
    if !cfg.exists() {
        bail!("{} is missing; restart the instance", cfg.display());
    }
    let mut ssh = std::process::Command::new("ssh");
    if std::io::stdin().is_terminal() {
        ssh.arg("-t");
    }
    ssh.args(sshutil::args_from_config(&cfg, &inst.name));
    let mut script = String::new();
    if let Some(wd) = &args.workdir {
        script.push_str(&format!("cd {} || exit 1; ", sshutil::shell_quote(wd)));
    }
    if args.command.is_empty() {
        script.push_str("exec \"$SHELL\" --login");
    } else {
        let words: Vec<String> = args
            .command
            .iter()
            .map(|w| sshutil::shell_quote(w))
            .collect();
        script.push_str(&format!("exec {}", words.join(" ")));
    }
    ssh.arg("--").arg(script);
    let status = ssh.status().context("running ssh")?;
    Ok(status.code().unwrap_or(255))
}
