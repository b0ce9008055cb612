//! `limactl clone` and `rename` (upstream's `instance.CloneOrRename`): a stopped instance's
//! directory copied (or moved) to a new name, without what must not be shared (`protected`,
//! the TPM state, pid files and sockets) and with the vz identifier emptied. The new
//! `lima.yaml` is the old one with the edit flags applied, validated (also by its driver)
//! before anything is written. The new instance appears in one step (a staging directory
//! renamed into place), so a failure leaves no half-made instance, and a failed rename puts
//! the old one back.

use std::path::{Path, PathBuf};

use limatype::{filenames, Status};
use registry::Registry;

use crate::error::io;
use crate::{load, open::Edit, InstanceError, Result};

/// `UNIX_PATH_MAX`: a socket's full path must be shorter than this.
const UNIX_PATH_MAX: usize = if cfg!(target_os = "linux") { 108 } else { 104 };

/// Copies (or, with `rename`, moves) the stopped instance `old` to `new`, with `edit` applied
/// to its `lima.yaml`; returns the new instance's directory.
pub async fn clone_or_rename(
    reg: &Registry,
    old: &str,
    new: &str,
    rename: bool,
    edit: Edit<'_>,
) -> Result<PathBuf> {
    let verb = if rename { "rename" } else { "clone" };
    let inst = crate::ops::inspect(old)?;
    let new_dir = store::instance_dir(new)?;
    if old == new {
        return Err(InstanceError::SameName {
            old: old.to_string(),
            new: new.to_string(),
        });
    }
    let old_dir = PathBuf::from(&inst.dir);
    // No start while we copy; and a start already under way holds the lock.
    let _lock = store::InstanceLock::try_acquire(&old_dir, old)?;
    let inst = crate::ops::inspect(old)?;
    if inst.status == Status::Running || inst.host_agent_pid > 0 || inst.driver_pid > 0 {
        return Err(InstanceError::CloneRunning {
            verb,
            name: old.to_string(),
        });
    }
    if rename && inst.protected {
        return Err(InstanceError::ProtectedFrom {
            name: old.to_string(),
            what: "rename",
        });
    }
    if std::fs::symlink_metadata(&new_dir).is_ok() {
        return Err(InstanceError::Exists(new.to_string()));
    }
    let longest = new_dir.join(filenames::LONGEST_SOCK);
    let len = longest.as_os_str().len();
    if len >= UNIX_PATH_MAX {
        return Err(InstanceError::NameTooLong {
            name: new.to_string(),
            path: longest,
            max: UNIX_PATH_MAX,
            len,
        });
    }
    let yaml = old_dir.join(filenames::LIMA_YAML);
    let text = std::fs::read_to_string(&yaml).map_err(io("reading", &yaml))?;
    let edited = edit(&text)?;
    if edited != text {
        let display = format!("{} (with the edits applied)", yaml.display());
        let config = load::load_stored_text(&edited, &display, new)?;
        crate::open::check_with_driver(reg, &config).await?;
    }
    let home = new_dir.parent().unwrap_or(Path::new("."));
    // Hidden (a leading dot): `limactl list` does not see it.
    let staging = home.join(format!(".{verb}-{new}-{}", std::process::id()));
    if rename {
        move_instance(&old_dir, &staging, &new_dir, &edited)?;
    } else {
        let made = copy_instance(&old_dir, &staging, &edited)
            .and_then(|()| rename_no_replace(&staging, &new_dir, new));
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    }
    tracing::debug!(old, new, verb, "done");
    Ok(new_dir)
}

/// Whether `name` (a file or directory anywhere in the instance directory) stays behind.
fn skipped(name: &str) -> bool {
    filenames::SKIP_ON_CLONE.contains(&name)
        || filenames::TMP_FILE_SUFFIXES
            .iter()
            .any(|s| name.ends_with(s))
}

/// The clone: `old_dir`'s files copied into a new `staging` directory, then `lima.yaml`.
fn copy_instance(old_dir: &Path, staging: &Path, yaml: &str) -> Result<()> {
    store::ensure_private_dir(staging)?;
    copy_tree(old_dir, staging, true)?;
    store::write_private_file(&staging.join(filenames::LIMA_YAML), yaml.as_bytes())?;
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path, top: bool) -> Result<()> {
    for entry in std::fs::read_dir(src).map_err(io("reading", src))? {
        let entry = entry.map_err(io("reading", src))?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        // The lock is this directory's own; lima.yaml is written by the caller.
        let own = top && (name_str == store::LOCK_FILE || name_str == filenames::LIMA_YAML);
        if own || skipped(&name_str) {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        let kind = entry.file_type().map_err(io("reading", &from))?;
        if kind.is_dir() {
            let perms = entry
                .metadata()
                .map_err(io("reading", &from))?
                .permissions();
            std::fs::create_dir(&to).map_err(io("creating", &to))?;
            std::fs::set_permissions(&to, perms).map_err(io("setting the mode of", &to))?;
            copy_tree(&from, &to, false)?;
        } else if filenames::NULLIFY_ON_CLONE.contains(&&*name_str) {
            std::fs::write(&to, b"").map_err(io("writing", &to))?;
        } else {
            copy_file(&from, &to)?;
        }
    }
    Ok(())
}

/// Copies a file keeping its holes: disk images are sparse, and a plain copy would allocate
/// every byte of them. The mode is kept.
fn copy_file(from: &Path, to: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::io::AsRawFd;
    let mut src = std::fs::File::open(from).map_err(io("opening", from))?;
    let meta = src.metadata().map_err(io("reading", from))?;
    let mut dst = std::fs::File::create(to).map_err(io("creating", to))?;
    dst.set_permissions(meta.permissions())
        .map_err(io("setting the mode of", to))?;
    let size = meta.len();
    let mut pos = 0u64;
    while pos < size {
        // SAFETY: lseek(2) on a file descriptor we own.
        let data = unsafe { libc::lseek(src.as_raw_fd(), pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole is left
            }
            if pos == 0 {
                // No SEEK_DATA on this file system: copy it whole.
                drop(dst);
                std::fs::copy(from, to).map_err(io("copying", from))?;
                return Ok(());
            }
            return Err(io("reading", from)(err));
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src.as_raw_fd(), data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size } else { hole as u64 };
        src.seek(SeekFrom::Start(data as u64))
            .map_err(io("reading", from))?;
        dst.seek(SeekFrom::Start(data as u64))
            .map_err(io("writing", to))?;
        let mut chunk = std::io::Read::take(&mut src, end - data as u64);
        std::io::copy(&mut chunk, &mut dst).map_err(io("copying", from))?;
        pos = end;
    }
    dst.set_len(size).map_err(io("writing", to))?;
    Ok(())
}

/// The rename: the whole directory moved aside to `staging` in one step, the files that do
/// not move with it removed, `lima.yaml` written, then moved into place. Any failure moves it
/// back to `old_dir`.
fn move_instance(old_dir: &Path, staging: &Path, new_dir: &Path, yaml: &str) -> Result<()> {
    std::fs::rename(old_dir, staging).map_err(io("moving", old_dir))?;
    let name = new_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let done = prune_moved(staging)
        .and_then(|()| {
            store::write_private_file(&staging.join(filenames::LIMA_YAML), yaml.as_bytes())
                .map_err(InstanceError::from)
        })
        .and_then(|()| rename_no_replace(staging, new_dir, &name));
    if let Err(e) = done {
        if let Err(back) = std::fs::rename(staging, old_dir) {
            tracing::error!(
                "could not move {} back to {}: {back}",
                staging.display(),
                old_dir.display()
            );
        }
        return Err(e);
    }
    Ok(())
}

/// What a rename leaves behind, removed from the moved directory (anywhere in it, as
/// upstream's walk skips them at any depth); the vz identifier emptied.
fn prune_moved(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io("reading", dir))? {
        let entry = entry.map_err(io("reading", dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().map_err(io("reading", &path))?;
        if skipped(&name) {
            if kind.is_dir() {
                std::fs::remove_dir_all(&path).map_err(io("removing", &path))?;
            } else {
                std::fs::remove_file(&path).map_err(io("removing", &path))?;
            }
        } else if kind.is_dir() {
            prune_moved(&path)?;
        } else if filenames::NULLIFY_ON_CLONE.contains(&name.as_str()) {
            std::fs::write(&path, b"").map_err(io("writing", &path))?;
        }
    }
    Ok(())
}

/// Renames `from` to `to` unless `to` exists (then [`InstanceError::Exists`]): a plain
/// rename would silently replace an empty directory made meanwhile.
fn rename_no_replace(from: &Path, to: &Path, name: &str) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
        if let (Some(f), Some(t)) = (cstr(from), cstr(to)) {
            // SAFETY: renameat2(2) with two NUL-terminated paths.
            let rc = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    f.as_ptr(),
                    libc::AT_FDCWD,
                    t.as_ptr(),
                    libc::RENAME_NOREPLACE,
                )
            };
            if rc == 0 {
                return Ok(());
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EEXIST) => return Err(InstanceError::Exists(name.to_string())),
                // Not supported by this file system: the check-then-rename below.
                Some(libc::EINVAL) | Some(libc::ENOSYS) => {}
                _ => return Err(io("moving into place", to)(err)),
            }
        }
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(InstanceError::Exists(name.to_string()));
    }
    std::fs::rename(from, to).map_err(io("moving into place", to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_files_keep_their_holes_and_content() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let f = std::fs::File::create(&a).unwrap();
        f.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"middle", 32 << 20).unwrap();
        drop(f);
        copy_file(&a, &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&b).unwrap().blocks();
        // 64 MiB would be 131072 blocks of 512 bytes; two small extents are far fewer.
        assert!(blocks < 16384, "{blocks} blocks allocated");
        // A file ending in data, and an empty one.
        std::fs::write(&a, b"xyz").unwrap();
        copy_file(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"xyz");
        std::fs::write(&a, b"").unwrap();
        copy_file(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"");
    }

    #[test]
    fn what_stays_behind() {
        for name in ["protected", "swtpm", "ha.pid", "ssh.sock", "x.tmp"] {
            assert!(skipped(name), "{name}");
        }
        for name in ["lima.yaml", "diffdisk", "vz-identifier", "ha.stderr.log"] {
            assert!(!skipped(name), "{name}");
        }
    }
}
