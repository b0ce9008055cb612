//! `limactl start --progress`: the guest's cloud-init output of this boot, line by line, as
//! `cloudInitProgress` events (upstream's `watchCloudInitProgress`), until cloud-init says it
//! has finished or ten minutes have passed.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::events::CloudInitProgress;
use crate::server::Hub;

/// Upstream's limit for the monitoring.
const LIMIT: Duration = Duration::from_secs(600);

/// Prints `cloud-init-output.log` from this boot's first stage (the last `init-local` line),
/// then follows it; `-F` waits for a file cloud-init has not made yet.
const SCRIPT: &str = r#"f=/var/log/cloud-init-output.log
b=$(sudo awk "/running 'init-local'/{b=NR} END{print b+0}" $f 2>/dev/null)
[ "${b:-0}" -gt 0 ] || b=1
exec sudo tail -n +$b -F $f 2>/dev/null
"#;

/// Whether `line` is cloud-init's last word for this boot (upstream's test).
pub fn is_finished(line: &str) -> bool {
    let l = line.trim().to_ascii_lowercase();
    l.contains("cloud-init") && l.contains("finished")
}

/// Follows the log over SSH (retried while SSH is not up yet; lines already sent are not sent
/// again) and sends each line as an event through `hub`.
pub async fn follow(ssh_args: Vec<String>, hub: Hub) {
    hub.cloud_init(CloudInitProgress {
        active: true,
        ..Default::default()
    });
    let deadline = Instant::now() + LIMIT;
    let mut sent = 0usize;
    let reason = loop {
        match tokio::time::timeout_at(deadline.into(), follow_once(&ssh_args, &hub, &mut sent))
            .await
        {
            Err(_) => break "Cloud-init monitoring timed out after 10 minutes",
            Ok(true) => break "Cloud-init monitoring completed successfully",
            Ok(false) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    hub.cloud_init(CloudInitProgress {
        log_line: reason.to_string(),
        completed: true,
        active: false,
    });
}

/// One SSH session; true once the finished line was seen.
async fn follow_once(ssh_args: &[String], hub: &Hub, sent: &mut usize) -> bool {
    let child = tokio::process::Command::new("ssh")
        .args(ssh_args)
        .args(["--", "/bin/sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(SCRIPT.as_bytes()).await;
    }
    let Some(stdout) = child.stdout.take() else {
        return false;
    };
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = 0usize;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        seen += 1;
        if seen <= *sent {
            continue;
        }
        *sent = seen;
        let finished = is_finished(&line);
        hub.cloud_init(CloudInitProgress {
            log_line: line,
            completed: finished,
            active: !finished,
        });
        if finished {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finished_line_ends_the_monitoring() {
        assert!(is_finished(
            "Cloud-init v. 22.4.2 finished at Mon, 30 Nov 2026 00:10:00 +0000. Datasource \
             DataSourceNoCloud.  Up 80.01 seconds"
        ));
        assert!(!is_finished(
            "Cloud-init v. 22.4.2 running 'modules:final' at Mon, 30 Nov 2026 00:09:00 +0000."
        ));
        assert!(!is_finished(
            "LIMA 2026-11-30T00:09:30+00:00| Executing boot.sh"
        ));
    }

    /// The script picks this boot's part of the log: from the last `init-local` line.
    #[test]
    fn the_script_starts_at_this_boots_first_stage() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("cloud-init-output.log");
        std::fs::write(
            &log,
            "Cloud-init v. 1 running 'init-local' at A\nold\nCloud-init v. 1 finished at A\n\
             Cloud-init v. 1 running 'init-local' at B\nnew\n",
        )
        .unwrap();
        // The script's own lines, with the log path, no sudo, and no following.
        let script = SCRIPT
            .replace("/var/log/cloud-init-output.log", &log.to_string_lossy())
            .replace("sudo ", "")
            .replace(" -F ", " ");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Cloud-init v. 1 running 'init-local' at B\nnew\n"
        );
    }
}
