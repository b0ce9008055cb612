//! `limactl edit [INSTANCE|FILE.yaml] [flags] [--start]`: changes a stopped instance's
//! `lima.yaml` (or a template file) with the edit flags and `--set` expressions (comments and
//! key order kept, see docs/yq.md), or, with no flag and `--tty`, in the user's text editor
//! (`$VISUAL`, `$EDITOR`, ...).

use anyhow::{bail, Result};
use clap::Args;

use super::editflags::EditFlagArgs;

#[derive(Args)]
pub struct EditArgs {
    /// The instance (`default` if none), or a FILE.yaml to edit in place.
    pub instance: Option<String>,
    /// Start the instance after editing.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub start: Option<bool>,
    #[command(flatten)]
    pub flags: EditFlagArgs,
}

/// `interactive`: the global `--tty`/`--yes`; with no edit flag, it opens the editor.
pub fn run(args: EditArgs, interactive: bool) -> Result<()> {
    let name = args.instance.as_deref().unwrap_or("default");
    // As upstream: what is not an instance name is a file.
    let is_file = store::validate_instance_name(name).is_err();
    if is_file && args.start == Some(true) {
        bail!("--start needs an instance, not the file {name:?}");
    }
    let path = std::path::Path::new(name);
    let reg = crate::drivers::registry();
    let rt = super::runtime()?;
    let edited = match (args.flags.is_empty(), is_file) {
        // Upstream: no flags and no editor is an empty edit.
        (true, _) if !interactive => instance::Edited::Emptied,
        (true, true) => instance::edit_file_in_editor(path)?,
        (true, false) => rt.block_on(instance::edit_in_editor(reg, name))?,
        (false, true) => instance::edit_file(path, &args.flags.edit_fn())?,
        (false, false) => rt.block_on(instance::edit(reg, name, &args.flags.edit_fn()))?,
    };
    drop(rt);
    match edited {
        instance::Edited::Emptied => {
            tracing::info!("Aborting, as requested by saving the file with empty content");
            return Ok(());
        }
        instance::Edited::Unchanged => {
            tracing::info!("Aborting, no changes made to the instance");
            return Ok(());
        }
        instance::Edited::Written => {
            let what = if is_file { "File" } else { "Instance" };
            tracing::info!("{what} {name:?} configuration edited");
        }
    }
    if is_file {
        return Ok(());
    }
    let start = match args.start {
        Some(s) => s,
        None => interactive && super::ask_whether_to_start()?,
    };
    if start {
        super::start::run(super::start::StartArgs::existing(name))?;
    }
    Ok(())
}
