//! `lima-guestagent`: Lima's agent inside the guest, for now a debugging tool for port
//! discovery.
//!
//! - `lima-guestagent ports` prints every listening TCP socket and every bound, unconnected
//!   UDP socket (IPv4 and IPv6) as one JSON object a line:
//!   `{"proto":"tcp","family":"ipv4","ip":"127.0.0.1","port":8080,"uid":1000,"inode":4242}`;
//!   dumps the kernel cannot answer and records that did not parse are noted on stderr.
//! - `lima-guestagent ports --watch [--interval-ms N]` prints changes as they are seen, the
//!   same objects with `"event":"added"` or `"event":"removed"`, the first poll's listeners
//!   all as added; it runs until killed, and a failed poll is reported on stderr and retried
//!   (except on a system without sock_diag, where it exits).
//!
//! What it does not do yet: it is not a daemon. It serves nothing to the host agent (no
//! virtio-serial channel, no `gamux` protocol), forwards no port and carries no tunnel; the
//! host does not start it. Those come with the `gamux` crate.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use guestagent::ports::{self, PortsError, Watcher};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "lima-guestagent",
    version,
    about = "Lima's guest agent (inside the VM): port discovery, for debugging"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the listening TCP and bound UDP ports as JSON lines.
    Ports {
        /// Keep polling and print each listener added or removed.
        #[arg(long)]
        watch: bool,
        /// The polling interval of --watch, in milliseconds.
        #[arg(long, value_name = "N", default_value_t = ports::DEFAULT_INTERVAL.as_millis() as u64)]
        interval_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ports { watch: false, .. } => list(),
        Command::Ports {
            watch: true,
            interval_ms,
        } => watch(Duration::from_millis(interval_ms)),
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
