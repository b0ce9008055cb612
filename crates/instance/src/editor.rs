//! `limactl edit`'s text editor (upstream's `pkg/editutil`): the first of `$VISUAL`,
//! `$EDITOR`, `editor`, `vim`, `vi`, `emacs` found, run on a temp file holding a comment header
//! and the config; what is left after the header is the new config.

use std::path::{Path, PathBuf};

use limatype::filenames;

use crate::{error::io, InstanceError, Result};

/// The editor to run, as upstream looks for it: each candidate is a program name or path
/// (not a command line), looked up in `$PATH` when it has no `/`.
pub fn detect() -> Option<PathBuf> {
    let vars = ["VISUAL", "EDITOR"].map(|v| std::env::var(v).unwrap_or_default());
    let fallbacks = ["editor", "vim", "vi", "emacs"].map(String::from);
    vars.into_iter()
        .chain(fallbacks)
        .filter(|c| !c.is_empty())
        .find_map(|c| osutil::look_path(Path::new(&c)))
}

/// The header above an instance's config: what to do, and the settings of
/// `_config/default.yaml` and `_config/override.yaml` that apply too.
pub fn header_for_instance(name: &str) -> String {
    header(&format!(
        "# Please edit the following configuration for Lima instance `{name}`\n"
    ))
}

/// The header above a config file's text.
pub fn header_for_file(path: &Path) -> String {
    header(&format!(
        "# Please edit the following configuration `{}`\n",
        path.display()
    ))
}

fn header(first: &str) -> String {
    let mut s = first.to_string();
    s.push_str("# and an empty file will abort the edit.\n\n");
    match store::config_dir() {
        Ok(dir) => {
            for f in [filenames::DEFAULT_YAML, filenames::OVERRIDE_YAML] {
                s.push_str(&file_warning(&dir.join(f)));
            }
        }
        Err(_) => s.push_str("# WARNING: failed to load the config dir\n\n"),
    }
    s
}

/// The settings of `path` as a comment block, or nothing when it is missing or empty.
fn file_warning(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if text.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "# WARNING: {} includes the following settings,\n\
         # which are applied before applying this YAML:\n# -----------\n",
        path.display()
    );
    for line in text.strip_suffix('\n').unwrap_or(&text).split('\n') {
        s.push('#');
        if !line.is_empty() {
            s.push(' ');
            s.push_str(line);
        }
        s.push('\n');
    }
    s.push_str("# -----------\n\n");
    s
}

/// Runs the editor on `header` + `content`; the text after the header, or None when the user
/// saved nothing but blanks (an abort).
pub fn open(content: &str, header: &str) -> Result<Option<String>> {
    let editor = detect().ok_or(InstanceError::NoEditor)?;
    let tmp = tempfile::Builder::new()
        .prefix("lima-editor-")
        .suffix(".yaml")
        .tempfile()
        .map_err(io("creating", std::env::temp_dir()))?;
    let path = tmp.path().to_path_buf();
    std::fs::write(&path, format!("{header}{content}")).map_err(io("writing", &path))?;
    tracing::debug!(
        "opening editor {} for a file {}",
        editor.display(),
        path.display()
    );
    let failed = |why: String| InstanceError::Editor {
        editor: editor.clone(),
        file: path.clone(),
        why,
    };
    let status = std::process::Command::new(&editor)
        .arg(&path)
        .status()
        .map_err(|e| failed(e.to_string()))?;
    if !status.success() {
        return Err(failed(status.to_string()));
    }
    let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
    let body = text.strip_prefix(header).unwrap_or(&text);
    if body.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_block_comments_each_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("default.yaml");
        assert_eq!(file_warning(&p), "");
        std::fs::write(&p, "cpus: 2\n\nmemory: 1GiB\n").unwrap();
        let w = file_warning(&p);
        assert!(
            w.starts_with(&format!("# WARNING: {} includes", p.display())),
            "{w}"
        );
        assert!(
            w.ends_with("# -----------\n# cpus: 2\n#\n# memory: 1GiB\n# -----------\n\n"),
            "{w}"
        );
    }
}
