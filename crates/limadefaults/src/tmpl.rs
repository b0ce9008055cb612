//! The small part of Go's text/template that Lima configs use: `{{.Name}}`, `{{ .Home }}`,
//! `{{.Param.KEY}}`. Anything else (pipelines, `if`, functions) is left as written, because
//! guessing at Go template semantics would silently produce wrong paths.

/// Replaces each `{{.Var}}` / `{{.Param.Key}}` that `lookup` knows; leaves the rest untouched.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
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
}
