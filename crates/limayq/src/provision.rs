//! `provision` steps of mode `yq`: an expression applied to a guest file (or to `null` when
//! the file does not exist yet). The guest agent runs this inside the VM, as upstream's
//! `lima-guestagent yq` does; `cidata` uses [`file_format`] to refuse a format we cannot
//! write before anything boots.

use serde_json::Value;

use crate::{edit_yaml, eval_one, parse_yaml, render, Format, YqError};

/// The formats a `yq` step may name: upstream's `auto` picks one from the file's extension.
pub const FORMATS: &[&str] = &["auto", "yaml", "json"];

/// The format to read and write `path` in: `yaml` or `json`, or with `auto` the one its
/// extension names (yaml when it names none, as upstream's boot script does). Formats yq
/// has and we do not (toml, xml, ini, csv, tsv, properties) are refused.
pub fn file_format(format: &str, path: &str) -> Result<Format, YqError> {
    let named = match format {
        "auto" => match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("json") => "json",
            Some(ext @ ("csv" | "ini" | "properties" | "toml" | "tsv" | "xml")) => ext,
            _ => "yaml",
        },
        other => other,
    };
    match named {
        "yaml" | "yml" => Ok(Format::Yaml),
        "json" => Ok(Format::Json),
        other => Err(YqError::UnsupportedFormat {
            format: other.to_string(),
            path: path.to_string(),
        }),
    }
}

/// The new text of a file after `expr`: `existing` is its text, or None when it does not
/// exist (the expression then runs on `null`). YAML edits keep the comments and key order
/// of what the expression did not change.
pub fn apply(existing: Option<&str>, expr: &str, format: Format) -> Result<String, YqError> {
    match (format, existing) {
        (Format::Yaml, Some(text)) if !text.trim().is_empty() => edit_yaml(text, expr),
        (Format::Yaml, _) => render(&eval_one(expr, &Value::Null)?, Format::Yaml, false),
        (Format::Json, existing) => {
            let input = match existing {
                Some(text) if !text.trim().is_empty() => parse_yaml(text)?,
                _ => Value::Null,
            };
            render(&eval_one(expr, &input)?, Format::Json, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names_and_extensions() {
        assert_eq!(file_format("auto", "/etc/a.json").unwrap(), Format::Json);
        assert_eq!(file_format("auto", "/etc/a.yml").unwrap(), Format::Yaml);
        assert_eq!(file_format("auto", "/etc/noext").unwrap(), Format::Yaml);
        assert_eq!(file_format("json", "/etc/a.yaml").unwrap(), Format::Json);
        let e = file_format("auto", "/etc/a.toml").unwrap_err().to_string();
        assert!(e.contains("\"toml\"") && e.contains("/etc/a.toml"), "{e}");
        assert!(file_format("xml", "/x").is_err());
    }

    #[test]
    fn edits_keep_comments_and_create_missing_files() {
        let text = "# keep me\na: 1\nb: 2\n";
        let out = apply(Some(text), ".b = 3", Format::Yaml).unwrap();
        assert_eq!(out, "# keep me\na: 1\nb: 3\n");
        let created = apply(None, ".x.y = \"z\"", Format::Yaml).unwrap();
        assert_eq!(created, "x:\n  y: z\n");
        let json = apply(Some("{\"a\": 1}"), ".b = [1]", Format::Json).unwrap();
        assert_eq!(json, "{\n  \"a\": 1,\n  \"b\": [\n    1\n  ]\n}\n");
        assert_eq!(
            apply(None, ".a = 1", Format::Json).unwrap(),
            "{\n  \"a\": 1\n}\n"
        );
    }

    #[test]
    fn bad_expression_is_an_error() {
        assert!(apply(Some("a: 1\n"), ".a |||", Format::Yaml).is_err());
    }
}
