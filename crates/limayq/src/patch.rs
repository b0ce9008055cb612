//! Applying an expression to a YAML text while keeping the user's comments and key order, as
//! upstream's yq (which edits the node tree with its comments) does for lima.yaml.
//!
//! The expression runs on the document's value; the result is then written back into the
//! original text as the smallest change we know how to make:
//! - a scalar that changed in place (`.cpus = 4`, `.ssh.localPort = 60022`) is replaced on its
//!   line, the rest of the line (a trailing comment) kept;
//! - a key added to an existing block mapping goes after that mapping's last entry; a new
//!   top-level key is appended at the end;
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
    /// Block mapping path -> its keys' column and the 1-based line where it ends (the next
    /// token after it).
    maps: BTreeMap<Vec<Seg>, (usize, usize)>,
    /// Top-level keys in order with their 1-based line.
    top: Vec<(String, usize)>,
    /// The root is a block mapping (not flow, not a scalar).
    block_root: bool,
}

enum Frame {
    Map {
        path: Vec<Seg>,
        key: Option<String>,
        /// Column of the first key; `None` until seen, or for a flow mapping (never set).
        key_col: Option<usize>,
        flow: bool,
    },
    Seq {
        path: Vec<Seg>,
        next: usize,
    },
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
            Some(Frame::Map { path, key, .. }) => match key.take() {
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
                    if let Some(Frame::Map {
                        key, key_col, flow, ..
                    }) = self.stack.last_mut()
                    {
                        if top {
                            self.pos.top.push((value.clone(), mark.line()));
                        }
                        if !*flow && key_col.is_none() {
                            *key_col = Some(mark.col());
                        }
                        *key = Some(value);
                    }
                }
            },
            Event::MappingStart(..) => {
                let path = self.child_path().unwrap_or_default();
                let line = self.text_lines.get(mark.line().saturating_sub(1));
                let flow = line
                    .and_then(|l| l.get(mark.col()..))
                    .is_some_and(|rest| rest.starts_with('{'));
                if !self.root_seen {
                    self.root_seen = true;
                    self.pos.block_root = !flow;
                }
                self.stack.push(Frame::Map {
                    path,
                    key: None,
                    key_col: None,
                    flow,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.child_path().unwrap_or_default();
                self.root_seen = true;
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    path,
                    key_col: Some(col),
                    flow: false,
                    ..
                }) = self.stack.pop()
                {
                    self.pos.maps.insert(path, (col, mark.line()));
                }
            }
            Event::SequenceEnd => {
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

/// A change [`fine_changes`] can write into the text.
enum Change {
    /// The scalar at this path has a new value.
    Scalar(Vec<Seg>, Value),
    /// The mapping at this path gained a key.
    AddKey(Vec<Seg>, String, Value),
}

/// The changes from `old` to `new` if they are only scalars changed and keys added to
/// mappings; `false` when anything else changed (a key removed, a list resized, a type
/// changed).
fn fine_changes(old: &Value, new: &Value, path: &mut Vec<Seg>, out: &mut Vec<Change>) -> bool {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            if a.keys().any(|k| !b.contains_key(k)) {
                return false;
            }
            for (k, vb) in b {
                match a.get(k) {
                    None => out.push(Change::AddKey(path.clone(), k.clone(), vb.clone())),
                    Some(va) => {
                        path.push(Seg::Key(k.clone()));
                        let ok = fine_changes(va, vb, path, out);
                        path.pop();
                        if !ok {
                            return false;
                        }
                    }
                }
            }
            true
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return false;
            }
            a.iter().zip(b).enumerate().all(|(i, (va, vb))| {
                path.push(Seg::Index(i));
                let ok = fine_changes(va, vb, path, out);
                path.pop();
                ok
            })
        }
        (a, b) if a == b => true,
        (a, b) if is_scalar(a) && is_scalar(b) => {
            out.push(Change::Scalar(path.clone(), b.clone()));
            true
        }
        _ => false,
    }
}

/// `key: value` as YAML lines indented by `indent` spaces.
fn key_lines(key: &str, v: &Value, indent: usize) -> Option<Vec<String>> {
    let mut one = serde_json::Map::new();
    one.insert(key.to_string(), v.clone());
    let rendered = serde_yaml::to_string(&Value::Object(one)).ok()?;
    let pad = " ".repeat(indent);
    Some(rendered.lines().map(|l| format!("{pad}{l}")).collect())
}

/// The line before which to add to a block that ends at 0-based `end`: before the comment
/// and blank lines that lead to what follows, but not before `start`.
fn trim_end(lines: &[String], start: usize, mut end: usize) -> usize {
    while end > start + 1 {
        let l = lines[end - 1].trim_start();
        if l.is_empty() || l.starts_with('#') {
            end -= 1;
        } else {
            break;
        }
    }
    end
}

/// Line edits for one top-level key's change: scalars replaced on their lines, and lines
/// inserted (0-based line to insert before, lines); `None` when not that kind of change.
#[allow(clippy::type_complexity)]
fn fine_edits(
    lines: &[String],
    pos: &Positions,
    changes: Vec<Change>,
) -> Option<(Vec<(usize, String)>, Vec<(usize, Vec<String>)>)> {
    let mut replaced: BTreeMap<usize, String> = BTreeMap::new();
    let mut inserts = vec![];
    for c in changes {
        match c {
            Change::Scalar(p, v) => {
                let (line, col) = *pos.scalars.get(&p)?;
                let mut l = replaced
                    .get(&(line - 1))
                    .cloned()
                    .or_else(|| lines.get(line - 1).cloned())?;
                let start = col_to_byte(&l, col)?;
                let len = scalar_len(&l[start..])?;
                l.replace_range(start..start + len, &inline_scalar(&v)?);
                replaced.insert(line - 1, l);
            }
            Change::AddKey(parent, key, v) => {
                let (col, end_line) = *pos.maps.get(&parent)?;
                let first = pos
                    .scalars
                    .iter()
                    .filter(|(p, _)| p.starts_with(&parent) && p.len() > parent.len())
                    .map(|(_, (l, _))| l - 1)
                    .min()?;
                let end = trim_end(lines, first, end_line.saturating_sub(1).min(lines.len()));
                inserts.push((end, key_lines(&key, &v, col)?));
            }
        }
    }
    Some((replaced.into_iter().collect(), inserts))
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
        let end = pos.top.get(i + 1).map_or(lines.len(), |(_, l)| l - 1);
        // Comment and blank lines just before the next key belong to that key.
        blocks.insert(k.clone(), (start, trim_end(&lines, start, end)));
    }
    // Edits that change the number of lines: (first line, lines replaced, new lines),
    // applied bottom-up so line numbers stay valid.
    let mut edits: Vec<(usize, usize, Vec<String>)> = vec![];
    let mut replaced: Vec<(usize, String)> = vec![];
    for (k, ov) in old_map {
        let Some(nv) = new_map.get(k) else {
            let (s, e) = *blocks.get(k)?;
            edits.push((s, e - s, vec![]));
            continue;
        };
        if ov == nv {
            continue;
        }
        let mut changes = vec![];
        let mut path = vec![Seg::Key(k.clone())];
        let fine = fine_changes(ov, nv, &mut path, &mut changes)
            .then(|| fine_edits(&lines, &pos, changes))
            .flatten();
        match fine {
            Some((r, ins)) => {
                replaced.extend(r);
                edits.extend(ins.into_iter().map(|(at, l)| (at, 0, l)));
            }
            None => {
                let (s, e) = *blocks.get(k)?;
                edits.push((s, e - s, key_lines(k, nv, 0)?));
            }
        }
    }
    for (i, l) in replaced {
        lines[i] = l;
    }
    // Bottom-up; at one line, the replacement of a block before an insertion in front of it.
    edits.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    for (s, n, repl) in edits {
        lines.splice(s..s + n, repl);
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
    fn keys_added_to_a_nested_map_go_at_its_end() {
        let doc = "ssh:\n  # the port\n  localPort: 0 # random\n  # more later\n# next\ncpus: 1\n";
        let out = edit_yaml(doc, ".ssh.forwardAgent = true | .ssh.localPort = 22").unwrap();
        assert_eq!(
            out,
            "ssh:\n  # the port\n  localPort: 22 # random\n  forwardAgent: true\n  # more later\n# next\ncpus: 1\n"
        );
        let out = edit_yaml("a:\n  b:\n    c: 1\n", ".a.b.d = {\"e\": [1]}").unwrap();
        assert_eq!(out, "a:\n  b:\n    c: 1\n    d:\n      e:\n      - 1\n");
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
