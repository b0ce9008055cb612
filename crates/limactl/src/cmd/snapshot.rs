//! `limactl snapshot create|apply|delete|list INSTANCE`: upstream's experimental snapshot
//! commands over the driver's snapshot calls (qemu: monitor while running, `qemu-img` while
//! stopped).

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use instance::snapshot::{self, SnapshotOp};

#[derive(Subcommand)]
pub enum SnapshotCmd {
    /// Create (save) a snapshot.
    Create(TagArgs),
    /// Apply (load) a snapshot.
    #[command(alias = "load")]
    Apply(TagArgs),
    /// Delete (del) a snapshot.
    #[command(alias = "del")]
    Delete(TagArgs),
    /// List existing snapshots.
    #[command(alias = "ls")]
    List(ListArgs),
}

#[derive(Args)]
pub struct TagArgs {
    /// The instance (further names are ignored, as upstream).
    #[arg(required = true, value_name = "INSTANCE")]
    pub names: Vec<String>,
    /// Name of the snapshot.
    #[arg(long, default_value = "")]
    pub tag: String,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(required = true, value_name = "INSTANCE")]
    pub names: Vec<String>,
    /// Only show tags.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn run(cmd: SnapshotCmd) -> Result<()> {
    tracing::warn!("`limactl snapshot` is experimental");
    let rt = super::runtime()?;
    let reg = crate::drivers::registry();
    let (op, args) = match cmd {
        SnapshotCmd::Create(a) => (SnapshotOp::Create, a),
        SnapshotCmd::Apply(a) => (SnapshotOp::Apply, a),
        SnapshotCmd::Delete(a) => (SnapshotOp::Delete, a),
        SnapshotCmd::List(a) => {
            let table = rt.block_on(snapshot::list_snapshots(reg, &a.names[0]))?;
            if a.quiet {
                for tag in snapshot::tags_of(&table)? {
                    println!("{tag}");
                }
            } else {
                print!("{table}");
            }
            return Ok(());
        }
    };
    // Checked before the instance, as upstream.
    instance::ops::inspect(&args.names[0])?;
    if args.tag.is_empty() {
        bail!("expected tag");
    }
    rt.block_on(snapshot::snapshot(reg, &args.names[0], op, &args.tag))?;
    Ok(())
}
