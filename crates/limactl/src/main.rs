//! `limactl` — layer 8: the command-line interface. Each subcommand lives in its own module
//! under `cmd/`; internal drivers are chosen by cargo features (`driver-<name>`).

mod cmd;
mod colorout;
mod drivers;
mod logfmt;
mod plugin;

use std::ffi::OsString;
use std::io::IsTerminal;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "limactl", version = version_string(), about = "Lima: Linux virtual machines")]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The root command's flags, accepted before or after the subcommand (upstream's persistent
/// flags).
#[derive(Args, Debug, Default)]
pub struct GlobalArgs {
    /// Debug mode.
    #[arg(long, global = true)]
    debug: bool,
    /// Set the logging level [trace, debug, info, warn, error].
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Set the logging format [text, json].
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    log_format: String,
    /// Enable TUI interactions such as asking questions. Defaults to true when stdout is a
    /// terminal. Set to false for automation.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    tty: Option<bool>,
    /// Alias of --tty=false.
    #[arg(long, short = 'y', global = true)]
    yes: bool,
}

impl GlobalArgs {
    /// `--debug` (copy's `--verbose` follows it, as upstream's).
    pub fn debug(&self) -> bool {
        self.debug
    }

    /// Whether to ask questions: `--tty`, `--yes`, else whether stdout is a terminal.
    pub fn tty(&self) -> anyhow::Result<bool> {
        match (self.tty, self.yes) {
            (Some(_), true) => {
                anyhow::bail!("cannot use both --tty and --yes flags at the same time")
            }
            (Some(t), false) => Ok(t),
            (None, true) => Ok(false),
            (None, false) => Ok(std::io::stdout().is_terminal()),
        }
    }

    /// Sets up logging as `--debug`, `--log-level` (which wins) and `--log-format` say.
    /// `LIMA_LOG` (a tracing filter) overrides the level for developers.
    fn init_logging(&self) -> anyhow::Result<logfmt::Format> {
        let format = logfmt::Format::parse(&self.log_format)?;
        let mut level = if self.debug {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        };
        if let Some(l) = &self.log_level {
            level = logfmt::parse_level(l)?;
        }
        let filter = tracing_subscriber::EnvFilter::try_from_env("LIMA_LOG")
            .unwrap_or_else(|_| level.as_str().to_ascii_lowercase().into());
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .event_format(logfmt::Logrus {
                format,
                terminal: std::io::stderr().is_terminal(),
                start: std::time::Instant::now(),
            })
            .init();
        Ok(format)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Work with templates: list, validate, copy.
    #[command(subcommand)]
    Template(cmd::template::TemplateCmd),
    /// List instances.
    #[command(alias = "ls")]
    List(cmd::list::ListArgs),
    /// Stop instances.
    Stop(cmd::stop::StopArgs),
    /// Delete instances.
    #[command(alias = "rm", alias = "remove")]
    Delete(cmd::delete::DeleteArgs),
    /// Execute shell in Lima.
    Shell(cmd::shell::ShellArgs),
    /// Create an instance.
    Create(cmd::create::CreateArgs),
    /// Start an instance (creating it first if given a config).
    Start(cmd::start::StartArgs),
    /// Edit an instance of Lima or a template (the edit flags, or a text editor).
    Edit(cmd::edit::EditArgs),
    /// Clone an instance of Lima (not to be confused with `limactl copy`).
    Clone(cmd::clone::CloneArgs),
    /// Rename an instance of Lima.
    Rename(cmd::clone::CloneArgs),
    /// Factory reset an instance of Lima.
    FactoryReset(cmd::factory_reset::FactoryResetArgs),
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
    /// Copy files between host and guest (prefix guest paths with `INSTANCE:`).
    #[command(
        alias = "cp",
        long_about = cmd::copy::LONG_ABOUT,
        after_help = cmd::copy::EXAMPLES,
        override_usage = "limactl copy [OPTIONS] SOURCE ... TARGET"
    )]
    Copy(cmd::copy::CopyArgs),
    /// Create a tunnel for Lima (a SOCKS proxy into the guest network; experimental).
    Tunnel(cmd::tunnel::TunnelArgs),
    /// Show the SSH command line (DEPRECATED; use `ssh -F` instead).
    ShowSsh(cmd::show_ssh::ShowSshArgs),
    /// Generate the autocompletion script for the specified shell.
    Completion(cmd::completion::CompletionArgs),
    /// Restart a running instance.
    Restart(cmd::restart::RestartArgs),
    /// Protect an instance to prohibit accidental removal.
    Protect(cmd::protect::ProtectArgs),
    /// Unprotect an instance.
    Unprotect(cmd::protect::ProtectArgs),
    /// Generate the content of the /etc/sudoers.d/lima file (macOS only).
    Sudoers(cmd::sudoers::SudoersArgs),
    /// Manage automatic startup of Lima instances.
    #[command(subcommand)]
    Autostart(cmd::autostart::AutostartCmd),
    /// Register/Unregister an autostart file for the instance (deprecated: use autostart).
    StartAtLogin(cmd::autostart::StartAtLoginArgs),
    /// Manage instance snapshots.
    #[command(subcommand)]
    Snapshot(cmd::snapshot::SnapshotCmd),
    /// Watch events from instances.
    Watch(cmd::watch::WatchArgs),
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
    let args: Vec<OsString> = std::env::args_os().collect();
    let plugin_dirs = osutil::plugins::dirs();
    let plugins = osutil::plugins::discover(&plugin_dirs);
    let mut command = Cli::command();
    let builtin: Vec<String> = command
        .get_subcommands()
        .flat_map(|c| std::iter::once(c.get_name()).chain(c.get_all_aliases()))
        .map(str::to_string)
        .collect();
    if let Some((at, plugin)) = plugin::invocation(&args, &builtin, &plugins) {
        // Global flags before the plug-in's name are ours; everything after it is its own.
        let globals = GlobalArgs::from_arg_matches(&exit_on_clap_error(
            GlobalArgs::augment_args(clap::Command::new("limactl"))
                .no_binary_name(true)
                .try_get_matches_from(&args[1..at]),
        ))
        .unwrap_or_default();
        let code = globals
            .init_logging()
            .and_then(|_| plugin::run(plugin, &args[at + 1..], &plugin_dirs));
        finish(code, logfmt::Format::Text);
    }
    if let Some(text) = plugin::help_section(&plugins) {
        command = command.after_help(text);
    }
    let matches = exit_on_clap_error(command.try_get_matches_from(&args));
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => exit_on_clap_error(Err(e)),
    };
    let format = match cli.global.init_logging() {
        Ok(f) => f,
        Err(e) => finish(Err(e), logfmt::Format::Text),
    };
    let global = &cli.global;
    let result = match cli.cmd {
        Cmd::Template(c) => cmd::template::run(c),
        Cmd::List(a) => cmd::list::run(a),
        Cmd::Stop(a) => cmd::stop::run(a),
        Cmd::Delete(a) => cmd::delete::run(a),
        Cmd::Create(a) => cmd::create::run(a),
        Cmd::Start(a) => cmd::start::run(a),
        Cmd::Edit(a) => global.tty().and_then(|tty| cmd::edit::run(a, tty)),
        Cmd::Clone(a) => global.tty().and_then(|tty| cmd::clone::run(a, false, tty)),
        Cmd::Rename(a) => global.tty().and_then(|tty| cmd::clone::run(a, true, tty)),
        Cmd::FactoryReset(a) => cmd::factory_reset::run(a),
        Cmd::Prune(a) => cmd::prune::run(a),
        Cmd::Disk(c) => cmd::disk::run(c),
        Cmd::Hostagent(a) => cmd::hostagent::run(a),
        Cmd::Info(a) => cmd::info::run(a),
        Cmd::Validate { fill, locators } => {
            cmd::template::validate(&limaload::LoadOptions::detect(), &locators, fill)
        }
        Cmd::ShowSsh(a) => cmd::show_ssh::run(a),
        Cmd::Completion(a) => cmd::completion::run(a),
        Cmd::Restart(a) => cmd::restart::run(a),
        Cmd::Protect(a) => cmd::protect::protect(a),
        Cmd::Unprotect(a) => cmd::protect::unprotect(a),
        Cmd::Sudoers(a) => cmd::sudoers::run(a),
        Cmd::Autostart(c) => cmd::autostart::run(c),
        Cmd::StartAtLogin(a) => cmd::autostart::start_at_login(a),
        Cmd::Watch(a) => cmd::watch::run(a),
        Cmd::Snapshot(c) => cmd::snapshot::run(c),
        Cmd::Shell(a) => finish(cmd::shell::run(a, global), format),
        Cmd::Copy(a) => finish(cmd::copy::run(a, global), format),
        Cmd::Tunnel(a) => finish(cmd::tunnel::run(a), format),
    };
    finish(result.map(|()| 0), format);
}

/// Exits with the command's code, or 1 after printing its error as upstream's logrus does:
/// a `level=fatal` record (`FATA[0000] ...` on a terminal, a JSON record with
/// `--log-format json`).
fn finish(result: anyhow::Result<i32>, format: logfmt::Format) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = error_chain(&e);
            let rec = logfmt::Record {
                level: "fatal",
                msg: &msg,
                fields: &[],
            };
            let logrus = logfmt::Logrus {
                format,
                terminal: std::io::stderr().is_terminal(),
                start: std::time::Instant::now(),
            };
            eprint!("{}", logrus.render(&rec));
            std::process::exit(1);
        }
    }
}

/// A usage error exits 1 as upstream's (clap's own is 2); help and version exit 0.
fn exit_on_clap_error<T>(r: Result<T, clap::Error>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            let _ = e.print();
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 1,
            };
            std::process::exit(code);
        }
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

    /// Every subcommand's flags agree with the global ones (no second `--tty` or `-y`).
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

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
