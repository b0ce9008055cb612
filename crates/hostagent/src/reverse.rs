//! Reverse socket forwards (`portForwards` rules with `reverse: true`): a unix socket in the
//! guest whose connections reach a unix socket on the host. Done over SSH (`ssh -R`), as
//! upstream does: the guest agent's channel only carries connections the host opens. One ssh
//! process per rule, started again if it ends while the instance runs.

use std::path::PathBuf;
use std::time::Duration;

use crate::requirements::run_script;

/// How long to wait before starting a reverse forward's ssh again after it ended.
const RESTART_DELAY: Duration = Duration::from_secs(2);

/// The ssh command line for one reverse forward: `ssh_args` (options, then the destination
/// last) with the forward and its options put before the destination. No connection sharing:
/// the forward must live in this process, not in a master that outlives it.
pub fn ssh_command(ssh_args: &[String], host: &str, guest: &str) -> Vec<String> {
    let (dest, opts) = ssh_args
        .split_last()
        .map_or((None, ssh_args), |(d, o)| (Some(d), o));
    let mut args: Vec<String> = opts.to_vec();
    for o in [
        "ControlMaster=no",
        "ControlPath=none",
        "ExitOnForwardFailure=yes",
        "ServerAliveInterval=5",
    ] {
        args.push("-o".into());
        args.push(o.into());
    }
    args.push("-N".into());
    args.push("-R".into());
    args.push(format!("{guest}:{host}"));
    args.extend(dest.cloned());
    args
}

/// Keeps one reverse forward up until the task is aborted. `report` gets readable lines.
pub async fn run(ssh_args: Vec<String>, host: PathBuf, guest: String, report: portfwd::Report) {
    let host_text = host.display().to_string();
    let quoted = sshutil::shell_quote(&guest);
    // sshd does not replace an existing socket file (StreamLocalBindUnlink is off by default).
    let prepare = format!("#!/bin/sh\nrm -f {quoted} && mkdir -p \"$(dirname {quoted})\"\n");
    let mut announced = false;
    loop {
        if let Err(e) = run_script(&ssh_args, &prepare, Duration::from_secs(30)).await {
            tracing::debug!("preparing the guest socket {guest}: {e}");
        }
        let child = match tokio::process::Command::new("ssh")
            .args(ssh_command(&ssh_args, &host_text, &guest))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                report(format!(
                    "Not forwarding unix {host_text} to guest {guest}: ssh: {e}"
                ));
                return;
            }
        };
        if !announced {
            report(format!(
                "Forwarding unix {host_text} to guest unix {guest} (reverse, ssh)"
            ));
            announced = true;
        }
        let out = child.wait_with_output().await;
        let why = match out {
            Ok(o) => format!(
                "{}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => e.to_string(),
        };
        tracing::warn!("reverse forward {guest} -> {host_text} ended ({why}); restarting");
        tokio::time::sleep(RESTART_DELAY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forward_goes_before_the_destination() {
        let base: Vec<String> = ["-o", "ConnectTimeout=10", "-F", "/i/ssh.config", "lima-x"]
            .map(String::from)
            .to_vec();
        let args = ssh_command(&base, "/h/docker.sock", "/run/docker.sock");
        assert_eq!(args.last().map(String::as_str), Some("lima-x"));
        let r = args.iter().position(|a| a == "-R").unwrap();
        assert_eq!(args[r + 1], "/run/docker.sock:/h/docker.sock");
        assert!(args.contains(&"ControlPath=none".to_string()));
        assert!(args.contains(&"-N".to_string()));
        assert_eq!(&args[..4], &base[..4]);
    }
}
