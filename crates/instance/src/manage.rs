//! Small instance commands' flows: protecting an instance from `limactl delete`, the
//! start-at-login entry (a systemd user unit, as upstream's `pkg/autostart/systemd`), and the
//! download cache entries instances and templates refer to (`limactl prune --keep-referred`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use limatype::{filenames, LimaYaml};

use crate::{error::io, InstanceError, Result};

/// Marks instance `name` protected (upstream's empty, read-only `protected` file); false when
/// it already was.
pub fn protect(name: &str) -> Result<bool> {
    let inst = crate::ops::inspect(name)?;
    if inst.protected {
        return Ok(false);
    }
    let path = Path::new(&inst.dir).join(filenames::PROTECTED);
    std::fs::write(&path, b"").map_err(io("writing", &path))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))
        .map_err(io("setting the mode of", &path))?;
    Ok(true)
}

/// Removes the protection of instance `name`; false when it was not protected.
pub fn unprotect(name: &str) -> Result<bool> {
    let inst = crate::ops::inspect(name)?;
    if !inst.protected {
        return Ok(false);
    }
    let path = Path::new(&inst.dir).join(filenames::PROTECTED);
    std::fs::remove_file(&path).map_err(io("removing", &path))?;
    Ok(true)
}

/// Upstream's `lima-vm@INSTANCE.service` template (`%i` is the instance).
const SYSTEMD_UNIT: &str = "[Unit]
Description=Lima - Linux virtual machines, with a focus on running containers.
Documentation=man:lima(1)

[Service]
ExecStart={{.Binary}} start %i --foreground
WorkingDirectory=%h
Type=simple
TimeoutSec=10
Restart=on-failure

[Install]
WantedBy=default.target
";

/// The unit's text for limactl at `binary`.
pub fn systemd_unit(binary: &Path) -> String {
    SYSTEMD_UNIT.replace("{{.Binary}}", &binary.to_string_lossy())
}

/// `lima-vm@NAME.service`.
pub fn unit_name(name: &str) -> String {
    format!("lima-vm@{name}.service")
}

/// `$XDG_CONFIG_HOME/systemd/user/lima-vm@NAME.service` (`~/.config` when unset).
pub fn unit_path(name: &str) -> Result<PathBuf> {
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".config"))
            .ok_or(InstanceError::Store(store::StoreError::NoHome))?,
    };
    Ok(config.join("systemd/user").join(unit_name(name)))
}

/// How registering changed the entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Registered {
    Created,
    Updated,
}

/// Writes the unit for instance `name` and runs `systemctl --user enable` on it. Linux only,
/// as upstream's systemd manager.
pub fn register_autostart(name: &str, binary: &Path) -> Result<Registered> {
    autostart_supported()?;
    let inst = crate::ops::inspect(name)?;
    let path = unit_path(&inst.name)?;
    let verb = if path.exists() {
        Registered::Updated
    } else {
        Registered::Created
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    std::fs::write(&path, systemd_unit(binary)).map_err(io("writing", &path))?;
    systemctl(&["--user", "enable", &unit_name(&inst.name)])?;
    Ok(verb)
}

/// Disables and removes the unit of instance `name`; false when there was none.
pub fn unregister_autostart(name: &str) -> Result<bool> {
    autostart_supported()?;
    let path = unit_path(name)?;
    if !path.exists() {
        return Ok(false);
    }
    systemctl(&["--user", "disable", &unit_name(name)])?;
    std::fs::remove_file(&path).map_err(io("removing", &path))?;
    Ok(true)
}

/// Whether instance `name` has an autostart unit.
pub fn autostart_registered(name: &str) -> Result<bool> {
    Ok(unit_path(name)?.exists())
}

fn autostart_supported() -> Result<()> {
    if cfg!(target_os = "linux") {
        Ok(())
    } else {
        Err(InstanceError::AutostartUnsupported(std::env::consts::OS))
    }
}

fn systemctl(args: &[&str]) -> Result<()> {
    tracing::debug!("running command: systemctl {}", args.join(" "));
    let status = std::process::Command::new("systemctl")
        .args(args)
        .status()
        .map_err(|e| InstanceError::Systemctl {
            args: args.join(" "),
            why: e.to_string(),
        })?;
    if !status.success() {
        return Err(InstanceError::Systemctl {
            args: args.join(" "),
            why: status.to_string(),
        });
    }
    Ok(())
}

/// The remote locations a config fetches (images, kernels, initrds, containerd archives,
/// firmware): what the download cache keeps for it.
pub fn referred_locations(y: &LimaYaml) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for img in y.images.iter().flatten() {
        out.insert(img.location.clone());
        if let Some(k) = &img.kernel {
            out.insert(k.location.clone());
        }
        if let Some(i) = &img.initrd {
            out.insert(i.location.clone());
        }
    }
    if let Some(c) = &y.containerd {
        out.extend(c.archives.iter().flatten().map(|f| f.location.clone()));
    }
    if let Some(f) = &y.firmware {
        out.extend(f.images.iter().flatten().map(|f| f.location.clone()));
    }
    out
}

/// The locations every instance refers to. An instance that cannot be read stops the prune
/// (its files might be in the cache), as upstream.
pub fn locations_referred_by_instances() -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for name in store::instance_names()? {
        let inst = crate::ops::inspect(&name)?;
        if !inst.errors.is_empty() {
            tracing::warn!(
                "skipping instance {name:?} because it has errors: {}",
                inst.errors.join("; ")
            );
            continue;
        }
        if let Some(y) = &inst.config {
            out.extend(referred_locations(y));
        }
    }
    Ok(out)
}

/// The locations the templates (`limactl template list`) refer to, each loaded as `create`
/// would load it. A template that does not load stops the prune, as upstream.
pub fn locations_referred_by_templates() -> Result<BTreeSet<String>> {
    let opts = limaload::LoadOptions::detect();
    let mut out = BTreeSet::new();
    for (name, _) in limaload::list_templates(&opts.template_dirs) {
        let mut o = opts.clone();
        // Only name-dependent defaults use it; any valid name loads the same images.
        o.name = Some("default".into());
        let loaded = limaload::load(&format!("template:{name}"), &o)?;
        out.extend(referred_locations(loaded.config.yaml()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_as_upstream() {
        let u = systemd_unit(Path::new("/usr/local/bin/limactl"));
        assert!(u.contains("ExecStart=/usr/local/bin/limactl start %i --foreground\n"));
        assert!(u.ends_with("[Install]\nWantedBy=default.target\n"));
        assert_eq!(unit_name("a"), "lima-vm@a.service");
    }

    #[test]
    fn locations_of_a_config() {
        let y: LimaYaml = serde_yaml::from_str(
            "images:\n- location: https://x/a.img\n  kernel:\n    location: https://x/k\n\
             containerd:\n  archives:\n  - location: https://x/c.tgz\n",
        )
        .unwrap();
        let l: Vec<String> = referred_locations(&y).into_iter().collect();
        assert_eq!(l, ["https://x/a.img", "https://x/c.tgz", "https://x/k"]);
    }
}
