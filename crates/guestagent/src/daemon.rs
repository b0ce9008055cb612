//! `lima-guestagent daemon`: serves the host agent over one byte channel with `gamux`
//! ([`gamux::Role::Guest`]).
//!
//! - **Ports**: on every new host session ([`gamux::Mux::watch_session`] reports a new
//!   generation: the first Hello, and each time the host agent reconnects) it polls the
//!   listeners at once and sends the full snapshot ([`Message::Ports`]); then each change its
//!   [`Watcher`] sees as [`Message::Added`] / [`Message::Removed`]. While no host session is
//!   up, changes are only recorded (the next snapshot carries them). See [`crate::proto`].
//! - **Opens**: a `tcp` or `unix` stream is connected to its target (within
//!   [`CONNECT_TIMEOUT`]) and bytes are copied both ways with half-close
//!   ([`tokio::io::copy_bidirectional`]: the host's CloseWrite shuts down the write side of
//!   the connection and the reply still flows back); a failed connect rejects the open with
//!   the error's text. `udp` streams are rejected: UDP goes as datagrams.
//! - **Datagrams**: each flow id gets a UDP socket connected to the first datagram's target;
//!   replies go back on the flow with the target's address; a flow idle for
//!   [`UDP_IDLE_TIMEOUT`] is closed.
//! - **Boot**: on every host session, once the boot scripts' [`Options::boot_done_file`]
//!   exists (checked every [`BOOT_POLL`], a `stat` a time), [`Message::Boot`]: the host agent's
//!   readiness event, so it need not poll the guest over SSH (a handshake and a shell costs
//!   seconds of guest CPU under emulation).
//! - **Clock**: the host sends its time on every session and every 10 s; the agent steps the
//!   guest's clock when it is more than a second off (the guest lags after the host slept).
//! - **Disconnects**: [`serve`] returns when the channel ends (EOF, an I/O error, a write that
//!   made no progress for `gamux`'s write timeout); [`run`] then waits
//!   [`Options::retry_delay`] and opens the channel again with a new [`gamux::Mux`], for ever.
//!   Open connections of the old session are reset by `gamux`. The [`Watcher`] lives across
//!   sessions.
//!
//! Logs go through `tracing` (the binary writes them to stderr, i.e. journald).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gamux::{Mux, MuxError, OpenRequest, Responder, Role, Target};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UdpSocket, UnixStream};
use tokio::sync::mpsc;

use crate::ports::{Event, PortsError, Watcher};
use crate::proto::{clock_correction, HostMessage, Message, Port, VERSION};

/// The guest side of qemu's virtio-serial port `io.lima-vm.guest_agent.0`.
pub const DEFAULT_DEVICE: &str = "/dev/virtio-ports/io.lima-vm.guest_agent.0";

/// The copy buffer per direction of a connection: one maximal `gamux` frame, so a TCP read
/// fills a frame and a frame is one TCP write (tokio's default, 8 KiB, costs eight times
/// the system calls, which are dear in an emulated guest).
pub const COPY_BUF: usize = gamux::MAX_PAYLOAD;

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
    /// The file whose existence means the boot scripts are done ([`Message::Boot`]).
    pub boot_done_file: PathBuf,
}

/// How often the agent looks for the boot scripts' done file while it is missing.
pub const BOOT_POLL: Duration = Duration::from_millis(250);

impl Default for Options {
    fn default() -> Self {
        Options {
            retry_delay: Duration::from_secs(1),
            mux: gamux::Config::default(),
            boot_done_file: PathBuf::from(crate::proto::BOOT_DONE_FILE),
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
                let outcome = serve(io, watcher, options).await;
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
pub async fn serve<C: Channel>(io: C, watcher: &mut Watcher, options: &Options) -> Outcome {
    let mux = Mux::with_config(io, Role::Guest, options.mux.clone());
    let mut had_session = false;
    let reason = tokio::select! {
        biased;
        e = mux.closed() => e,
        e = announce(&mux, watcher, &mut had_session) => e,
        e = accept_loop(&mux) => e,
        e = datagrams(&mux) => e,
        e = host_messages(&mux) => e,
        e = announce_boot(&mux, &options.boot_done_file) => e,
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

/// Sends [`Message::Boot`] once per host session, as soon as `done_file` exists.
async fn announce_boot(mux: &Mux, done_file: &std::path::Path) -> MuxError {
    let mut sessions = mux.watch_session();
    let mut announced: Option<u64> = None;
    loop {
        let current = *sessions.borrow_and_update();
        match current {
            Some(s) if announced != Some(s.generation) => {
                if done_file.exists() {
                    tracing::info!("the boot scripts are done: telling the host agent");
                    if let Err(e) = mux.send_control(&Message::Boot { done: true }).await {
                        return e;
                    }
                    announced = Some(s.generation);
                    continue;
                }
                // Not yet: look again soon, or at once on a new session.
                tokio::select! {
                    changed = sessions.changed() => if changed.is_err() {
                        return mux.close_reason().unwrap_or(MuxError::Shutdown);
                    },
                    _ = tokio::time::sleep(BOOT_POLL) => {}
                }
            }
            _ => {
                if sessions.changed().await.is_err() {
                    return mux.close_reason().unwrap_or(MuxError::Shutdown);
                }
            }
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
    let target = req.target.clone();
    let connected = match &target {
        Target::Tcp(addr) => connect(|| TcpStream::connect(*addr)).await.map(|tcp| {
            let _ = tcp.set_nodelay(true);
            Conn::Tcp(tcp)
        }),
        Target::Unix(path) => connect(|| UnixStream::connect(path.clone()))
            .await
            .map(Conn::Unix),
        Target::Udp(_) => {
            // UDP travels as datagrams (see `datagrams`), not as streams.
            Err("udp streams are not supported: send datagrams".to_string())
        }
    };
    let conn = match connected {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("stream {}: {target}: {e}", req.stream);
            responder.reject(&format!("connecting to {target}: {e}"));
            return;
        }
    };
    let mut stream = match responder.accept() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("stream {}: gone before it was accepted: {e}", req.stream);
            return;
        }
    };
    let copied = match conn {
        Conn::Tcp(mut c) => {
            tokio::io::copy_bidirectional_with_sizes(&mut stream, &mut c, COPY_BUF, COPY_BUF).await
        }
        Conn::Unix(mut c) => {
            tokio::io::copy_bidirectional_with_sizes(&mut stream, &mut c, COPY_BUF, COPY_BUF).await
        }
    };
    match copied {
        Ok((to_guest, to_host)) => tracing::debug!(
            "stream {} to {target}: done ({to_guest} bytes in, {to_host} out)",
            req.stream
        ),
        Err(e) => tracing::debug!("stream {} to {target}: {e}", req.stream),
    }
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// How long a refused connect is tried again: a server that closes and opens its listening
/// socket again (iperf3 between tests, a dev server reloading) is still forwarded on the
/// host, where the client's connect already succeeded; without this it would get a reset.
pub const REFUSED_RETRY: Duration = Duration::from_secs(1);

/// A connect bounded by [`CONNECT_TIMEOUT`], tried again for [`REFUSED_RETRY`] while refused;
/// its error as text.
async fn connect<T, F, Fut>(mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let started = Instant::now();
    loop {
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt()).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                ) && started.elapsed() < REFUSED_RETRY =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
        }
    }
}

/// A UDP flow with no datagram either way for this long is closed.
pub const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One UDP flow: a socket connected to the flow's target, and the task reading its replies.
struct UdpFlow {
    socket: Arc<UdpSocket>,
    target: SocketAddr,
    last_used: Instant,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for UdpFlow {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// UDP: each flow the host sends on gets a socket connected to the datagram's target; what
/// the target answers goes back on the same flow with its address. Idle flows are closed.
async fn datagrams(mux: &Mux) -> MuxError {
    let (reply_tx, mut replies) = mpsc::channel::<(u32, SocketAddr, Vec<u8>)>(1024);
    let mut flows: HashMap<u32, UdpFlow> = HashMap::new();
    let mut sweep = tokio::time::interval(UDP_IDLE_TIMEOUT / 4);
    loop {
        tokio::select! {
            d = mux.recv_datagram() => {
                let d = match d {
                    Ok(d) => d,
                    Err(e) => return e,
                };
                let flow = match flows.get_mut(&d.flow) {
                    Some(f) if d.addr.is_none_or(|a| a == f.target) => f,
                    _ => {
                        let Some(target) = d.addr else {
                            tracing::debug!("datagram on unknown flow {} without a target", d.flow);
                            continue;
                        };
                        match open_flow(d.flow, target, reply_tx.clone()).await {
                            Ok(f) => flows.entry(d.flow).insert_entry(f).into_mut(),
                            Err(e) => {
                                tracing::debug!("udp flow {} to {target}: {e}", d.flow);
                                continue;
                            }
                        }
                    }
                };
                flow.last_used = Instant::now();
                if let Err(e) = flow.socket.send(&d.data).await {
                    // ECONNREFUSED from an earlier datagram: nothing listens (yet).
                    tracing::debug!("udp flow {} to {}: {e}", d.flow, flow.target);
                }
            }
            Some((id, from, data)) = replies.recv() => {
                if let Some(f) = flows.get_mut(&id) {
                    f.last_used = Instant::now();
                }
                if let Err(e) = mux.send_datagram(id, Some(from), &data).await {
                    return e;
                }
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                flows.retain(|_, f| now.duration_since(f.last_used) <= UDP_IDLE_TIMEOUT);
            }
        }
    }
}

async fn open_flow(
    id: u32,
    target: SocketAddr,
    replies: mpsc::Sender<(u32, SocketAddr, Vec<u8>)>,
) -> io::Result<UdpFlow> {
    let any: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = Arc::new(UdpSocket::bind(any).await?);
    socket.connect(target).await?;
    let reader_socket = socket.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            match reader_socket.recv(&mut buf).await {
                Ok(n) => {
                    // A full queue drops the datagram, as a congested network would.
                    let _ = replies.try_send((id, target, buf[..n].to_vec()));
                }
                // ICMP port unreachable for an earlier send: keep the flow.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(_) => return,
            }
        }
    });
    Ok(UdpFlow {
        socket,
        target,
        last_used: Instant::now(),
        reader,
    })
}

/// Handles the host's control messages: the host's clock (see [`HostMessage::Time`]) and
/// host file changes under mounts ([`HostMessage::Inotify`]).
async fn host_messages(mux: &Mux) -> MuxError {
    loop {
        let v = match mux.recv_control().await {
            Ok(v) => v,
            Err(e) => return e,
        };
        match serde_json::from_value::<HostMessage>(v.clone()) {
            Ok(HostMessage::Time { unix_ms }) => sync_clock(unix_ms),
            Ok(HostMessage::Inotify { path, unix_ms }) => {
                if let Err(e) = touch(&path, unix_ms) {
                    tracing::debug!("inotify: cannot set the times of {path}: {e}");
                }
            }
            Err(_) => tracing::debug!("ignoring a control message from the host: {v}"),
        }
    }
}

/// Sets a file's access and modification times (what raises `IN_ATTRIB` for watchers).
fn touch(path: &str, unix_ms: i64) -> io::Result<()> {
    let c_path = std::ffi::CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let t = libc::timespec {
        tv_sec: unix_ms.div_euclid(1000) as libc::time_t,
        tv_nsec: (unix_ms.rem_euclid(1000) * 1_000_000) as libc::c_long,
    };
    let times = [t, t];
    // SAFETY: a valid C string and two timespecs; no flags (follow symlinks, as chtimes).
    if unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Steps the guest's clock to the host's when they are too far apart (the host slept).
fn sync_clock(host_ms: i64) {
    let Some(off) = clock_correction(host_ms, now_ms()) else {
        return;
    };
    match set_clock(now_ms().saturating_add(off)) {
        Ok(()) => tracing::info!("set the clock to the host's: it was off by {off} ms"),
        Err(e) => tracing::warn!("the clock is off by {off} ms and cannot be set: {e}"),
    }
}

#[cfg(target_os = "linux")]
fn set_clock(unix_ms: i64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: unix_ms.div_euclid(1000),
        tv_nsec: unix_ms.rem_euclid(1000) * 1_000_000,
    };
    // SAFETY: a valid timespec; the call only reads it.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_clock(_unix_ms: i64) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "setting the clock is implemented for Linux only",
    ))
}
