//! `limactl edit`'s flow: a stopped instance's `lima.yaml` (or a template file) changed by an
//! edit (yq expressions) or in a text editor, validated as a whole, then written; nothing is
//! written when the edit fails or the result is invalid.

use std::path::{Path, PathBuf};

use limatype::{filenames, Status};

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
pub fn edit(name: &str, edit: Edit<'_>) -> Result<Edited> {
    edit_instance(name, &mut |text| Ok(Some(edit(text)?)), false)
}

/// Opens the `lima.yaml` of the stopped instance `name` in the user's editor. A result that
/// does not validate is kept as `lima.REJECTED.yaml` in the current directory (as upstream).
pub fn edit_in_editor(name: &str) -> Result<Edited> {
    let header = editor::header_for_instance(name);
    edit_instance(name, &mut |text| editor::open(text, &header), true)
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

fn edit_instance(name: &str, change: Change<'_>, keep_rejected: bool) -> Result<Edited> {
    let inst = crate::ops::inspect(name)?;
    if inst.status == Status::Running {
        return Err(InstanceError::EditRunning(name.to_string()));
    }
    let dir = store::instance_dir(name)?;
    // No start (nor another edit) while we read and write.
    let _lock = store::InstanceLock::try_acquire(&dir, name)?;
    let path = dir.join(filenames::LIMA_YAML);
    let validate =
        |edited: &str, display: &str| load::load_stored_text(edited, display, name).map(drop);
    let write = |edited: &str| Ok(store::write_private_file(&path, edited.as_bytes())?);
    apply(&path, change, &validate, &write, keep_rejected)
}

fn edit_template(path: &Path, change: Change<'_>, keep_rejected: bool) -> Result<Edited> {
    let validate = |edited: &str, display: &str| {
        let mut opts = limaload::LoadOptions::detect();
        opts.name = Some(
            limaload::instance_name(&path.display().to_string())
                .unwrap_or_else(|| "default".into()),
        );
        limaload::load_text(edited, display, &opts)?;
        Ok(())
    };
    let write = |edited: &str| {
        std::fs::write(path, edited.as_bytes()).map_err(crate::error::io("writing", path))
    };
    apply(path, change, &validate, &write, keep_rejected)
}

/// Reads `path`, changes its text, validates and writes the result.
fn apply(
    path: &Path,
    change: Change<'_>,
    validate: &dyn Fn(&str, &str) -> Result<()>,
    write: &dyn Fn(&str) -> Result<()>,
    keep_rejected: bool,
) -> Result<Edited> {
    let text = std::fs::read_to_string(path).map_err(crate::error::io("reading", path))?;
    let Some(edited) = change(&text)? else {
        return Ok(Edited::Emptied);
    };
    if edited == text {
        return Ok(Edited::Unchanged);
    }
    let display = format!("{} (with the edits applied)", path.display());
    if let Err(e) = validate(&edited, &display) {
        if !keep_rejected {
            return Err(e);
        }
        return Err(save_rejected(&edited, e));
    }
    write(&edited)?;
    Ok(Edited::Written)
}

/// Upstream's `saveRejectedYAML`: the user's work is not lost with the error.
fn save_rejected(text: &str, e: InstanceError) -> InstanceError {
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
