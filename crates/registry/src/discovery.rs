//! Finding external driver executables: `$LIMA_DRIVERS_PATH` first, then
//! `<prefix>/libexec/lima/` beside the running limactl. Nothing here starts a process.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable listing extra driver directories or files (`:`-separated; `;` on
/// Windows).
pub const DRIVERS_PATH_ENV: &str = "LIMA_DRIVERS_PATH";

/// The operating system a naming rule is applied for (a parameter, so both rules are tested on
/// every host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetOs {
    Linux,
    MacOs,
    Windows,
    /// Any other Unix: same naming rule as Linux.
    OtherUnix,
}

impl TargetOs {
    pub const fn current() -> Self {
        if cfg!(target_os = "windows") {
            Self::Windows
        } else if cfg!(target_os = "macos") {
            Self::MacOs
        } else if cfg!(target_os = "linux") {
            Self::Linux
        } else {
            Self::OtherUnix
        }
    }
}

const PREFIX: &str = "lima-driver-";

/// The driver name a file name stands for, if it follows the rule: `lima-driver-<name>` (on
/// Windows `lima-driver-<name>.exe`, the suffix in any case). `<name>` is ASCII letters,
/// digits, `-` and `_`, starting with a letter or digit, so build leftovers such as
/// `lima-driver-qemu.d` or `lima-driver-qemu.exe` on Unix are not drivers.
pub fn driver_name_from_file(file_name: &str, os: TargetOs) -> Option<String> {
    let rest = file_name.strip_prefix(PREFIX)?;
    let name = match os {
        TargetOs::Windows => {
            let (stem, ext) = rest.split_at(rest.len().checked_sub(4)?);
            if !ext.eq_ignore_ascii_case(".exe") {
                return None;
            }
            stem
        }
        TargetOs::Linux | TargetOs::MacOs | TargetOs::OtherUnix => rest,
    };
    valid_driver_name(name).then(|| name.to_string())
}

/// The executable file name of a driver on `os`.
pub fn driver_file_name(name: &str, os: TargetOs) -> String {
    match os {
        TargetOs::Windows => format!("{PREFIX}{name}.exe"),
        _ => format!("{PREFIX}{name}"),
    }
}

pub fn valid_driver_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// An external driver found on disk (not started).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalFile {
    pub name: String,
    pub path: PathBuf,
}

/// Where drivers are looked for besides `$LIMA_DRIVERS_PATH`: `<exe dir>/../libexec/lima`.
pub fn libexec_dir(exe: &Path) -> Option<PathBuf> {
    Some(exe.parent()?.parent()?.join("libexec").join("lima"))
}

/// Scans `drivers_path` (the value of `$LIMA_DRIVERS_PATH`: directories or files) and then
/// `libexec_dirs`, in order; the first file found for a name wins. Unreadable entries are
/// logged and skipped: one bad path must not hide the other drivers.
pub fn discover_in(
    drivers_path: Option<&OsStr>,
    libexec_dirs: &[PathBuf],
    os: TargetOs,
) -> Vec<ExternalFile> {
    let mut found: Vec<ExternalFile> = Vec::new();
    let mut add = |f: ExternalFile| {
        if let Some(first) = found.iter().find(|e| e.name == f.name) {
            tracing::debug!(
                "driver {:?}: {} is shadowed by {}",
                f.name,
                f.path.display(),
                first.path.display()
            );
        } else {
            found.push(f);
        }
    };
    if let Some(list) = drivers_path {
        for entry in std::env::split_paths(list) {
            if entry.as_os_str().is_empty() {
                continue;
            }
            match std::fs::metadata(&entry) {
                Err(e) => tracing::warn!("{DRIVERS_PATH_ENV}: {}: {e}", entry.display()),
                Ok(m) if m.is_dir() => scan_dir(&entry, os).into_iter().for_each(&mut add),
                Ok(m) => match file_entry(&entry, &m, os) {
                    Some(f) => add(f),
                    None => tracing::warn!(
                        "{DRIVERS_PATH_ENV}: {} is not an executable named {}",
                        entry.display(),
                        driver_file_name("<name>", os)
                    ),
                },
            }
        }
    }
    for dir in libexec_dirs {
        if dir.is_dir() {
            scan_dir(dir, os).into_iter().for_each(&mut add);
        }
    }
    found
}

fn scan_dir(dir: &Path, os: TargetOs) -> Vec<ExternalFile> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("reading driver directory {}: {e}", dir.display());
            return Vec::new();
        }
    };
    let mut out: Vec<ExternalFile> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            // Follow symlinks: an installed driver may be a link.
            let meta = std::fs::metadata(&path).ok()?;
            file_entry(&path, &meta, os)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn file_entry(path: &Path, meta: &std::fs::Metadata, os: TargetOs) -> Option<ExternalFile> {
    if !meta.is_file() || !osutil::is_executable(meta) {
        return None;
    }
    let name = driver_name_from_file(path.file_name()?.to_str()?, os)?;
    Some(ExternalFile {
        name,
        path: path.to_path_buf(),
    })
}

/// The libexec directories beside the running executable: through its path as started and
/// through its resolved path (they differ when limactl is a symlink, e.g. in a package
/// manager's `bin/`).
pub fn self_libexec_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = libexec_dir(&exe) {
            dirs.push(d);
        }
        if let Ok(real) = exe.canonicalize() {
            if let Some(d) = libexec_dir(&real) {
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
    }
    dirs
}

/// The external drivers of this process's environment, discovered once per process.
pub fn discovered() -> &'static [ExternalFile] {
    static FOUND: OnceLock<Vec<ExternalFile>> = OnceLock::new();
    FOUND.get_or_init(|| {
        let path = std::env::var_os(DRIVERS_PATH_ENV);
        let found = discover_in(path.as_deref(), &self_libexec_dirs(), TargetOs::current());
        tracing::debug!("external drivers: {found:?}");
        found
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_names() {
        let os = TargetOs::Linux;
        assert_eq!(
            driver_name_from_file("lima-driver-qemu", os).as_deref(),
            Some("qemu")
        );
        assert_eq!(
            driver_name_from_file("lima-driver-my_vm-2", os).as_deref(),
            Some("my_vm-2")
        );
        assert_eq!(driver_name_from_file("lima-driver-qemu.exe", os), None);
        assert_eq!(driver_name_from_file("lima-driver-qemu.d", os), None);
        assert_eq!(driver_name_from_file("lima-driver-", os), None);
        assert_eq!(driver_name_from_file("lima-driver--x", os), None);
        assert_eq!(driver_name_from_file("limactl", os), None);
        assert_eq!(driver_name_from_file("xlima-driver-qemu", os), None);
        assert_eq!(
            driver_name_from_file("lima-driver-vz", TargetOs::MacOs).as_deref(),
            Some("vz")
        );
    }

    #[test]
    fn windows_names() {
        let os = TargetOs::Windows;
        assert_eq!(
            driver_name_from_file("lima-driver-wsl2.exe", os).as_deref(),
            Some("wsl2")
        );
        assert_eq!(
            driver_name_from_file("lima-driver-wsl2.EXE", os).as_deref(),
            Some("wsl2")
        );
        assert_eq!(driver_name_from_file("lima-driver-wsl2", os), None);
        assert_eq!(driver_name_from_file("lima-driver-.exe", os), None);
        assert_eq!(driver_name_from_file("lima-driver-a.b.exe", os), None);
        assert_eq!(driver_name_from_file("lima-drive", os), None);
    }

    #[test]
    fn file_names_round_trip() {
        for os in [TargetOs::Linux, TargetOs::MacOs, TargetOs::Windows] {
            let f = driver_file_name("krunkit", os);
            assert_eq!(driver_name_from_file(&f, os).as_deref(), Some("krunkit"));
        }
        assert_eq!(
            driver_file_name("qemu", TargetOs::Windows),
            "lima-driver-qemu.exe"
        );
    }

    #[test]
    fn libexec_is_beside_bin() {
        assert_eq!(
            libexec_dir(Path::new("/opt/lima/bin/limactl")).unwrap(),
            Path::new("/opt/lima/libexec/lima")
        );
    }

    #[cfg(unix)]
    fn touch(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn discovers_executables_by_name_first_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let libexec = tmp.path().join("prefix/libexec/lima");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&libexec).unwrap();
        touch(&a.join("lima-driver-qemu"), 0o755);
        touch(&a.join("lima-driver-noexec"), 0o644);
        touch(&a.join("lima-driver-qemu.d"), 0o755);
        touch(&a.join("other-tool"), 0o755);
        std::fs::create_dir(a.join("lima-driver-dir")).unwrap();
        touch(&libexec.join("lima-driver-qemu"), 0o755);
        touch(&libexec.join("lima-driver-vz"), 0o755);
        let single = tmp.path().join("lima-driver-single");
        touch(&single, 0o700);
        std::os::unix::fs::symlink(&single, a.join("lima-driver-linked")).unwrap();

        let list = std::env::join_paths([
            a.clone(),
            tmp.path().join("missing"),
            single.clone(),
            PathBuf::new(),
        ])
        .unwrap();
        let found = discover_in(
            Some(list.as_os_str()),
            std::slice::from_ref(&libexec),
            TargetOs::Linux,
        );
        let got: Vec<(&str, &Path)> = found
            .iter()
            .map(|f| (f.name.as_str(), f.path.as_path()))
            .collect();
        let linked = a.join("lima-driver-linked");
        let qemu = a.join("lima-driver-qemu");
        let vz = libexec.join("lima-driver-vz");
        assert_eq!(
            got,
            vec![
                ("linked", linked.as_path()),
                ("qemu", qemu.as_path()),
                ("single", single.as_path()),
                ("vz", vz.as_path()),
            ]
        );
    }

    #[test]
    fn nothing_configured_finds_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let found = discover_in(None, &[tmp.path().join("absent")], TargetOs::current());
        assert!(found.is_empty());
    }
}
