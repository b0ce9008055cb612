//! `limayq` — layer 1: the one yq evaluator of this workspace. Upstream embeds mikefarah/yq;
//! we run the same common expressions (paths, `=`, `|=`, `+=`, `del`, `select`, `has`,
//! arithmetic, string ops) with jaq, whose jq syntax agrees with yq's for these. Values are
//! YAML or JSON documents seen as JSON (`serde_json::Value`).
//!
//! - [`eval`]: an expression over one value, every output;
//! - [`edit_yaml`] (module `patch`): an expression applied to a YAML text, keeping the
//!   comments and key order of what did not change;
//! - [`colorize_json`], [`colorize_yaml`]: printed output coloured for a terminal, as yq;
//! - [`provision`]: `provision` steps of mode `yq` (a guest file edited by an expression);
//! - [`editflags`]: `--cpus`, `--mount`, ... translated to expressions as upstream's
//!   `cmd/limactl/editflags` does.
//!
//! As upstream (`limactl help yq-restrictions`), expressions cannot read the host: `env`,
//! `$ENV`, `halt` and `halt_error` are not available (`input` has nothing to read).

mod color;
pub mod editflags;
mod patch;
pub mod provision;
mod rewrite;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, RcIter};
use jaq_json::Val;
use serde_json::Value;

pub use color::{colorize_json, colorize_yaml, reindent_json};
pub use patch::edit_yaml;

/// What can go wrong with an expression or a document.
#[derive(Debug, thiserror::Error)]
pub enum YqError {
    #[error("invalid yq expression {expr:?}: {detail}")]
    Parse { expr: String, detail: String },
    #[error("yq expression {expr:?} failed: {detail}")]
    Eval { expr: String, detail: String },
    #[error("yq expression {expr:?} must give exactly one document, it gave {count}")]
    NotOne { expr: String, count: usize },
    #[error("invalid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("format {format:?} of {path} is not supported (one of auto, yaml, json, ini)")]
    UnsupportedFormat { format: String, path: String },
    #[error("invalid edit flag --{flag}: {detail}")]
    Flag { flag: &'static str, detail: String },
    #[error("INI: {0}")]
    Ini(String),
}

/// Natives that would let a template read the host or end the process (upstream disables
/// yq's `env`, `load` and `system` for the same reason).
/// (`halt_error` is used by jaq's own definitions, so it is shadowed by [`PRELUDE`] instead.)
const FORBIDDEN: &[&str] = &["env", "halt"];

/// Definitions put before every expression.
const PRELUDE: &str =
    "def halt_error($c): error(\"halt_error is not available\"); def halt_error: halt_error(5); ";

/// Every output of `expr` over `input`.
pub fn eval(expr: &str, input: &Value) -> Result<Vec<Value>, YqError> {
    let parse_err = |detail: String| YqError::Parse {
        expr: expr.to_string(),
        detail,
    };
    let loader = Loader::new(jaq_std::defs().chain(jaq_json::defs()));
    let arena = Arena::default();
    // Syntax errors are reported on the expression as written, before the rewrite.
    Loader::new([])
        .load(
            &arena,
            File {
                code: expr,
                path: (),
            },
        )
        .map_err(|errs| parse_err(describe_load_errors(&errs)))?;
    let code = format!("{PRELUDE}{}{}", rewrite::DEFS, rewrite::rewrite(expr));
    let modules = loader
        .load(
            &arena,
            File {
                code: &code,
                path: (),
            },
        )
        .map_err(|errs| parse_err(describe_load_errors(&errs)))?;
    let funs = jaq_std::funs()
        .chain(jaq_json::funs())
        .filter(|(name, _, _)| !FORBIDDEN.contains(name));
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| {
            let names: Vec<String> = errs
                .iter()
                .flat_map(|(_, es)| es.iter().map(|(name, _)| name.to_string()))
                .collect();
            parse_err(format!("undefined: {}", names.join(", ")))
        })?;
    let inputs = RcIter::new(core::iter::empty());
    let mut out = vec![];
    for v in filter.run((Ctx::new([], &inputs), Val::from(input.clone()))) {
        match v {
            Ok(v) => out.push(Value::from(v)),
            Err(e) => {
                return Err(YqError::Eval {
                    expr: expr.to_string(),
                    detail: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}

fn describe_load_errors<P>(errs: &jaq_core::load::Errors<&str, P>) -> String {
    use jaq_core::load::Error;
    let mut parts = vec![];
    for (_, e) in errs {
        match e {
            Error::Io(v) => parts.extend(v.iter().map(|(p, m)| format!("{p}: {m}"))),
            Error::Lex(v) => parts.extend(
                v.iter()
                    .map(|(exp, at)| format!("expected {} near {:?}", exp.as_str(), snippet(at))),
            ),
            Error::Parse(v) => parts.extend(
                v.iter()
                    .map(|(exp, at)| format!("expected {} near {:?}", exp.as_str(), snippet(at))),
            ),
        }
    }
    parts.join("; ")
}

fn snippet(s: &str) -> String {
    s.chars().take(20).collect()
}

/// The one output of `expr` over `input`; an expression with no or several outputs is an
/// error (an edit must produce one document).
pub fn eval_one(expr: &str, input: &Value) -> Result<Value, YqError> {
    let mut out = eval(expr, input)?;
    if out.len() != 1 {
        return Err(YqError::NotOne {
            expr: expr.to_string(),
            count: out.len(),
        });
    }
    Ok(out.remove(0))
}

/// Upstream's `yqutil.Join`: several expressions applied one after the other.
pub fn join(exprs: &[String]) -> String {
    exprs.join(" | ")
}

/// A YAML (or JSON, a subset) text as a value; an empty text is `null`.
pub fn parse_yaml(text: &str) -> Result<Value, YqError> {
    let y: serde_yaml::Value = serde_yaml::from_str(text)?;
    Ok(serde_json::to_value(y)?)
}

/// Output format of `limactl yq -o` and of `--yq` results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// One output value as yq prints it: YAML (no `---`), or indented JSON; with `raw`, a string
/// is printed as is. Always ends with a newline.
pub fn render(v: &Value, format: Format, raw: bool) -> Result<String, YqError> {
    if let (true, Value::String(s)) = (raw, v) {
        return Ok(format!("{s}\n"));
    }
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(v)? + "\n",
        Format::Yaml => {
            let s = serde_yaml::to_string(v)?;
            if s.ends_with('\n') {
                s
            } else {
                s + "\n"
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(expr: &str, input: Value) -> Value {
        eval_one(expr, &input).unwrap()
    }

    #[test]
    fn yq_common_syntax() {
        let doc = json!({"a": {"b": [1, 2]}, "s": "x", "m": [{"n": 1}, {"n": 2}]});
        assert_eq!(one(".a.b[0]", doc.clone()), json!(1));
        assert_eq!(one(".c.d = \"x\" | .c", doc.clone()), json!({"d": "x"}));
        assert_eq!(one(".a.b[1] |= . + 40 | .a.b", doc.clone()), json!([1, 42]));
        assert_eq!(one("del(.a) | keys", doc.clone()), json!(["m", "s"]));
        assert_eq!(
            one("[.m[] | select(.n > 1)]", doc.clone()),
            json!([{"n": 2}])
        );
        assert_eq!(one("has(\"s\")", doc.clone()), json!(true));
        assert_eq!(one(".s + \"y\" | ascii_upcase", doc.clone()), json!("XY"));
        assert_eq!(one(".x += [1] | .x", doc.clone()), json!([1]));
        assert_eq!(
            one(".m[].w = true | .m[1]", doc.clone()),
            json!({"n": 2, "w": true})
        );
        // yq makes missing parents and skips a missing list.
        assert_eq!(one(".x.y.z = 1 | .x", doc.clone()), json!({"y": {"z": 1}}));
        assert_eq!(
            one(".nope[].w = 1 | has(\"nope\")", doc.clone()),
            json!(false)
        );
        assert_eq!(one(".a = 1", Value::Null), json!({"a": 1}));
        assert_eq!(one(".p[\"k\"] = \"v\" | .p", doc), json!({"k": "v"}));
    }

    #[test]
    fn host_access_is_refused() {
        for e in ["env", "$ENV", "halt"] {
            assert!(
                matches!(eval(e, &Value::Null), Err(YqError::Parse { .. })),
                "{e}"
            );
        }
    }

    #[test]
    fn halt_error_does_not_exit() {
        assert!(matches!(
            eval("halt_error", &Value::Null),
            Err(YqError::Eval { .. })
        ));
        assert_eq!(eval("[inputs]", &Value::Null).unwrap(), [json!([])]);
    }

    #[test]
    fn errors_name_the_expression() {
        let e = eval(".a = ", &Value::Null).unwrap_err().to_string();
        assert!(e.contains("invalid yq expression \".a = \""), "{e}");
        assert!(!e.contains("__lima"), "{e}");
        let e = eval(".a + 1", &json!({"a": "x"})).unwrap_err().to_string();
        assert!(e.contains("failed"), "{e}");
        let e = eval_one(".[]", &json!([1, 2])).unwrap_err().to_string();
        assert!(e.contains("gave 2"), "{e}");
    }

    #[test]
    fn rendering() {
        assert_eq!(render(&json!("x"), Format::Yaml, false).unwrap(), "x\n");
        assert_eq!(render(&json!("x"), Format::Json, false).unwrap(), "\"x\"\n");
        assert_eq!(render(&json!("x"), Format::Json, true).unwrap(), "x\n");
        assert_eq!(
            render(&json!({"a": 1}), Format::Json, false).unwrap(),
            "{\n  \"a\": 1\n}\n"
        );
    }
}
