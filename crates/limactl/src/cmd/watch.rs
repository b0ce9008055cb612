//! `limactl watch [--json] [--history] [--verbose] [INSTANCE...]`: the host agents' events
//! (their `ha.stdout.log`) as they are written, one line each, until interrupted; with
//! `--verbose` their logs (`ha.stderr.log`) too. With no instance named, every instance is
//! watched, including ones created meanwhile.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use hostagent::events::{Event, EventTail, LineTail};
use limatype::filenames;

#[derive(Args)]
pub struct WatchArgs {
    /// Instance names (default: all).
    pub names: Vec<String>,
    /// Output events as newline-delimited JSON.
    #[arg(long)]
    pub json: bool,
    /// Include historical events from before watch started.
    #[arg(long)]
    pub history: bool,
    /// Show verbose output (the host agents' logs too).
    #[arg(long)]
    pub verbose: bool,
}

pub fn run(args: WatchArgs) -> Result<()> {
    let watch_all = args.names.is_empty();
    let mut tails: BTreeMap<String, EventTail> = BTreeMap::new();
    let mut logs: BTreeMap<String, LineTail> = BTreeMap::new();
    let names = if watch_all {
        let names = store::instance_names()?;
        if names.is_empty() {
            status("No instances found");
        }
        names
    } else {
        args.names.clone()
    };
    for name in &names {
        if let Some((t, l)) = tail(name, !args.history) {
            tails.insert(name.clone(), t);
            logs.insert(name.clone(), l);
        }
    }
    // Names already handled (watched, or failed to inspect once).
    let mut seen: std::collections::BTreeSet<String> = names.iter().cloned().collect();
    status("Watching for events...");
    loop {
        if watch_all {
            for name in store::instance_names()? {
                if seen.insert(name.clone()) {
                    status(&format!("New instance detected: {name}"));
                    // A new instance's log is read whole: it began after us.
                    if let Some((t, l)) = tail(&name, false) {
                        tails.insert(name.clone(), t);
                        logs.insert(name, l);
                    }
                }
            }
        }
        for (name, t) in tails.iter_mut() {
            for ev in t.poll() {
                if args.json {
                    let line = serde_json::json!({ "instance": name, "event": ev });
                    println!("{line}");
                } else {
                    for l in human_lines(name, &ev) {
                        println!("{l}");
                    }
                }
            }
        }
        if args.verbose {
            for (name, l) in logs.iter_mut() {
                for line in l.poll() {
                    eprintln!("{name} | {line}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The instance's event tail and log tail.
fn tail(name: &str, from_end: bool) -> Option<(EventTail, LineTail)> {
    match instance::ops::inspect(name) {
        Ok(inst) => {
            let dir = Path::new(&inst.dir);
            Some((
                EventTail::new(&dir.join(filenames::HOST_AGENT_STDOUT_LOG), from_end),
                LineTail::new(&dir.join(filenames::HOST_AGENT_STDERR_LOG), from_end),
            ))
        }
        Err(e) => {
            tracing::warn!("Failed to inspect instance {name:?}: {e}");
            None
        }
    }
}

fn status(msg: &str) {
    let now = hostagent::events::rfc3339(std::time::SystemTime::now());
    eprintln!("{} {msg}", date_time(&now));
}

/// `2006-01-02 15:04:05` from an RFC 3339 time.
fn date_time(rfc3339: &str) -> String {
    rfc3339.get(..19).unwrap_or(rfc3339).replacen('T', " ", 1)
}

/// Upstream's `printHumanReadableEvent`: `TIME INSTANCE | what happened`, a line per fact.
fn human_lines(name: &str, ev: &Event) -> Vec<String> {
    let s = &ev.status;
    let mut facts = Vec::new();
    if s.running {
        facts.push(
            if s.degraded {
                "running (degraded)"
            } else {
                "running"
            }
            .to_string(),
        );
    }
    if s.exiting {
        facts.push("exiting".to_string());
    }
    if s.ssh_local_port != 0 {
        facts.push(format!("ssh available on port {}", s.ssh_local_port));
    }
    facts.extend(s.errors.iter().map(|e| format!("error: {e}")));
    if let Some(p) = &s.progress {
        facts.push(p.clone());
    }
    // Ours, not upstream's: a startup phase that ended.
    if let Some(p) = &s.phase {
        facts.push(p.line());
    }
    let time = date_time(&ev.time);
    facts
        .into_iter()
        .map(|f| format!("{time} {name} | {f}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_lines_as_upstream() {
        let ev = Event::parse(
            r#"{"time":"2026-01-02T03:04:05.678Z","status":{"running":true,"sshLocalPort":60022,"errors":["x"]}}"#,
        )
        .unwrap();
        assert_eq!(
            human_lines("a", &ev),
            [
                "2026-01-02 03:04:05 a | running",
                "2026-01-02 03:04:05 a | ssh available on port 60022",
                "2026-01-02 03:04:05 a | error: x",
            ]
        );
    }
}
