//! One module per `limactl` subcommand: clap arguments and printing over the `instance` flow.

pub mod completion;
pub mod create;
pub mod delete;
pub mod disk;
pub mod edit;
pub mod editflags;
pub mod hostagent;
pub mod info;
pub mod list;
pub mod prune;
pub mod shell;
pub mod show_ssh;
pub mod start;
pub mod stop;
pub mod template;
pub mod yq;

/// A runtime for one command's async work (driver calls, following the host agent).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new()?)
}

/// Prints a progress line of the instance flow to stderr.
pub fn say(line: &str) {
    eprintln!("{line}");
}
