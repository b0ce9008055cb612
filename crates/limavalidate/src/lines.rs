//! Field path -> line number, built from the YAML text with yaml-rust2's marked event parser
//! (serde_yaml keeps no spans). Paths look like `portForwards[2].guestPortRange`.

use std::collections::{BTreeMap, BTreeSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Lines (1-based) of the keys and list items of one YAML document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineIndex {
    lines: BTreeMap<String, usize>,
    /// Repeated mapping keys: the key's path and the line of the repeat.
    duplicates: Vec<(String, usize)>,
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        seen: BTreeSet<String>,
    },
    Seq {
        path: String,
        index: usize,
    },
    /// A mapping or sequence used as a mapping key: indexed under a placeholder.
    ComplexKey,
}

struct Builder {
    stack: Vec<Frame>,
    lines: BTreeMap<String, usize>,
    duplicates: Vec<(String, usize)>,
    documents: usize,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Builder {
    /// The path of the node about to start, or None when the node is a mapping key.
    fn next_path(&mut self, key_text: Option<&str>, line: usize) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::ComplexKey) => Some("?".into()),
            Some(Frame::Map { path, key, seen }) => match key {
                None => {
                    let k = key_text.unwrap_or("?").to_string();
                    let full = join(path, &k);
                    if !seen.insert(k.clone()) {
                        self.duplicates.push((full.clone(), line));
                    }
                    self.lines.entry(full).or_insert(line);
                    *key = Some(k);
                    None
                }
                Some(k) => Some(join(path, k)),
            },
            Some(Frame::Seq { path, index }) => {
                let full = format!("{path}[{index}]");
                self.lines.entry(full.clone()).or_insert(line);
                Some(full)
            }
        }
    }

    /// After a complete value: the parent mapping waits for a key, a sequence moves on.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            _ => {}
        }
    }

    fn is_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.documents > 1 {
            return;
        }
        let line = mark.line();
        match ev {
            Event::DocumentStart => self.documents += 1,
            Event::Scalar(text, ..) if self.next_path(Some(&text), line).is_some() => {
                self.value_done();
            }
            Event::Alias(_) if self.next_path(None, line).is_some() => self.value_done(),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                if self.is_key_position() {
                    self.stack.push(Frame::ComplexKey);
                    return;
                }
                let Some(path) = self.next_path(None, line) else {
                    return;
                };
                if !path.is_empty() {
                    self.lines.entry(path.clone()).or_insert(line);
                }
                self.stack.push(if is_map {
                    Frame::Map {
                        path,
                        key: None,
                        seen: BTreeSet::new(),
                    }
                } else {
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(Frame::ComplexKey) = self.stack.pop() {
                    if let Some(Frame::Map { path, key, .. }) = self.stack.last_mut() {
                        let full = join(path, "?");
                        self.lines.entry(full).or_insert(line);
                        *key = Some("?".into());
                    }
                    return;
                }
                self.value_done();
            }
            _ => {}
        }
    }
}

impl LineIndex {
    /// Indexes the first document of `text`. Never fails: a syntax error just ends the index
    /// where the parser stopped.
    pub fn from_yaml(text: &str) -> Self {
        let mut builder = Builder {
            stack: Vec::new(),
            lines: BTreeMap::new(),
            duplicates: Vec::new(),
            documents: 0,
        };
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut builder, false);
        LineIndex {
            lines: builder.lines,
            duplicates: builder.duplicates,
        }
    }

    /// Keys repeated in a mapping, in file order: the path of the key and the line where it
    /// appears again (serde only says which mapping holds a repeat).
    pub fn duplicate_keys(&self) -> &[(String, usize)] {
        &self.duplicates
    }

    /// The line of exactly this path.
    pub fn line(&self, path: &str) -> Option<usize> {
        self.lines.get(path).copied()
    }

    /// The line of this path or of its nearest ancestor present in the file
    /// (`a.b[2].c` -> `a.b[2]` -> `a.b` -> `a`).
    pub fn nearest(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.line(p) {
                return Some(l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// The deepest path that starts on `line` (e.g. to name the field of a parse error).
    pub fn path_at(&self, line: usize) -> Option<&str> {
        self.lines
            .iter()
            .filter(|(_, l)| **l == line)
            .map(|(p, _)| p.as_str())
            .max_by_key(|p| p.len())
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
cpus: 2
portForwards:
- guestPort: 80
- guestPortRange: [1, 2]
  hostIP: 0.0.0.0
mounts:
  - location: ~
    writable: true
env:
  A: b
? [complex]
: 1
after: x
";

    #[test]
    fn indexes_keys_and_items() {
        let idx = LineIndex::from_yaml(TEXT);
        assert_eq!(idx.line("cpus"), Some(2));
        assert_eq!(idx.line("portForwards"), Some(3));
        assert_eq!(idx.line("portForwards[0]"), Some(4));
        assert_eq!(idx.line("portForwards[1].guestPortRange"), Some(5));
        assert_eq!(idx.line("portForwards[1].guestPortRange[1]"), Some(5));
        assert_eq!(idx.line("portForwards[1].hostIP"), Some(6));
        assert_eq!(idx.line("mounts[0].writable"), Some(9));
        assert_eq!(idx.line("env.A"), Some(11));
        assert_eq!(idx.line("after"), Some(14));
    }

    #[test]
    fn nearest_walks_up() {
        let idx = LineIndex::from_yaml(TEXT);
        assert_eq!(idx.nearest("portForwards[1].hostPort"), Some(5));
        assert_eq!(idx.nearest("mounts[0].nine.cache"), Some(8));
        assert_eq!(idx.nearest("nothing.here"), None);
        assert_eq!(idx.path_at(6), Some("portForwards[1].hostIP"));
        assert_eq!(idx.path_at(1), None);
    }

    #[test]
    fn finds_repeated_keys() {
        let idx = LineIndex::from_yaml("cpus: 1\nenv:\n  A: 1\n  A: 2\ncpus: 2\n");
        assert_eq!(
            idx.duplicate_keys(),
            [("env.A".to_string(), 4), ("cpus".to_string(), 5)]
        );
        assert_eq!(idx.line("cpus"), Some(1));
        assert!(LineIndex::from_yaml(TEXT).duplicate_keys().is_empty());
    }

    #[test]
    fn broken_yaml_gives_a_partial_index() {
        let idx = LineIndex::from_yaml("cpus: 1\nmemory: [\n");
        assert_eq!(idx.line("cpus"), Some(1));
        let _ = LineIndex::from_yaml("\u{0}\u{1}{[}]:::- - -");
        let _ = LineIndex::from_yaml(&"[".repeat(10_000));
    }
}
