//! One module per `limactl` subcommand: clap arguments and printing over the `instance` flow.

pub mod autostart;
pub mod clone;
pub mod completion;
pub mod copy;
pub mod create;
pub mod delete;
pub mod disk;
pub mod edit;
pub mod editflags;
pub mod factory_reset;
pub mod hostagent;
pub mod info;
pub mod list;
pub mod protect;
pub mod prune;
pub mod restart;
pub mod shell;
pub mod show_ssh;
pub mod snapshot;
pub mod start;
pub mod stop;
pub mod sudoers;
pub mod template;
pub mod tunnel;
pub mod watch;
pub mod yq;

/// A runtime for one command's async work (driver calls, following the host agent).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new()?)
}

/// A progress line of the instance flow: an info record (a warning for `warning: ...`) in
/// logrus form, as upstream prints its progress.
pub fn say(line: &str) {
    match line.strip_prefix("warning: ") {
        Some(w) => tracing::warn!("{w}"),
        None => tracing::info!("{line}"),
    }
}

/// Runs every step, then fails with all their errors (upstream's `errors.Join`: one a line),
/// so that one bad instance does not keep the others from being handled.
pub fn join_errors(results: impl Iterator<Item = anyhow::Result<()>>) -> anyhow::Result<()> {
    let errors: Vec<String> = results
        .filter_map(Result::err)
        .map(|e| crate::error_chain(&e))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(errors.join("\n"))
    }
}

/// Upstream's question after `edit`, `clone` or `rename` without `--start`, and before `shell`
/// on a stopped instance (with `--tty`): asked only when stdin is a terminal (a piped stdin
/// is not read), yes by default.
pub fn ask_whether_to_start() -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("? Do you want to start the instance now? (Y/n) ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(start_answer(&line))
}

/// Yes unless the answer says no.
fn start_answer(line: &str) -> bool {
    !matches!(line.trim().to_ascii_lowercase().as_str(), "n" | "no")
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_answers() {
        for yes in ["", "\n", "y", "Y", "yes\n"] {
            assert!(super::start_answer(yes), "{yes:?}");
        }
        for no in ["n", "N\n", "no", " No "] {
            assert!(!super::start_answer(no), "{no:?}");
        }
    }
}
