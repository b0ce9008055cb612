//! `limactl shell [flags] INSTANCE [COMMAND...]`: a shell or a command in the guest over SSH,
//! through the instance's generated `ssh.config`. The remote command is built by
//! `sshutil::remote` as upstream builds it; the command's exit code becomes ours.

use std::io::{BufRead, IsTerminal, Write};
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
    /// Copy a host directory to the guest and vice-versa upon exit (needs rsync on both).
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
    let dir = Path::new(&inst.dir);
    if args.reconnect && dir.join(filenames::SSH_SOCK).exists() {
        tracing::info!("Exiting ssh session for the instance {name:?}");
        sshutil::stop_master(dir, &name);
    }
    let mut sync = match args.sync.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => Some(instance::copy::prepare_sync(
            &inst,
            d,
            args.workdir.as_deref(),
        )?),
        None => None,
    };
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
    let change_dir = match &sync {
        // --sync refuses mounts and wsl2, so upstream's earlier cases never apply.
        Some(sync) => format!("cd {}", sshutil::shell_quote(&sync.guest_dir)),
        None => remote::change_dir_command(&remote::ChangeDir {
            workdir: args.workdir.as_deref(),
            host_cwd: host_cwd.as_deref(),
            host_home: host_home.as_deref(),
            mounted: &mounted,
            all_visible: config.and_then(|c| c.vm_type.as_deref()) == Some("wsl2"),
        }),
    };
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
    if let Some(sync) = sync.as_mut() {
        tracing::info!(
            "Syncing host current directory({}) to guest instance...",
            sync.host_dir
        );
        sync.to_guest().context("failed to rsync to the guest")?;
        tracing::info!(
            "Successfully synced host current directory to guest({}) instance.",
            sync.guest_dir
        );
    }
    tracing::debug!("executing ssh: {ssh:?}");
    let status = ssh.status().context("running ssh")?;
    let code = status.code().unwrap_or(255);
    match sync {
        // As upstream, a failed command leaves the guest copy alone.
        Some(sync) if code == 0 => sync_back(&sync, tty).map(|()| 0),
        _ => Ok(code),
    }
}

/// After `--sync`'s command: without --tty the changes are copied back; with it, a summary
/// and a question (yes, no, or view a diff first). The guest copy is removed once answered.
fn sync_back(sync: &instance::copy::Sync, tty: bool) -> Result<()> {
    let keep = |e: anyhow::Error| {
        e.context(format!(
            "preserving guest synced workdir at {}",
            sync.guest_dir
        ))
    };
    let answered = if tty {
        ask_sync_back(sync).map_err(keep)?
    } else {
        copy_back(sync).map_err(keep)?;
        true
    };
    if answered {
        if let Err(e) = sync.remove_guest_dir() {
            tracing::warn!("Failed to clean up guest synced workdir: {e}");
        }
    }
    Ok(())
}

fn copy_back(sync: &instance::copy::Sync) -> Result<()> {
    sync.from_guest(&sync.host_dir)
        .context("failed to sync back the changes from guest instance to host")?;
    tracing::info!("Successfully synced back the changes to host.");
    Ok(())
}

/// Returns whether the question was answered (else the guest copy stays).
fn ask_sync_back(sync: &instance::copy::Sync) -> Result<bool> {
    let (raw, stats) = match sync.stats() {
        Ok(s) => (s.0, Some(s.1)),
        Err(e) => {
            tracing::warn!("failed to get rsync stats: {e}");
            (String::new(), None)
        }
    };
    if stats.as_ref().is_some_and(|s| s.is_empty()) {
        tracing::info!("No changes detected");
        return Ok(true);
    }
    let summary = stats
        .as_ref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    let mut viewed: Option<tempfile::TempDir> = None;
    loop {
        eprint!(
            "⚠️ Accept the changes?{summary}\n  1) Yes\n  2) No\n  3) View the changed contents\nChoose [1-3]: "
        );
        std::io::stderr().flush().ok();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            bail!("no answer (end of input)");
        }
        match line.trim() {
            "1" | "y" | "Y" | "yes" | "Yes" => {
                copy_back(sync)?;
                return Ok(true);
            }
            "2" | "n" | "N" | "no" | "No" => {
                tracing::info!("Skipping syncing back the changes to host.");
                return Ok(true);
            }
            "3" | "v" | "V" => {
                if viewed.is_none() {
                    let tmp = tempfile::Builder::new()
                        .prefix("lima-guest-synced-")
                        .tempdir()
                        .context("failed to create temporary directory")?;
                    let base = Path::new(&sync.host_dir)
                        .file_name()
                        .unwrap_or_default()
                        .to_owned();
                    let dest = tmp.path().join(base);
                    std::fs::create_dir_all(&dest)
                        .context("failed to create temporary directory")?;
                    sync.from_guest(&dest.to_string_lossy())?;
                    viewed = Some(tmp);
                }
                let tmp = viewed.as_ref().map(|t| t.path()).unwrap_or(Path::new("/"));
                show_changes(&sync.host_dir, tmp, stats.as_ref(), &raw)?;
            }
            other => eprintln!("unknown answer {other:?}"),
        }
    }
}

/// The dry run's summary, then `diff -ruN` of the host directory and the guest's copy,
/// through `$PAGER` (default `less -R`).
fn show_changes(
    host_dir: &str,
    tmp: &Path,
    stats: Option<&sshutil::copytool::SyncStats>,
    raw: &str,
) -> Result<()> {
    let base = Path::new(host_dir).file_name().unwrap_or_default();
    let mut text = String::new();
    if let Some(s) = stats {
        text.push_str(&format!(
            "--- rsync dry-run statistics ---\n{s}\n\n{raw}\n\n--- detailed diff ---\n"
        ));
    }
    match std::process::Command::new("diff")
        .args(["-ruN", "--color=always"])
        .arg(host_dir)
        .arg(tmp.join(base))
        .output()
    {
        // diff exits 1 when the files differ.
        Ok(out) if out.status.code().is_some_and(|c| c <= 1) => {
            text.push_str(&String::from_utf8_lossy(&out.stdout))
        }
        Ok(out) => bail!("failed to run diff command: {}", out.status),
        Err(e) => {
            tracing::warn!("`diff` not found; showing rsync dry-run output only: {e}");
        }
    }
    let pager = std::env::var("PAGER")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "less -R".into());
    let words: Vec<&str> = pager.split_whitespace().collect();
    let mut child = std::process::Command::new(words[0])
        .args(&words[1..])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {pager}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A pager quit early closes the pipe: not an error.
        let _ = stdin.write_all(text.as_bytes());
    }
    child.wait().context("failed to wait for the pager")?;
    Ok(())
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
