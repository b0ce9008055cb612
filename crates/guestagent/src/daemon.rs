//! `lima-guestagent daemon`: serves the host agent over one byte channel with `gamux`
//! ([`gamux::Role::Guest`]).
//!
//! - **Ports**: on every new host session ([`gamux::Mux::watch_session`] reports a new
//!   generation: the first Hello, and each time the host agent reconnects) it polls the
//!   listeners at once and sends the full snapshot ([`Message::Ports`]); then each change its
//!   [`Watcher`] sees as [`Message::Added`] / [`Message::Removed`]. While no host session is
//!   up, changes are only recorded (the next snapshot carries them). See [`crate::proto`].
//! - **Opens**: a `tcp` stream is connected to its address (within [`CONNECT_TIMEOUT`]) and
//!   bytes are copied both ways with half-close ([`tokio::io::copy_bidirectional`]: the
//!   host's CloseWrite shuts down the write side of the TCP connection and the reply still
//!   flows back); a failed connect rejects the open with the error's text. `udp` streams are
//!   rejected and datagrams dropped: UDP forwarding is not done yet.
//! - **Disconnects**: [`serve`] returns when the channel ends (EOF, an I/O error, a write that
//!   made no progress for `gamux`'s write timeout); [`run`] then waits
//!   [`Options::retry_delay`] and opens the channel again with a new [`gamux::Mux`], for ever.
//!   Open connections of the old session are reset by `gamux`. The [`Watcher`] lives across
//!   sessions.
//!
//! Logs go through `tracing` (the binary writes them to stderr, i.e. journald).

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use gamux::{Mux, MuxError, OpenRequest, Proto, Responder, Role};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::ports::{Event, PortsError, Watcher};
use crate::proto::{Message, Port, VERSION};

/// The guest side of qemu's virtio-serial port `io.lima-vm.guest_agent.0`.
pub const DEFAULT_DEVICE: &str = "/dev/virtio-ports/io.lima-vm.guest_agent.0";

/// How long a TCP connect for an open may take before the open is rejected.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The channel as [`run`] needs it: a byte stream both ways.
pub trait Channel: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Channel for T {}

/// Where the host agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A character device (the virtio-serial port), opened non-blocking.
    Device(PathBuf),
    /// A unix socket to connect to (tests, debugging).
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Device(p) => write!(f, "device {}", p.display()),
            Endpoint::Unix(p) => write!(f, "unix socket {}", p.display()),
        }
    }
}

impl Endpoint {
    /// Opens the channel.
    #[cfg(unix)]
    pub async fn open(&self) -> io::Result<Box<dyn Channel>> {
        match self {
            Endpoint::Device(p) => Ok(Box::new(crate::channel::Device::open(p)?)),
            Endpoint::Unix(p) => Ok(Box::new(tokio::net::UnixStream::connect(p).await?)),
        }
    }

    /// Opens the channel (unix only).
    #[cfg(not(unix))]
    pub async fn open(&self) -> io::Result<Box<dyn Channel>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the guest agent's channel needs a unix system",
        ))
    }
}

/// The daemon's tunables.
#[derive(Debug, Clone)]
pub struct Options {
    /// Wait this long before opening the channel again after it ended or failed to open.
    pub retry_delay: Duration,
    /// The `gamux` tunables.
    pub mux: gamux::Config,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retry_delay: Duration::from_secs(1),
            mux: gamux::Config::default(),
        }
    }
}

/// Serves the host agent for ever: opens `endpoint`, [`serve`]s it until the channel ends,
/// waits [`Options::retry_delay`], and again.
pub async fn run(endpoint: &Endpoint, watcher: &mut Watcher, options: &Options) -> ! {
    run_with(|| endpoint.open(), &endpoint.to_string(), watcher, options).await
}

/// [`run`] over any way of opening the channel (`what` names it in the logs).
pub async fn run_with<F, Fut, C>(
    mut open: F,
    what: &str,
    watcher: &mut Watcher,
    options: &Options,
) -> !
where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<C>>,
    C: Channel,
{
    // Log a repeated failure once at info level, then at debug level until something
    // changes: the port reads EOF once a second for as long as no host agent is connected.
    let mut last_failure: Option<String> = None;
    loop {
        match open().await {
            Ok(io) => {
                let outcome = serve(io, watcher, &options.mux).await;
                let text = format!("the channel ended: {}", outcome.reason);
                if outcome.had_session {
                    tracing::info!("{what}: {text}; opening it again");
                    last_failure = None;
                } else if last_failure.as_deref() != Some(&text) {
                    tracing::info!(
                        "{what}: {text} (no host agent yet?); retrying every {:?}",
                        options.retry_delay
                    );
                    last_failure = Some(text);
                } else {
                    tracing::debug!("{what}: {text}");
                }
            }
            Err(e) => {
                let text = format!("opening: {e}");
                if last_failure.as_deref() != Some(&text) {
                    tracing::warn!("{what}: {text}; retrying every {:?}", options.retry_delay);
                    last_failure = Some(text);
                } else {
                    tracing::debug!("{what}: {text}");
                }
            }
        }
        tokio::time::sleep(options.retry_delay).await;
    }
}

/// How one [`serve`] ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Why the channel ended.
    pub reason: MuxError,
    /// Whether a host session was up at some point.
    pub had_session: bool,
}

/// Serves one channel until it ends: announces ports, answers opens. See the module docs.
pub async fn serve<C: Channel>(io: C, watcher: &mut Watcher, config: &gamux::Config) -> Outcome {
    let mux = Mux::with_config(io, Role::Guest, config.clone());
    let mut had_session = false;
    let reason = tokio::select! {
        biased;
        e = mux.closed() => e,
        e = announce(&mux, watcher, &mut had_session) => e,
        e = accept_loop(&mux) => e,
        e = drain(&mux) => e,
    };
    mux.close();
    Outcome {
        reason,
        had_session,
    }
}

/// Sends the snapshot on each new session and the watcher's changes while one is up.
async fn announce(mux: &Mux, watcher: &mut Watcher, had_session: &mut bool) -> MuxError {
    let mut sessions = mux.watch_session();
    let mut announced: Option<u64> = None;
    loop {
        let current = *sessions.borrow_and_update();
        if let Some(s) = current {
            if announced != Some(s.generation) {
                *had_session = true;
                tracing::info!(
                    "host session {} (peer window {} bytes): sending the port snapshot",
                    s.generation,
                    s.peer_window
                );
                if let Err(e) = watcher.refresh().await {
                    log_poll_error(&e);
                }
                let ports: Vec<Port> = watcher.known().map(Port::from).collect();
                let msg = Message::Ports {
                    version: VERSION,
                    ports,
                };
                if let Err(e) = mux.send_control(&msg).await {
                    return e;
                }
                announced = Some(s.generation);
                continue;
            }
        } else {
            announced = None;
        }
        tokio::select! {
            changed = sessions.changed() => {
                if changed.is_err() {
                    return mux.close_reason().unwrap_or(MuxError::Shutdown);
                }
            }
            event = watcher.next() => match event {
                Ok(event) => {
                    let msg = match &event {
                        Event::Added(l) => Message::Added { port: l.into() },
                        Event::Removed(l) => Message::Removed { port: l.into() },
                    };
                    tracing::debug!("port change: {msg:?}");
                    // Without a session the change is only recorded: the next snapshot has it.
                    if announced.is_some() {
                        if let Err(e) = mux.send_control(&msg).await {
                            return e;
                        }
                    }
                }
                Err(e) => {
                    log_poll_error(&e);
                    if matches!(e, PortsError::Unsupported { .. }) {
                        // Nothing to watch on this system: keep serving opens.
                        std::future::pending::<()>().await;
                    }
                }
            },
        }
    }
}

fn log_poll_error(e: &PortsError) {
    tracing::warn!("listing the listening ports: {e}");
}

/// Answers every open request until the session ends.
async fn accept_loop(mux: &Mux) -> MuxError {
    loop {
        match mux.accept().await {
            Ok((req, responder)) => {
                tokio::spawn(answer(req, responder));
            }
            Err(e) => return e,
        }
    }
}

/// Connects one open to its target and copies until both directions end.
async fn answer(req: OpenRequest, responder: Responder) {
    match req.proto {
        Proto::Tcp => {}
        Proto::Udp => {
            tracing::debug!("stream {}: rejecting udp open to {}", req.stream, req.addr);
            responder.reject("udp streams are not supported by this guest agent yet");
            return;
        }
    }
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(req.addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            tracing::debug!("stream {}: connecting to {}: {e}", req.stream, req.addr);
            responder.reject(&format!("connecting to {}: {e}", req.addr));
            return;
        }
        Err(_) => {
            responder.reject(&format!(
                "connecting to {}: no answer within {:?}",
                req.addr, CONNECT_TIMEOUT
            ));
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut stream = match responder.accept() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("stream {}: gone before it was accepted: {e}", req.stream);
            return;
        }
    };
    let mut tcp = tcp;
    match tokio::io::copy_bidirectional(&mut stream, &mut tcp).await {
        Ok((to_guest, to_host)) => tracing::debug!(
            "stream {} to {}: done ({to_guest} bytes in, {to_host} out)",
            req.stream,
            req.addr
        ),
        Err(e) => tracing::debug!("stream {} to {}: {e}", req.stream, req.addr),
    }
}

/// Reads (and ignores) what the host sends that this agent does not use yet: control
/// messages and datagrams.
async fn drain(mux: &Mux) -> MuxError {
    let control = async {
        loop {
            match mux.recv_control().await {
                Ok(v) => tracing::debug!("ignoring a control message from the host: {v}"),
                Err(e) => return e,
            }
        }
    };
    let datagrams = async {
        loop {
            match mux.recv_datagram().await {
                Ok(d) => tracing::debug!(
                    "dropping a {}-byte datagram on flow {} (udp forwarding is not supported yet)",
                    d.data.len(),
                    d.flow
                ),
                Err(e) => return e,
            }
        }
    };
    tokio::select! {
        e = control => e,
        e = datagrams => e,
    }
}
