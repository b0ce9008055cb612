//! `limactl factory-reset` (upstream's `factory-reset.go`): the instance is stopped forcibly,
//! then everything in its directory goes but the configs (`*.yaml`, `*.yml`), `lima-version`,
//! `protected` and `vz-identifier`. The next start makes the disk from the image again and
//! writes a fresh seed, as for a new instance.

use std::path::Path;
use std::time::Duration;

use limatype::filenames;

use crate::{error::io, InstanceError, Result};

/// Whether the reset found the instance.
#[derive(Debug, PartialEq, Eq)]
pub enum Reset {
    /// There is no such instance (upstream: not an error).
    NotFound,
    Done,
}

/// Whether a file of the instance directory survives a factory reset.
fn kept(name: &str) -> bool {
    filenames::KEEP_ON_FACTORY_RESET.contains(&name)
        || name.ends_with(".yaml")
        || name.ends_with(".yml")
        // The lock is held by this process while it resets.
        || name == store::LOCK_FILE
}

/// Factory-resets instance `name`; `say` gets a line per removed file.
pub fn factory_reset(name: &str, say: &dyn Fn(&str)) -> Result<Reset> {
    let inst = match crate::ops::inspect(name) {
        Err(InstanceError::NotFound(_)) => return Ok(Reset::NotFound),
        other => other?,
    };
    if inst.protected {
        return Err(InstanceError::ProtectedFrom {
            name: name.to_string(),
            what: "factory-reset",
        });
    }
    crate::ops::force_stop(&inst)?;
    let dir = Path::new(&inst.dir);
    // A killed host agent's driver may take a moment to let go of the lock.
    let _lock = store::InstanceLock::acquire_within(dir, name, Duration::from_secs(15))?;
    let mut failures = vec![];
    let entries = std::fs::read_dir(dir).map_err(io("reading", dir))?;
    for entry in entries {
        let entry = entry.map_err(io("reading", dir))?;
        if kept(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        say(&format!("Removing {:?}", path.display().to_string()));
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        // Upstream goes on past a file it cannot remove; so do we, and report them all.
        if let Err(e) = removed {
            failures.push(format!("removing {}: {e}", path.display()));
        }
    }
    if !failures.is_empty() {
        return Err(InstanceError::ResetIncomplete {
            name: name.to_string(),
            failures,
        });
    }
    Ok(Reset::Done)
}

#[cfg(test)]
mod tests {
    use super::kept;

    #[test]
    fn what_a_reset_keeps() {
        for name in [
            "lima.yaml",
            "x.yml",
            "lima-version",
            "protected",
            "vz-identifier",
        ] {
            assert!(kept(name), "{name}");
        }
        for name in [
            "diffdisk",
            "basedisk",
            "cidata.iso",
            "ssh.config",
            "ha.stderr.log",
        ] {
            assert!(!kept(name), "{name}");
        }
    }
}
