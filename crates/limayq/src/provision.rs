//! `provision` steps of mode `yq`: an expression applied to a guest file (or to `null` when
//! the file does not exist yet). The guest agent runs this inside the VM, as upstream's
//! `lima-guestagent yq` does; `cidata` uses [`file_format`] to refuse a format we cannot
//! write before anything boots.

use serde_json::Value;

use crate::{edit_yaml, eval_one, parse_yaml, render, Format, YqError};

/// The formats a `yq` step may name: upstream's `auto` picks one from the file's extension.
pub const FORMATS: &[&str] = &["auto", "yaml", "json", "ini"];

/// How a `yq` step reads and writes its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Yaml,
    Json,
    /// `[Section]` / `key=value` files (systemd units, upstream's docker-rootful template):
    /// edited as `{"Section": {"key": "value"}}`, keys before any section at the top.
    Ini,
}

/// The format to read and write `path` in: `yaml`, `json` or `ini`, or with `auto` the one
/// its extension names (yaml when it names none, as upstream's boot script does). Formats yq
/// has and we do not (toml, xml, csv, tsv, properties) are refused.
pub fn file_format(format: &str, path: &str) -> Result<FileFormat, YqError> {
    let named = match format {
        "auto" => match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("json") => "json",
            Some(ext @ ("csv" | "ini" | "properties" | "toml" | "tsv" | "xml")) => ext,
            _ => "yaml",
        },
        other => other,
    };
    match named {
        "yaml" | "yml" => Ok(FileFormat::Yaml),
        "json" => Ok(FileFormat::Json),
        "ini" => Ok(FileFormat::Ini),
        other => Err(YqError::UnsupportedFormat {
            format: other.to_string(),
            path: path.to_string(),
        }),
    }
}

/// The new text of a file after `expr`: `existing` is its text, or None when it does not
/// exist (the expression then runs on `null`). YAML edits keep the comments and key order
/// of what the expression did not change.
pub fn apply(existing: Option<&str>, expr: &str, format: FileFormat) -> Result<String, YqError> {
    let text = existing.filter(|t| !t.trim().is_empty());
    match (format, text) {
        (FileFormat::Yaml, Some(text)) => edit_yaml(text, expr),
        (FileFormat::Yaml, None) => render(&eval_one(expr, &Value::Null)?, Format::Yaml, false),
        (FileFormat::Json, text) => {
            let input = text.map(parse_yaml).transpose()?.unwrap_or(Value::Null);
            render(&eval_one(expr, &input)?, Format::Json, false)
        }
        (FileFormat::Ini, text) => {
            let input = text.map(ini_to_value).transpose()?.unwrap_or(Value::Null);
            // The file's own section order first (JSON objects here sort their keys).
            let order: Vec<String> = text
                .and_then(|t| ini::Ini::load_from_str(t).ok())
                .map(|i| i.sections().flatten().map(str::to_string).collect())
                .unwrap_or_default();
            value_to_ini(&eval_one(expr, &input)?, &order)
        }
    }
}

fn ini_to_value(text: &str) -> Result<Value, YqError> {
    let ini = ini::Ini::load_from_str(text).map_err(|e| YqError::Ini(e.to_string()))?;
    let mut root = serde_json::Map::new();
    for (section, props) in ini.iter() {
        let pairs = props
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())));
        match section {
            None => root.extend(pairs),
            Some(name) => {
                let entry = root
                    .entry(name.to_string())
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Value::Object(m) = entry {
                    m.extend(pairs);
                }
            }
        }
    }
    Ok(Value::Object(root))
}

fn ini_scalar(key: &str, v: &Value) -> Result<String, YqError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(YqError::Ini(format!(
            "{key:?}: an INI value must be a string, number or boolean, got {v}"
        ))),
    }
}

fn value_to_ini(v: &Value, order: &[String]) -> Result<String, YqError> {
    let Value::Object(root) = v else {
        return Err(YqError::Ini(format!(
            "the result must be an object, got {v}"
        )));
    };
    let mut ini = ini::Ini::new();
    for (k, v) in root.iter().filter(|(_, v)| !v.is_object()) {
        ini.with_general_section().set(k, ini_scalar(k, v)?);
    }
    let mut names: Vec<&String> = order.iter().filter(|n| root.contains_key(*n)).collect();
    names.extend(root.keys().filter(|k| !order.contains(k)));
    names.dedup();
    for name in names {
        let Value::Object(props) = &root[name] else {
            continue;
        };
        // A section the expression made empty still appears, as yq writes it.
        ini.entry(Some(name.clone())).or_insert(Default::default());
        for (k, v) in props {
            let value = ini_scalar(&format!("{name}.{k}"), v)?;
            ini.with_section(Some(name.as_str())).set(k, value);
        }
    }
    let mut out = Vec::new();
    ini.write_to(&mut out)
        .map_err(|e| YqError::Ini(e.to_string()))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names_and_extensions() {
        assert_eq!(
            file_format("auto", "/etc/a.json").unwrap(),
            FileFormat::Json
        );
        assert_eq!(file_format("auto", "/etc/a.yml").unwrap(), FileFormat::Yaml);
        assert_eq!(file_format("auto", "/etc/noext").unwrap(), FileFormat::Yaml);
        assert_eq!(
            file_format("json", "/etc/a.yaml").unwrap(),
            FileFormat::Json
        );
        assert_eq!(file_format("ini", "/etc/x.conf").unwrap(), FileFormat::Ini);
        assert_eq!(file_format("auto", "/etc/x.ini").unwrap(), FileFormat::Ini);
        let e = file_format("auto", "/etc/a.toml").unwrap_err().to_string();
        assert!(e.contains("\"toml\"") && e.contains("/etc/a.toml"), "{e}");
        assert!(file_format("xml", "/x").is_err());
    }

    #[test]
    fn edits_keep_comments_and_create_missing_files() {
        let text = "# keep me\na: 1\nb: 2\n";
        let out = apply(Some(text), ".b = 3", FileFormat::Yaml).unwrap();
        assert_eq!(out, "# keep me\na: 1\nb: 3\n");
        let created = apply(None, ".x.y = \"z\"", FileFormat::Yaml).unwrap();
        assert_eq!(created, "x:\n  y: z\n");
        let json = apply(Some("{\"a\": 1}"), ".b = [1]", FileFormat::Json).unwrap();
        assert_eq!(json, "{\n  \"a\": 1,\n  \"b\": [\n    1\n  ]\n}\n");
        assert_eq!(
            apply(None, ".a = 1", FileFormat::Json).unwrap(),
            "{\n  \"a\": 1\n}\n"
        );
    }

    #[test]
    fn bad_expression_is_an_error() {
        assert!(apply(Some("a: 1\n"), ".a |||", FileFormat::Yaml).is_err());
    }

    /// upstream's docker-rootful template: a systemd drop-in edited as INI.
    #[test]
    fn ini_files_as_sections() {
        let created = apply(None, ".Socket.SocketUser = \"me\"", FileFormat::Ini).unwrap();
        assert_eq!(created, "[Socket]\nSocketUser=me\n");
        let text = "top=1\n[Unit]\nDescription=x\n[Socket]\nSocketMode=0660\n";
        let out = apply(
            Some(text),
            ".Socket.SocketUser = \"me\" | .Unit.N = 2",
            FileFormat::Ini,
        )
        .unwrap();
        assert_eq!(
            out,
            "top=1\n\n[Unit]\nDescription=x\nN=2\n\n[Socket]\nSocketMode=0660\nSocketUser=me\n"
        );
        let e = apply(None, ".a.b.c = 1", FileFormat::Ini)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"a.b\""), "{e}");
    }
}
