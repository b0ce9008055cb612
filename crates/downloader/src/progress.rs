//! Progress output on stderr: a bar (size, speed, ETA) on a terminal, plain start/done lines
//! otherwise (logs, CI).

use std::io::IsTerminal;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// Bar on a terminal, lines otherwise.
    #[default]
    Auto,
    /// Plain lines always.
    Lines,
    /// Nothing.
    Hidden,
}

pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
    what: String,
    started: Instant,
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

impl Progress {
    pub fn start(mode: ProgressMode, what: &str, total: Option<u64>) -> Progress {
        let terminal = mode == ProgressMode::Auto && std::io::stderr().is_terminal();
        let lines = matches!(mode, ProgressMode::Lines | ProgressMode::Auto) && !terminal;
        let bar = terminal.then(|| {
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
            } else {
                "{msg} {spinner} {bytes} {bytes_per_sec}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_message(what.to_string());
            bar
        });
        if lines {
            match total {
                Some(t) => eprintln!("Downloading {what} ({})", human(t)),
                None => eprintln!("Starting {what}"),
            }
        }
        Progress {
            bar,
            lines,
            what: what.to_string(),
            started: Instant::now(),
        }
    }

    pub fn advance(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn finish(&mut self, bytes: u64) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.lines {
            eprintln!(
                "Done {}: {} in {:.1}s",
                self.what,
                human(bytes),
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    pub fn fail(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }
}
