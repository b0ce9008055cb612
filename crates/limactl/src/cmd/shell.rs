//! `limactl shell [flags] INSTANCE [COMMAND...]`: a shell or a command in the guest over SSH,
//! through the instance's generated `ssh.config`. The remote command is built by
//! `sshutil::remote` as upstream builds it; the command's exit code becomes ours.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use limatype::{filenames, Status};
use sshutil::remote;

#[derive(Args)]
pub struct ShellArgs {
    /// Instance name (used by the lima wrapper script): every argument is then the command.
    #[arg(long, hide = true)]
    pub instance: Option<String>,
    /// Shell interpreter, e.g. /bin/bash.
    #[arg(long)]
    pub shell: Option<String>,
    /// Working directory.
    #[arg(long)]
    pub workdir: Option<String>,
    /// Reconnect to the SSH session.
    #[arg(long)]
    pub reconnect: bool,
    /// Propagate environment variables to the shell (see LIMA_SHELLENV_BLOCK and
    /// LIMA_SHELLENV_ALLOW).
    #[arg(long)]
    pub preserve_env: bool,
    /// Start the instance if it is not already running.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub start: Option<bool>,
    /// Copy a host directory to the guest and vice-versa upon exit (not implemented).
    #[arg(long, value_name = "DIR")]
    pub sync: Option<String>,
    /// INSTANCE [COMMAND...] (a login shell if no command).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "INSTANCE [COMMAND]"
    )]
    pub args: Vec<String>,
}

/// Returns the exit code to exit with.
pub fn run(args: ShellArgs, global: &crate::GlobalArgs) -> Result<i32> {
    let tty = global.tty()?;
    let (name, command) = split_args(args.instance.as_deref(), &args.args)?;
    if let Some(first) = command.first() {
        if ["create", "start", "delete", "shell"].contains(&first.as_str()) {
            // `lima start` is probably a typo of `limactl start`.
            tracing::warn!("Perhaps you meant `limactl {}`?", command.join(" "));
        }
    }
    let mut inst = instance::ops::inspect(&name)?;
    for e in &inst.errors {
        tracing::error!("Instance {name:?} has configuration errors: {e}");
    }
    if inst.status == Status::Stopped {
        let start_now = match args.start {
            Some(s) => s,
            None if tty => super::ask_whether_to_start()?,
            None => false,
        };
        if !start_now {
            bail!("instance {name:?} is stopped, run `limactl start {name}` to start the instance");
        }
        super::start::run(super::start::StartArgs::existing(&name))?;
        inst = instance::ops::inspect(&name)?;
    }
    if inst.status != Status::Running {
        bail!(
            "instance {name:?} is {}, not running; run `limactl start {name}`",
            inst.status
        );
    }
    if args.sync.is_some() {
        bail!("`--sync` is not implemented yet; use a mount or `limactl copy` instead");
    }
    let dir = Path::new(&inst.dir);
    if args.reconnect && dir.join(filenames::SSH_SOCK).exists() {
        tracing::info!("Exiting ssh session for the instance {name:?}");
        sshutil::stop_master(dir, &name);
    }
    let cfg = dir.join(filenames::SSH_CONFIG);
    if !cfg.exists() {
        bail!("{} is missing; restart the instance", cfg.display());
    }

    let host_cwd = std::env::current_dir()
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    if host_cwd.is_none() {
        tracing::warn!("failed to get the current directory");
    }
    let host_home = std::env::var("HOME").ok().filter(|h| !h.is_empty());
    let config = inst.config.as_ref();
    let mounts = config.and_then(|c| c.mounts.clone()).unwrap_or_default();
    let mounted = |p: &str| {
        mounts
            .iter()
            .any(|m| remote::mount_contains(&m.location, host_home.as_deref(), p))
    };
    let change_dir = remote::change_dir_command(&remote::ChangeDir {
        workdir: args.workdir.as_deref(),
        host_cwd: host_cwd.as_deref(),
        host_home: host_home.as_deref(),
        mounted: &mounted,
        all_visible: config.and_then(|c| c.vm_type.as_deref()) == Some("wsl2"),
    });
    tracing::debug!("changeDirCmd={change_dir:?}");
    let shell = args
        .shell
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| config.and_then(|c| c.user.as_ref()?.shell.clone()));
    let env = if args.preserve_env {
        let var = |n: &str| std::env::var(n).ok();
        let block = remote::block_list(var("LIMA_SHELLENV_BLOCK").as_deref())?;
        let allow = remote::allow_list(var("LIMA_SHELLENV_ALLOW").as_deref())?;
        let host: Vec<(String, String)> = std::env::vars().collect();
        remote::filter_env(&host, &allow, &block)
    } else {
        Vec::new()
    };
    let script = remote::remote_script(&change_dir, shell.as_deref(), &env, &command);

    let mut ssh = std::process::Command::new("ssh");
    ssh.args(sshutil::args_from_config(&cfg, &inst.name));
    if std::io::stdout().is_terminal() {
        // Needed for the shell's prompt.
        ssh.arg("-t");
    }
    if std::env::var_os("COLORTERM").is_some() {
        ssh.args(["-o", "SendEnv=COLORTERM"]);
    }
    ssh.args(["-o", "LogLevel=ERROR"]);
    ssh.arg("--").arg(&script);
    tracing::debug!("executing ssh: {ssh:?}");
    let status = ssh.status().context("running ssh")?;
    Ok(status.code().unwrap_or(255))
}

/// The instance name and the command: with `--instance`, every argument is the command;
/// else the first is the name, and a `--` after it is dropped (as a shell's `--` would be).
fn split_args(instance: Option<&str>, args: &[String]) -> Result<(String, Vec<String>)> {
    if let Some(name) = instance.filter(|n| !n.is_empty()) {
        return Ok((name.to_string(), args.to_vec()));
    }
    let Some((name, rest)) = args.split_first() else {
        bail!("requires instance name as first argument");
    };
    let rest = match rest.first() {
        Some(dd) if dd == "--" => &rest[1..],
        _ => rest,
    };
    Ok((name.clone(), rest.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::split_args;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn instance_and_command() {
        assert_eq!(
            split_args(None, &s(&["a", "--", "ls", "-l"])).unwrap(),
            ("a".into(), s(&["ls", "-l"]))
        );
        assert_eq!(
            split_args(Some("b"), &s(&["ls"])).unwrap(),
            ("b".into(), s(&["ls"]))
        );
        assert!(split_args(None, &[]).is_err());
    }
}
