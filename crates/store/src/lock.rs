//! One lock per instance: an `flock` on `instance.lock` in the instance directory. It is held by
//! whoever starts the instance and then by its host agent for as long as that runs, so two
//! `limactl start` of one instance cannot both proceed. The kernel drops it when the holder dies.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::{io_err, Result, StoreError};

pub const LOCK_FILE: &str = "instance.lock";
/// The host agent finds an inherited lock through this variable (the fd number).
pub const LOCK_FD_ENV: &str = "LIMA_INSTANCE_LOCK_FD";

#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock without waiting; `StoreError::Locked` if someone holds it.
    pub fn try_acquire(inst_dir: &Path, name: &str) -> Result<Self> {
        let path = inst_dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        // SAFETY: flock on an fd we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(StoreError::Locked {
                    name: name.to_string(),
                    path,
                    holders: vec![],
                });
            }
            return Err(io_err(&path)(e));
        }
        Ok(Self { file, path })
    }

    /// Takes the lock, waiting up to `timeout` for processes that are on their way out (a
    /// killed host agent's children) to let go. The error names who still holds it.
    pub fn acquire_within(
        inst_dir: &Path,
        name: &str,
        timeout: std::time::Duration,
    ) -> Result<Self> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match Self::try_acquire(inst_dir, name) {
                Err(StoreError::Locked { name, path, .. })
                    if std::time::Instant::now() >= deadline =>
                {
                    let holders = lock_holders(&path);
                    return Err(StoreError::Locked {
                        name,
                        path,
                        holders,
                    });
                }
                Err(StoreError::Locked { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                other => return other,
            }
        }
    }

    /// Whether someone holds the lock right now (probes by taking and dropping it).
    pub fn is_held(inst_dir: &Path) -> bool {
        matches!(
            Self::try_acquire(inst_dir, ""),
            Err(StoreError::Locked { .. })
        )
    }

    /// Lets a child process inherit the lock across exec; returns the fd number to pass it in
    /// `LOCK_FD_ENV`. The lock stays held until both this process and the child have closed it.
    pub fn inheritable_fd(&self) -> Result<i32> {
        let fd = self.file.as_raw_fd();
        set_cloexec(fd, false).map_err(io_err(&self.path))?;
        Ok(fd)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Processes with the lock file open, as `pid N (command)` (Linux: from `/proc`; elsewhere
/// nothing is known).
pub fn lock_holders(lock_file: &Path) -> Vec<String> {
    let mut out = vec![];
    if !cfg!(target_os = "linux") {
        return out;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == lock_file));
        if holds && pid != std::process::id() {
            let cmd = std::fs::read(p.path().join("cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            out.push(format!("pid {pid} ({cmd})"));
        }
    }
    out
}

/// In the host agent: keeps the lock inherited from `limactl start` for this process only (so
/// that grandchildren such as qemu do not keep the instance locked after we are gone).
pub fn adopt_inherited_lock() -> Option<i32> {
    let fd: i32 = std::env::var(LOCK_FD_ENV).ok()?.parse().ok()?;
    std::env::remove_var(LOCK_FD_ENV);
    set_cloexec(fd, true).ok()?;
    Some(fd)
}

fn set_cloexec(fd: i32, on: bool) -> std::io::Result<()> {
    // SAFETY: fcntl on a valid fd with plain integer flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flags = if on {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        if libc::fcntl(fd, libc::F_SETFD, flags) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_until_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = InstanceLock::try_acquire(dir.path(), "x").unwrap();
        let err = InstanceLock::try_acquire(dir.path(), "x").unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("\"x\""));
        assert!(InstanceLock::is_held(dir.path()));
        drop(first);
        assert!(!InstanceLock::is_held(dir.path()));
        InstanceLock::try_acquire(dir.path(), "x").unwrap();
    }

    #[test]
    fn child_keeps_inherited_lock() {
        let dir = tempfile::tempdir().unwrap();
        let lock = InstanceLock::try_acquire(dir.path(), "x").unwrap();
        let fd = lock.inheritable_fd().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(LOCK_FD_ENV, fd.to_string())
            .spawn()
            .unwrap();
        drop(lock);
        assert!(
            InstanceLock::is_held(dir.path()),
            "child did not keep the lock"
        );
        let err =
            InstanceLock::acquire_within(dir.path(), "x", std::time::Duration::from_millis(300))
                .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {} (sleep 30)", child.id())),
            "the error should name the holder: {msg}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!InstanceLock::is_held(dir.path()));
    }

    #[test]
    fn acquire_within_waits_for_a_holder_on_its_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let lock = InstanceLock::try_acquire(dir.path(), "x").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(lock);
        });
        InstanceLock::acquire_within(dir.path(), "x", std::time::Duration::from_secs(10)).unwrap();
        release.join().unwrap();
    }
}
