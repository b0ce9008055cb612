//! `store` — layer 7.0: the instance store under `$LIMA_HOME`: where things live, instance
//! names, per-instance locks, pid files, and an instance's status read from its directory alone
//! (pid files and liveness checks; never by starting a process). Also the additional disks
//! under `$LIMA_HOME/_disks` ([`disks`]): their names, directories and `in_use_by` locks.

pub mod disks;
pub mod format;
mod inspect;
mod lock;
mod pidfile;
mod units;

pub use inspect::*;
pub use lock::*;
pub use pidfile::*;
pub use units::*;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use limatype::filenames;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid instance name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("instance {0:?} does not exist")]
    NotFound(String),
    #[error("cannot find the home directory (set LIMA_HOME or HOME)")]
    NoHome,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("invalid disk name {name:?}: {why}")]
    InvalidDiskName { name: String, why: &'static str },
    #[error("disk {0:?} does not exist")]
    DiskNotFound(String),
    #[error("disk {name:?} already exists ({dir})")]
    DiskExists { name: String, dir: PathBuf },
    #[error(
        "could not attach disk {name:?}: in use by instance {instance:?} ({instance_dir}); if \
         that instance is not running, `limactl disk unlock {name}` releases it"
    )]
    DiskInUse {
        name: String,
        instance: String,
        instance_dir: PathBuf,
    },
    #[error("{path}: {source}")]
    DiskImage {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("instance {name:?} is in use by another limactl or host agent (lock {path} is held{})", holders_note(.holders))]
    Locked {
        name: String,
        path: PathBuf,
        /// Who holds it, when known (`pid N (command)`).
        holders: Vec<String>,
    },
}

fn holders_note(holders: &[String]) -> String {
    if holders.is_empty() {
        String::new()
    } else {
        format!(" by {}", holders.join(", "))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `$LIMA_HOME`, or `~/.lima`.
pub fn lima_home() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("LIMA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .ok_or(StoreError::NoHome)?;
    Ok(PathBuf::from(home).join(filenames::DOT_LIMA))
}

/// `$LIMA_HOME/_config`.
pub fn config_dir() -> Result<PathBuf> {
    Ok(lima_home()?.join(filenames::CONFIG_DIR))
}

/// `$LIMA_HOME`, created owner-only (0700) when missing, as upstream does. One that exists is
/// the user's: it is left as it is (never chmod-ed: `LIMA_HOME=/tmp` keeps its sticky and
/// world bits), with a warning when others may write to it.
pub fn ensure_lima_home() -> Result<PathBuf> {
    let home = lima_home()?;
    match std::fs::metadata(&home) {
        Ok(meta) => {
            let mode = meta.permissions().mode();
            if mode & 0o022 != 0 {
                tracing::warn!(
                    "{} is writable by {} (mode {:o}); instances there are only as private as it is",
                    home.display(),
                    if mode & 0o002 != 0 { "everyone" } else { "its group" },
                    mode & 0o7777
                );
            }
            Ok(home)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&home)
                .map_err(io_err(&home))?;
            Ok(home)
        }
        Err(e) => Err(io_err(&home)(e)),
    }
}

/// Creates `dir` (and parents) if missing and makes it owner-only (0700).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
}

/// Writes `data` to `path` with mode 0600 (replacing it atomically through a temp file).
pub fn write_private_file(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    // On disk before the rename: a crash must leave the old file or the new one, whole.
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    // And the rename itself (best effort: some file systems refuse to sync a directory).
    if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Lima's identifier rule: ASCII letters and digits, with single `.`, `_` or `-` between
/// runs of them; at most 76 characters. This also rules out `..`, `/` and hidden names.
pub fn validate_instance_name(name: &str) -> Result<()> {
    match identifier_problem(name) {
        None => Ok(()),
        Some(why) => Err(StoreError::InvalidName {
            name: name.to_string(),
            why,
        }),
    }
}

/// What is wrong with `name` as a Lima identifier (instance and disk names), if anything.
pub(crate) fn identifier_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("must not be empty");
    }
    if name.len() > 76 {
        return Some("longer than 76 characters");
    }
    let mut prev_sep = true; // a separator may not start the name
    for c in name.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' => prev_sep = false,
            '.' | '_' | '-' => {
                if prev_sep {
                    return Some("`.`, `_` and `-` must sit between letters or digits");
                }
                prev_sep = true;
            }
            _ => return Some("only ASCII letters, digits, `.`, `_` and `-` are allowed"),
        }
    }
    if prev_sep {
        return Some("must end with a letter or digit");
    }
    None
}

/// `$LIMA_HOME/NAME`, after checking the name. Does not check that it exists.
pub fn instance_dir(name: &str) -> Result<PathBuf> {
    validate_instance_name(name)?;
    Ok(lima_home()?.join(name))
}

/// Whether `$LIMA_HOME/NAME/lima.yaml` exists.
pub fn instance_exists(name: &str) -> Result<bool> {
    Ok(instance_dir(name)?.join(filenames::LIMA_YAML).exists())
}

/// Names of the instances in `$LIMA_HOME`, sorted. Directories starting with `_` or `.` are
/// Lima's own. A directory without `lima.yaml` (a create that was killed) is listed too: it
/// inspects as `Broken`, and `delete` removes it.
pub fn instance_names() -> Result<Vec<String>> {
    let home = lima_home()?;
    let rd = match std::fs::read_dir(&home) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_err(&home)(e)),
    };
    let mut names = vec![];
    for entry in rd {
        let entry = entry.map_err(io_err(&home))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        if validate_instance_name(&name).is_ok() && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Whether `dir` holds nothing but what an interrupted `create` leaves (its lock file and
/// temp files), so a new create may take it over.
pub fn is_leftover_of_create(dir: &Path) -> Result<bool> {
    let rd = std::fs::read_dir(dir).map_err(io_err(dir))?;
    for entry in rd {
        let name = entry.map_err(io_err(dir))?.file_name();
        let name = name.to_string_lossy();
        if name != LOCK_FILE && !name.ends_with(".tmp") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes pid files and sockets left by a previous run (after a crash or kill -9).
pub fn remove_stale_runtime_files(inst_dir: &Path) -> Result<()> {
    let rd = match std::fs::read_dir(inst_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(inst_dir)(e)),
    };
    for entry in rd.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if filenames::TMP_FILE_SUFFIXES
            .iter()
            .any(|s| name.ends_with(s))
        {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
    }
    Ok(())
}

/// Runs `f` with `$LIMA_HOME` set to a fresh temporary directory. Tests that set the variable
/// take turns: nextest runs each test in its own process, but `cargo test` runs them as
/// threads of one.
#[cfg(test)]
pub(crate) fn with_test_home<T>(f: impl FnOnce(&Path) -> T) -> T {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("LIMA_HOME", home.path());
    f(home.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["default", "a", "deb-12", "x.y_z", "A1"] {
            validate_instance_name(good).unwrap();
        }
        for bad in [
            "", "..", ".", "../x", "a/b", "_config", "-a", "a-", "a..b", "a b", "é", "a\0",
        ] {
            assert!(validate_instance_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_instance_name(&"a".repeat(77)).is_err());
    }
}
