//! Pid files and process liveness, without spawning anything.

use std::path::Path;

use crate::{io_err, Result, StoreError};

/// Whether `pid` names a live process: `kill(pid, 0)` succeeds (or is refused for lack of
/// permission, which also means it exists), and it is not a zombie waiting to be reaped.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission; nothing is delivered.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        return false;
    }
    !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold spaces.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

/// The pid in `path` if that process is alive; `None` if the file is missing or the process is
/// gone (then the stale file is removed). A file that does not hold a pid is an error.
pub fn read_pid_file(path: &Path) -> Result<Option<i32>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let text = text.trim();
    if text.is_empty() {
        // Written but not yet filled (qemu creates the file, then writes the pid).
        return Ok(None);
    }
    let pid: i32 = text.parse().map_err(|_| StoreError::Invalid {
        path: path.to_path_buf(),
        why: format!("not a pid: {text:?}"),
    })?;
    if pid_alive(pid) {
        Ok(Some(pid))
    } else {
        let _ = std::fs::remove_file(path);
        Ok(None)
    }
}

/// Writes our own pid, owner-only.
pub fn write_pid_file(path: &Path, pid: u32) -> Result<()> {
    crate::write_private_file(path, format!("{pid}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_alive_and_stale_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pid");
        assert_eq!(read_pid_file(&p).unwrap(), None);
        write_pid_file(&p, std::process::id()).unwrap();
        assert_eq!(read_pid_file(&p).unwrap(), Some(std::process::id() as i32));

        // A child that has exited and been reaped is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        write_pid_file(&p, pid).unwrap();
        assert_eq!(read_pid_file(&p).unwrap(), None);
        assert!(!p.exists(), "stale pid file kept");

        std::fs::write(&p, "garbage").unwrap();
        let err = read_pid_file(&p).unwrap_err().to_string();
        assert!(err.contains("x.pid") && err.contains("garbage"), "{err}");
    }

    #[test]
    fn zombie_is_not_alive() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: wait until it has exited and become a zombie.
        for _ in 0..200 {
            if is_zombie(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!pid_alive(pid));
        drop(child);
    }
}
