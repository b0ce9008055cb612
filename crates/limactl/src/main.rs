//! `limactl` — layer 8: the command-line interface. Each subcommand lives in its own module
//! under `cmd/`; internal drivers are chosen by cargo features (`driver-<name>`).

mod cmd;
mod drivers;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "limactl", version = version_string(), about = "Lima: Linux virtual machines")]
struct Cli {
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
    /// Show information about limactl, its host and its drivers (JSON).
    Info(cmd::info::InfoArgs),
    /// Empty the download cache.
    Prune(cmd::prune::PruneArgs),
    /// Run the host agent of an instance (started by `limactl start`).
    #[command(hide = true)]
    Hostagent(cmd::hostagent::HostagentArgs),
}

fn version_string() -> &'static str {
    // Kept equal to limatype::LIMA_COMPAT_VERSION (a test checks).
    concat!(env!("CARGO_PKG_VERSION"), " (compatible with Lima 2.2.0)")
}

fn main() {
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
        Cmd::Prune(a) => cmd::prune::run(a),
        Cmd::Hostagent(a) => cmd::hostagent::run(a),
        Cmd::Info(a) => cmd::info::run(a),
        Cmd::Shell(a) => cmd::shell::run(a).map(|code| std::process::exit(code)),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
