//! The project's one Go `text/template` engine (the `gtmpl` crate) with Lima's template
//! functions (`json`, `yaml`, `indent`, `missing`). Two users: lima.yaml's template variables
//! (`{{.Home}}`, `{{.Param.Key}}`: [`expand`]) and `limactl list --format` ([`execute`]).

use std::collections::HashMap;

pub use gtmpl::Value;

/// A hidden key of an object value holding its exact JSON form (keys as serialized, zero
/// values omitted), which `json` prints instead of re-encoding the template's view of it.
pub const JSON_FORM: &str = "\u{1}json";
/// Like [`JSON_FORM`], for `yaml` (used when the YAML form has fields the JSON form lacks).
pub const YAML_FORM: &str = "\u{1}yaml";

/// Help lines for the template functions, as upstream's `FuncHelp`.
pub const FUNC_HELP: &[&str] = &[
    "indent <size>: add spaces to beginning of each line",
    "missing <message>: return message if the text is empty",
];

/// Nesting limit for blocks and parentheses: gtmpl's parser and evaluator recurse.
const MAX_NESTING: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("invalid go template: {0}")]
    Parse(String),
    #[error("invalid go template: blocks or parentheses nested deeper than {MAX_NESTING}")]
    TooDeep,
    #[error("executing template: {0}")]
    Exec(String),
}

/// Parses and executes `text` on `data`, with Lima's functions.
pub fn execute(text: &str, data: &Value) -> Result<String, TemplateError> {
    if !nesting_ok(text) {
        return Err(TemplateError::TooDeep);
    }
    let mut t = gtmpl::Template::default();
    t.add_funcs(&[
        ("json", json as gtmpl::Func),
        ("yaml", yaml as gtmpl::Func),
        ("indent", indent as gtmpl::Func),
        ("missing", missing as gtmpl::Func),
    ]);
    t.parse(text)
        .map_err(|e| TemplateError::Parse(e.to_string()))?;
    t.render(&gtmpl::Context::from(data.clone()))
        .map_err(|e| TemplateError::Exec(exec_message(e)))
}

/// gtmpl's "no field" error prints the whole receiver; name the field only.
fn exec_message(e: gtmpl::error::ExecError) -> String {
    match e {
        gtmpl::error::ExecError::NoFiledFor(field, _) => format!("can't evaluate field {field}"),
        other => other.to_string(),
    }
}

/// A JSON value as template data, each object key renamed by `key` (Go's field names).
pub fn from_json(v: &serde_json::Value, key: &dyn Fn(&str) -> String) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(|x| from_json(x, key)).collect()),
        serde_json::Value::Object(o) => {
            Value::Map(o.iter().map(|(k, x)| (key(k), from_json(x, key))).collect())
        }
    }
}

/// The template's view of a value back as JSON (hidden keys left out).
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => n
            .as_i64()
            .map(serde_json::Value::from)
            .or_else(|| n.as_u64().map(serde_json::Value::from))
            .unwrap_or_else(|| serde_json::Value::from(n.as_f64().unwrap_or(0.0))),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            let mut keys: Vec<&String> = o.keys().filter(|k| !k.starts_with('\u{1}')).collect();
            keys.sort();
            serde_json::Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), to_json(&o[k])))
                    .collect(),
            )
        }
    }
}

fn hidden<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    match v {
        Value::Object(o) | Value::Map(o) => match o.get(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn one_arg<'a>(name: &str, args: &'a [Value]) -> Result<&'a Value, gtmpl::FuncError> {
    match args {
        [v] => Ok(v),
        _ => Err(gtmpl::FuncError::ExactlyXArgs(name.into(), 1)),
    }
}

fn json(args: &[Value]) -> Result<Value, gtmpl::FuncError> {
    let v = one_arg("json", args)?;
    if let Some(s) = hidden(v, JSON_FORM) {
        return Ok(Value::String(s.to_string()));
    }
    serde_json::to_string(&to_json(v))
        .map(Value::String)
        .map_err(|e| gtmpl::FuncError::Generic(format!("failed to marshal as JSON: {e}")))
}

fn yaml(args: &[Value]) -> Result<Value, gtmpl::FuncError> {
    let v = one_arg("yaml", args)?;
    if let Some(s) = hidden(v, YAML_FORM) {
        return Ok(Value::String(format!("---\n{}", s.trim_end_matches('\n'))));
    }
    let json = match hidden(v, JSON_FORM) {
        Some(s) => serde_json::from_str(s).unwrap_or(serde_json::Value::Null),
        None => to_json(v),
    };
    serde_yaml::to_string(&json)
        .map(|s| Value::String(format!("---\n{}", s.trim_end_matches('\n'))))
        .map_err(|e| gtmpl::FuncError::Generic(format!("failed to marshal as YAML: {e}")))
}

fn indent(args: &[Value]) -> Result<Value, gtmpl::FuncError> {
    let (size, text) = match args {
        [] => {
            return Err(gtmpl::FuncError::Generic(
                "function takes at least one string argument".into(),
            ))
        }
        [t] => (2, t),
        [s, t] => match s {
            Value::Number(n) => (n.as_u64().unwrap_or(0) as usize, t),
            _ => {
                return Err(gtmpl::FuncError::Generic(
                    "optional first argument must be an integer".into(),
                ))
            }
        },
        _ => {
            return Err(gtmpl::FuncError::Generic(
                "function takes at most 2 arguments".into(),
            ))
        }
    };
    let Value::String(text) = text else {
        return Err(gtmpl::FuncError::Generic(
            "last argument must be a string".into(),
        ));
    };
    let prefix = " ".repeat(size);
    let lines: Vec<String> = text
        .split('\n')
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{prefix}{l}")
            }
        })
        .collect();
    Ok(Value::String(lines.join("\n")))
}

fn missing(args: &[Value]) -> Result<Value, gtmpl::FuncError> {
    let (message, text) = match args {
        [t] => ("<missing>".to_string(), t),
        [Value::String(m), t] => (m.clone(), t),
        [_, _] => {
            return Err(gtmpl::FuncError::Generic(
                "optional first argument must be a string".into(),
            ))
        }
        _ => {
            return Err(gtmpl::FuncError::Generic(
                "function takes one or two arguments".into(),
            ))
        }
    };
    let Value::String(text) = text else {
        return Err(gtmpl::FuncError::Generic(
            "last argument must be a string".into(),
        ));
    };
    Ok(Value::String(if text.is_empty() {
        message
    } else {
        text.clone()
    }))
}

/// Expands lima.yaml's template variables in `text`; `lookup` resolves paths like `User` or
/// `Param.Key`. A text the engine rejects (an unknown variable, a syntax error, a failing
/// function) only gets its plain `{{.Var}}`s replaced and keeps the rest as written, rather
/// than failing the whole config: scripts may carry `{{` for other tools.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    match execute(text, &variables(text, lookup)) {
        Ok(out) => out,
        Err(e) => {
            tracing::debug!("template {text:?}: {e}; replacing plain variables only");
            expand_plain(text, lookup)
        }
    }
}

/// The data for [`expand`]: every `.Name` / `.Param.Key` the text mentions that `lookup`
/// knows (the engine needs a value up front; `lookup` cannot list its names). A `Param` key
/// the config does not set is empty, as the old renderer had it.
fn variables(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Value {
    let mut top = HashMap::new();
    let mut param = HashMap::new();
    let mut rest = text;
    while let Some(i) = rest.find('.') {
        rest = &rest[i + 1..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches('.');
        if let Some(key) = path.strip_prefix("Param.") {
            if !key.is_empty() && !key.contains('.') {
                let v = lookup(path).unwrap_or_default();
                param.insert(key.to_string(), Value::String(v));
            }
        } else if !path.is_empty() && !path.contains('.') {
            if let Some(v) = lookup(path) {
                top.insert(path.to_string(), Value::String(v));
            }
        }
    }
    top.insert("Param".to_string(), Value::Map(param));
    Value::Object(top)
}

/// Replaces each `{{.Var}}` / `{{.Param.Key}}` that `lookup` knows; leaves the rest untouched.
fn expand_plain(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = after[..end].trim();
        let replaced = inner
            .strip_prefix('.')
            .filter(|name| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            })
            .and_then(lookup);
        match replaced {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Whether blocks (`if`, `range`, `with`, `define`, `block`) and parentheses stay within
/// [`MAX_NESTING`]: checked before parsing, so that no input can exhaust the stack.
fn nesting_ok(text: &str) -> bool {
    let mut depth = 0usize;
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").unwrap_or(after.len());
        let action = after[..end].trim_matches(|c: char| c == '-' || c.is_whitespace());
        let word = action
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("");
        match word {
            "if" | "range" | "with" | "define" | "block" => depth += 1,
            "end" => depth = depth.saturating_sub(1),
            _ => {}
        }
        let mut parens = 0usize;
        for c in action.chars() {
            match c {
                '(' => parens += 1,
                ')' => parens = parens.saturating_sub(1),
                _ => {}
            }
            if parens > MAX_NESTING {
                return false;
            }
        }
        if depth > MAX_NESTING {
            return false;
        }
        rest = &after[end.min(after.len())..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "User" => Some("alice".into()),
            "Param.Port" => Some("8080".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_known_variables_only() {
        assert_eq!(
            expand("/home/{{.User}}.linux", &lookup),
            "/home/alice.linux"
        );
        assert_eq!(expand("{{ .Param.Port }}/x", &lookup), "8080/x");
        assert_eq!(
            expand("{{.Nope}} {{if .X}}", &lookup),
            "{{.Nope}} {{if .X}}"
        );
        assert_eq!(expand("open {{.User", &lookup), "open {{.User");
        assert_eq!(expand("ü{{.User}}ü", &lookup), "üaliceü");
    }

    #[test]
    fn conditionals_and_trimming() {
        let t = "a\n{{- if eq .Param.Port \"8080\" }}\nyes\n{{- else}}\nno\n{{- end}}\nb";
        assert_eq!(expand(t, &lookup), "a\nyes\nb");
        let t = "{{if not ( and .Param.Port .Param.Missing )}}x{{else}}y{{end}}";
        assert_eq!(expand(t, &lookup), "x");
        assert_eq!(expand("{{if .Param.Missing}}x{{end}}!", &lookup), "!");
        assert_eq!(
            expand("{{if or .Param.Missing .User}}{{.User}}{{end}}", &lookup),
            "alice"
        );
        assert_eq!(
            expand("{{if ne .User \"bob\"}}x{{end -}}  \n y", &lookup),
            "xy"
        );
    }

    #[test]
    fn the_full_language_works() {
        // Pipes and functions, which the old hand-written renderer left as written.
        assert_eq!(
            expand("{{.User | printf \"%s!\"}} {{len .User}}", &lookup),
            "alice! 5"
        );
        assert_eq!(expand("{{/* note */}}{{.User}}", &lookup), "alice");
    }

    #[test]
    fn unsupported_constructs_fall_back_to_plain_replacement() {
        assert_eq!(
            expand("{{range .X}}{{.User}}{{end}}", &lookup),
            "{{range .X}}alice{{end}}"
        );
        assert_eq!(
            expand("{{.User | nosuchfunc}} {{.User}}", &lookup),
            "{{.User | nosuchfunc}} alice"
        );
        assert_eq!(
            expand("{{if .Unknown}}x{{end}}{{.User}}", &lookup),
            "{{if .Unknown}}x{{end}}alice"
        );
        assert_eq!(expand("{{if .User}}x", &lookup), "{{if .User}}x");
        assert_eq!(expand("{{end}}", &lookup), "{{end}}");
        assert_eq!(expand("{{\"unterminated}}", &lookup), "{{\"unterminated}}");
        let deep = "{{if .User}}".repeat(100_000) + &"{{end}}".repeat(100_000);
        assert_eq!(expand(&deep, &lookup), deep);
        let parens = format!(
            "{{{{if {}.User{}}}}}x{{{{end}}}}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert_eq!(expand(&parens, &lookup), parens);
    }

    #[test]
    fn lima_functions() {
        let data = from_json(
            &serde_json::json!({"name": "vm", "text": "a\nb", "empty": ""}),
            &|k| k.to_string(),
        );
        let run = |t: &str| execute(t, &data).unwrap();
        assert_eq!(run("{{indent .text}}"), "  a\n  b");
        assert_eq!(run("{{indent 4 .text}}"), "    a\n    b");
        assert_eq!(
            run("{{missing .empty}}|{{missing \"none\" .name}}"),
            "<missing>|vm"
        );
        assert_eq!(run("{{json .name}}"), "\"vm\"");
        assert_eq!(run("{{yaml .name}}"), "---\nvm");
        assert!(matches!(
            execute("{{.nope.x", &data),
            Err(TemplateError::Parse(_))
        ));
        let e = execute("{{.Nope}}", &Value::Object(HashMap::new())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "executing template: can't evaluate field Nope"
        );
    }

    #[test]
    fn json_prefers_the_exact_form() {
        let mut o = HashMap::new();
        o.insert("Name".to_string(), Value::from("vm"));
        o.insert(JSON_FORM.to_string(), Value::from("{\"name\":\"vm\"}"));
        let data = Value::Object(o);
        assert_eq!(execute("{{json .}}", &data).unwrap(), "{\"name\":\"vm\"}");
        assert_eq!(execute("{{yaml .}}", &data).unwrap(), "---\nname: vm");
        assert_eq!(execute("{{.Name}}", &data).unwrap(), "vm");
    }
}
