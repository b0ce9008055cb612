//! The thin layer between yq's syntax and jaq's: yq (like jq) creates missing parents when
//! assigning (`.ssh.localPort = 1` on a config without `ssh`), and skips `.xs[]` over a
//! missing list; jaq instead fails on `null`. Each top-level `PATH op RHS` of a pipe whose
//! PATH is simple (`.a.b`, `.a["k"]`, `.a[0]`, `.a[].b`) is rewritten to make its parents
//! first. Anything else is left as written.

/// One step of a simple path.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    /// `.name` or `["name"]`, as jq text.
    Key(String),
    /// `[N]`
    Index(String),
    /// `[]`
    Iter,
}

const OPS: &[&str] = &["|=", "+=", "-=", "*=", "/=", "//=", "="];

/// Splits `s` at top-level occurrences chosen by `at` (given the rest of the text at that
/// point, returns the length of the separator), outside strings and brackets.
fn split_top(s: &str, at: impl Fn(&str) -> Option<usize>) -> Option<Vec<(usize, usize)>> {
    let b = s.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    let mut cuts = vec![];
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    // `\(` string interpolation could hide quotes: give up on those.
                    if b[i] == b'\\' {
                        if b.get(i + 1) == Some(&b'(') {
                            return None;
                        }
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' => return None,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if depth == 0 => {
                if let Some(n) = at(&s[i..]) {
                    cuts.push((i, n));
                    i += n;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Some(cuts)
}

fn parse_path(lhs: &str) -> Option<Vec<Seg>> {
    let mut segs = vec![];
    let mut rest = lhs.trim();
    if rest == "." || !rest.starts_with('.') {
        return None;
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            segs.push(if inner.is_empty() {
                Seg::Iter
            } else if inner.bytes().all(|c| c.is_ascii_digit()) {
                Seg::Index(inner.to_string())
            } else if inner.starts_with('"') && inner.ends_with('"') && inner.len() >= 2 {
                if inner[1..inner.len() - 1].contains(['"', '\\']) {
                    return None;
                }
                Seg::Key(format!("[{inner}]"))
            } else {
                return None;
            });
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix('.') {
            if r.starts_with('[') {
                rest = r;
                continue;
            }
            let n = r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(r.len());
            if n == 0 || r.as_bytes()[0].is_ascii_digit() {
                return None;
            }
            segs.push(Seg::Key(format!(".{}", &r[..n])));
            rest = &r[n..];
        } else {
            return None;
        }
    }
    Some(segs)
}

fn path_text(segs: &[Seg]) -> String {
    let mut s: String = segs
        .iter()
        .map(|g| match g {
            Seg::Key(k) => k.clone(),
            Seg::Index(n) => format!("[{n}]"),
            Seg::Iter => "[]".to_string(),
        })
        .collect();
    if s.starts_with('[') {
        s.insert(0, '.');
    }
    s
}

/// One assignment rewritten, or `None` to leave it.
fn rewrite_assignment(part: &str) -> Option<String> {
    let cuts = split_top(part, |rest| {
        for op in OPS {
            if rest.starts_with(op) && !rest[op.len()..].starts_with('=') {
                return Some(op.len());
            }
        }
        None
    })?;
    // Exactly one assignment, not a comparison (`==`, `!=`, `<=`, `>=`).
    let [(at, n)] = cuts.as_slice() else {
        return None;
    };
    let (at, n) = (*at, *n);
    let op = &part[at..at + n];
    if op == "=" {
        let before = part[..at].chars().last();
        if matches!(before, Some('!' | '<' | '>' | '=')) {
            return None;
        }
    }
    let segs = parse_path(&part[..at])?;
    let rhs = part[at + n..].trim();
    let words = ["if", "reduce", "foreach", "def", "as", "try", "label"];
    if part[..at].split_whitespace().any(|w| words.contains(&w)) {
        return None;
    }
    let first_iter = segs.iter().position(|s| *s == Seg::Iter);
    // Parents only: up to the step before the last, or before the first `[]`.
    let vivify_upto = first_iter.map_or(segs.len() - 1, |k| k.saturating_sub(1));
    let mut steps = vec!["__lima_obj".to_string()];
    for i in 1..=vivify_upto {
        let make = match segs.get(i) {
            Some(Seg::Index(_)) => "__lima_arr",
            _ => "__lima_obj",
        };
        steps.push(format!("{} |= {make}", path_text(&segs[..i])));
    }
    if let Some(Seg::Index(_)) = segs.first() {
        steps[0] = "__lima_arr".into();
    }
    let lhs = path_text(&segs);
    let assign = if op == "|=" {
        format!("{lhs} |= ({rhs})")
    } else {
        format!("{lhs} {op} $__lima_v")
    };
    let body = match first_iter {
        // A missing list is skipped, as yq does.
        Some(i) => format!(
            "{} | if {} == null then . else {assign} end",
            steps.join(" | "),
            path_text(&segs[..i])
        ),
        None => format!("{} | {assign}", steps.join(" | ")),
    };
    Some(if op == "|=" {
        format!("({body})")
    } else {
        format!("(({rhs}) as $__lima_v | {body})")
    })
}

/// Definitions the rewritten expressions use.
pub const DEFS: &str = "def __lima_obj: if . == null then {} else . end; def __lima_arr: if . == null then [] else . end; ";

/// `expr` with its top-level simple assignments made yq-like (see the module doc).
pub fn rewrite(expr: &str) -> String {
    let Some(cuts) = split_top(expr, |rest| {
        (rest.starts_with('|') && !rest.starts_with("|=")).then_some(1)
    }) else {
        return expr.to_string();
    };
    let mut parts = vec![];
    let mut start = 0;
    for (at, n) in cuts.iter().chain(std::iter::once(&(expr.len(), 0))) {
        parts.push(&expr[start..*at]);
        start = at + n;
    }
    parts
        .iter()
        .map(|p| rewrite_assignment(p).unwrap_or_else(|| p.to_string()))
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_assignments_make_their_parents() {
        assert_eq!(
            rewrite(".a.b = 1"),
            "((1) as $__lima_v | __lima_obj | .a |= __lima_obj | .a.b = $__lima_v)"
        );
        assert_eq!(
            rewrite(".m[].w = true"),
            "((true) as $__lima_v | __lima_obj | if .m == null then . else .m[].w = $__lima_v end)"
        );
        assert_eq!(rewrite(".a |= . + 1"), "(__lima_obj | .a |= (. + 1))");
    }

    #[test]
    fn other_expressions_are_left() {
        for e in [
            ".a == 1",
            "select(.a >= 1)",
            ".a | length",
            "if .a then .b = 1 else . end",
            ". as $x | $x",
            "\"\\(.a)\" | .b = 1",
        ] {
            assert!(!rewrite(e).contains("__lima"), "{e} -> {}", rewrite(e));
        }
    }
}
