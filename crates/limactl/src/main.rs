//! `limactl` — layer 8: the command-line interface. Each subcommand lives in its own module
//! under `cmd/`; internal drivers are chosen by cargo features (`driver-<name>`).

mod cmd;
mod drivers;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "limactl", version = version_string(), about = "Lima: Linux virtual machines")]
pub struct Cli {
    /// Debug logging.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Work with templates: list, validate, copy.
    #[command(subcommand)]
    Template(cmd::template::TemplateCmd),
    /// List instances.
    #[command(alias = "ls")]
    List(cmd::list::ListArgs),
    /// Stop an instance.
    Stop(cmd::stop::StopArgs),
    /// Delete instances.
    #[command(alias = "rm", alias = "remove")]
    Delete(cmd::delete::DeleteArgs),
    /// Run a shell or a command in an instance.
    Shell(cmd::shell::ShellArgs),
    /// Create an instance.
    Create(cmd::create::CreateArgs),
    /// Start an instance (creating it first if given a config).
    Start(cmd::start::StartArgs),
    /// Edit a stopped instance's config with the edit flags and --set EXPR.
    Edit(cmd::edit::EditArgs),
    /// Show information about limactl, its host and its drivers (JSON).
    Info(cmd::info::InfoArgs),
    /// Empty the download cache.
    Prune(cmd::prune::PruneArgs),
    /// Lima disk management: create, list, delete, unlock and resize additional disks.
    #[command(subcommand)]
    Disk(cmd::disk::DiskCmd),
    /// Validate YAML files (same as `template validate`).
    Validate {
        /// Print the filled config of each valid file.
        #[arg(long)]
        fill: bool,
        /// Path, `-`, file:// or http(s):// URL, or template:NAME.
        #[arg(required = true, value_name = "FILE.yaml")]
        locators: Vec<String>,
    },
    /// Show the SSH command line (DEPRECATED; use `ssh -F` instead).
    ShowSsh(cmd::show_ssh::ShowSshArgs),
    /// Generate the autocompletion script for the specified shell.
    Completion(cmd::completion::CompletionArgs),
    /// Run the host agent of an instance (started by `limactl start`).
    #[command(hide = true)]
    Hostagent(cmd::hostagent::HostagentArgs),
}

fn version_string() -> &'static str {
    // Kept equal to limatype::LIMA_COMPAT_VERSION (a test checks).
    concat!(env!("CARGO_PKG_VERSION"), " (compatible with Lima 2.2.0)")
}

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(args) = cmd::yq::yq_args(&argv) {
        std::process::exit(cmd::yq::main(args));
    }
    let cli = Cli::parse();
    let filter = if cli.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LIMA_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.cmd {
        Cmd::Template(c) => cmd::template::run(c),
        Cmd::List(a) => cmd::list::run(a),
        Cmd::Stop(a) => cmd::stop::run(a),
        Cmd::Delete(a) => cmd::delete::run(a),
        Cmd::Create(a) => cmd::create::run(a),
        Cmd::Start(a) => cmd::start::run(a),
        Cmd::Edit(a) => cmd::edit::run(a),
        Cmd::Prune(a) => cmd::prune::run(a),
        Cmd::Disk(c) => cmd::disk::run(c),
        Cmd::Hostagent(a) => cmd::hostagent::run(a),
        Cmd::Info(a) => cmd::info::run(a),
        Cmd::Validate { fill, locators } => {
            cmd::template::validate(&limaload::LoadOptions::detect(), &locators, fill)
        }
        Cmd::ShowSsh(a) => cmd::show_ssh::run(a),
        Cmd::Completion(a) => cmd::completion::run(a),
        Cmd::Shell(a) => cmd::shell::run(a).map(|code| std::process::exit(code)),
    };
    if let Err(e) = result {
        eprintln!("error: {}", error_chain(&e));
        std::process::exit(1);
    }
}

/// `message: cause: cause`, as `{:#}` prints an error, but each text once: many errors'
/// messages already include their source (`{path}: {source}` with a `#[source]`), which the
/// chain would print again (`File exists (os error 17): File exists (os error 17)`). A cause
/// whose text is already printed is left out; contexts around it stay.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    /// An error whose message includes its source, as thiserror's `"{path}: {source}"`.
    #[derive(Debug)]
    struct WithSource {
        path: &'static str,
        source: std::io::Error,
    }

    impl std::fmt::Display for WithSource {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for WithSource {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = || std::io::Error::from_raw_os_error(17);
        let e = anyhow::Error::new(WithSource {
            path: "/h/x",
            source: io(),
        });
        assert_eq!(format!("{e:#}").matches("os error 17").count(), 2);
        assert_eq!(error_chain(&e), format!("/h/x: {}", io()));
        // Contexts stay; a cause not yet printed is added.
        let e = anyhow::Error::new(io()).context("creating x");
        assert_eq!(error_chain(&e), format!("creating x: {}", io()));
        let e = anyhow::Error::new(WithSource {
            path: "/h/x",
            source: io(),
        })
        .context("instance x");
        assert_eq!(error_chain(&e), format!("instance x: /h/x: {}", io()));
    }
}
