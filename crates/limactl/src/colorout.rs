//! Output for a terminal, as upstream pipes it through yq when stdout is a TTY: JSON and YAML
//! coloured (JSON lines of `list` also indented by 4); tables and other text stay plain.

use std::io::IsTerminal;

/// Whether stdout is a terminal (upstream's `uiutil.OutputIsTTY`).
pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// `out` as printed in `format` (`json`: one document per line; `yaml`; anything else is
/// returned unchanged), made ready for a terminal.
pub fn for_terminal(out: &str, format: &str) -> String {
    match format {
        "json" => out
            .split_inclusive('\n')
            .map(|line| match limayq::reindent_json(line, 4) {
                // A bare string result (yq prints it unquoted) has no JSON to colour.
                Some(pretty) => limayq::colorize_json(&pretty),
                None => line.to_string(),
            })
            .collect(),
        "yaml" => limayq::colorize_yaml(out),
        _ => out.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::for_terminal;

    #[test]
    fn json_lines_are_indented_and_coloured_tables_are_not() {
        let out = "{\"name\":\"a\",\"cpus\":2}\nplain\n";
        let got = for_terminal(out, "json");
        assert!(
            got.starts_with("{\n    \x1b[36m\"name\"\x1b[0m: \x1b[32m\"a\"\x1b[0m,\n"),
            "{got:?}"
        );
        assert!(got.ends_with("}\nplain\n"), "{got:?}");
        let table = "NAME    STATUS\ndefault Stopped\n";
        assert_eq!(for_terminal(table, "table"), table);
        assert!(for_terminal("name: a\n", "yaml").contains("\x1b[36mname\x1b[0m"));
    }
}
