//! Finding external driver executables: `$LIMA_DRIVERS_PATH` first, then
//! `<prefix>/libexec/lima/` beside the running limactl. Nothing here starts a process. The
//! naming rule (`lima-driver-<name>[.exe]`) is `limatype`'s ([`limatype::driver_file_name`]).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use limatype::{driver_file_name, driver_name_from_file, Os};

/// The environment variable listing extra driver directories or files (`:`-separated; `;` on
/// Windows).
pub const DRIVERS_PATH_ENV: &str = "LIMA_DRIVERS_PATH";

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
    os: Os,
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

fn scan_dir(dir: &Path, os: Os) -> Vec<ExternalFile> {
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

fn file_entry(path: &Path, meta: &std::fs::Metadata, os: Os) -> Option<ExternalFile> {
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
        let found = discover_in(path.as_deref(), &self_libexec_dirs(), Os::host());
        tracing::debug!("external drivers: {found:?}");
        found
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Os::Linux,
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
        let found = discover_in(None, &[tmp.path().join("absent")], Os::host());
        assert!(found.is_empty());
    }
}
