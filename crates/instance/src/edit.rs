//! `limactl edit`'s flow: a stopped instance's `lima.yaml` (or a template file) changed by an
//! edit (yq expressions), validated as a whole, then written; nothing is written when the edit fails
//! or the result is invalid.

use limatype::{filenames, Status};

use crate::{load, open::Edit, InstanceError, Result};

/// What [`edit`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Edited {
    /// The edit left the text as it was.
    Unchanged,
    /// The new text was validated and written.
    Written,
}

/// Applies `edit` to the `lima.yaml` of the stopped instance `name`.
pub fn edit(name: &str, edit: Edit<'_>) -> Result<Edited> {
    let inst = crate::ops::inspect(name)?;
    if inst.status == Status::Running {
        return Err(InstanceError::EditRunning(name.to_string()));
    }
    let dir = store::instance_dir(name)?;
    // No start (nor another edit) while we read and write.
    let _lock = store::InstanceLock::try_acquire(&dir, name)?;
    let path = dir.join(filenames::LIMA_YAML);
    let text = std::fs::read_to_string(&path).map_err(|source| InstanceError::Io {
        what: "reading",
        path: path.clone(),
        source,
    })?;
    let edited = edit(&text)?;
    if edited == text {
        return Ok(Edited::Unchanged);
    }
    let display = format!("{} (with the edits applied)", path.display());
    load::load_stored_text(&edited, &display, name)?;
    store::write_private_file(&path, edited.as_bytes())?;
    Ok(Edited::Written)
}

/// Applies `edit` to the config file at `path` (a template, not an instance), validated as a
/// template is before it is written back.
pub fn edit_file(path: &std::path::Path, edit: Edit<'_>) -> Result<Edited> {
    let io = |what, source| InstanceError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(|e| io("reading", e))?;
    let edited = edit(&text)?;
    if edited == text {
        return Ok(Edited::Unchanged);
    }
    let mut opts = limaload::LoadOptions::detect();
    opts.name = Some(
        limaload::instance_name(&path.display().to_string()).unwrap_or_else(|| "default".into()),
    );
    let display = format!("{} (with the edits applied)", path.display());
    limaload::load_text(&edited, &display, &opts)?;
    std::fs::write(path, edited.as_bytes()).map_err(|e| io("writing", e))?;
    Ok(Edited::Written)
}
