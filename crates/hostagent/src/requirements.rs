//! What must hold in the guest before an instance counts as running, each checked by running a
//! small script over SSH until it succeeds or time runs out.

use std::borrow::Cow;
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
    /// The guest agent runs but has not announced the end of the boot scripts.
    #[error("the guest agent has not announced the end of the boot scripts")]
    NotAnnounced,
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
    "failed to satisfy the {kind} requirement {index} of {count} {description:?}: {hint} (last error: {last})"
)]
pub struct Unmet {
    /// `essential` (before anything else), `optional` (the user's readiness probes) or
    /// `final` (after the boot scripts).
    pub kind: &'static str,
    pub index: usize,
    pub count: usize,
    pub description: Cow<'static, str>,
    pub hint: Cow<'static, str>,
    #[source]
    pub last: ScriptError,
}

#[derive(Debug, Clone)]
pub struct Requirement {
    pub description: Cow<'static, str>,
    pub script: String,
    pub debug_hint: Cow<'static, str>,
    /// Tried again until the deadline; false when a failure cannot heal by waiting.
    pub retry: bool,
    /// A failure skips the rest of its group (upstream's `fatal`; never retried).
    pub fatal: bool,
}

/// The first essential requirement: the guest answers over SSH.
pub fn ssh() -> Requirement {
    Requirement {
        description: "ssh".into(),
        script: "#!/bin/sh\ntrue\n".into(),
        debug_hint: "Failed to SSH into the guest. Check serial.log for the boot, and that \
                         ssh.localPort is not used by another process on the host."
            .into(),
        retry: true,
        fatal: false,
    }
}

/// The final requirement: the boot scripts (and provisioning) ran.
pub fn boot_done() -> Requirement {
    Requirement {
        description: "boot scripts must have finished".into(),
        script: format!("#!/bin/sh\ntest -e {BOOT_DONE_FILE}\n"),
        debug_hint: "The boot scripts from cidata have not created /run/lima-boot-done. \
                         See /var/log/cloud-init-output.log in the guest."
            .into(),
        retry: true,
        fatal: false,
    }
}

/// A user's readiness probe (`probes[]`, mode `readiness`): its script, run as upstream's
/// `ssh.ExecuteScript` runs it (the `#!` line's interpreter, the instance's `param.env`
/// exported first), until it succeeds.
pub fn probe(description: &str, script: &str, hint: &str) -> Requirement {
    Requirement {
        description: description.to_string().into(),
        script: with_params_exported(script),
        debug_hint: hint.to_string().into(),
        retry: true,
        fatal: false,
    }
}

/// Where the forwarded SSH agent socket is linked in the guest (`ssh.forwardAgent`), a fixed
/// path containers can mount; the boot script makes its directory the user's.
pub const SSH_AUTH_SOCK_LINK: &str = "/run/host-services/ssh-auth.sock";

/// Upstream's script run once after the essential requirements when `ssh.forwardAgent` is on:
/// links the session's `SSH_AUTH_SOCK` (set by sshd because ssh.config forwards the agent)
/// to [`SSH_AUTH_SOCK_LINK`]. Fails at once when the session has no forwarded agent. SSH
/// answers before boot.sh has made the link's directory the user's: that is waited for (up
/// to a minute).
pub fn link_ssh_agent_script() -> String {
    let dir = SSH_AUTH_SOCK_LINK.rsplit_once('/').map_or("/", |(d, _)| d);
    format!(
        "#!/bin/sh\nset -eux\n: \"${{SSH_AUTH_SOCK}}\"\ni=0\n\
         while [ ! -w {dir} ] && [ \"$i\" -lt 60 ]; do i=$((i + 1)); sleep 1; done\n\
         ln -sf \"${{SSH_AUTH_SOCK}}\" {SSH_AUTH_SOCK_LINK}\n"
    )
}

/// Upstream's optional requirements of a Linux guest with `containerd.system` or
/// `containerd.user` (not in plain mode), in its order and words, before the user's probes:
/// systemd (fatal: without it nothing further is checked), then nerdctl installed under
/// `guest_install_prefix` by the boot script. Run like probes (`param.env` exported, the
/// script's own `#!` interpreter).
pub fn containerd(guest_install_prefix: &str) -> Vec<Requirement> {
    let prefix = sshutil::shell_quote(guest_install_prefix);
    vec![
        Requirement {
            description: "systemd must be available".into(),
            script: with_params_exported(
                "#!/bin/bash\nset -eux -o pipefail\n\
                 if ! command -v systemctl 2>&1 >/dev/null; then\n    \
                 echo >&2 \"systemd is not available on this OS\"\n    exit 1\nfi\n",
            ),
            debug_hint: "systemd is required to run containerd, but does not seem to be \
                         available.\nMake sure that you use an image that supports systemd. If \
                         you do not want to run\ncontainerd, please make sure that both \
                         'container.system' and 'containerd.user'\nare set to 'false' in the \
                         config file.\n"
                .into(),
            retry: false,
            fatal: true,
        },
        Requirement {
            description: "containerd binaries to be installed".into(),
            script: with_params_exported(&format!(
                "#!/bin/sh\nset -eux\ncommand -v nerdctl || test -x {prefix}/bin/nerdctl\n"
            )),
            debug_hint: "The nerdctl binary was not installed in the guest.\nMake sure that you \
                         are using an officially supported image.\nAlso see \
                         \"/var/log/cloud-init-output.log\" in the guest.\n"
                .into(),
            retry: true,
            fatal: false,
        },
    ]
}

/// Where the seed is mounted in a Linux guest (the boot runner's `LIMA_CIDATA_MNT`).
const CIDATA_MNT: &str = "/mnt/lima-cidata";

/// `script` run by [`run_script`] (which feeds it to `/bin/sh`): `param.env` exported, then
/// the script's own interpreter (its `#!` line; `/bin/sh` without one) reading the script
/// from a here-document.
fn with_params_exported(script: &str) -> String {
    let interpreter = script
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .unwrap_or("/bin/sh");
    let mut delim = String::from("LIMA_PROBE_EOF");
    while script.lines().any(|l| l == delim) {
        delim.push('_');
    }
    format!(
        "param_env=\"$(sudo cat {CIDATA_MNT}/param.env 2>/dev/null)\"\n\
         while read -r line; do [ -n \"$line\" ] && export \"$line\"; done <<EOF\n\
         ${{param_env}}\nEOF\n\
         exec {interpreter} <<'{delim}'\n{script}\n{delim}\n"
    )
}

/// A mount the guest must show once the boot scripts ran: its mount point and file system
/// type as in `/proc/mounts` (`9p`, `virtiofs`, `fuse.sshfs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedMount {
    pub location: String,
    pub mount_point: String,
    pub fs_type: &'static str,
    /// Whether it has an fstab line (9p, virtiofs), so `mount MOUNTPOINT` can say why it fails.
    pub in_fstab: bool,
}

/// Checked once after the boot scripts: every mount is there. A missing one is tried once
/// more by hand, so the error is the guest's own (`unknown filesystem type '9p'`...).
pub fn mounts(expected: &[ExpectedMount]) -> Requirement {
    let mut script = format!("#!/bin/sh\n{}\nfail=0\n", crate::sshfs::IS_MOUNTED_FN);
    for m in expected {
        let check = crate::sshfs::is_mounted_call(&m.mount_point, m.fs_type);
        let point = sshutil::shell_quote(&m.mount_point);
        let retry = if m.in_fstab {
            format!("err=$(sudo mount {point} 2>&1) || true\n  ")
        } else {
            "err=\n  ".to_string()
        };
        let what = sshutil::shell_quote(&format!(
            "{} ({}, from the host's {})",
            m.mount_point, m.fs_type, m.location
        ));
        script.push_str(&format!(
            "if ! {check}; then\n  {retry}if ! {check}; then\n    \
             echo {what}\": ${{err:-not mounted}}\" >&2\n    fail=1\n  fi\nfi\n"
        ));
    }
    script.push_str("exit $fail\n");
    Requirement {
        description: "mounts must be mounted".into(),
        script,
        debug_hint: "A host directory of `mounts` is not mounted in the guest; the error \
                     above is the guest's. See docs/mounts.md for what each mountType needs."
            .into(),
        retry: false,
        fatal: false,
    }
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
    kind: &'static str,
    reqs: &[Requirement],
    ssh_args: &[String],
    deadline: Instant,
    poll: Duration,
    mut progress: impl FnMut(String),
) -> Result<(), Unmet> {
    for (i, r) in reqs.iter().enumerate() {
        let at = Numbered {
            kind,
            index: i + 1,
            count: reqs.len(),
        };
        wait_one(at, r, ssh_args, deadline, poll, &mut progress).await?;
    }
    Ok(())
}

/// Waits for each optional requirement in turn, each with `timeout` from its own start; an
/// unmet one is reported (returned), not fatal to the instance, unless it is `fatal`: then
/// the rest are skipped, as upstream's `waitForRequirements`.
pub async fn wait_optional(
    reqs: &[Requirement],
    ssh_args: &[String],
    timeout: Duration,
    poll: Duration,
    mut progress: impl FnMut(String),
) -> Vec<String> {
    let mut unmet = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let at = Numbered {
            kind: "optional",
            index: i + 1,
            count: reqs.len(),
        };
        let deadline = Instant::now() + timeout;
        let Err(e) = wait_one(at, r, ssh_args, deadline, poll, &mut progress).await else {
            continue;
        };
        if r.fatal {
            progress("No further optional requirements will be checked".to_string());
            unmet.push(format!("{e}; skipping further checks"));
            break;
        }
        unmet.push(e.to_string());
    }
    unmet
}

/// Where a requirement stands in its list, for progress lines and errors (`the optional
/// requirement 2 of 3`).
#[derive(Debug, Clone, Copy)]
pub struct Numbered {
    pub kind: &'static str,
    pub index: usize,
    pub count: usize,
}

/// Waits until `r` holds (or, unless it retries, fails once), by `deadline`.
pub async fn wait_one(
    at: Numbered,
    r: &Requirement,
    ssh_args: &[String],
    deadline: Instant,
    poll: Duration,
    mut progress: impl FnMut(String),
) -> Result<(), Unmet> {
    let Numbered { kind, index, count } = at;
    progress(format!(
        "Waiting for the {kind} requirement {index} of {count}: {:?}",
        r.description
    ));
    loop {
        let err = match run_script(ssh_args, &r.script, Duration::from_secs(30)).await {
            Ok(()) => break,
            Err(e) => e,
        };
        if !r.retry || Instant::now() >= deadline {
            return Err(Unmet {
                kind,
                index,
                count,
                description: r.description.clone(),
                hint: r.debug_hint.clone(),
                last: err,
            });
        }
        tracing::debug!("requirement {:?} not met yet: {err}", r.description);
        tokio::time::sleep(poll).await;
    }
    progress(format!(
        "The {kind} requirement {index} of {count} is satisfied"
    ));
    Ok(())
}

/// How [`wait_boot_done`] learnt that the boot scripts are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootSignal {
    /// The guest agent's `boot` message (no SSH session spent on it).
    GuestAgent,
    /// [`boot_done`]'s script over SSH (a guest without an agent that announces it).
    Ssh,
}

/// While the guest agent channel exists but no agent has answered on it yet, the SSH check
/// runs this seldom: the boot script starts the agent shortly before its end, and an agent
/// that never comes (a broken install) costs at most this much.
pub const AGENT_PENDING_POLL: Duration = Duration::from_secs(10);

/// Waits for [`boot_done`] by event where it can: while a guest agent that announces the
/// end of the boot scripts is connected (`guest`, from `portfwd`), nothing runs in the guest;
/// before it connects, `check` (the script over SSH) runs every [`AGENT_PENDING_POLL`];
/// without a channel (`None`) or with an agent that does not announce (protocol 1), every
/// `poll`. A change of the agent's state ends any wait, and any SSH check in flight, at once.
/// Under emulation each SSH session costs the guest CPU the boot needs.
pub async fn wait_boot_done<F, Fut>(
    at: Numbered,
    guest: Option<tokio::sync::watch::Receiver<portfwd::GuestStatus>>,
    mut check: F,
    deadline: Instant,
    poll: Duration,
    mut progress: impl FnMut(String),
) -> Result<BootSignal, Unmet>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ScriptError>>,
{
    let r = boot_done();
    let Numbered { kind, index, count } = at;
    progress(format!(
        "Waiting for the {kind} requirement {index} of {count}: {:?}",
        r.description
    ));
    // `None` once the forwarder is gone (or without one): SSH alone from there on.
    let mut guest = guest;
    let mut last = ScriptError::NotAnnounced;
    let signal = loop {
        let status = guest
            .as_mut()
            .map(|g| *g.borrow_and_update())
            .unwrap_or_default();
        if status.boot_done {
            break BootSignal::GuestAgent;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Unmet {
                kind,
                index,
                count,
                description: r.description,
                hint: r.debug_hint,
                last,
            });
        }
        let wait = if status.announces_boot() {
            last = ScriptError::NotAnnounced;
            deadline - now
        } else {
            // A check in flight is dropped (its ssh killed) when the agent's state changes:
            // under load one SSH session can take longer than the agent needs to announce.
            let mut forwarder_gone = false;
            let outcome = match guest.as_mut() {
                Some(g) => tokio::select! {
                    r = check() => Some(r),
                    changed = g.changed() => {
                        forwarder_gone = changed.is_err();
                        None
                    }
                },
                None => Some(check().await),
            };
            if forwarder_gone {
                guest = None;
            }
            match outcome {
                None => continue,
                Some(Ok(())) => break BootSignal::Ssh,
                Some(Err(e)) => {
                    tracing::debug!("requirement {:?} not met yet: {e}", r.description);
                    last = e;
                }
            }
            let every = match (&guest, status.agent_version) {
                (Some(_), None) => AGENT_PENDING_POLL,
                _ => poll,
            };
            every.min(deadline.saturating_duration_since(Instant::now()))
        };
        match guest.as_mut() {
            Some(g) => tokio::select! {
                changed = g.changed() => if changed.is_err() {
                    guest = None;
                },
                _ = tokio::time::sleep(wait) => {}
            },
            None => tokio::time::sleep(wait).await,
        }
    };
    let by = match signal {
        BootSignal::GuestAgent => "announced by the guest agent",
        BootSignal::Ssh => "checked over SSH",
    };
    progress(format!(
        "The {kind} requirement {index} of {count} is satisfied ({by})"
    ));
    Ok(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe wrapper, run by a local `sh` as the guest's would: the script's own
    /// interpreter runs it, whatever lines it holds, and its exit code is the wrapper's.
    #[test]
    fn probe_scripts_run_with_their_interpreter() {
        let run = |script: &str| {
            let wrapped = with_params_exported(script);
            std::process::Command::new("sh")
                .arg("-c")
                .arg(wrapped)
                .output()
                .unwrap()
        };
        let out = run("#!/bin/bash\nset -eu\nx=(a b)\necho \"${x[1]} $BASH_VERSION\" | cut -c1-2");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "b \n");
        // A script holding the wrapper's own here-document delimiter.
        let out = run("#!/bin/sh\ncat <<LIMA_PROBE_EOF\nhi\nLIMA_PROBE_EOF\nexit 3");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
        assert_eq!(out.status.code(), Some(3));
        let r = probe("docker", "#!/bin/sh\ntrue", "install docker");
        assert_eq!(
            (r.description.as_ref(), r.debug_hint.as_ref()),
            ("docker", "install docker")
        );
        assert!(r.retry);
    }

    /// The agent link script, run by a local `sh` with the link's path moved: it links the
    /// session's agent socket (replacing an older link), and fails without one.
    #[test]
    fn link_ssh_agent_links_the_sessions_socket() {
        let script = link_ssh_agent_script();
        assert!(script.contains("ln -sf \"${SSH_AUTH_SOCK}\" /run/host-services/ssh-auth.sock"));
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("ssh-auth.sock");
        let script = script
            .replace(SSH_AUTH_SOCK_LINK, &link.display().to_string())
            .replace("/run/host-services", &dir.path().display().to_string());
        let run = |sock: Option<&str>| {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(&script).env_remove("SSH_AUTH_SOCK");
            if let Some(s) = sock {
                c.env("SSH_AUTH_SOCK", s);
            }
            c.output().unwrap().status.success()
        };
        assert!(run(Some("/tmp/ssh-old/agent.1")));
        assert!(run(Some("/tmp/ssh-new/agent.2")));
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/tmp/ssh-new/agent.2")
        );
        assert!(!run(None), "no forwarded agent must fail");
    }

    /// Upstream's containerd requirements, in its order and words; run by a local `sh` as the
    /// guest's would: systemd found on PATH or not, nerdctl on PATH or under the prefix.
    #[test]
    fn containerd_requirements_in_upstreams_order() {
        let reqs = containerd("/opt/lima prefix");
        let names: Vec<&str> = reqs.iter().map(|r| r.description.as_ref()).collect();
        assert_eq!(
            names,
            [
                "systemd must be available",
                "containerd binaries to be installed"
            ]
        );
        assert!(reqs[0].fatal && !reqs[0].retry);
        assert!(!reqs[1].fatal && reqs[1].retry);
        assert!(reqs[0]
            .debug_hint
            .starts_with("systemd is required to run containerd"));
        assert!(reqs[1]
            .debug_hint
            .starts_with("The nerdctl binary was not installed"));
        assert!(
            reqs[1]
                .script
                .contains("test -x '/opt/lima prefix'/bin/nerdctl"),
            "{}",
            reqs[1].script
        );
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let run = |script: &str, path: &Path| {
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(script)
                .env("PATH", path)
                .output()
                .unwrap()
                .status
                .success()
        };
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(
            !run(&reqs[0].script, &empty),
            "no systemctl on PATH must fail"
        );
        for tool in ["systemctl", "nerdctl"] {
            let f = bin.join(tool);
            std::fs::write(&f, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert!(run(&reqs[0].script, &bin));
        assert!(!run(&reqs[1].script, &empty), "no nerdctl must fail");
        assert!(run(&reqs[1].script, &bin), "nerdctl on PATH");
        let under_prefix = containerd(&dir.path().display().to_string());
        assert!(
            run(&under_prefix[1].script, &empty),
            "nerdctl under the prefix"
        );
    }

    /// An unmet fatal optional requirement skips the rest (ssh to a closed port fails at once).
    #[tokio::test]
    async fn fatal_optional_requirement_skips_the_rest() {
        let args = closed_port_args();
        let mut reqs = containerd("/usr/local");
        reqs.push(probe("mine", "#!/bin/sh\ntrue", "hint"));
        let mut steps = vec![];
        let unmet = wait_optional(
            &reqs,
            &args,
            Duration::from_secs(1),
            Duration::from_millis(100),
            |s| steps.push(s),
        )
        .await;
        assert_eq!(unmet.len(), 1, "{unmet:?}");
        assert!(
            unmet[0].starts_with(
                "failed to satisfy the optional requirement 1 of 3 \"systemd must be available\""
            ) && unmet[0].ends_with("; skipping further checks"),
            "{unmet:?}"
        );
        assert_eq!(
            steps.last().map(String::as_str),
            Some("No further optional requirements will be checked")
        );
        assert!(
            !steps.iter().any(|s| s.contains("requirement 2 of 3")),
            "{steps:?}"
        );
        // Without the fatal one, each is tried and reported.
        let unmet = wait_optional(
            &reqs[1..],
            &args,
            Duration::from_millis(300),
            Duration::from_millis(100),
            |_| {},
        )
        .await;
        assert_eq!(unmet.len(), 2, "{unmet:?}");
    }

    /// ssh arguments for 127.0.0.1 on a port nothing listens on.
    fn closed_port_args() -> Vec<String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        [
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
        .collect()
    }

    #[tokio::test]
    async fn unreachable_guest_fails_naming_requirement() {
        // Nothing listens on this port: ssh fails fast and the deadline ends the wait.
        let args = closed_port_args();
        let mut steps = vec![];
        let e = wait_all(
            "essential",
            &[ssh(), boot_done()],
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

    fn final_1_of_1() -> Numbered {
        Numbered {
            kind: "final",
            index: 1,
            count: 1,
        }
    }

    /// [`wait_boot_done`] as "final requirement 1 of 1", polling every 20 ms, no progress.
    async fn wait_quietly<F, Fut>(
        guest: Option<tokio::sync::watch::Receiver<portfwd::GuestStatus>>,
        check: F,
        within: Duration,
    ) -> Result<BootSignal, Unmet>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), ScriptError>>,
    {
        let deadline = Instant::now() + within;
        let poll = Duration::from_millis(20);
        wait_boot_done(final_1_of_1(), guest, check, deadline, poll, |_| {}).await
    }

    /// A stand-in for the SSH check: counts its calls, fails the first `fail` of them.
    fn counting_check(
        fail: usize,
    ) -> (
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
        impl FnMut() -> std::future::Ready<Result<(), ScriptError>>,
    ) {
        use std::sync::atomic::Ordering;
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        let check = move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if n < fail {
                Err(ScriptError::NotAnnounced)
            } else {
                Ok(())
            })
        };
        (calls, check)
    }

    /// With a guest agent that announces the boot, the wait ends on its event and no SSH
    /// check runs at all.
    #[tokio::test]
    async fn boot_done_comes_from_the_guest_agent_without_ssh() {
        let (tx, rx) = tokio::sync::watch::channel(portfwd::GuestStatus {
            agent_version: Some(2),
            boot_done: false,
        });
        let (calls, check) = counting_check(0);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.send_modify(|s| s.boot_done = true);
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let mut steps = vec![];
        let t = Instant::now();
        let signal = wait_boot_done(
            final_1_of_1(),
            Some(rx),
            check,
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(50),
            |s| steps.push(s),
        )
        .await
        .unwrap();
        assert_eq!(signal, BootSignal::GuestAgent);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(
            steps[1].ends_with("(announced by the guest agent)"),
            "{steps:?}"
        );
    }

    /// Without a guest agent channel (or with an agent that does not announce the boot,
    /// protocol 1), the SSH check polls every `poll` until it passes.
    #[tokio::test]
    async fn boot_done_falls_back_to_ssh_polling() {
        for guest in [
            None,
            Some(
                tokio::sync::watch::channel(portfwd::GuestStatus {
                    agent_version: Some(1),
                    boot_done: false,
                })
                .1,
            ),
        ] {
            let (calls, check) = counting_check(2);
            let mut steps = vec![];
            let signal = wait_boot_done(
                final_1_of_1(),
                guest,
                check,
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(20),
                |s| steps.push(s),
            )
            .await
            .unwrap();
            assert_eq!(signal, BootSignal::Ssh);
            assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
            assert!(steps[1].ends_with("(checked over SSH)"), "{steps:?}");
        }
    }

    /// An agent that never announces: the deadline ends the wait with the requirement's
    /// hint and the reason, and SSH was never tried.
    #[tokio::test]
    async fn a_silent_guest_agent_fails_the_final_requirement_at_the_deadline() {
        let (_tx, rx) = tokio::sync::watch::channel(portfwd::GuestStatus {
            agent_version: Some(2),
            boot_done: false,
        });
        let (calls, check) = counting_check(0);
        let e = wait_quietly(Some(rx), check, Duration::from_millis(300))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("final requirement 1 of 1"), "{e}");
        assert!(e.contains("/run/lima-boot-done"), "{e}");
        assert!(e.contains("has not announced"), "{e}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    /// A channel with no agent on it yet: SSH is tried at once, then only every
    /// AGENT_PENDING_POLL; the agent's announcement ends the wait without waiting for it.
    #[tokio::test]
    async fn before_the_agent_answers_ssh_is_tried_seldom() {
        let (tx, rx) = tokio::sync::watch::channel(portfwd::GuestStatus::default());
        let (calls, check) = counting_check(usize::MAX);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            tx.send_replace(portfwd::GuestStatus {
                agent_version: Some(2),
                boot_done: true,
            });
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let t = Instant::now();
        let signal = wait_quietly(Some(rx), check, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(signal, BootSignal::GuestAgent);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    /// An SSH check in flight when the agent's session comes up is dropped: the agent's
    /// announcement decides, not a slow session that started before it.
    #[tokio::test]
    async fn a_slow_ssh_check_gives_way_to_the_agent() {
        let (tx, rx) = tokio::sync::watch::channel(portfwd::GuestStatus::default());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.send_modify(|s| s.agent_version = Some(2));
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.send_modify(|s| s.boot_done = true);
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let t = Instant::now();
        let slow_check = || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        };
        let signal = wait_quietly(Some(rx), slow_check, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(signal, BootSignal::GuestAgent);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
}
