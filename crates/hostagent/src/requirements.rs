//! What must hold in the guest before an instance counts as running, each checked by running a
//! small script over SSH until it succeeds or time runs out.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

/// Written by the boot scripts when they have all run.
pub const BOOT_DONE_FILE: &str = "/run/lima-boot-done";

/// Why a requirement script did not pass.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot run ssh: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Wait(#[source] std::io::Error),
    /// The script (or ssh) exited non-zero, with ssh's stderr.
    #[error("{status}: {stderr}")]
    Failed {
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// A requirement not met by the deadline: which one, its hint and the last error.
#[derive(Debug, thiserror::Error)]
#[error(
    "failed to satisfy the essential requirement {index} of {count} {description:?}: {hint} (last error: {last})"
)]
pub struct Unmet {
    pub index: usize,
    pub count: usize,
    pub description: &'static str,
    pub hint: &'static str,
    #[source]
    pub last: ScriptError,
}

#[derive(Debug, Clone)]
pub struct Requirement {
    pub description: &'static str,
    pub script: String,
    pub debug_hint: &'static str,
}

/// The essential requirements, in order.
pub fn essential() -> Vec<Requirement> {
    vec![
        Requirement {
            description: "ssh",
            script: "#!/bin/sh\ntrue\n".into(),
            debug_hint: "Failed to SSH into the guest. Check serial.log for the boot, and that \
                         ssh.localPort is not used by another process on the host.",
        },
        Requirement {
            description: "boot scripts must have finished",
            script: format!("#!/bin/sh\ntest -e {BOOT_DONE_FILE}\n"),
            debug_hint: "The boot scripts from cidata have not created /run/lima-boot-done. \
                         See /var/log/cloud-init-output.log in the guest.",
        },
    ]
}

/// Runs `script` in the guest through `ssh ARGS -- /bin/sh` (script on stdin); Err holds
/// ssh's stderr.
pub async fn run_script(
    ssh_args: &[String],
    script: &str,
    timeout: Duration,
) -> Result<(), ScriptError> {
    let mut child = tokio::process::Command::new("ssh")
        .args(ssh_args)
        .args(["--", "/bin/sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(ScriptError::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped");
    let script = script.to_string();
    let feed = async move {
        let _ = stdin.write_all(script.as_bytes()).await;
        drop(stdin);
    };
    let run = async {
        feed.await;
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Err(ScriptError::Timeout(timeout)),
        Ok(Err(e)) => Err(ScriptError::Wait(e)),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(ScriptError::Failed {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

/// The ssh arguments the host agent uses: the instance's `ssh.config`, plus a connect timeout.
pub fn ssh_args(ssh_config: &Path, inst_name: &str) -> Vec<String> {
    let mut args = vec!["-o".into(), "ConnectTimeout=10".into()];
    args.extend(sshutil::args_from_config(ssh_config, inst_name));
    args
}

/// Waits until every requirement holds in turn, calling `progress` with readable steps.
/// Fails naming the first requirement not met by `deadline`, with its hint and last error.
pub async fn wait_all(
    reqs: &[Requirement],
    ssh_args: &[String],
    deadline: Instant,
    poll: Duration,
    mut progress: impl FnMut(String),
) -> Result<(), Unmet> {
    let n = reqs.len();
    for (i, r) in reqs.iter().enumerate() {
        progress(format!(
            "Waiting for the essential requirement {} of {n}: {:?}",
            i + 1,
            r.description
        ));
        loop {
            let err = match run_script(ssh_args, &r.script, Duration::from_secs(30)).await {
                Ok(()) => break,
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(Unmet {
                    index: i + 1,
                    count: n,
                    description: r.description,
                    hint: r.debug_hint,
                    last: err,
                });
            }
            tracing::debug!("requirement {:?} not met yet: {err}", r.description);
            tokio::time::sleep(poll).await;
        }
        progress(format!(
            "The essential requirement {} of {n} is satisfied",
            i + 1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_guest_fails_naming_requirement() {
        // Nothing listens on this port: ssh fails fast and the deadline ends the wait.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let args: Vec<String> = [
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=2",
            "-p",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([port.to_string(), "127.0.0.1".into()])
        .collect();
        let mut steps = vec![];
        let e = wait_all(
            &essential(),
            &args,
            Instant::now() + Duration::from_secs(1),
            Duration::from_millis(200),
            |s| steps.push(s),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("requirement 1 of 2 \"ssh\""), "{e}");
        assert!(e.contains("refused"), "{e}");
        assert_eq!(steps.len(), 1, "{steps:?}");
    }
}
