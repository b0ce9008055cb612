//! `limactl disk ...`: Lima's additional disks (create, list, delete, unlock, resize), as
//! upstream's commands, over `instance::datadisk`. They live in `$LIMA_HOME/_disks/NAME/` and
//! an instance names them in `additionalDisks`.

use anyhow::{anyhow, Result};
use clap::Subcommand;
use instance::datadisk;

#[derive(Subcommand)]
pub enum DiskCmd {
    /// Create a Lima disk.
    Create {
        /// The disk name (letters, digits, `.`, `_`, `-`).
        name: String,
        /// The disk size, e.g. 10GiB (required).
        #[arg(long)]
        size: Option<String>,
        /// The disk format: qcow2 or raw.
        #[arg(long, default_value = datadisk::DEFAULT_FORMAT)]
        format: String,
    },
    /// List existing Lima disks.
    #[command(alias = "ls")]
    List {
        /// Disk names to show (all if none).
        names: Vec<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Delete one or more Lima disks.
    #[command(alias = "remove", alias = "rm")]
    Delete {
        #[arg(required = true, value_name = "DISK")]
        names: Vec<String>,
        /// Delete even a disk in use or named by an instance.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Unlock one or more Lima disks (recovery after a forced stop left them locked).
    Unlock {
        #[arg(required = true, value_name = "DISK")]
        names: Vec<String>,
    },
    /// Resize an existing Lima disk (grow only; the guest grows its file system at boot).
    Resize {
        name: String,
        /// The new disk size, e.g. 20GiB (required).
        #[arg(long)]
        size: Option<String>,
    },
}

/// `--size`, which clap leaves optional so that its absence exits 1 like every other bad
/// input (clap's own usage errors exit 2).
fn required_size(size: Option<String>) -> Result<String> {
    size.ok_or_else(|| anyhow!("required flag --size not set (e.g. --size 10GiB)"))
}

pub fn run(cmd: DiskCmd) -> Result<()> {
    let say = &super::say;
    match cmd {
        DiskCmd::Create { name, size, format } => {
            datadisk::create(&name, &required_size(size)?, &format, say)?;
        }
        DiskCmd::List { names, json } => list(&names, json)?,
        DiskCmd::Delete { names, force } => datadisk::delete(&names, force, say)?,
        DiskCmd::Unlock { names } => datadisk::unlock(&names, say)?,
        DiskCmd::Resize { name, size } => datadisk::resize(&name, &required_size(size)?, say)?,
    }
    Ok(())
}

fn list(names: &[String], json: bool) -> Result<()> {
    let warn = |line: &str| super::say(&format!("warning: {line}"));
    let disks = datadisk::list(names, &warn)?;
    if json {
        for d in &disks {
            println!("{}", serde_json::to_string(d)?);
        }
        return Ok(());
    }
    if disks.is_empty() {
        warn("No disk found. Run `limactl disk create DISK --size SIZE` to create a disk.");
    }
    print!("{}", table(&disks));
    Ok(())
}

/// Upstream's columns, NAME SIZE FORMAT DIR IN-USE-BY, aligned as its tabwriter does (each
/// column 4 wider than its widest cell; the last one not padded).
pub fn table(disks: &[store::disks::Disk]) -> String {
    let mut rows = vec![["NAME", "SIZE", "FORMAT", "DIR", "IN-USE-BY"].map(String::from)];
    for d in disks {
        rows.push([
            d.name.clone(),
            limatype::ByteSize(d.size).to_string(),
            d.format.clone(),
            d.dir.clone(),
            d.instance.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c == 4 {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}", w = widths[c] + 4));
            }
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns() {
        let d = store::disks::Disk {
            name: "data".into(),
            size: 10 << 30,
            format: "qcow2".into(),
            dir: "/h/_disks/data".into(),
            instance: "vm".into(),
            ..Default::default()
        };
        let t = table(&[d]);
        assert_eq!(
            t,
            "NAME    SIZE     FORMAT    DIR               IN-USE-BY\n\
             data    10GiB    qcow2     /h/_disks/data    vm\n"
        );
    }
}
