//! Colouring printed JSON and YAML for a terminal, as upstream's yq does when stdout is a
//! TTY (`colorizeAndPrint`: both formats go through one YAML lexer): map keys cyan, strings
//! green, numbers and booleans bright magenta, whole-line comments bright black, the rest (punctuation, `null`) plain.
//!
//! These work on the printed text (ours: `serde_json`'s and `serde_yaml`'s output), not on
//! arbitrary YAML: flow collections and multi-line plain scalars are left plain.

const KEY: &str = "\x1b[36m";
const STRING: &str = "\x1b[32m";
const SCALAR: &str = "\x1b[95m";
const COMMENT: &str = "\x1b[90m";
const RESET: &str = "\x1b[0m";

fn paint(out: &mut String, color: &str, text: &str) {
    out.push_str(color);
    out.push_str(text);
    out.push_str(RESET);
}

/// JSON text with its tokens coloured; the characters themselves are unchanged.
pub fn colorize_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            let end = string_end(rest);
            let (token, after) = rest.split_at(end);
            let is_key = after.trim_start().starts_with(':');
            paint(&mut out, if is_key { KEY } else { STRING }, token);
            rest = after;
        } else if c == '-'
            || c.is_ascii_digit()
            || rest.starts_with("true")
            || rest.starts_with("false")
        {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
                .unwrap_or(rest.len());
            paint(&mut out, SCALAR, &rest[..end]);
            rest = &rest[end..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// One JSON document re-indented by `indent` spaces per level, its key order kept (a
/// `serde_json::Value` would sort the keys); `None` if `text` is not one JSON document.
pub fn reindent_json(text: &str, indent: usize) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(text).ok()?;
    let pad = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&" ".repeat(depth * indent));
    };
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0;
    let mut rest = text.trim();
    while let Some(c) = rest.chars().next() {
        match c {
            '"' => {
                let end = string_end(rest);
                out.push_str(&rest[..end]);
                rest = &rest[end..];
                continue;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                let inner = rest[1..].trim_start();
                if inner.starts_with(close) {
                    out.push(c);
                    out.push(close);
                    rest = &inner[1..];
                    continue;
                }
                out.push(c);
                depth += 1;
                pad(&mut out, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                pad(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                pad(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out.push('\n');
    Some(out)
}

/// The byte length of the JSON string token at the start of `s` (quotes included).
fn string_end(s: &str) -> usize {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return i + 1,
            _ => {}
        }
    }
    s.len()
}

/// Block-style YAML text (as `serde_yaml` prints it) with keys and scalars coloured.
pub fn colorize_yaml(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    // Inside a block scalar (`key: |`): lines indented deeper than this are its text.
    let mut block_indent: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let indent = body.len() - body.trim_start().len();
        if let Some(bi) = block_indent {
            if body.trim().is_empty() || indent > bi {
                if body.trim().is_empty() {
                    out.push_str(body);
                } else {
                    out.push_str(&body[..indent]);
                    paint(&mut out, STRING, &body[indent..]);
                }
                out.push_str(nl);
                continue;
            }
            block_indent = None;
        }
        let mut rest = &body[indent..];
        out.push_str(&body[..indent]);
        if rest.starts_with('#') {
            paint(&mut out, COMMENT, rest);
            out.push_str(nl);
            continue;
        }
        // `- ` list markers, possibly several (`- - a`).
        let mut item_indent = indent;
        while let Some(r) = rest
            .strip_prefix("- ")
            .or_else(|| (rest == "-").then_some(""))
        {
            out.push_str(&rest[..rest.len() - r.len()]);
            item_indent += rest.len() - r.len();
            rest = r;
        }
        if let Some((key, value)) = split_key(rest) {
            paint(&mut out, KEY, key);
            out.push(':');
            let v = value.trim_start();
            out.push_str(&value[..value.len() - v.len()]);
            if v.starts_with('|') || v.starts_with('>') {
                out.push_str(v);
                block_indent = Some(item_indent);
            } else {
                scalar(&mut out, v);
            }
        } else {
            scalar(&mut out, rest);
        }
        out.push_str(nl);
    }
    out
}

/// `key: value` or `key:` (the key plain or quoted), split at the colon.
fn split_key(s: &str) -> Option<(&str, &str)> {
    let key_end = if s.starts_with('"') {
        string_end(s)
    } else if let Some(inner) = s.strip_prefix('\'') {
        inner.find('\'').map(|i| i + 2)?
    } else {
        s.find(": ")
            .or_else(|| s.ends_with(':').then(|| s.len() - 1))?
    };
    let after = &s[key_end..];
    let value = after.strip_prefix(':')?;
    (value.is_empty() || value.starts_with(' ')).then(|| (&s[..key_end], value))
}

fn scalar(out: &mut String, v: &str) {
    let plain_scalar = matches!(v, "true" | "false")
        || (!v.is_empty() && v.parse::<f64>().is_ok() && !v.starts_with('.'));
    match v {
        "" | "null" | "~" | "[]" | "{}" => out.push_str(v),
        _ if plain_scalar => paint(out, SCALAR, v),
        _ => paint(out, STRING, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The colours made visible: `<k:...>` keys, `<s:...>` strings, `<n:...>` numbers/bools.
    fn visible(s: &str) -> String {
        s.replace(KEY, "<k:")
            .replace(STRING, "<s:")
            .replace(SCALAR, "<n:")
            .replace(COMMENT, "<c:")
            .replace(RESET, ">")
    }

    #[test]
    fn json_keys_strings_and_scalars() {
        let text = "{\n    \"name\": \"a \\\"b\\\"\",\n    \"cpus\": 4,\n    \"ok\": true,\n    \"x\": null,\n    \"l\": [-1.5, \"s\"]\n}\n";
        let got = colorize_json(text);
        assert_eq!(
            visible(&got),
            "{\n    <k:\"name\">: <s:\"a \\\"b\\\"\">,\n    <k:\"cpus\">: <n:4>,\n    <k:\"ok\">: <n:true>,\n    <k:\"x\">: null,\n    <k:\"l\">: [<n:-1.5>, <s:\"s\">]\n}\n"
        );
        // Only escape sequences are added.
        assert_eq!(
            got.replace(KEY, "")
                .replace(STRING, "")
                .replace(SCALAR, "")
                .replace(RESET, ""),
            text
        );
    }

    #[test]
    fn reindent_keeps_key_order_and_strings() {
        let got = reindent_json(
            r#"{"z":1,"a":{"s":"x, {y}: z","e":[],"o":{}},"l":[1,2]}"#,
            4,
        )
        .unwrap();
        assert_eq!(
            got,
            "{\n    \"z\": 1,\n    \"a\": {\n        \"s\": \"x, {y}: z\",\n        \"e\": [],\n        \"o\": {}\n    },\n    \"l\": [\n        1,\n        2\n    ]\n}\n"
        );
        assert!(reindent_json("{\"a\": ", 4).is_none());
        assert!(reindent_json("plain text", 4).is_none());
    }

    #[test]
    fn yaml_keys_lists_and_block_scalars() {
        let text = "# top\nname: default\ncpus: 4\nmounts:\n- location: ~\n  writable: true\nscript: |\n  echo hi\n  x: y\nempty: null\n\"quoted key\": '1'\n";
        assert_eq!(
            visible(&colorize_yaml(text)),
            "<c:# top>\n<k:name>: <s:default>\n<k:cpus>: <n:4>\n<k:mounts>:\n- <k:location>: ~\n  <k:writable>: <n:true>\n<k:script>: |\n<s:  echo hi>\n<s:  x: y>\n<k:empty>: null\n<k:\"quoted key\">: <s:'1'>\n"
                .replace("<s:  echo hi>", "  <s:echo hi>")
                .replace("<s:  x: y>", "  <s:x: y>")
        );
    }
}
