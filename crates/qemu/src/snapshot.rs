//! Snapshots as upstream's qemu driver takes them: through the monitor (HMP `savevm`,
//! `loadvm`, `delvm`, `info snapshots` over QMP) while qemu runs, with `qemu-img snapshot` on
//! `diffdisk` while it does not.

use std::path::Path;
use std::time::Duration;

use limatype::filenames;

use crate::qmp::{self, QmpError};
use crate::vm::{self, VmError};

/// Saving or loading the RAM of a big guest under TCG takes a while.
const MONITOR_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "invalid snapshot tag {0:?}: it must be non-empty, not start with '-', and have no \
         blanks or control characters"
    )]
    BadTag(String),
    #[error(transparent)]
    Monitor(#[from] QmpError),
    #[error("qemu monitor `{command}`: {message}")]
    Refused { command: String, message: String },
    #[error(transparent)]
    Tool(#[from] VmError),
}

/// What to do with one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Apply,
    Delete,
}

impl Op {
    fn hmp(self) -> &'static str {
        match self {
            Op::Create => "savevm",
            Op::Apply => "loadvm",
            Op::Delete => "delvm",
        }
    }

    fn qemu_img_flag(self) -> &'static str {
        match self {
            Op::Create => "-c",
            Op::Apply => "-a",
            Op::Delete => "-d",
        }
    }
}

/// A tag goes into an HMP command line and a `qemu-img` argument: one word, not an option.
pub fn check_tag(tag: &str) -> Result<(), SnapshotError> {
    let bad = tag.is_empty()
        || tag.starts_with('-')
        || tag.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad {
        return Err(SnapshotError::BadTag(tag.to_string()));
    }
    Ok(())
}

/// HMP answers a failed command with text, not an error: lines starting `Error:` are one.
fn monitor_result(command: &str, out: &str) -> Result<(), SnapshotError> {
    let out = out.replace('\r', "");
    let out = out.trim();
    if out.lines().any(|l| l.starts_with("Error:")) {
        return Err(SnapshotError::Refused {
            command: command.to_string(),
            message: out.to_string(),
        });
    }
    if !out.is_empty() {
        tracing::warn!("output: {out}");
    }
    Ok(())
}

/// Creates, applies or deletes snapshot `tag` of the instance in `dir`.
pub async fn run(dir: &Path, op: Op, tag: &str) -> Result<(), SnapshotError> {
    check_tag(tag)?;
    if vm::qemu_running(dir) {
        let line = format!("{} {tag}", op.hmp());
        tracing::info!("Sending HMP {} command", op.hmp());
        let out = qmp::human_monitor_command(&dir.join(filenames::QMP_SOCK), &line, MONITOR_LIMIT)
            .await?;
        return monitor_result(&line, &out);
    }
    let disk = dir.join(filenames::DIFF_DISK);
    let disk = disk.to_string_lossy();
    vm::run_tool("qemu-img", &["snapshot", op.qemu_img_flag(), tag, &disk]).await?;
    Ok(())
}

/// The snapshot table (`ID TAG VM SIZE DATE VM CLOCK ICOUNT` and a line each), without the
/// heading line qemu puts above it; empty when there are none.
pub async fn list(dir: &Path) -> Result<String, SnapshotError> {
    if vm::qemu_running(dir) {
        let out = qmp::human_monitor_command(
            &dir.join(filenames::QMP_SOCK),
            "info snapshots",
            MONITOR_LIMIT,
        )
        .await?;
        let out = out.replace('\r', "");
        if out.lines().any(|l| l.starts_with("Error:")) {
            return Err(SnapshotError::Refused {
                command: "info snapshots".into(),
                message: out.trim().to_string(),
            });
        }
        return Ok(out
            .replacen("List of snapshots present on all disks:\n", "", 1)
            .replacen("There is no snapshot available.\n", "", 1));
    }
    let disk = dir.join(filenames::DIFF_DISK);
    let out = vm::run_tool("qemu-img", &["snapshot", "-l", &disk.to_string_lossy()]).await?;
    Ok(out.replacen("Snapshot list:\n", "", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_that_would_be_options_or_several_words_are_refused() {
        for bad in ["", "-d", "a b", "a\tb", "a\nloadvm x", "x\u{7}"] {
            assert!(
                matches!(check_tag(bad), Err(SnapshotError::BadTag(_))),
                "{bad:?}"
            );
        }
        for good in ["snap1", "before-upgrade", "2026.11.30", "a_b"] {
            check_tag(good).unwrap();
        }
    }

    #[test]
    fn monitor_error_text_is_an_error_other_text_a_warning() {
        let e = monitor_result(
            "loadvm x",
            "Error: Snapshot 'x' does not exist in one or more devices\r\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(e.to_string().contains("loadvm x"), "{e}");
        monitor_result("savevm x", "").unwrap();
        monitor_result("savevm x", "some note\r\n").unwrap();
    }

    /// Offline snapshots on a real qcow2 with the real `qemu-img` (skipped without it).
    #[tokio::test]
    async fn offline_create_list_apply_delete_with_qemu_img() {
        if crate::machine::find_in_path("qemu-img").is_none() {
            eprintln!("skipped: no qemu-img");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join(filenames::DIFF_DISK);
        vm::run_tool(
            "qemu-img",
            &["create", "-f", "qcow2", &disk.to_string_lossy(), "16M"],
        )
        .await
        .unwrap();
        assert_eq!(list(dir.path()).await.unwrap().trim(), "");
        run(dir.path(), Op::Create, "s1").await.unwrap();
        run(dir.path(), Op::Create, "s2").await.unwrap();
        let table = list(dir.path()).await.unwrap();
        let mut lines = table.lines();
        let head: Vec<_> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(head[..2], ["ID", "TAG"], "{table}");
        let tags: Vec<_> = lines.filter_map(|l| l.split_whitespace().nth(1)).collect();
        assert_eq!(tags, ["s1", "s2"], "{table}");
        run(dir.path(), Op::Apply, "s1").await.unwrap();
        run(dir.path(), Op::Delete, "s1").await.unwrap();
        let e = run(dir.path(), Op::Apply, "s1").await.unwrap_err();
        assert!(e.to_string().contains("s1"), "{e}");
        assert!(!list(dir.path()).await.unwrap().contains("s1"));
    }

    /// Live snapshots through the monitor of a real qemu (no guest OS: the firmware idles
    /// with the disk attached; skipped without qemu-system-x86_64).
    #[tokio::test]
    async fn live_create_list_apply_delete_through_the_monitor() {
        let Some(bin) = crate::machine::find_in_path("qemu-system-x86_64") else {
            eprintln!("skipped: no qemu-system-x86_64");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let disk = d.join(filenames::DIFF_DISK);
        vm::run_tool(
            "qemu-img",
            &["create", "-f", "qcow2", &disk.to_string_lossy(), "16M"],
        )
        .await
        .unwrap();
        let mut child = tokio::process::Command::new(bin)
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-machine",
                "accel=tcg",
                "-m",
                "64",
            ])
            .arg("-drive")
            .arg(format!("file={},format=qcow2,if=virtio", disk.display()))
            .arg("-qmp")
            .arg(format!(
                "unix:{},server=on,wait=off",
                d.join(filenames::QMP_SOCK).display()
            ))
            .arg("-pidfile")
            .arg(d.join(filenames::QEMU_PID))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if vm::qemu_running(d) && d.join(filenames::QMP_SOCK).exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(vm::qemu_running(d), "qemu did not start");
        assert_eq!(list(d).await.unwrap().trim(), "");
        run(d, Op::Create, "live1").await.unwrap();
        let table = list(d).await.unwrap();
        assert!(table.starts_with("ID"), "{table:?}");
        assert!(table.contains("live1"), "{table:?}");
        run(d, Op::Apply, "live1").await.unwrap();
        let e = run(d, Op::Apply, "nosuch").await.unwrap_err();
        assert!(matches!(e, SnapshotError::Refused { .. }), "{e}");
        run(d, Op::Delete, "live1").await.unwrap();
        assert!(!list(d).await.unwrap().contains("live1"));
        child.kill().await.unwrap();
    }
}
