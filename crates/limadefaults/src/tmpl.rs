//! The part of Go's text/template that Lima templates use: `{{.Name}}`, `{{ .Param.KEY }}`,
//! `{{if COND}}...{{else}}...{{end}}` with `not`, `and`, `or`, `eq`, `ne`, parentheses and
//! string literals, and the `{{-`/`-}}` whitespace trimming. A text using anything else
//! (`range`, pipes, other functions, unknown variables) only gets its plain `{{.Var}}`s
//! replaced and keeps the rest as written, rather than being rendered wrongly.

/// Renders `text`; `lookup` resolves variable paths like `User` or `Param.Key`.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    match render(text, lookup) {
        Some(out) => out,
        None => expand_plain(text, lookup),
    }
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

enum Node {
    Text(String),
    Output(Vec<Token>),
    If(Vec<Token>, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Field(String),
    Str(String),
    Word(String),
}

/// Splits into text and actions, applying `{{-` / `-}}` trimming.
fn lex(text: &str) -> Option<Vec<(bool, String)>> {
    let mut parts: Vec<(bool, String)> = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut before = rest[..start].to_string();
        if trim_next {
            before = before.trim_start().to_string();
        }
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let mut action = &after[..end];
        if let Some(a) = action.strip_prefix('-') {
            if a.starts_with([' ', '\t', '\n']) {
                before = before.trim_end().to_string();
                action = a;
            }
        }
        trim_next = false;
        if let Some(a) = action.strip_suffix('-') {
            if a.ends_with([' ', '\t', '\n']) {
                trim_next = true;
                action = a;
            }
        }
        parts.push((false, before));
        parts.push((true, action.trim().to_string()));
        rest = &after[end + 2..];
    }
    let tail = if trim_next { rest.trim_start() } else { rest };
    parts.push((false, tail.to_string()));
    Some(parts)
}

fn tokens(action: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' | '\n' => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => s.push(chars.next()?),
                        other => s.push(other),
                    }
                }
                out.push(Token::Str(s));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '.' {
                        w.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if w.is_empty() {
                    return None; // pipes, variables, anything else
                }
                out.push(match w.strip_prefix('.') {
                    Some(f) if !f.is_empty() => Token::Field(f.to_string()),
                    _ => Token::Word(w),
                });
            }
        }
    }
    Some(out)
}

/// Parses nodes until `else`/`end`; returns the nodes and the terminating keyword.
fn parse_nodes(
    parts: &[(bool, String)],
    pos: &mut usize,
) -> Option<(Vec<Node>, Option<&'static str>)> {
    let mut nodes = Vec::new();
    while *pos < parts.len() {
        let (is_action, s) = &parts[*pos];
        *pos += 1;
        if !is_action {
            nodes.push(Node::Text(s.clone()));
            continue;
        }
        let toks = tokens(s)?;
        match toks.first() {
            Some(Token::Word(w)) if w == "end" && toks.len() == 1 => {
                return Some((nodes, Some("end")))
            }
            Some(Token::Word(w)) if w == "else" && toks.len() == 1 => {
                return Some((nodes, Some("else")))
            }
            Some(Token::Word(w)) if w == "if" => {
                let cond = toks[1..].to_vec();
                let (then, term) = parse_nodes(parts, pos)?;
                let otherwise = match term? {
                    "else" => {
                        let (e, term) = parse_nodes(parts, pos)?;
                        (term? == "end").then_some(e)?
                    }
                    _ => Vec::new(),
                };
                nodes.push(Node::If(cond, then, otherwise));
            }
            Some(Token::Field(_)) if toks.len() == 1 => nodes.push(Node::Output(toks)),
            _ => return None,
        }
    }
    Some((nodes, None))
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Bool(bool),
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Str(s) => !s.is_empty(),
            Val::Bool(b) => *b,
        }
    }
    fn text(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Bool(b) => b.to_string(),
        }
    }
}

fn field(name: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<Val> {
    match lookup(name) {
        Some(v) => Some(Val::Str(v)),
        // A missing key of the `param` map is its zero value, as in Go.
        None if name.starts_with("Param.") && name.matches('.').count() == 1 => {
            Some(Val::Str(String::new()))
        }
        None => None,
    }
}

/// Evaluates one operand or call starting at `toks[*pos]`.
fn eval_operand(
    toks: &[Token],
    pos: &mut usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<Val> {
    let t = toks.get(*pos)?.clone();
    *pos += 1;
    match t {
        Token::Field(f) => field(&f, lookup),
        Token::Str(s) => Some(Val::Str(s)),
        Token::Open => {
            let v = eval_call(toks, pos, lookup)?;
            (toks.get(*pos) == Some(&Token::Close)).then(|| *pos += 1)?;
            Some(v)
        }
        Token::Word(w) if w == "true" || w == "false" => Some(Val::Bool(w == "true")),
        _ => None,
    }
}

/// A call (`not X`, `and X Y...`, `eq X Y`) or a single operand, up to `)` or the end.
fn eval_call(
    toks: &[Token],
    pos: &mut usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<Val> {
    let Some(Token::Word(func)) = toks.get(*pos).cloned() else {
        return eval_operand(toks, pos, lookup);
    };
    if func == "true" || func == "false" {
        return eval_operand(toks, pos, lookup);
    }
    *pos += 1;
    let mut args = Vec::new();
    while *pos < toks.len() && toks[*pos] != Token::Close {
        args.push(eval_operand(toks, pos, lookup)?);
    }
    match (func.as_str(), args.as_slice()) {
        ("not", [a]) => Some(Val::Bool(!a.truthy())),
        ("and", [_, ..]) => Some(
            args.iter()
                .find(|a| !a.truthy())
                .unwrap_or(&args[args.len() - 1])
                .clone(),
        ),
        ("or", [_, ..]) => Some(
            args.iter()
                .find(|a| a.truthy())
                .unwrap_or(&args[args.len() - 1])
                .clone(),
        ),
        ("eq", [a, rest @ ..]) if !rest.is_empty() => Some(Val::Bool(rest.contains(a))),
        ("ne", [a, b]) => Some(Val::Bool(a != b)),
        _ => None,
    }
}

fn eval(toks: &[Token], lookup: &dyn Fn(&str) -> Option<String>) -> Option<Val> {
    let mut pos = 0;
    let v = eval_call(toks, &mut pos, lookup)?;
    (pos == toks.len()).then_some(v)
}

fn emit(nodes: &[Node], lookup: &dyn Fn(&str) -> Option<String>, out: &mut String) -> Option<()> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Output(toks) => out.push_str(&eval(toks, lookup)?.text()),
            Node::If(cond, then, otherwise) => {
                let branch = if eval(cond, lookup)?.truthy() {
                    then
                } else {
                    otherwise
                };
                emit(branch, lookup, out)?;
            }
        }
    }
    Some(())
}

/// Nesting limit for `if` blocks and parentheses: the parser and evaluator recurse.
const MAX_NESTING: usize = 64;

fn nesting_ok(parts: &[(bool, String)]) -> bool {
    let mut depth = 0usize;
    for (is_action, s) in parts {
        if !is_action {
            continue;
        }
        let mut parens = 0usize;
        for c in s.chars() {
            match c {
                '(' => parens += 1,
                ')' => parens = parens.saturating_sub(1),
                _ => {}
            }
            if parens > MAX_NESTING {
                return false;
            }
        }
        if s == "end" {
            depth = depth.saturating_sub(1);
        } else if s.starts_with("if ") || s.starts_with("if(") {
            depth += 1;
            if depth > MAX_NESTING {
                return false;
            }
        }
    }
    true
}

fn render(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let parts = lex(text)?;
    if !nesting_ok(&parts) {
        return None;
    }
    let mut pos = 0;
    let (nodes, term) = parse_nodes(&parts, &mut pos)?;
    if term.is_some() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    emit(&nodes, lookup, &mut out)?;
    Some(out)
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
    fn unsupported_constructs_fall_back_to_plain_replacement() {
        assert_eq!(
            expand("{{range .X}}{{.User}}{{end}}", &lookup),
            "{{range .X}}alice{{end}}"
        );
        assert_eq!(
            expand("{{.User | printf}} {{.User}}", &lookup),
            "{{.User | printf}} alice"
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
}
