//! Host agent events: one JSON object per line, appended to `ha.stdout.log` and sent to
//! `ha.sock` subscribers. `limactl start` follows them until the instance is running or failed.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// All essential requirements are satisfied: the guest is usable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub running: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub degraded: bool,
    /// The host agent is shutting down (after `exiting`, it exits).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exiting: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ssh_local_port: u16,
    /// A readable step of the startup ("Waiting for the essential requirement 1 of 2: ssh").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// The guest's cloud-init output, for `limactl start --progress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init_progress: Option<CloudInitProgress>,
    /// A startup phase that just ended, with its duration (not in upstream's events: its
    /// readers ignore unknown fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<crate::phases::Phase>,
}

/// One step of cloud-init in the guest, as upstream's event field `cloudInitProgress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudInitProgress {
    /// A line of the guest's cloud-init output (or why the monitoring ended).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_line: String,
    /// Cloud-init has finished (or the monitoring gave up).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub completed: bool,
    /// The monitoring is under way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub active: bool,
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC.
    pub time: String,
    pub status: Status,
}

impl Event {
    pub fn now(status: Status) -> Self {
        Self {
            time: rfc3339(SystemTime::now()),
            status,
        }
    }

    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("events serialize");
        s.push('\n');
        s
    }

    /// Parses a line of `ha.stdout.log`; other lines (if any) are not events.
    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str(line.trim()).ok()
    }
}

/// Formats a time as `2006-01-02T15:04:05.000Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Reads all events in a log written by a host agent, skipping other lines.
pub fn read_events(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(Event::parse)
        .collect()
}

/// Follows a host agent's event log: each [`EventTail::poll`] returns the events appended
/// since the last one (`limactl watch`). A log that shrank (a new host agent) is read again
/// from its start.
pub struct EventTail(LineTail);

impl EventTail {
    /// From the start of the log (`from_end`: only events written from now on).
    pub fn new(path: &Path, from_end: bool) -> Self {
        Self(LineTail::new(path, from_end))
    }

    pub fn poll(&mut self) -> Vec<Event> {
        self.0
            .poll()
            .iter()
            .filter_map(|l| Event::parse(l))
            .collect()
    }
}

/// The complete lines appended to a file since the last poll (a truncated file is read from
/// its start again); `ha.stderr.log` for `limactl watch --verbose`.
pub struct LineTail {
    path: std::path::PathBuf,
    offset: u64,
    partial: String,
}

impl LineTail {
    /// From the start of the file (`from_end`: only lines written from now on).
    pub fn new(path: &Path, from_end: bool) -> Self {
        let offset = if from_end {
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        } else {
            0
        };
        Self {
            path: path.to_path_buf(),
            offset,
            partial: String::new(),
        }
    }

    pub fn poll(&mut self) -> Vec<String> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        // A line still being written stays for the next poll.
        let complete = match self.partial.rfind('\n') {
            Some(i) => self.partial.drain(..=i).collect::<String>(),
            None => return Vec::new(),
        };
        complete.lines().map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_complete_new_lines_and_restarts_on_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ha.stdout.log");
        let line = |port: u16| {
            let mut ev = Event::now(Status::default());
            ev.status.ssh_local_port = port;
            ev.to_line()
        };
        std::fs::write(&log, line(1)).unwrap();
        let mut from_end = EventTail::new(&log, true);
        let mut all = EventTail::new(&log, false);
        assert_eq!(all.poll().len(), 1);
        assert!(from_end.poll().is_empty());
        let two = line(2);
        let (head, rest) = two.split_at(10);
        let append = |s: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        append(head);
        assert!(all.poll().is_empty());
        append(rest);
        assert_eq!(all.poll()[0].status.ssh_local_port, 2);
        assert_eq!(from_end.poll()[0].status.ssh_local_port, 2);
        // A new host agent starts a new log.
        std::fs::write(&log, line(3)).unwrap();
        assert_eq!(all.poll()[0].status.ssh_local_port, 3);
    }

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_199_123); // 2024-02-29T23:59:59.123Z
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.123Z");
    }

    #[test]
    fn event_round_trip_and_lima_field_names() {
        let e = Event::now(Status {
            running: true,
            ssh_local_port: 40022,
            ..Default::default()
        });
        let line = e.to_line();
        assert!(line.contains("\"running\":true") && line.contains("\"sshLocalPort\":40022"));
        assert!(!line.contains("exiting"), "false flags are omitted: {line}");
        assert_eq!(Event::parse(&line), Some(e));
        assert_eq!(Event::parse("time=... level=info msg=x"), None);
    }

    #[test]
    fn phases_are_an_optional_extension() {
        let e = Event::now(Status {
            phase: Some(crate::phases::Phase::new(
                "ssh",
                Duration::from_millis(1500),
            )),
            ..Default::default()
        });
        let line = e.to_line();
        assert!(
            line.contains("\"phase\":{\"name\":\"ssh\",\"seconds\":1.5}"),
            "{line}"
        );
        assert_eq!(Event::parse(&line), Some(e));
        // Upstream's events have no phase.
        let up = Event::parse(r#"{"time":"2024-01-01T00:00:00Z","status":{"running":true}}"#);
        assert_eq!(up.map(|e| e.status.phase), Some(None));
    }
}
