//! `limactl create [--name N] [flags] [FILE.yaml|URL|template:NAME|-]`: makes the instance
//! directory with its `lima.yaml` (after the edit flags and `--set` were applied and the driver
//! accepted the config); the disks are prepared by the driver on first start.

use anyhow::{bail, Result};
use clap::Args;
use instance::target::{existing_or_create, Target};

use super::editflags::CreateFlagArgs;

#[derive(Args)]
pub struct CreateArgs {
    /// A config to create the instance from (FILE.yaml, URL, template:NAME, `-` for stdin).
    pub target: Option<String>,
    /// Override the instance name.
    #[arg(long)]
    pub name: Option<String>,
    /// List available templates and exit.
    #[arg(long)]
    pub list_templates: bool,
    /// List the available drivers, one a line (`NAME`, or `NAME (external)`), and exit.
    #[arg(long)]
    pub list_drivers: bool,
    #[command(flatten)]
    pub flags: CreateFlagArgs,
}

pub fn run(args: CreateArgs) -> Result<()> {
    let reg = crate::drivers::registry();
    if args.list_templates {
        print!("{}", super::editflags::list_templates()?);
        return Ok(());
    }
    if args.list_drivers {
        print!("{}", list_drivers(&reg.list()));
        return Ok(());
    }
    match existing_or_create(args.target.as_deref(), args.name.as_deref())? {
        Target::Existing(name) => bail!("instance {name:?} already exists"),
        Target::Create { name, locator } => {
            let edit = args.flags.edit_fn(true);
            let opened =
                super::runtime()?.block_on(instance::create_edited(reg, &name, &locator, &edit))?;
            say_created(&opened);
            Ok(())
        }
    }
}

pub fn say_created(inst: &instance::Opened) {
    tracing::info!("Created instance {:?} in {}", inst.name, inst.dir.display());
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
