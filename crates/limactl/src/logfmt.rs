//! Log lines as upstream Lima's logrus writes them, so that wrappers parsing limactl's stderr
//! keep working: `time="..." level=warning msg="..." key=value` when stderr is not a terminal,
//! `WARN[0000] message` on a terminal, one JSON object per line with `--log-format json`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Instant, SystemTime};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => anyhow::bail!("unsupported log-format: `{s}`"),
        }
    }
}

/// A logrus level name (`--log-level`) as a tracing level; fatal and panic have no tracing
/// counterpart and mean error.
pub fn parse_level(s: &str) -> anyhow::Result<Level> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" | "warning" => Level::WARN,
        "error" | "fatal" | "panic" => Level::ERROR,
        _ => anyhow::bail!("not a valid logrus Level: {s:?}"),
    })
}

/// logrus's name of a level (`warning`, not `warn`).
fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warning",
        Level::ERROR => "error",
    }
}

/// One record: level, message and the other fields in the order they were given.
pub struct Record<'a> {
    pub level: &'a str,
    pub msg: &'a str,
    pub fields: &'a [(String, String)],
}

/// The tracing formatter.
pub struct Logrus {
    pub format: Format,
    /// Colored, with seconds since start instead of a timestamp (logrus on a terminal).
    pub terminal: bool,
    pub start: Instant,
}

impl<S, N> FormatEvent<S, N> for Logrus
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut v = Fields::default();
        event.record(&mut v);
        let rec = Record {
            level: level_name(*event.metadata().level()),
            msg: &v.msg,
            fields: &v.fields,
        };
        writer.write_str(&self.render(&rec))
    }
}

impl Logrus {
    /// The whole line, newline included.
    pub fn render(&self, rec: &Record) -> String {
        let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        match (self.format, self.terminal) {
            (Format::Json, _) => render_json(rec, &time),
            (Format::Text, false) => render_text(rec, &time),
            (Format::Text, true) => render_terminal(rec, self.start.elapsed().as_secs()),
        }
    }
}

/// `time="T" level=L msg=M k=v`, values quoted only when logrus would quote them.
pub fn render_text(rec: &Record, time: &str) -> String {
    let mut out = format!(
        "time={} level={} msg={}",
        quote(time),
        rec.level,
        quote(rec.msg.trim_end_matches('\n'))
    );
    for (k, v) in rec.fields {
        out.push_str(&format!(" {k}={}", quote(v)));
    }
    out.push('\n');
    out
}

/// `{"level":...,"msg":...,"time":...}` with keys sorted, as Go's encoding/json writes a map.
pub fn render_json(rec: &Record, time: &str) -> String {
    let mut m: BTreeMap<&str, &str> = rec
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    m.insert("level", rec.level);
    m.insert("msg", rec.msg);
    m.insert("time", time);
    let mut out = serde_json::to_string(&m).unwrap_or_default();
    out.push('\n');
    out
}

/// `WARN[0003] message` in the level's color, fields after it.
fn render_terminal(rec: &Record, secs: u64) -> String {
    let color = match rec.level {
        "trace" | "debug" => 37,
        "warning" => 33,
        "error" | "fatal" | "panic" => 31,
        _ => 36,
    };
    let tag: String = rec.level.to_ascii_uppercase().chars().take(4).collect();
    let mut out = format!(
        "\x1b[{color}m{tag}\x1b[0m[{secs:04}] {:<44} ",
        rec.msg.trim_end_matches('\n')
    );
    for (k, v) in rec.fields {
        out.push_str(&format!(" \x1b[{color}m{k}\x1b[0m={v}"));
    }
    out.push('\n');
    out
}

/// logrus's `needsQuoting`: anything but letters, digits and `-._/@^+` is quoted.
fn quote(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

#[derive(Default)]
struct Fields {
    msg: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.msg = value;
        } else {
            self.fields.push((field.name().to_string(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-01-02T03:04:05Z";

    #[test]
    fn text_lines_as_logrus() {
        let rec = Record {
            level: "warning",
            msg: "instance \"a\" is stopped",
            fields: &[("error".into(), "x y".into()), ("n".into(), "3".into())],
        };
        assert_eq!(
            render_text(&rec, T),
            "time=\"2026-01-02T03:04:05Z\" level=warning msg=\"instance \\\"a\\\" is stopped\" error=\"x y\" n=3\n"
        );
        let rec = Record {
            level: "info",
            msg: "Protected",
            fields: &[],
        };
        assert_eq!(
            render_text(&rec, T),
            "time=\"2026-01-02T03:04:05Z\" level=info msg=Protected\n"
        );
    }

    #[test]
    fn json_keys_sorted() {
        let rec = Record {
            level: "error",
            msg: "boom",
            fields: &[("error".into(), "e".into())],
        };
        assert_eq!(
            render_json(&rec, T),
            "{\"error\":\"e\",\"level\":\"error\",\"msg\":\"boom\",\"time\":\"2026-01-02T03:04:05Z\"}\n"
        );
    }

    #[test]
    fn terminal_line() {
        let rec = Record {
            level: "warning",
            msg: "hi",
            fields: &[],
        };
        assert_eq!(
            render_terminal(&rec, 3),
            format!("\x1b[33mWARN\x1b[0m[0003] {:<44} \n", "hi")
        );
    }

    #[test]
    fn levels_and_formats() {
        assert_eq!(parse_level("warning").unwrap(), Level::WARN);
        assert_eq!(parse_level("TRACE").unwrap(), Level::TRACE);
        assert_eq!(
            parse_level("loud").unwrap_err().to_string(),
            "not a valid logrus Level: \"loud\""
        );
        assert_eq!(
            Format::parse("xml").unwrap_err().to_string(),
            "unsupported log-format: `xml`"
        );
    }
}
