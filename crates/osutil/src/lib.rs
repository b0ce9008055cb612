//! `osutil` — layer 1: small facts about the host's processes and files that several layers
//! need (as upstream Lima's `pkg/osutil`): whether a file may be run, whether a process is
//! alive. No workspace dependencies; each function has one home here instead of a copy per
//! crate.

pub mod plugins;

use std::fs::Metadata;

/// Whether a file may be run: an exec bit on Unix. Windows has no exec bit, so there the
/// caller's name rule (`.exe`) decides and this says yes.
#[cfg(unix)]
pub fn is_executable(meta: &Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
pub fn is_executable(_meta: &Metadata) -> bool {
    true
}

/// Go's `exec.LookPath`: `name` itself when it holds a `/` (and is an executable file), else
/// the first executable file of that name in `$PATH`.
pub fn look_path(name: &std::path::Path) -> Option<std::path::PathBuf> {
    let runnable =
        |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && is_executable(&m));
    if name.components().count() > 1 || name.is_absolute() {
        return runnable(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| runnable(p))
}

/// Whether `pid` names a live process: `kill(pid, 0)` succeeds (or is refused for lack of
/// permission, which also means it exists), and it is not a zombie waiting to be reaped.
/// Pids of 0 and below (process groups, "every process") are never alive.
#[cfg(unix)]
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

#[cfg(unix)]
fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold spaces.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

/// The width of the terminal on stdout, in columns; `None` when stdout is not a terminal.
#[cfg(unix)]
pub fn stdout_terminal_width() -> Option<usize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only writes a winsize into the struct we pass.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

#[cfg(not(unix))]
pub fn stdout_terminal_width() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_bit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "").unwrap();
        assert!(!is_executable(&std::fs::metadata(&f).unwrap()));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(is_executable(&std::fs::metadata(&f).unwrap()));
    }

    #[test]
    fn liveness() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(0) && !pid_alive(-1));
        // A child that has exited but is not reaped yet is a zombie: not alive.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!pid_alive(pid), "zombie counted as alive");
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
