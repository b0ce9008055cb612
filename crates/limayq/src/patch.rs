//! Applying an expression to a YAML text while keeping the user's comments and key order, as
//! upstream's yq (which edits the node tree with its comments) does for lima.yaml.
//!
//! The expression runs on the document's value; the result is then written back into the
//! original text as the smallest change we know how to make:
//! - a scalar that changed in place (`.cpus = 4`, `.ssh.localPort = 60022`) is replaced on its
//!   line, the rest of the line (a trailing comment) kept;
//! - a new top-level key is appended at the end;
//! - any other change of a top-level key (a list grown, a key deleted) rewrites that key's
//!   block only (comments inside that block are lost);
//! - a document that is not a block mapping is rewritten whole (comments lost).
//!
//! Every patched text is parsed again and must mean exactly the expression's result; if not,
//! the whole document is rewritten instead, so a patch can lose comments but never change
//! meaning.

use std::collections::BTreeMap;

use serde_json::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::{eval_one, parse_yaml, YqError};

/// `text` after `expr`, with comments and key order kept where possible (see the module doc).
/// An expression that changes nothing returns the text unchanged.
pub fn edit_yaml(text: &str, expr: &str) -> Result<String, YqError> {
    let old = parse_yaml(text)?;
    let new = eval_one(expr, &old)?;
    if new == old {
        return Ok(text.to_string());
    }
    if let Some(patched) = patch(text, &old, &new) {
        if parse_yaml(&patched).ok().as_ref() == Some(&new) {
            return Ok(patched);
        }
    }
    tracing::debug!("rewriting the whole YAML document: the edit could not be patched in place");
    Ok(serde_yaml::to_string(&new)?)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Where each node starts, and each top-level key's line.
#[derive(Default)]
struct Positions {
    /// Node path -> (1-based line, 0-based column) of its scalar value.
    scalars: BTreeMap<Vec<Seg>, (usize, usize)>,
    /// Top-level keys in order with their 1-based line.
    top: Vec<(String, usize)>,
    /// The root is a block mapping (not flow, not a scalar).
    block_root: bool,
}

enum Frame {
    Map { path: Vec<Seg>, key: Option<String> },
    Seq { path: Vec<Seg>, next: usize },
}

#[derive(Default)]
struct Walker {
    pos: Positions,
    stack: Vec<Frame>,
    root_seen: bool,
    text_lines: Vec<String>,
}

impl Walker {
    /// The path of the node starting now, or `None` when this scalar is a mapping key.
    fn child_path(&mut self) -> Option<Vec<Seg>> {
        match self.stack.last_mut() {
            None => Some(vec![]),
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => {
                    let mut p = path.clone();
                    p.push(Seg::Key(k));
                    Some(p)
                }
                None => None,
            },
            Some(Frame::Seq { path, next }) => {
                let mut p = path.clone();
                p.push(Seg::Index(*next));
                *next += 1;
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => match self.child_path() {
                Some(p) => {
                    self.pos.scalars.insert(p, (mark.line(), mark.col()));
                }
                None => {
                    let top = self.stack.len() == 1;
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        if top {
                            self.pos.top.push((value.clone(), mark.line()));
                        }
                        *key = Some(value);
                    }
                }
            },
            Event::MappingStart(..) => {
                let path = self.child_path().unwrap_or_default();
                if !self.root_seen {
                    self.root_seen = true;
                    let line = self.text_lines.get(mark.line().saturating_sub(1));
                    let flow = line
                        .and_then(|l| l.get(mark.col()..))
                        .is_some_and(|rest| rest.starts_with('{'));
                    self.pos.block_root = !flow;
                }
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.child_path().unwrap_or_default();
                self.root_seen = true;
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.child_path();
            }
            _ => {}
        }
    }
}

fn positions(text: &str) -> Option<Positions> {
    let mut w = Walker {
        text_lines: text.lines().map(str::to_string).collect(),
        ..Walker::default()
    };
    Parser::new_from_str(text).load(&mut w, false).ok()?;
    Some(w.pos)
}

/// A scalar value as it is written inline in YAML (`3GiB`, `'yes'`, `4`), or `None` when it
/// would need several lines.
fn inline_scalar(v: &Value) -> Option<String> {
    let s = serde_yaml::to_string(v).ok()?;
    let s = s.trim_end_matches('\n');
    (!s.contains('\n')).then(|| s.to_string())
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// Paths of scalars that changed between `old` and `new` while the structure around them
/// stayed; `None` when anything else changed.
fn scalar_changes(
    old: &Value,
    new: &Value,
    path: &mut Vec<Seg>,
    out: &mut Vec<(Vec<Seg>, Value)>,
) -> bool {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            if a.len() != b.len() || a.keys().zip(b.keys()).any(|(x, y)| x != y) {
                return false;
            }
            a.iter().all(|(k, va)| {
                path.push(Seg::Key(k.clone()));
                let ok = scalar_changes(va, &b[k], path, out);
                path.pop();
                ok
            })
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return false;
            }
            a.iter().zip(b).enumerate().all(|(i, (va, vb))| {
                path.push(Seg::Index(i));
                let ok = scalar_changes(va, vb, path, out);
                path.pop();
                ok
            })
        }
        (a, b) if a == b => true,
        (a, b) if is_scalar(a) && is_scalar(b) => {
            out.push((path.clone(), b.clone()));
            true
        }
        _ => false,
    }
}

/// Byte length of the scalar written at the start of `rest` (plain, '...' or "...").
fn scalar_len(rest: &str) -> Option<usize> {
    let b = rest.as_bytes();
    match b.first()? {
        b'"' => {
            let mut i = 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => return Some(i + 1),
                    _ => i += 1,
                }
            }
            None
        }
        b'\'' => {
            let mut i = 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    return Some(i + 1);
                }
                i += 1;
            }
            None
        }
        b'|' | b'>' | b'&' | b'*' | b'!' => None,
        _ => {
            let end = rest.find(" #").unwrap_or(rest.len());
            Some(rest[..end].trim_end().len())
        }
    }
}

/// Byte offset of (1-based line, 0-based char column) in `lines`.
fn col_to_byte(line: &str, col: usize) -> Option<usize> {
    line.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(line.len()))
        .nth(col)
}

fn patch(text: &str, old: &Value, new: &Value) -> Option<String> {
    let pos = positions(text)?;
    if !pos.block_root {
        return None;
    }
    let (Value::Object(old_map), Value::Object(new_map)) = (old, new) else {
        return None;
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Top-level key -> [first line, end line) in 0-based lines, to rewrite blocks.
    let mut blocks: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, (k, line)) in pos.top.iter().enumerate() {
        let start = line - 1;
        let mut end = pos.top.get(i + 1).map_or(lines.len(), |(_, l)| l - 1);
        // Comment and blank lines just before the next key belong to that key.
        while end > start + 1 {
            let l = lines[end - 1].trim_start();
            if l.is_empty() || l.starts_with('#') {
                end -= 1;
            } else {
                break;
            }
        }
        blocks.insert(k.clone(), (start, end));
    }
    // Replacements of whole blocks, applied bottom-up so line numbers stay valid.
    let mut block_edits: Vec<(usize, usize, Vec<String>)> = vec![];
    for (k, ov) in old_map {
        let Some(nv) = new_map.get(k) else {
            let (s, e) = *blocks.get(k)?;
            block_edits.push((s, e, vec![]));
            continue;
        };
        if ov == nv {
            continue;
        }
        let mut changes = vec![];
        let mut path = vec![Seg::Key(k.clone())];
        if scalar_changes(ov, nv, &mut path, &mut changes) {
            for (p, v) in changes {
                let (line, col) = *pos.scalars.get(&p)?;
                let l = lines.get_mut(line - 1)?;
                let start = col_to_byte(l, col)?;
                let len = scalar_len(&l[start..])?;
                l.replace_range(start..start + len, &inline_scalar(&v)?);
            }
        } else {
            let (s, e) = *blocks.get(k)?;
            let mut one = serde_json::Map::new();
            one.insert(k.clone(), nv.clone());
            let rendered = serde_yaml::to_string(&Value::Object(one)).ok()?;
            block_edits.push((s, e, rendered.lines().map(str::to_string).collect()));
        }
    }
    block_edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (s, e, repl) in block_edits {
        lines.splice(s..e, repl);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    // New keys go at the end, in the result's order (jaq keeps object keys sorted).
    for (k, nv) in new_map {
        if !old_map.contains_key(k) {
            let mut one = serde_json::Map::new();
            one.insert(k.clone(), nv.clone());
            out.push_str(&serde_yaml::to_string(&Value::Object(one)).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# my VM\ncpus: 2 # two is enough\nmemory: \"2GiB\"\n\n# mounts here\nmounts:\n- location: \"~\"\n  writable: false # careful\nssh:\n  localPort: 0\n";

    #[test]
    fn scalar_edits_keep_comments_and_order() {
        let out = edit_yaml(
            DOC,
            ".cpus = 4 | .ssh.localPort = 60022 | .memory = \"3GiB\"",
        )
        .unwrap();
        assert_eq!(
            out,
            "# my VM\ncpus: 4 # two is enough\nmemory: 3GiB\n\n# mounts here\nmounts:\n- location: \"~\"\n  writable: false # careful\nssh:\n  localPort: 60022\n"
        );
        let out = edit_yaml(DOC, ".mounts[].writable = true").unwrap();
        assert!(out.contains("  writable: true # careful\n"), "{out}");
    }

    #[test]
    fn new_keys_are_appended_and_blocks_rewritten() {
        let out = edit_yaml(
            DOC,
            ".disk = \"50GiB\" | .mounts += [{\"location\": \"/tmp\"}]",
        )
        .unwrap();
        assert!(
            out.starts_with("# my VM\ncpus: 2 # two is enough\n"),
            "{out}"
        );
        assert!(out.contains("# mounts here\nmounts:\n"), "{out}");
        assert!(out.ends_with("disk: 50GiB\n"), "{out}");
        assert_eq!(
            parse_yaml(&out).unwrap()["mounts"][1]["location"],
            Value::String("/tmp".into())
        );
        let out = edit_yaml(DOC, "del(.mounts)").unwrap();
        assert_eq!(out, "# my VM\ncpus: 2 # two is enough\nmemory: \"2GiB\"\n\n# mounts here\nssh:\n  localPort: 0\n");
    }

    #[test]
    fn no_change_keeps_the_text_and_flow_yaml_is_rewritten() {
        assert_eq!(edit_yaml(DOC, ".").unwrap(), DOC);
        let out = edit_yaml("{a: 1}", ".a = 2").unwrap();
        assert_eq!(out, "a: 2\n");
        assert_eq!(edit_yaml("", ".a = 1").unwrap(), "a: 1\n");
    }

    #[test]
    fn a_string_that_needs_quotes_gets_them() {
        let out = edit_yaml("a: x # c\n", ".a = \"true\"").unwrap();
        assert_eq!(out, "a: 'true' # c\n");
        let out = edit_yaml("a: x # c\n", ".a = \"two\\nlines\"").unwrap();
        assert_eq!(
            parse_yaml(&out).unwrap()["a"],
            Value::String("two\nlines".into())
        );
    }
}
