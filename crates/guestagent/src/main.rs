//! `lima-guestagent`: Lima's agent inside the guest.
//!
//! - `lima-guestagent daemon [--device PATH | --connect-unix PATH]` serves the host agent
//!   over the virtio-serial port (default `/dev/virtio-ports/io.lima-vm.guest_agent.0`) or a
//!   unix socket: it announces the listening ports and connects the host's TCP streams (see
//!   `guestagent::daemon` and `guestagent::proto`). It runs until killed, opening the channel
//!   again a second after it ends; logs go to stderr (`RUST_LOG` sets the level, default
//!   `info`). systemd starts it as `lima-guestagent.service` (cidata's `boot.sh`).
//! - `lima-guestagent ports` prints every listening TCP socket and every bound, unconnected
//!   UDP socket (IPv4 and IPv6) as one JSON object a line:
//!   `{"proto":"tcp","family":"ipv4","ip":"127.0.0.1","port":8080,"uid":1000,"inode":4242}`;
//!   dumps the kernel cannot answer and records that did not parse are noted on stderr.
//! - `lima-guestagent ports --watch [--interval-ms N]` prints changes as they are seen, the
//!   same objects with `"event":"added"` or `"event":"removed"`, the first poll's listeners
//!   all as added; it runs until killed, and a failed poll is reported on stderr and retried
//!   (except on a system without sock_diag, where it exits).
//!
//! - `lima-guestagent yq --format F --from-file EXPR_FILE PATH` prints PATH's new text after
//!   the expression (run on `null` when PATH does not exist): the `yq` provisioning step,
//!   which cidata's `boot.sh` runs from the seed and installs with the step's owner and mode.
//!
//! Not done yet: UDP forwarding (the daemon rejects udp opens and drops datagrams).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use guestagent::daemon;
use guestagent::ports::{self, PortsError, Watcher};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "lima-guestagent",
    version,
    about = "Lima's guest agent (inside the VM): serves the host agent, lists ports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the host agent over the virtio-serial port (or a unix socket) until killed.
    Daemon {
        /// The virtio-serial port to open.
        #[arg(long, value_name = "PATH", default_value = daemon::DEFAULT_DEVICE)]
        device: PathBuf,
        /// Connect to this unix socket instead of opening the device (tests, debugging).
        #[arg(long, value_name = "PATH", conflicts_with = "device")]
        connect_unix: Option<PathBuf>,
        /// Wait this long before opening the channel again after it ended, in milliseconds.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        retry_ms: u64,
        /// The port polling interval, in milliseconds.
        #[arg(long, value_name = "N", default_value_t = ports::DEFAULT_INTERVAL.as_millis() as u64)]
        interval_ms: u64,
    },
    /// Print the listening TCP and bound UDP ports as JSON lines.
    Ports {
        /// Keep polling and print each listener added or removed.
        #[arg(long)]
        watch: bool,
        /// The polling interval of --watch, in milliseconds.
        #[arg(long, value_name = "N", default_value_t = ports::DEFAULT_INTERVAL.as_millis() as u64)]
        interval_ms: u64,
    },
    /// Print a file's new text after a yq expression (a `yq` provisioning step).
    Yq {
        /// auto (from the file's extension), yaml or json.
        #[arg(long, default_value = "auto")]
        format: String,
        /// The file holding the expression.
        #[arg(long, value_name = "EXPR_FILE")]
        from_file: PathBuf,
        /// The file to edit (read only: the new text goes to stdout).
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Daemon {
            device,
            connect_unix,
            retry_ms,
            interval_ms,
        } => {
            let endpoint = match connect_unix {
                Some(p) => daemon::Endpoint::Unix(p),
                None => daemon::Endpoint::Device(device),
            };
            run_daemon(
                endpoint,
                Duration::from_millis(retry_ms),
                Duration::from_millis(interval_ms),
            )
        }
        Command::Ports { watch: false, .. } => list(),
        Command::Ports {
            watch: true,
            interval_ms,
        } => watch(Duration::from_millis(interval_ms)),
        Command::Yq {
            format,
            from_file,
            path,
        } => yq(&format, &from_file, &path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::StdoutClosed) => ExitCode::SUCCESS,
        Err(Failure::Message(msg)) => {
            eprintln!("lima-guestagent: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command stopped: stdout went away (a closed pipe ends the output quietly), or an error
/// to report.
enum Failure {
    StdoutClosed,
    Message(String),
}

/// One JSON line on stdout.
fn print_line(value: &impl Serialize) -> Result<(), Failure> {
    let line = serde_json::to_string(value).map_err(|e| Failure::Message(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|_| Failure::StdoutClosed)
}

/// The `yq` step: the edit is printed, never written here, so a failed expression leaves
/// the file as it was.
fn yq(format: &str, expr_file: &std::path::Path, path: &std::path::Path) -> Result<(), Failure> {
    let fail = |what: String| Failure::Message(what);
    let expr = std::fs::read_to_string(expr_file)
        .map_err(|e| fail(format!("reading {}: {e}", expr_file.display())))?;
    let format = limayq::provision::file_format(format, &path.to_string_lossy())
        .map_err(|e| fail(e.to_string()))?;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(fail(format!("reading {}: {e}", path.display()))),
    };
    let out = limayq::provision::apply(existing.as_deref(), expr.trim_end(), format)
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        // Not StdoutClosed: a cut-short edit must fail, or boot.sh would install it.
        .map_err(|e| fail(format!("writing the new text of {}: {e}", path.display())))
}

fn list() -> Result<(), Failure> {
    let snap = ports::snapshot().map_err(|e| Failure::Message(e.to_string()))?;
    for query in &snap.unsupported {
        eprintln!("lima-guestagent: the kernel cannot list {query} sockets (no sock_diag handler)");
    }
    if snap.skipped > 0 {
        eprintln!(
            "lima-guestagent: skipped {} socket records that did not parse",
            snap.skipped
        );
    }
    for listener in &snap.listeners {
        print_line(listener)?;
    }
    Ok(())
}

fn watch(period: Duration) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Message(format!("starting the tokio runtime: {e}")))?;
    runtime.block_on(async {
        let mut watcher = Watcher::with_interval(period);
        loop {
            match watcher.next().await {
                Ok(event) => print_line(&event)?,
                Err(e @ PortsError::Unsupported { .. }) => {
                    return Err(Failure::Message(e.to_string()))
                }
                Err(e) => eprintln!("lima-guestagent: {e}"),
            }
        }
    })
}

fn run_daemon(
    endpoint: daemon::Endpoint,
    retry: Duration,
    period: Duration,
) -> Result<(), Failure> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // One thread: in an emulated guest, waking another thread costs more than it saves.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Message(format!("starting the tokio runtime: {e}")))?;
    runtime.block_on(async {
        tracing::info!(
            "lima-guestagent {} (control protocol {}) serving the host agent over {endpoint}",
            env!("CARGO_PKG_VERSION"),
            guestagent::proto::VERSION
        );
        let options = daemon::Options {
            retry_delay: retry,
            ..daemon::Options::default()
        };
        let mut watcher = Watcher::with_interval(period);
        daemon::run(&endpoint, &mut watcher, &options).await
    })
}
