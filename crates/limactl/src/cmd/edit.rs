//! `limactl edit [INSTANCE|FILE.yaml] [flags] [--start]`: changes a stopped instance's
//! `lima.yaml` (or a template file) with
//! the edit flags and `--set` expressions (comments and key order kept, see docs/yq.md). The
//! interactive editor of upstream (no flags, on a terminal) is not implemented.

use anyhow::{bail, Result};
use clap::Args;

use super::editflags::EditFlagArgs;

#[derive(Args)]
pub struct EditArgs {
    /// The instance (`default` if none), or a FILE.yaml to edit in place.
    pub instance: Option<String>,
    /// Start the instance after editing.
    #[arg(long)]
    pub start: bool,
    #[command(flatten)]
    pub flags: EditFlagArgs,
}

/// `interactive`: the global `--tty`/`--yes` (an editor would open; not implemented).
pub fn run(args: EditArgs, interactive: bool) -> Result<()> {
    let name = args.instance.as_deref().unwrap_or("default");
    if args.flags.is_empty() {
        if interactive {
            bail!("the interactive editor is not implemented; edit {name:?} with flags such as --set EXPR or --cpus N");
        }
        // Upstream: no flags and no editor is an empty edit.
        eprintln!("Aborting, as requested by saving the file with empty content");
        return Ok(());
    }
    // As upstream: what is not an instance name is a file.
    let is_file = store::validate_instance_name(name).is_err();
    let edited = if is_file {
        if args.start {
            bail!("--start needs an instance, not the file {name:?}");
        }
        instance::edit_file(std::path::Path::new(name), &args.flags.edit_fn())?
    } else {
        instance::edit(name, &args.flags.edit_fn())?
    };
    match edited {
        instance::Edited::Unchanged => {
            eprintln!("Aborting, no changes made to the instance");
            return Ok(());
        }
        instance::Edited::Written => {
            let what = if is_file { "File" } else { "Instance" };
            eprintln!("{what} {name:?} configuration edited");
        }
    }
    if args.start {
        super::start::run(super::start::StartArgs::existing(name))?;
    }
    Ok(())
}
