//! Lima's additional disks (`limactl disk ...`, `additionalDisks`): their images made, sized
//! and read with `qemu-img`, and the flows upstream's `limactl disk` runs over them (create,
//! list, delete, unlock, resize). Where disks live and their `in_use_by` locks are the store's
//! ([`store::disks`]); the instance flow locks an instance's disks before its VM starts and
//! unlocks them when it stops ([`lock_for_instance`], [`unlock_of`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use limatype::{filenames, ByteSize, Status};
use store::disks::{self, Disk};

use crate::{InstanceError, Result};

/// Image formats a disk may have; upstream's `--format` values.
pub const FORMATS: [&str; 2] = ["qcow2", "raw"];
/// `--format`'s default, as upstream.
pub const DEFAULT_FORMAT: &str = "qcow2";

/// Runs `qemu-img ARGS` and returns its stdout.
fn qemu_img(args: &[&str]) -> Result<String> {
    let shown = format!("qemu-img {}", args.join(" "));
    let out = Command::new("qemu-img")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| InstanceError::QemuImg {
            command: shown.clone(),
            why: if e.kind() == std::io::ErrorKind::NotFound {
                "qemu-img is not installed (it makes, sizes and reads disk images)".into()
            } else {
                e.to_string()
            },
        })?;
    if !out.status.success() {
        return Err(InstanceError::QemuImg {
            command: shown,
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Virtual size and format of an image, from `qemu-img info --output=json`. `--force-share`:
/// a disk in use by a running qemu is locked by it, and reading its header is harmless.
pub fn image_info(path: &Path) -> Result<(u64, String)> {
    let p = path.display().to_string();
    let json = qemu_img(&["info", "--output=json", "--force-share", &p])?;
    let bad = |why: String| InstanceError::QemuImg {
        command: format!("qemu-img info --output=json --force-share {p}"),
        why,
    };
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| bad(e.to_string()))?;
    let size = v["virtual-size"]
        .as_u64()
        .ok_or_else(|| bad("no virtual-size in its output".into()))?;
    let format = v["format"]
        .as_str()
        .ok_or_else(|| bad("no format in its output".into()))?;
    Ok((size, format.to_string()))
}

/// [`image_info`] as the store's probe.
fn probe(
    path: &Path,
) -> std::result::Result<(u64, String), Box<dyn std::error::Error + Send + Sync>> {
    image_info(path).map_err(|e| Box::new(e) as _)
}

/// A disk's facts, its size and format read with qemu-img.
pub fn inspect(name: &str, fs_type: Option<&str>) -> Result<Disk> {
    Ok(disks::inspect_disk(name, fs_type, &probe)?)
}

/// A `--size` value: go-units' grammar (`10GiB`, `10G`, `512M`, a number of bytes), above 0.
pub fn parse_size(text: &str) -> Result<ByteSize> {
    let bad = |why: String| InstanceError::DiskSize {
        text: text.to_string(),
        why,
    };
    let size: ByteSize = text.parse().map_err(|e| bad(format!("{e}")))?;
    if size.bytes() == 0 {
        return Err(bad("a disk must be larger than 0 bytes".into()));
    }
    Ok(size)
}

/// `limactl disk create NAME --size SIZE [--format qcow2|raw]`: a new empty image in
/// `_disks/NAME/datadisk`. Nothing is left behind when it fails.
pub fn create(name: &str, size: &str, format: &str, say: &dyn Fn(&str)) -> Result<PathBuf> {
    if !FORMATS.contains(&format) {
        return Err(InstanceError::DiskFormat(format.to_string()));
    }
    let size = parse_size(size)?;
    let new = disks::NewDisk::begin(name)?;
    say(&format!("Creating {format} disk {name:?} with size {size}"));
    let image = new.data_disk().display().to_string();
    qemu_img(&[
        "create",
        "-q",
        "-f",
        format,
        &image,
        &size.bytes().to_string(),
    ])?;
    Ok(new.commit()?)
}

/// `limactl disk list [NAME...]`: the disks (all, or those named; a name with no disk is
/// warned about). A disk that cannot be read is warned about and left out, as upstream.
pub fn list(names: &[String], warn: &dyn Fn(&str)) -> Result<Vec<Disk>> {
    let all = disks::disk_names()?;
    let chosen: Vec<&String> = if names.is_empty() {
        all.iter().collect()
    } else {
        names
            .iter()
            .filter(|n| {
                let found = all.contains(n);
                if !found {
                    warn(&format!("No disk matching {n:?} found."));
                }
                found
            })
            .collect()
    };
    let mut out = vec![];
    for name in chosen {
        match inspect(name, None) {
            Ok(d) => out.push(d),
            Err(e) => warn(&format!("disk {name:?} does not exist? {e}")),
        }
    }
    Ok(out)
}

/// The named instance's status, if it exists and can be read.
fn instance_status(name: &str) -> Option<limatype::Instance> {
    if name.is_empty() {
        return None;
    }
    crate::ops::inspect(name).ok()
}

/// `limactl disk delete [-f] NAME...`, as upstream: a missing disk is skipped with a warning;
/// without `force`, a disk in use is an error and a disk that a stopped instance's
/// `additionalDisks` names is skipped with a warning.
pub fn delete(names: &[String], force: bool, say: &dyn Fn(&str)) -> Result<()> {
    let instances: Vec<limatype::Instance> = store::instance_names()?
        .iter()
        .filter_map(|n| crate::ops::inspect(n).ok())
        .collect();
    for name in names {
        let Some(disk) = inspect_or_warn(name, say)? else {
            continue;
        };
        if !force {
            if !disk.instance.is_empty() {
                return Err(InstanceError::DiskInUse {
                    name: name.clone(),
                    instance: disk.instance,
                });
            }
            let refs: Vec<&str> = instances
                .iter()
                .filter(|i| i.additional_disks.iter().any(|d| &d.name == name))
                .map(|i| i.name.as_str())
                .collect();
            if !refs.is_empty() {
                say(&format!(
                    "warning: Skipping deleting disk {name:?}, disk is referenced by one or more \
                     non-running instances: {refs:?}"
                ));
                say(&format!(
                    "warning: To delete anyway, run `limactl disk delete --force {name}`"
                ));
                continue;
            }
        }
        let dir = disks::remove_disk(name)?;
        say(&format!("Deleted {name:?} ({})", dir.display()));
    }
    Ok(())
}

/// The disk, or `None` with upstream's warning when it does not exist.
fn inspect_or_warn(name: &str, say: &dyn Fn(&str)) -> Result<Option<Disk>> {
    match inspect(name, None) {
        Ok(d) => Ok(Some(d)),
        Err(InstanceError::Store(store::StoreError::DiskNotFound(_))) => {
            say(&format!("warning: Ignoring non-existent disk {name:?}"));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `limactl disk unlock NAME...`, as upstream: for recovery after a forced stop. A disk used
/// by a running instance (or one with errors) is not unlocked; a missing or unlocked disk is
/// skipped; each with a warning.
pub fn unlock(names: &[String], say: &dyn Fn(&str)) -> Result<()> {
    for name in names {
        let Some(disk) = inspect_or_warn(name, say)? else {
            continue;
        };
        if disk.instance.is_empty() {
            say(&format!("warning: Ignoring unlocked disk {name:?}"));
            continue;
        }
        // An instance that does not exist any more cannot be using it.
        if let Some(inst) = instance_status(&disk.instance) {
            if !inst.errors.is_empty() {
                say(&format!(
                    "warning: Cannot unlock disk {name:?}, attached instance {:?} has errors: {}",
                    disk.instance,
                    inst.errors.join("; ")
                ));
                continue;
            }
            if inst.status == Status::Running {
                say(&format!(
                    "warning: Cannot unlock disk {name:?} used by running instance {:?}",
                    disk.instance
                ));
                continue;
            }
        }
        disks::unlock_disk(name)?;
        say(&format!("Unlocked disk {name:?} ({})", disk.dir));
    }
    Ok(())
}

/// `limactl disk resize NAME --size SIZE`, as upstream: grows only, and not while a running
/// instance uses the disk. The guest grows the partition and file system at its next boot.
pub fn resize(name: &str, size: &str, say: &dyn Fn(&str)) -> Result<()> {
    let size = parse_size(size)?;
    let disk = inspect(name, None)?;
    if size.bytes() < disk.size {
        return Err(InstanceError::DiskShrink {
            name: name.to_string(),
            size,
            current: ByteSize(disk.size),
        });
    }
    if let Some(inst) = instance_status(&disk.instance) {
        if inst.status == Status::Running {
            return Err(InstanceError::DiskResizeRunning {
                name: name.to_string(),
                instance: disk.instance,
            });
        }
    }
    let image = Path::new(&disk.dir).join(filenames::DATA_DISK);
    qemu_img(&[
        "resize",
        "-q",
        "-f",
        &disk.format,
        &image.display().to_string(),
        &size.bytes().to_string(),
    ])?;
    say(&format!("Resized disk {name:?} ({})", disk.dir));
    Ok(())
}

/// Locks each of `disks` (the instance's `additionalDisks`) to the instance in `inst_dir`,
/// all or none: on the first that is missing or used by another instance, the ones taken are
/// released again and the error names the disk. The caller holds the instance lock, so any
/// disk already locked to this instance is a leftover of a run that crashed.
pub fn lock_for_instance(
    inst_dir: &Path,
    disks: &[limatype::Disk],
    say: &dyn Fn(&str),
) -> Result<()> {
    for (index, d) in disks.iter().enumerate() {
        let locked = disks::lock_disk(&d.name, inst_dir).map_err(|e| match e {
            store::StoreError::DiskNotFound(name) => InstanceError::DiskMissing { index, name },
            other => InstanceError::AttachDisk {
                index,
                source: other,
            },
        });
        if let Err(e) = locked {
            unlock_of(inst_dir);
            return Err(e);
        }
        let mount_point = if d.fs_type.as_deref() == Some("swap") {
            "[SWAP]".to_string()
        } else {
            format!("/mnt/lima-{}", d.name)
        };
        say(&format!(
            "Attaching disk {:?} (on {mount_point} in the guest)",
            d.name
        ));
    }
    Ok(())
}

/// Releases every disk locked to the instance in `inst_dir` (after its VM stopped, or a start
/// failed). Best effort: what cannot be released is logged with the command that does it.
pub fn unlock_of(inst_dir: &Path) {
    match disks::unlock_disks_of(inst_dir) {
        Ok(names) => {
            for n in names {
                tracing::info!("Released disk {n:?}");
            }
        }
        Err(e) => tracing::warn!("cannot release the disks of {}: {e}", inst_dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10GiB").unwrap(), ByteSize(10 << 30));
        assert_eq!(parse_size("512M").unwrap(), ByteSize(512 << 20));
        let e = parse_size("0").unwrap_err().to_string();
        assert!(e.contains("larger than 0"), "{e}");
        let e = parse_size("lots").unwrap_err().to_string();
        assert!(e.contains("\"lots\"") && e.contains("--size"), "{e}");
    }
}
