//! `docs/commands.md` lists every upstream command and flag with its status here; this test
//! keeps it true against the real binary's `--help`: a command marked `no` is unknown, every
//! flag listed as here is in the command's help and every flag listed as missing is not, and
//! every command our `--help` lists (subcommands too) has a row.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::LIMACTL;

struct Row {
    status: String,
    here: Vec<String>,
    missing: Vec<String>,
}

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/commands.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The backticked `--flags` of `text`, with the EDIT and CREATE lists expanded.
fn flags(text: &str, lists: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, list) in lists {
        if text
            .split(|c: char| !c.is_ascii_uppercase())
            .any(|w| w == name)
        {
            out.extend(list.iter().cloned());
        }
    }
    out.extend(
        text.split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| t.starts_with("--"))
            .map(str::to_string),
    );
    out
}

fn parse(doc: &str) -> BTreeMap<String, Row> {
    let mut lists = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(rest) = line.strip_prefix("- **") {
            let (name, text) = rest.split_once("**:").expect("- **NAME**: flags");
            lists.insert(name.to_string(), flags(text, &BTreeMap::new()));
            current = Some(name.to_string());
        } else if let (Some(name), true) = (&current, line.starts_with("  ")) {
            let more = flags(line, &BTreeMap::new());
            lists.get_mut(name).unwrap().extend(more);
        } else {
            current = None;
        }
    }
    let mut rows = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `limactl")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert!(cells.len() >= 4, "short row: {line}");
        let command = cells[0].trim_matches('`').to_string();
        let row = Row {
            status: cells[1].to_string(),
            here: flags(cells[2], &lists),
            missing: flags(cells[3], &lists),
        };
        assert!(
            ["yes", "partly", "no"].contains(&row.status.as_str()),
            "status of {command}: {}",
            row.status
        );
        assert!(
            rows.insert(command.clone(), row).is_none(),
            "two rows: {command}"
        );
    }
    assert!(lists.contains_key("EDIT") && lists.contains_key("CREATE"));
    rows
}

/// `limactl WORDS --help`: its text when it exits 0.
fn help(words: &[&str]) -> Option<String> {
    let out = Command::new(LIMACTL)
        .args(words)
        .arg("--help")
        .env("LIMA_HOME", "/nonexistent/lima-home")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The subcommand names a help text lists under `Commands:` (but `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

fn has_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        let next = help[i + flag.len()..].chars().next();
        !matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn commands_doc_matches_the_help_of_the_binary() {
    let rows = parse(&doc());
    assert!(rows.len() > 40, "only {} rows", rows.len());
    let mut problems = Vec::new();
    for (command, row) in &rows {
        let words: Vec<&str> = command.split_whitespace().skip(1).collect();
        let text = help(&words);
        match (&text, row.status.as_str()) {
            (Some(_), "no") => problems.push(format!("{command}: exists but the doc says no")),
            (None, "yes" | "partly") => problems.push(format!(
                "{command}: `--help` fails but the doc says {}",
                row.status
            )),
            _ => {}
        }
        let Some(text) = text else { continue };
        for f in &row.here {
            if !has_flag(&text, f) {
                problems.push(format!(
                    "{command}: {f} is listed as here but not in --help"
                ));
            }
        }
        for f in &row.missing {
            if has_flag(&text, f) {
                problems.push(format!(
                    "{command}: {f} is listed as missing but is in --help"
                ));
            }
        }
        if !row.missing.is_empty() && row.status == "yes" {
            problems.push(format!("{command}: flags missing, so partly, not yes"));
        }
    }
    // Every command we have is in the doc.
    let mut ours = BTreeSet::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(words) = todo.pop() {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let text = help(&w).unwrap_or_else(|| panic!("limactl {w:?} --help failed"));
        for sub in subcommands(&text) {
            let mut next = words.clone();
            next.push(sub);
            todo.push(next);
        }
        if !words.is_empty() {
            ours.insert(format!("limactl {}", words.join(" ")));
        }
    }
    for c in &ours {
        let grouped = rows.keys().any(|r| r.starts_with(&format!("{c} ")));
        if !rows.contains_key(c) && !grouped {
            problems.push(format!("{c}: in `limactl --help` but has no row"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/commands.md is out of date:\n{}",
        problems.join("\n")
    );
}
