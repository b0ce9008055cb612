//! `limactl edit [INSTANCE] [flags] [--start]`: changes a stopped instance's `lima.yaml` with
//! the edit flags and `--set` expressions (comments and key order kept, see docs/yq.md). The
//! interactive editor of upstream (no flags, on a terminal) is not implemented.

use anyhow::{bail, Result};
use clap::Args;

use super::editflags::{interactive, EditFlagArgs};

#[derive(Args)]
pub struct EditArgs {
    /// The instance (`default` if none).
    pub instance: Option<String>,
    /// Start the instance after editing.
    #[arg(long)]
    pub start: bool,
    /// Open an editor when no flag is given (not implemented).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tty: Option<bool>,
    /// Alias of --tty=false.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub flags: EditFlagArgs,
}

pub fn run(args: EditArgs) -> Result<()> {
    let name = args.instance.as_deref().unwrap_or("default");
    if args.flags.is_empty() {
        if interactive(args.tty, args.yes) {
            bail!("the interactive editor is not implemented; edit {name:?} with flags such as --set EXPR or --cpus N");
        }
        // Upstream: no flags and no editor is an empty edit.
        eprintln!("Aborting, as requested by saving the file with empty content");
        return Ok(());
    }
    match instance::edit(name, &args.flags.edit_fn())? {
        instance::Edited::Unchanged => {
            eprintln!("Aborting, no changes made to the instance");
            return Ok(());
        }
        instance::Edited::Written => {
            eprintln!("Instance {name:?} configuration edited");
        }
    }
    if args.start {
        super::start::run(super::start::StartArgs::existing(name))?;
    }
    Ok(())
}
