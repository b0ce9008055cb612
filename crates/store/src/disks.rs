//! Lima's additional disks (`limactl disk`, `additionalDisks`), as upstream keeps them: one
//! directory per disk, `$LIMA_HOME/_disks/NAME/` (0700), holding the image `datadisk` and,
//! while an instance uses it, the symlink `in_use_by` pointing to that instance's directory.
//! The symlink is the disk's lock: made with one `symlink(2)`, which fails when it exists, so
//! two instances never both take a disk. How big the image is and its format come from the
//! caller's [`ImageProbe`] (qemu-img lives above this layer).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use limatype::filenames;
use serde::Serialize;

use crate::{identifier_problem, io_err, lima_home, Result, StoreError};

/// A disk as `limactl disk list --json` prints it (upstream's `store.Disk`, same keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    pub name: String,
    /// Virtual size in bytes.
    pub size: u64,
    /// `qcow2` or `raw`.
    pub format: String,
    pub dir: String,
    /// The instance using it (the base name of `in_use_by`'s target), or empty.
    pub instance: String,
    pub instance_dir: String,
    /// Where the guest mounts it: `/mnt/lima-NAME` (`[SWAP]` for a swap disk).
    pub mount_point: String,
    /// The `fsType` of the `additionalDisks` entry, when the caller knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
}

/// Reads an image's virtual size (bytes) and format (`qcow2`, `raw`).
pub type ImageProbe<'a> =
    &'a dyn Fn(
        &Path,
    ) -> std::result::Result<(u64, String), Box<dyn std::error::Error + Send + Sync>>;

/// Checks a disk name: the same identifier rule as instance names (no `/`, no `..`, no
/// hidden names), so a disk's directory is always directly under `_disks`.
pub fn validate_disk_name(name: &str) -> Result<()> {
    match identifier_problem(name) {
        None => Ok(()),
        Some(why) => Err(StoreError::InvalidDiskName {
            name: name.to_string(),
            why,
        }),
    }
}

/// `$LIMA_HOME/_disks`.
pub fn disks_dir() -> Result<PathBuf> {
    Ok(lima_home()?.join(filenames::DISKS_DIR))
}

/// `$LIMA_HOME/_disks/NAME`, after checking the name. Does not check that it exists.
pub fn disk_dir(name: &str) -> Result<PathBuf> {
    validate_disk_name(name)?;
    Ok(disks_dir()?.join(name))
}

/// The directory of an existing disk (one with a `datadisk`), else `DiskNotFound`.
pub fn existing_disk_dir(name: &str) -> Result<PathBuf> {
    let dir = disk_dir(name)?;
    match std::fs::symlink_metadata(dir.join(filenames::DATA_DISK)) {
        Ok(_) => Ok(dir),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::DiskNotFound(name.into())),
        Err(e) => Err(io_err(&dir.join(filenames::DATA_DISK))(e)),
    }
}

/// Names of the disks in `_disks`, sorted (hidden entries, such as a create or delete under
/// way, are left out; so is anything that is not a directory).
pub fn disk_names() -> Result<Vec<String>> {
    let dir = disks_dir()?;
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut names = vec![];
    for entry in rd {
        let entry = entry.map_err(io_err(&dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The instance directory `in_use_by` points to, if the disk in `dir` is locked.
pub fn locked_by(dir: &Path) -> Result<Option<PathBuf>> {
    let link = dir.join(filenames::IN_USE_BY);
    match std::fs::read_link(&link) {
        Ok(target) => Ok(Some(target)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&link)(e)),
    }
}

/// A disk's facts: its image through `probe`, its lock from `in_use_by`. `fs_type` is the
/// `additionalDisks` entry's, when the caller has one (it only changes the mount point shown).
pub fn inspect_disk(name: &str, fs_type: Option<&str>, probe: ImageProbe) -> Result<Disk> {
    let dir = existing_disk_dir(name)?;
    let image = dir.join(filenames::DATA_DISK);
    let (size, format) = probe(&image).map_err(|source| StoreError::DiskImage {
        path: image.clone(),
        source,
    })?;
    let (instance, instance_dir) = match locked_by(&dir)? {
        Some(t) => (
            t.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            t.display().to_string(),
        ),
        None => Default::default(),
    };
    let mount_point = if fs_type == Some("swap") {
        "[SWAP]".to_string()
    } else {
        format!("/mnt/lima-{name}")
    };
    Ok(Disk {
        name: name.to_string(),
        size,
        format,
        dir: dir.display().to_string(),
        instance,
        instance_dir,
        mount_point,
        fs_type: fs_type.map(str::to_string),
    })
}

/// The form a lock records: the instance directory made absolute (without touching the file
/// system), so a relative `$LIMA_HOME` still names one directory.
fn lock_target(inst_dir: &Path) -> PathBuf {
    std::path::absolute(inst_dir).unwrap_or_else(|_| inst_dir.to_path_buf())
}

/// Locks disk `name` to the instance in `inst_dir` (upstream's `LockForInstance`): a disk
/// already locked to that instance stays so; one locked to another instance is
/// `DiskInUse`; a missing disk is `DiskNotFound`.
pub fn lock_disk(name: &str, inst_dir: &Path) -> Result<()> {
    let dir = existing_disk_dir(name)?;
    let link = dir.join(filenames::IN_USE_BY);
    let target = lock_target(inst_dir);
    // Twice at most: an unlock between our symlink and read_link leaves room to try again.
    for _ in 0..2 {
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => {
                tracing::debug!("locked disk {name:?} to {}", target.display());
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&link)(e)),
        }
        match locked_by(&dir)? {
            Some(t) if lock_target(&t) == target => return Ok(()),
            Some(t) => {
                return Err(StoreError::DiskInUse {
                    name: name.to_string(),
                    instance: t
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    instance_dir: t,
                })
            }
            None => continue,
        }
    }
    Err(io_err(&link)(std::io::Error::new(
        ErrorKind::WouldBlock,
        "the lock keeps changing; try again",
    )))
}

/// Removes a disk's lock whoever holds it; false if it was not locked.
pub fn unlock_disk(name: &str) -> Result<bool> {
    let link = disk_dir(name)?.join(filenames::IN_USE_BY);
    match std::fs::remove_file(&link) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(&link)(e)),
    }
}

/// Unlocks every disk locked to the instance in `inst_dir` (found by their `in_use_by`, not
/// by the config: an `additionalDisks` edited while the instance ran changes nothing).
/// Returns the names unlocked; a disk that cannot be unlocked is logged and skipped, so one
/// bad disk does not keep the others locked.
pub fn unlock_disks_of(inst_dir: &Path) -> Result<Vec<String>> {
    let target = lock_target(inst_dir);
    let mut unlocked = vec![];
    for name in disk_names()? {
        let dir = disks_dir()?.join(&name);
        let ours = match locked_by(&dir) {
            Ok(Some(t)) => lock_target(&t) == target,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!("disk {name:?}: {e}");
                false
            }
        };
        if !ours {
            continue;
        }
        match unlock_disk(&name) {
            Ok(_) => unlocked.push(name),
            Err(e) => tracing::warn!(
                "failed to unlock disk {name:?} ({e}); run `limactl disk unlock {name}`"
            ),
        }
    }
    Ok(unlocked)
}

/// A disk being created: a hidden directory under `_disks` that becomes `_disks/NAME` in one
/// rename ([`NewDisk::commit`]), or is removed when dropped uncommitted. So a failed or
/// interrupted create leaves no half disk, and two creates of one name cannot both succeed.
#[derive(Debug)]
pub struct NewDisk {
    name: String,
    tmp: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl NewDisk {
    /// Checks the name and that no disk of that name exists; makes `$LIMA_HOME` and `_disks`
    /// (0700) if missing and the hidden directory (0700).
    pub fn begin(name: &str) -> Result<Self> {
        let dir = disk_dir(name)?;
        if std::fs::symlink_metadata(&dir).is_ok() {
            return Err(StoreError::DiskExists {
                name: name.to_string(),
                dir,
            });
        }
        crate::ensure_lima_home()?;
        let parent = disks_dir()?;
        crate::ensure_private_dir(&parent)?;
        let tmp = parent.join(format!(".{name}.creating-{}", std::process::id()));
        if tmp.exists() {
            // Left by a killed create of ours with a recycled pid.
            std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        crate::ensure_private_dir(&tmp)?;
        Ok(NewDisk {
            name: name.to_string(),
            tmp,
            dir,
            committed: false,
        })
    }

    /// Where the image must be written.
    pub fn data_disk(&self) -> PathBuf {
        self.tmp.join(filenames::DATA_DISK)
    }

    /// Moves the disk into place; `DiskExists` if another create got there first.
    pub fn commit(mut self) -> Result<PathBuf> {
        if std::fs::symlink_metadata(&self.dir).is_ok() {
            return Err(StoreError::DiskExists {
                name: self.name.clone(),
                dir: self.dir.clone(),
            });
        }
        match std::fs::rename(&self.tmp, &self.dir) {
            Ok(()) => {
                self.committed = true;
                Ok(self.dir.clone())
            }
            // A non-empty directory appeared there since the check.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                Err(StoreError::DiskExists {
                    name: self.name.clone(),
                    dir: self.dir.clone(),
                })
            }
            Err(e) => Err(io_err(&self.dir)(e)),
        }
    }
}

impl Drop for NewDisk {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Removes a disk's directory: renamed out of sight first, so `disk list` never sees half a
/// disk. Returns the directory it was in.
pub fn remove_disk(name: &str) -> Result<PathBuf> {
    let dir = disk_dir(name)?;
    let doomed = disks_dir()?.join(format!(".{name}.deleting-{}", std::process::id()));
    std::fs::rename(&dir, &doomed).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            StoreError::DiskNotFound(name.to_string())
        } else {
            io_err(&dir)(e)
        }
    })?;
    std::fs::remove_dir_all(&doomed).map_err(io_err(&doomed))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::with_test_home as with_home;

    /// A "raw" probe: the file's length.
    fn probe(
        p: &Path,
    ) -> std::result::Result<(u64, String), Box<dyn std::error::Error + Send + Sync>> {
        Ok((std::fs::metadata(p)?.len(), "raw".into()))
    }

    fn make(name: &str, bytes: usize) -> PathBuf {
        let d = NewDisk::begin(name).unwrap();
        std::fs::write(d.data_disk(), vec![0u8; bytes]).unwrap();
        d.commit().unwrap()
    }

    #[test]
    fn names_are_identifiers() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", "-a"] {
            assert!(
                matches!(
                    validate_disk_name(bad),
                    Err(StoreError::InvalidDiskName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        validate_disk_name("data-1.x_y").unwrap();
    }

    #[test]
    fn create_list_inspect_remove() {
        with_home(|home| {
            assert!(disk_names().unwrap().is_empty());
            let dir = make("d1", 4096);
            assert_eq!(dir, home.join("_disks/d1"));
            use std::os::unix::fs::PermissionsExt;
            for d in [home.join("_disks"), dir.clone()] {
                let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o700, "{}", d.display());
            }
            let e = NewDisk::begin("d1").unwrap_err();
            assert!(matches!(e, StoreError::DiskExists { .. }), "{e}");
            // An uncommitted create leaves nothing behind.
            drop(NewDisk::begin("d2").unwrap());
            assert_eq!(disk_names().unwrap(), ["d1"]);
            assert_eq!(std::fs::read_dir(home.join("_disks")).unwrap().count(), 1);

            let d = inspect_disk("d1", None, &probe).unwrap();
            assert_eq!((d.size, d.format.as_str()), (4096, "raw"));
            assert_eq!(d.mount_point, "/mnt/lima-d1");
            assert_eq!(d.instance, "");
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(
                json,
                format!(
                    r#"{{"name":"d1","size":4096,"format":"raw","dir":"{}","instance":"","instanceDir":"","mountPoint":"/mnt/lima-d1"}}"#,
                    dir.display()
                )
            );
            assert_eq!(
                inspect_disk("d1", Some("swap"), &probe)
                    .unwrap()
                    .mount_point,
                "[SWAP]"
            );
            assert!(matches!(
                inspect_disk("nope", None, &probe),
                Err(StoreError::DiskNotFound(_))
            ));
            assert_eq!(remove_disk("d1").unwrap(), dir);
            assert!(!dir.exists());
            assert!(matches!(
                remove_disk("d1"),
                Err(StoreError::DiskNotFound(_))
            ));
        })
    }

    #[test]
    fn lock_is_per_instance() {
        with_home(|home| {
            make("d", 1);
            let (a, b) = (home.join("a"), home.join("b"));
            lock_disk("d", &a).unwrap();
            // Again for the same instance: fine (a restart after a crash).
            lock_disk("d", &a).unwrap();
            let link = home.join("_disks/d/in_use_by");
            assert_eq!(std::fs::read_link(&link).unwrap(), a);
            let e = lock_disk("d", &b).unwrap_err();
            assert!(
                matches!(&e, StoreError::DiskInUse { instance, .. } if instance == "a"),
                "{e}"
            );
            assert!(e.to_string().contains("limactl disk unlock d"), "{e}");
            let d = inspect_disk("d", None, &probe).unwrap();
            assert_eq!(d.instance, "a");
            assert_eq!(d.instance_dir, a.display().to_string());

            // Only the owner's disks are unlocked by its stop.
            make("e", 1);
            lock_disk("e", &b).unwrap();
            assert_eq!(unlock_disks_of(&a).unwrap(), ["d"]);
            assert_eq!(locked_by(&home.join("_disks/d")).unwrap(), None);
            assert_eq!(locked_by(&home.join("_disks/e")).unwrap(), Some(b.clone()));
            assert!(unlock_disk("e").unwrap());
            assert!(!unlock_disk("e").unwrap());
            assert!(matches!(
                lock_disk("nope", &a),
                Err(StoreError::DiskNotFound(_))
            ));
        })
    }

    #[test]
    fn concurrent_locks_have_one_winner() {
        with_home(|home| {
            make("d", 1);
            let threads: Vec<_> = (0..8)
                .map(|i| {
                    let inst = home.join(format!("i{i}"));
                    std::thread::spawn(move || lock_disk("d", &inst).is_ok())
                })
                .collect();
            let winners = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|ok| *ok)
                .count();
            assert_eq!(winners, 1);
        })
    }
}
