//! `limactl-<name>` plug-ins, found as upstream Lima's `pkg/plugins` finds them: in the
//! directories of the running limactl, then `$PATH`, then `<prefix>/libexec/lima`; the first
//! file of a name wins. Also where `limactl-url-<scheme>` locator plug-ins are looked up.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The file name prefix of a plug-in.
pub const PREFIX: &str = "limactl-";

/// A plug-in executable (not started).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plugin {
    /// The subcommand it provides (`limactl-foo` → `foo`).
    pub name: String,
    pub path: PathBuf,
    /// From a `<limactl-desc>...</limactl-desc>` marker in a script, as upstream reads it.
    pub description: Option<String>,
}

/// Where plug-ins are looked for, in order: the running limactl's directory (as invoked, then
/// with symlinks resolved), each `$PATH` entry, then `<prefix>/libexec/lima` of the former.
pub fn dirs() -> Vec<PathBuf> {
    let self_dirs = self_dirs();
    let mut dirs = self_dirs.clone();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path).filter(|p| !p.as_os_str().is_empty()));
    }
    for d in &self_dirs {
        if let Some(prefix) = d.parent() {
            let libexec = prefix.join("libexec").join("lima");
            if libexec.is_dir() && !dirs.contains(&libexec) {
                dirs.push(libexec);
            }
        }
    }
    dirs
}

/// `PATH` as a plug-in sees it: every plug-in directory, so that it finds limactl and its
/// sibling plug-ins (upstream's `UpdatePath`).
pub fn path_for_plugins(dirs: &[PathBuf]) -> Option<OsString> {
    std::env::join_paths(dirs).ok()
}

fn self_dirs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    // argv[0] keeps the symlink a package manager installed (its prefix has libexec/lima).
    if let Some(arg0) = std::env::args_os().next().map(PathBuf::from) {
        let found = if arg0.components().count() > 1 {
            std::path::absolute(&arg0).ok()
        } else {
            crate::look_path(&arg0)
        };
        if let Some(dir) = found.as_deref().and_then(Path::parent) {
            out.push(dir.to_path_buf());
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
        if let Some(dir) = exe.parent() {
            if !out.iter().any(|d| d == dir) {
                out.push(dir.to_path_buf());
            }
        }
    }
    out
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && crate::is_executable(&m))
}

/// Every plug-in in `dirs`, sorted by name; for a name found twice, the first directory wins.
/// Unreadable directories are skipped (a stale `$PATH` entry is common).
pub fn discover(dirs: &[PathBuf]) -> Vec<Plugin> {
    let mut found: Vec<Plugin> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut here: Vec<Plugin> = entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let name = file.strip_prefix(PREFIX)?;
                let name = name
                    .strip_suffix(std::env::consts::EXE_SUFFIX)
                    .filter(|_| !std::env::consts::EXE_SUFFIX.is_empty())
                    .unwrap_or(name);
                let path = e.path();
                if name.is_empty() || !is_executable_file(&path) {
                    return None;
                }
                Some(Plugin {
                    name: name.to_string(),
                    description: description(&path),
                    path,
                })
            })
            .collect();
        here.sort_by(|a, b| a.name.cmp(&b.name));
        for p in here {
            if !found.iter().any(|f| f.name == p.name) {
                found.push(p);
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// The plug-in named `name` in `dirs`, if any.
pub fn find(name: &str, dirs: &[PathBuf]) -> Option<Plugin> {
    discover(dirs).into_iter().find(|p| p.name == name)
}

/// The text between `<limactl-desc>` and `</limactl-desc>` on one line of a script (a file
/// starting with `#!`); binaries have no description.
fn description(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    if !bytes.starts_with(b"#!") {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes);
    text.lines().find_map(|line| {
        let start = line.find("<limactl-desc>")? + "<limactl-desc>".len();
        let len = line[start..].find("</limactl-desc>")?;
        Some(line[start..start + len].trim_matches(' ').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, file: &str, body: &str, mode: u32) {
        let p = dir.join(file);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn discovery_order_names_and_descriptions() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        script(
            a.path(),
            "limactl-zeta",
            "#!/bin/sh\n# <limactl-desc> Does zeta </limactl-desc>\n",
            0o755,
        );
        script(a.path(), "limactl-off", "#!/bin/sh\n", 0o644);
        script(a.path(), "other", "#!/bin/sh\n", 0o755);
        script(b.path(), "limactl-zeta", "#!/bin/sh\n", 0o755);
        script(
            b.path(),
            "limactl-alpha",
            "\x7fELF<limactl-desc>x</limactl-desc>",
            0o755,
        );
        let dirs = vec![
            a.path().to_path_buf(),
            PathBuf::from("/nonexistent/dir"),
            b.path().to_path_buf(),
        ];
        let found = discover(&dirs);
        let names: Vec<&str> = found.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alpha", "zeta"]);
        assert_eq!(found[0].description, None);
        assert_eq!(found[1].description.as_deref(), Some("Does zeta"));
        assert_eq!(found[1].path, a.path().join("limactl-zeta"));
        assert_eq!(find("off", &dirs), None);
    }
}
