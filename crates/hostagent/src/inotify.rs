//! `mountInotify`: changes to files under the host's mount locations reach the guest as
//! inotify events. The host watches each location (the `notify` crate: inotify on Linux,
//! FSEvents/kqueue elsewhere) and sends the changed file's guest path and modification time
//! to the guest agent, which sets the file's times there (upstream's design: 9p, virtiofs
//! and sshfs raise no inotify events in the guest for changes made on the host).

use std::path::{Path, PathBuf};

use notify::event::{EventKind, ModifyKind};
use notify::Watcher;

/// A watched mount: its host location and guest mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedMount {
    pub location: PathBuf,
    pub mount_point: String,
}

/// The mounts to watch when `mountInotify` is on (none when off).
pub fn plan(config: &limatype::Filled) -> Vec<WatchedMount> {
    if !config.mount_inotify.unwrap_or(false) {
        return vec![];
    }
    config
        .mounts
        .iter()
        .flatten()
        .map(|m| WatchedMount {
            location: PathBuf::from(&m.location),
            mount_point: m.mount_point.clone().unwrap_or_else(|| m.location.clone()),
        })
        .collect()
}

/// Where `host_path` is in the guest: under the mount whose location holds it (the deepest
/// one, when mounts nest).
pub fn guest_path(mounts: &[WatchedMount], host_path: &Path) -> Option<String> {
    mounts
        .iter()
        .filter_map(|m| {
            let rest = host_path.strip_prefix(&m.location).ok()?;
            Some((m.location.components().count(), m, rest))
        })
        .max_by_key(|(depth, _, _)| *depth)
        .map(|(_, m, rest)| {
            let base = m.mount_point.trim_end_matches('/');
            if rest.as_os_str().is_empty() {
                m.mount_point.clone()
            } else {
                format!("{base}/{}", rest.display())
            }
        })
}

/// Only content changes and new files: the guest agent's own time updates come back as
/// metadata changes on shared file systems, and must not bounce.
fn is_content_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any)
    )
}

/// Starts watching; each change is sent as `{"type": "inotify", "path", "unix_ms"}` on `tx`
/// (dropped when the guest is slow to take them). Watching ends when the watcher is dropped.
pub fn watch(
    mounts: Vec<WatchedMount>,
    tx: tokio::sync::mpsc::Sender<serde_json::Value>,
) -> notify::Result<notify::RecommendedWatcher> {
    let table = mounts.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if !is_content_change(&event.kind) {
            return;
        }
        for path in &event.paths {
            let (Some(guest), Ok(meta)) = (guest_path(&table, path), std::fs::metadata(path))
            else {
                continue;
            };
            let unix_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            let msg = serde_json::json!({"type": "inotify", "path": guest, "unix_ms": unix_ms});
            let _ = tx.try_send(msg);
        }
    })?;
    for m in &mounts {
        watcher.watch(&m.location, notify::RecursiveMode::Recursive)?;
    }
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Vec<WatchedMount> {
        vec![
            WatchedMount {
                location: "/home/alice".into(),
                mount_point: "/home/alice".into(),
            },
            WatchedMount {
                location: "/home/alice/src".into(),
                mount_point: "/mnt/src/".into(),
            },
        ]
    }

    #[test]
    fn host_paths_map_to_the_deepest_mount() {
        let m = mounts();
        assert_eq!(
            guest_path(&m, Path::new("/home/alice/a b.txt")).as_deref(),
            Some("/home/alice/a b.txt")
        );
        assert_eq!(
            guest_path(&m, Path::new("/home/alice/src/x/y.rs")).as_deref(),
            Some("/mnt/src/x/y.rs")
        );
        assert_eq!(guest_path(&m, Path::new("/home/alicex/y")), None);
        assert_eq!(guest_path(&m, Path::new("/etc/passwd")), None);
    }

    #[tokio::test]
    async fn a_host_write_is_reported_with_its_guest_path_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let _w = watch(
            vec![WatchedMount {
                location: dir.path().to_path_buf(),
                mount_point: "/mnt/w".into(),
            }],
            tx,
        )
        .unwrap();
        std::fs::write(dir.path().join("f.txt"), "hello").unwrap();
        let mtime = std::fs::metadata(dir.path().join("f.txt"))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // Create, then modify: the last message carries the file's final mtime.
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .expect("no message with the file's final mtime")
                .unwrap();
            assert_eq!(msg["type"], "inotify");
            assert_eq!(msg["path"], "/mnt/w/f.txt");
            if msg["unix_ms"] == mtime {
                break;
            }
        }
    }
}
