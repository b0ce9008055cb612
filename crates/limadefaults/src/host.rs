//! Detecting the running host's [`HostFacts`] (passwd, sysconf, timezone, machine id,
//! `$LIMA_HOME`), gathered once so `fill` stays a pure function of them.

use std::path::PathBuf;

use limatype::{Arch, ByteSize, HostFacts, Os};

/// Reads the facts of the running host. Never fails: unknown facts get Lima's fallbacks.
pub fn detect_host() -> HostFacts {
    let (user_name, user_comment, home) = passwd_entry();
    let home = std::env::var("HOME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or(home);
    let lima_home = std::env::var_os("LIMA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(&home).join(limatype::filenames::DOT_LIMA));
    HostFacts {
        os: Os::host(),
        arch: Arch::host(),
        cpus: host_cpus(),
        memory: ByteSize(total_memory()),
        user_name,
        user_comment,
        // SAFETY: getuid has no preconditions and cannot fail.
        uid: unsafe { libc::getuid() },
        home,
        timezone: host_timezone(),
        machine_id: std::fs::read_to_string("/etc/machine-id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        lima_home,
        temp_dir: std::env::var("TMPDIR")
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "/tmp".into()),
    }
}

/// CPUs available to this process (1 when unknown).
pub(crate) fn host_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// Physical memory in bytes (0 when unknown).
pub(crate) fn total_memory() -> u64 {
    // SAFETY: sysconf has no preconditions; negative results mean "unknown".
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        0
    }
}

/// (login name, GECOS full name, home) of the current uid; falls back to `$USER`.
fn passwd_entry() -> (String, String, String) {
    let fallback_name = std::env::var("USER").unwrap_or_else(|_| "lima".into());
    let mut buf = vec![0u8; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buf outlives the call and its length is passed; result is checked before use.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return (fallback_name, String::new(), String::new());
    }
    let cstr = |p: *const libc::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: getpwuid_r filled these with NUL-terminated strings inside buf.
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        }
    };
    let gecos = cstr(pwd.pw_gecos);
    let comment = gecos.split(',').next().unwrap_or_default().to_string();
    (cstr(pwd.pw_name), comment, cstr(pwd.pw_dir))
}

/// `/etc/timezone`, else the zone name behind the `/etc/localtime` symlink, else "".
fn host_timezone() -> String {
    if let Ok(tz) = std::fs::read_to_string("/etc/timezone") {
        let tz = tz.trim();
        if !tz.is_empty() {
            return tz.to_string();
        }
    }
    if let Ok(target) = std::fs::canonicalize("/etc/localtime") {
        let mut dir = target.parent();
        while let Some(d) = dir {
            if d.join("Etc").join("UTC").exists() {
                if let Ok(rel) = target.strip_prefix(d) {
                    return rel.display().to_string();
                }
            }
            dir = d.parent();
        }
    }
    String::new()
}
