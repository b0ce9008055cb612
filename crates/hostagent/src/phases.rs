//! Startup phases and their durations (issue 13): the host agent reports each finished phase
//! as an event (`status.phase`, an extension upstream's readers ignore), `limactl start`
//! times the phases it runs itself (load, image, disk), prints a line per phase and a summary
//! at READY. See docs/speed.md for what each phase covers.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One finished phase: its name and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    /// Wall-clock seconds, to the millisecond.
    pub seconds: f64,
}

impl Phase {
    pub fn new(name: impl Into<String>, took: Duration) -> Self {
        // Milliseconds are enough, and keep the event lines short.
        Self {
            name: name.into(),
            seconds: took.as_millis() as f64 / 1000.0,
        }
    }

    /// The line `limactl start` prints when the phase ends, e.g. `[phase] disk: 0.31s`.
    pub fn line(&self) -> String {
        format!("[phase] {}: {}", self.name, secs(self.seconds))
    }
}

/// Seconds as printed: two decimals under 10 s, one above (`0.02s`, `52.1s`).
pub fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2}s")
    } else {
        format!("{s:.1}s")
    }
}

/// The summary at READY: `phases: load 0.02s, image 0.30s, ..., total 52.1s`. A phase seen
/// twice (a requirement retried under another number) is summed under its first position.
pub fn summary(phases: &[Phase], total: Duration) -> String {
    let mut merged: Vec<Phase> = Vec::new();
    for p in phases {
        match merged.iter_mut().find(|m| m.name == p.name) {
            Some(m) => m.seconds += p.seconds,
            None => merged.push(p.clone()),
        }
    }
    let mut parts: Vec<String> = merged
        .iter()
        .map(|p| format!("{} {}", p.name, secs(p.seconds)))
        .collect();
    parts.push(format!("total {}", secs(total.as_secs_f64())));
    format!("phases: {}", parts.join(", "))
}

/// Times consecutive phases: each [`Clock::lap`] ends the phase begun at the previous lap.
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// The phase `name` ends now; the next one begins.
    pub fn lap(&mut self, name: &str) -> Phase {
        let now = Instant::now();
        let p = Phase::new(name, now - self.0);
        self.0 = now;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_rounded_by_size() {
        assert_eq!(secs(0.0213), "0.02s");
        assert_eq!(secs(9.994), "9.99s");
        assert_eq!(secs(52.14), "52.1s");
        assert_eq!(
            Phase::new("disk", Duration::from_millis(310)).line(),
            "[phase] disk: 0.31s"
        );
    }

    #[test]
    fn summary_keeps_order_merges_repeats_and_ends_with_total() {
        let p = |n: &str, s: f64| Phase {
            name: n.into(),
            seconds: s,
        };
        let s = summary(
            &[
                p("load", 0.02),
                p("ssh", 40.0),
                p("image", 0.3),
                p("ssh", 1.5),
            ],
            Duration::from_secs_f64(52.13),
        );
        assert_eq!(s, "phases: load 0.02s, ssh 41.5s, image 0.30s, total 52.1s");
        assert_eq!(summary(&[], Duration::ZERO), "phases: total 0.00s");
    }

    #[test]
    fn clock_laps_measure_from_the_previous_lap() {
        let mut c = Clock::start();
        std::thread::sleep(Duration::from_millis(20));
        let a = c.lap("a");
        let b = c.lap("b");
        assert!(a.seconds >= 0.02, "{a:?}");
        assert!(b.seconds < a.seconds, "{a:?} {b:?}");
    }
}
