//! Pid files and process liveness, without spawning anything.

use std::path::Path;

use crate::{io_err, Result, StoreError};

pub use osutil::pid_alive;

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

/// Like [`read_pid_file`] for a pid file of the instance in `inst_dir` (the host agent's or
/// the driver's): the pid counts only if it is above 1 and the process is the instance's (see
/// [`pid_belongs_to`]). Otherwise the file is stale, from before a reboot say, and is removed:
/// nothing may ever signal a process that is not ours.
pub fn read_instance_pid_file(path: &Path, inst_dir: &Path) -> Result<Option<i32>> {
    match read_pid_file(path)? {
        Some(pid) if pid > 1 && pid_belongs_to(pid, inst_dir) => Ok(Some(pid)),
        Some(pid) => {
            tracing::warn!(
                "{}: pid {pid} is not a process of this instance; ignoring the stale file",
                path.display()
            );
            let _ = std::fs::remove_file(path);
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Whether process `pid` works for the instance in `inst_dir`: it runs in that directory (the
/// host agent does), names it in its command line (qemu's disks and sockets), or holds its
/// lock. Linux reads `/proc`; where there is none, any live pid above 1 is taken as ours.
pub fn pid_belongs_to(pid: i32, inst_dir: &Path) -> bool {
    if pid <= 1 {
        return false;
    }
    let proc_dir = Path::new("/proc").join(pid.to_string());
    if !Path::new("/proc/self").exists() {
        return true;
    }
    let dir = std::fs::canonicalize(inst_dir).unwrap_or_else(|_| inst_dir.to_path_buf());
    if std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd == dir) {
        return true;
    }
    let named = |d: &Path| {
        let needle = d.as_os_str().as_encoded_bytes();
        std::fs::read(proc_dir.join("cmdline"))
            .is_ok_and(|cmd| !needle.is_empty() && cmd.windows(needle.len()).any(|w| w == needle))
    };
    if named(&dir) || named(inst_dir) {
        return true;
    }
    let lock = dir.join(crate::LOCK_FILE);
    std::fs::read_dir(proc_dir.join("fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == lock))
    })
}

/// Writes our own pid, owner-only.
pub fn write_pid_file(path: &Path, pid: u32) -> Result<()> {
    crate::write_private_file(path, format!("{pid}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stale pid file naming a live process that is not the instance's (pid 1, this test
    /// process, a `sleep` elsewhere) is never taken as the instance's.
    #[test]
    fn pid_of_another_process_is_stale() {
        let inst = tempfile::tempdir().unwrap();
        let p = inst.path().join("ha.pid");
        for pid in ["1", "-1", "0"] {
            std::fs::write(&p, pid).unwrap();
            assert_eq!(
                read_instance_pid_file(&p, inst.path()).unwrap(),
                None,
                "{pid}"
            );
        }
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(&p, other.id().to_string()).unwrap();
        assert_eq!(read_instance_pid_file(&p, inst.path()).unwrap(), None);
        assert!(!p.exists(), "the stale file is removed");
        assert!(
            pid_alive(other.id() as i32),
            "and the process is left alone"
        );

        // The same program run in the instance directory, or naming it, is the instance's.
        let mut ours = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(inst.path())
            .spawn()
            .unwrap();
        std::fs::write(&p, ours.id().to_string()).unwrap();
        assert_eq!(
            read_instance_pid_file(&p, inst.path()).unwrap(),
            Some(ours.id() as i32)
        );
        let log = inst.path().join("qemu.stderr.log");
        std::fs::write(&log, "").unwrap();
        let mut named = std::process::Command::new("tail")
            .arg("-f")
            .arg(&log)
            .spawn()
            .unwrap();
        let cmdline = || std::fs::read(format!("/proc/{}/cmdline", named.id())).unwrap_or_default();
        // The kernel sets the new command line a moment after spawn returns.
        for _ in 0..200 {
            if cmdline().starts_with(b"tail") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            pid_belongs_to(named.id() as i32, inst.path()),
            "{:?}",
            String::from_utf8_lossy(&cmdline())
        );
        for c in [&mut other, &mut ours, &mut named] {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

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
}
