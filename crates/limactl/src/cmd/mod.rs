//! One module per `limactl` subcommand: clap arguments and printing over the `instance` flow.

pub mod autostart;
pub mod completion;
pub mod copy;
pub mod create;
pub mod delete;
pub mod disk;
pub mod edit;
pub mod editflags;
pub mod hostagent;
pub mod info;
pub mod list;
pub mod protect;
pub mod prune;
pub mod restart;
pub mod shell;
pub mod show_ssh;
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

/// Prints a progress line of the instance flow to stderr.
pub fn say(line: &str) {
    eprintln!("{line}");
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
