//! `limactl create [--name N] [FILE.yaml|URL|template:NAME]`: makes the instance directory
//! with its `lima.yaml`; the disks are prepared by the driver on first start.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use limatype::filenames;

use super::wiring;

#[derive(Args)]
pub struct CreateArgs {
    /// A config to create the instance from (FILE.yaml, URL, template:NAME).
    pub target: Option<String>,
    /// Name of the instance.
    #[arg(long)]
    pub name: Option<String>,
    /// Interactive prompts (none are implemented; kept for compatibility).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub tty: bool,
    /// List the available drivers, one a line (`NAME`, or `NAME (external)`), and exit.
    #[arg(long)]
    pub list_drivers: bool,
}

pub fn run(args: CreateArgs) -> Result<()> {
    if args.list_drivers {
        print!("{}", list_drivers(&crate::drivers::registry().list()));
        return Ok(());
    }
    match existing_or_create(&args.target, &args.name)? {
        Target::Existing(name) => bail!("instance {name:?} already exists"),
        Target::Create { name, locator } => create(&name, &locator),
    }
}

pub enum Target {
    Existing(String),
    Create { name: String, locator: String },
}

/// `--list-drivers` output: `NAME` for an internal driver, `NAME (external)` for an external one.
pub fn list_drivers(entries: &[registry::Entry]) -> String {
    entries
        .iter()
        .map(|e| match e.location {
            registry::Location::Internal => format!("{}\n", e.name),
            registry::Location::External(_) => format!("{} (external)\n", e.name),
        })
        .collect()
}

/// Decides what `start`/`create` was given: an existing instance's name, or a config locator
/// (with the instance name from `--name` or from the locator's file name).
pub fn existing_or_create(target: &Option<String>, name: &Option<String>) -> Result<Target> {
    let target = target.clone();
    match (target, name) {
        (None, None) => Ok(existing_or("default", "template:default")),
        (None, Some(n)) => Ok(existing_or(n, "template:default")),
        (Some(t), n) => {
            let looks_like_locator = t.contains('/')
                || t.contains(':')
                || t.ends_with(".yaml")
                || t.ends_with(".yml")
                || t == "-";
            if !looks_like_locator && n.is_none() {
                store::validate_instance_name(&t)?;
                if store::instance_exists(&t)? {
                    return Ok(Target::Existing(t));
                }
                // `limactl start NAME` for a new NAME uses the template of that name.
                return Ok(Target::Create {
                    name: t.clone(),
                    locator: format!("template:{t}"),
                });
            }
            let name = match n {
                Some(n) => n.clone(),
                None => name_from_locator(&t)?,
            };
            store::validate_instance_name(&name)?;
            if store::instance_exists(&name)? {
                bail!("instance {name:?} already exists; run `limactl start {name}` or choose another --name");
            }
            Ok(Target::Create { name, locator: t })
        }
    }
}

fn existing_or(name: &str, locator: &str) -> Target {
    if store::instance_exists(name).unwrap_or(false) {
        Target::Existing(name.to_string())
    } else {
        Target::Create {
            name: name.to_string(),
            locator: locator.to_string(),
        }
    }
}

/// `ubuntu-24.04.yaml`, `template:docker`, `https://x/y/alpine.yaml` -> `ubuntu-24.04`,
/// `docker`, `alpine`.
pub fn name_from_locator(locator: &str) -> Result<String> {
    let base = locator
        .strip_prefix("template:")
        .unwrap_or(locator)
        .rsplit('/')
        .next()
        .unwrap_or(locator)
        .to_ascii_lowercase();
    let base = base
        .strip_suffix(".yaml")
        .or_else(|| base.strip_suffix(".yml"))
        .unwrap_or(&base)
        .to_string();
    store::validate_instance_name(&base)
        .with_context(|| format!("cannot name an instance after {locator:?}; use --name"))?;
    Ok(base)
}

/// Loads and checks the config, then writes the instance directory (0700) with `lima.yaml`.
pub fn create(name: &str, locator: &str) -> Result<()> {
    let (text, config) = wiring::load_locator(locator)?;
    wiring::validate(name, &config)?;
    let dir = store::instance_dir(name)?;
    if dir.join(filenames::LIMA_YAML).exists() {
        bail!("instance {name:?} already exists");
    }
    store::ensure_private_dir(&store::lima_home()?)?;
    store::ensure_private_dir(&dir)?;
    let lock = store::InstanceLock::try_acquire(&dir, name)?;
    store::write_private_file(&dir.join(filenames::LIMA_YAML), text.as_bytes())?;
    store::write_private_file(
        &dir.join(filenames::LIMA_VERSION),
        format!("{}\n", limatype::LIMA_COMPAT_VERSION).as_bytes(),
    )?;
    drop(lock);
    eprintln!("Created instance {name:?} in {}", dir.display());
    Ok(())
}

/// Makes sure the driver has what it needs on disk (images fetched, disks made).
pub fn prepare(name: &str) -> Result<()> {
    let dir = store::instance_dir(name)?;
    let config = wiring::load_instance(&dir.join(filenames::LIMA_YAML))?;
    wiring::prepare_disks(name, Path::new(&dir), &config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_drivers_marks_external_ones() {
        let entries = [
            registry::Entry {
                name: "qemu".into(),
                location: registry::Location::Internal,
            },
            registry::Entry {
                name: "vz".into(),
                location: registry::Location::External("/p/lima-driver-vz".into()),
            },
        ];
        assert_eq!(list_drivers(&entries), "qemu\nvz (external)\n");
    }
}
