//! `limactl clone OLD NEW` and `limactl rename OLD NEW` (upstream's `clone.go`): a copy (or a
//! move) of a stopped instance under a new name, its `lima.yaml` changed by the edit flags;
//! `--start` then starts the new instance as `limactl start NEW` does.

use anyhow::{bail, Context, Result};
use clap::Args;
use instance::InstanceError;

use super::editflags::EditFlagArgs;

#[derive(Args)]
pub struct CloneArgs {
    /// The stopped instance to copy (or rename).
    #[arg(value_name = "OLDINST")]
    pub old: String,
    /// The new instance's name.
    #[arg(value_name = "NEWINST")]
    pub new: String,
    /// Start the instance after cloning (renaming).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub start: Option<bool>,
    #[command(flatten)]
    pub flags: EditFlagArgs,
}

/// `interactive`: the global `--tty`/`--yes` (asks whether to start when `--start` is not given).
pub fn run(args: CloneArgs, rename: bool, interactive: bool) -> Result<()> {
    let (old, new) = (args.old.as_str(), args.new.as_str());
    let reg = crate::drivers::registry();
    let edit = args.flags.edit_fn();
    let cloned =
        super::runtime()?.block_on(instance::clone_or_rename(reg, old, new, rename, &edit));
    match cloned {
        Err(InstanceError::NotFound(_)) => bail!("instance {old:?} not found"),
        other => other.with_context(|| {
            let verb = if rename { "rename" } else { "clone" };
            format!("failed to {verb} instance {old:?} to {new:?}")
        })?,
    };
    let start = match args.start {
        Some(s) => s,
        None => interactive && super::ask_whether_to_start()?,
    };
    if start {
        super::start::run(super::start::StartArgs::existing(new))?;
    }
    Ok(())
}
