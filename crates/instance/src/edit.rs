//! `limactl edit`'s flow: a stopped instance's `lima.yaml` (or a template file) changed by an
//! edit (yq expressions) or in a text editor, validated as a whole (an instance's also by its
//! driver, as upstream's `Validate`), then written; nothing is written when the edit fails or
//! the result is invalid.

use std::path::{Path, PathBuf};

use limatype::{filenames, Status};
use registry::Registry;

use crate::{editor, load, open::Edit, InstanceError, Result};

/// What [`edit`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Edited {
    /// The edit left the text as it was.
    Unchanged,
    /// The editor was left with an empty file: the user asked to abort.
    Emptied,
    /// The new text was validated and written.
    Written,
}

/// The new text of a config (None: the user emptied it).
type Change<'a> = &'a mut dyn FnMut(&str) -> Result<Option<String>>;

/// Applies `edit` to the `lima.yaml` of the stopped instance `name`.
pub async fn edit(reg: &Registry, name: &str, edit: Edit<'_>) -> Result<Edited> {
    edit_instance(reg, name, &mut |text| Ok(Some(edit(text)?)), false).await
}

/// Opens the `lima.yaml` of the stopped instance `name` in the user's editor. A result that
/// does not validate is kept as `lima.REJECTED.yaml` in the current directory (as upstream).
pub async fn edit_in_editor(reg: &Registry, name: &str) -> Result<Edited> {
    let header = editor::header_for_instance(name);
    edit_instance(reg, name, &mut |text| editor::open(text, &header), true).await
}

/// Applies `edit` to the config file at `path` (a template, not an instance), validated as a
/// template is before it is written back.
pub fn edit_file(path: &Path, edit: Edit<'_>) -> Result<Edited> {
    edit_template(path, &mut |text| Ok(Some(edit(text)?)), false)
}

/// Opens the config file at `path` in the user's editor; see [`edit_in_editor`].
pub fn edit_file_in_editor(path: &Path) -> Result<Edited> {
    let header = editor::header_for_file(path);
    edit_template(path, &mut |text| editor::open(text, &header), true)
}

async fn edit_instance(
    reg: &Registry,
    name: &str,
    change: Change<'_>,
    keep_rejected: bool,
) -> Result<Edited> {
    let inst = crate::ops::inspect(name)?;
    if inst.status == Status::Running {
        return Err(InstanceError::EditRunning(name.to_string()));
    }
    let dir = store::instance_dir(name)?;
    // No start (nor another edit) while we read and write.
    let _lock = store::InstanceLock::try_acquire(&dir, name)?;
    let path = dir.join(filenames::LIMA_YAML);
    let edited = match changed(&path, change)? {
        Ok(text) => text,
        Err(outcome) => return Ok(outcome),
    };
    let checked = async {
        let display = format!("{} (with the edits applied)", path.display());
        let config = load::load_stored_text(&edited, &display, name)?;
        crate::open::check_with_driver(reg, &config).await
    };
    if let Err(e) = checked.await {
        return Err(rejected(&edited, e, keep_rejected));
    }
    store::write_private_file(&path, edited.as_bytes())?;
    Ok(Edited::Written)
}

fn edit_template(path: &Path, change: Change<'_>, keep_rejected: bool) -> Result<Edited> {
    let edited = match changed(path, change)? {
        Ok(text) => text,
        Err(outcome) => return Ok(outcome),
    };
    let mut opts = limaload::LoadOptions::detect();
    opts.name = Some(
        limaload::instance_name(&path.display().to_string()).unwrap_or_else(|| "default".into()),
    );
    let display = format!("{} (with the edits applied)", path.display());
    if let Err(e) = limaload::load_text(&edited, &display, &opts) {
        return Err(rejected(&edited, e.into(), keep_rejected));
    }
    std::fs::write(path, edited.as_bytes()).map_err(crate::error::io("writing", path))?;
    Ok(Edited::Written)
}

/// The changed text of `path`, or what the change amounted to when there is nothing to write.
fn changed(path: &Path, change: Change<'_>) -> Result<std::result::Result<String, Edited>> {
    let text = std::fs::read_to_string(path).map_err(crate::error::io("reading", path))?;
    Ok(match change(&text)? {
        None => Err(Edited::Emptied),
        Some(edited) if edited == text => Err(Edited::Unchanged),
        Some(edited) => Ok(edited),
    })
}

/// Upstream's `saveRejectedYAML` (`keep`: for an editor session): the user's work is not lost
/// with the error.
fn rejected(text: &str, e: InstanceError, keep: bool) -> InstanceError {
    if !keep {
        return e;
    }
    let saved = PathBuf::from("lima.REJECTED.yaml");
    match std::fs::write(&saved, text) {
        Ok(()) => InstanceError::Rejected {
            saved,
            source: Box::new(e),
        },
        Err(write) => {
            tracing::warn!(
                "could not save the rejected YAML as {}: {write}",
                saved.display()
            );
            e
        }
    }
}
