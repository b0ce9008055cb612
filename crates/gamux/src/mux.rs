//! The multiplexer: [`Mux`] runs a reader task and a writer task over one byte channel,
//! keeps the stream table, answers Hello/Ping, resets streams when the peer's session
//! changes or sync is lost, and ends the whole session (every stream, queue and waiter)
//! on EOF, an I/O error, a write that makes no progress for the write timeout, or a
//! keepalive timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::error::{FrameError, MuxError};
use crate::frame::{
    self, Decoder, Frame, Hello, Message, Proto, Target, HEADER_LEN, MAX_PAYLOAD, MAX_UNIX_PATH,
    VERSION,
};
use crate::stream::{OpenRequest, Reset, Responder, Stream, StreamShared};
use crate::Role;

/// Locks a std mutex, ignoring poisoning (a panicking holder cannot leave our state torn
/// in a way that matters more than refusing to go on).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tunables. Both sides may differ except that each advertises its own `window`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Receive window per stream, advertised in Hello: the peer's initial credit and the
    /// most a stream may buffer here (default 256 KiB).
    pub window: u32,
    /// Most streams at once (default 1024); worst-case buffering is `window * max_streams`.
    pub max_streams: usize,
    /// Open requests waiting for `accept` before new ones are rejected (default 128).
    pub accept_backlog: usize,
    /// Control messages waiting for `recv_control` before new ones are dropped (default 256).
    pub control_queue: usize,
    /// Datagrams waiting for `recv_datagram` before new ones are dropped (default 1024).
    pub datagram_queue: usize,
    /// A channel write that makes no progress for this long ends the session (default 10 s;
    /// `None`: wait forever).
    pub write_timeout: Option<Duration>,
    /// Send a Ping this often and end the session when nothing was read for three intervals
    /// (default `None`: off).
    pub keepalive: Option<Duration>,
    /// Queued bytes above which control, datagram, open and ping senders wait (default
    /// 1 MiB). Stream data is bounded by the peer's windows instead.
    pub outbox_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: 256 * 1024,
            max_streams: 1024,
            accept_backlog: 128,
            control_queue: 256,
            datagram_queue: 1024,
            write_timeout: Some(Duration::from_secs(10)),
            keepalive: None,
            outbox_limit: 1024 * 1024,
        }
    }
}

/// The peer's session as last announced by its Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Counts peer sessions seen by this mux, from 1.
    pub generation: u64,
    /// The peer's nonce.
    pub peer_nonce: u64,
    /// The peer's per-stream receive window (our initial credit).
    pub peer_window: u32,
}

/// One UDP datagram on a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The flow id (chosen by the host side, e.g. per client address and port).
    pub flow: u32,
    /// The target (host to guest) or source (guest to host) address, if given.
    pub addr: Option<SocketAddr>,
    /// The payload.
    pub data: Vec<u8>,
}

/// Counters for diagnostics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Peer sessions seen (Hellos with a new nonce).
    pub sessions: u64,
    /// Times we lost sync and restarted our session.
    pub resyncs: u64,
    /// Bytes discarded while scanning for the sync marker.
    pub skipped_bytes: u64,
    /// Frames rejected by the codec.
    pub bad_frames: u64,
    /// Frames for streams we do not know (ignored).
    pub unknown_stream_frames: u64,
    /// Datagrams dropped because `recv_datagram` was not keeping up.
    pub dropped_datagrams: u64,
    /// Control messages dropped (queue full or not JSON).
    pub dropped_control: u64,
}

#[derive(Default)]
struct Counters {
    sessions: AtomicU64,
    resyncs: AtomicU64,
    skipped_bytes: AtomicU64,
    bad_frames: AtomicU64,
    unknown_stream_frames: AtomicU64,
    dropped_datagrams: AtomicU64,
    dropped_control: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Frames waiting for the writer task, encoded into one buffer (the writer swaps it out).
pub(crate) struct Outbox {
    inner: Mutex<OutInner>,
    writer: Notify,
    space: Notify,
    limit: usize,
}

struct OutInner {
    buf: Vec<u8>,
    closed: bool,
}

impl Outbox {
    fn new(limit: usize) -> Outbox {
        Outbox {
            inner: Mutex::new(OutInner {
                buf: Vec::with_capacity(256 * 1024),
                closed: false,
            }),
            writer: Notify::new(),
            space: Notify::new(),
            limit,
        }
    }

    /// Queues a frame regardless of the limit (frames whose number is bounded by streams or
    /// received data); false when the mux is closed.
    pub(crate) fn push(&self, f: &Frame<'_>) -> bool {
        {
            let mut g = lock(&self.inner);
            if g.closed {
                return false;
            }
            if let Err(e) = f.encode(&mut g.buf) {
                tracing::warn!("gamux: not sending a {} frame: {e}", f.msg.name());
                return true;
            }
        }
        self.writer.notify_one();
        true
    }

    /// Queues a Data frame (bounded by the stream's credit); false when closed.
    pub(crate) fn push_data(&self, stream: u32, data: &[u8]) -> bool {
        {
            let mut g = lock(&self.inner);
            if g.closed {
                return false;
            }
            g.buf.reserve(HEADER_LEN + data.len());
            frame::put_data_header(&mut g.buf, stream, data.len());
            g.buf.extend_from_slice(data);
        }
        self.writer.notify_one();
        true
    }

    /// Queues a frame only below the limit (for answers such as Pong); false if dropped.
    fn try_push(&self, f: &Frame<'_>) -> bool {
        {
            let mut g = lock(&self.inner);
            if g.closed || g.buf.len() >= self.limit {
                return false;
            }
            if f.encode(&mut g.buf).is_err() {
                return false;
            }
        }
        self.writer.notify_one();
        true
    }

    /// Queues a frame, waiting while the queue is above the limit; false when closed.
    async fn push_wait(&self, f: &Frame<'_>) -> bool {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut g = lock(&self.inner);
                if g.closed {
                    return false;
                }
                if g.buf.len() < self.limit {
                    if let Err(e) = f.encode(&mut g.buf) {
                        tracing::warn!("gamux: not sending a {} frame: {e}", f.msg.name());
                        return true;
                    }
                    drop(g);
                    self.writer.notify_one();
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Queues the sync marker and a Hello, back to back; with `filler`, first one maximal
    /// frame's worth of zero bytes, which completes any frame a previous writer on this
    /// channel left half-written (the peer then sees a bad header, scans, finds the marker).
    fn push_hello(&self, hello: Hello, filler: bool) -> bool {
        {
            let mut g = lock(&self.inner);
            if g.closed {
                return false;
            }
            if filler {
                let n = g.buf.len() + HEADER_LEN + MAX_PAYLOAD;
                g.buf.resize(n, 0);
            }
            g.buf.extend_from_slice(&frame::SYNC);
            let f = Frame {
                stream: 0,
                msg: Message::Hello(hello),
            };
            if f.encode(&mut g.buf).is_err() {
                return false;
            }
        }
        self.writer.notify_one();
        true
    }

    fn close(&self) {
        {
            let mut g = lock(&self.inner);
            g.closed = true;
            g.buf = Vec::new();
        }
        self.writer.notify_one();
        self.space.notify_waiters();
    }
}

struct PeerState {
    nonce: Option<u64>,
    window: u32,
    generation: u64,
}

/// Everything the tasks, the handle and the streams share.
pub(crate) struct Shared {
    pub(crate) role: Role,
    pub(crate) config: Config,
    pub(crate) out: Outbox,
    streams: Mutex<HashMap<u32, Arc<StreamShared>>>,
    next_id: AtomicU32,
    local_nonce: AtomicU64,
    peer: Mutex<PeerState>,
    session_tx: watch::Sender<Option<Session>>,
    closed_tx: watch::Sender<Option<MuxError>>,
    pings: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_ping: AtomicU64,
    counters: Counters,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    started: Instant,
    last_read_ms: AtomicU64,
}

fn new_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.write_u32(std::process::id());
    h.finish().max(1)
}

impl Shared {
    pub(crate) fn close_reason(&self) -> Option<MuxError> {
        self.closed_tx.borrow().clone()
    }

    /// Removes a stream from the table if the entry is this very stream.
    pub(crate) fn remove_stream(&self, ss: &Arc<StreamShared>) {
        let mut map = lock(&self.streams);
        if map.get(&ss.id).is_some_and(|cur| Arc::ptr_eq(cur, ss)) {
            map.remove(&ss.id);
        }
    }

    fn get_stream(&self, id: u32) -> Option<Arc<StreamShared>> {
        let found = lock(&self.streams).get(&id).cloned();
        if found.is_none() {
            bump(&self.counters.unknown_stream_frames);
        }
        found
    }

    /// Resets and forgets every stream.
    fn reset_streams(&self, err: &MuxError) {
        let all: Vec<Arc<StreamShared>> = lock(&self.streams).drain().map(|(_, s)| s).collect();
        for ss in all {
            lock(&ss.state).reset(Reset::Session(err.clone()), err.clone());
        }
    }

    fn hello(&self, echo: u64) -> Hello {
        Hello {
            version: VERSION,
            role: self.role,
            nonce: self.local_nonce.load(Ordering::Relaxed),
            echo,
            window: self.config.window,
        }
    }

    /// Ends the session: the first reason wins.
    fn fail(&self, err: MuxError) {
        let first = self.closed_tx.send_if_modified(|c| {
            if c.is_none() {
                *c = Some(err.clone());
                true
            } else {
                false
            }
        });
        if !first {
            return;
        }
        tracing::debug!("gamux: session over: {err}");
        self.out.close();
        self.reset_streams(&err);
        lock(&self.pings).clear();
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    /// We lost sync: start a new local session so that the peer resets too and sends its
    /// marker and Hello again.
    fn restart_session(&self) {
        bump(&self.counters.resyncs);
        self.local_nonce.store(new_nonce(), Ordering::Relaxed);
        lock(&self.peer).nonce = None;
        self.session_tx.send_replace(None);
        self.reset_streams(&MuxError::SessionReset);
        self.out.push_hello(self.hello(0), false);
    }

    fn bad_frame(&self, e: FrameError) {
        bump(&self.counters.bad_frames);
        tracing::warn!("gamux: bad frame: {e}");
        if e.loses_sync() {
            self.restart_session();
        } else if let FrameError::BadPayload {
            ty: "open", stream, ..
        } = e
        {
            if self.role == Role::Guest && stream != 0 {
                self.out.push(&Frame {
                    stream,
                    msg: Message::OpenResult(Err(b"bad open request")),
                });
            }
        }
    }

    /// Handles one frame from the peer; an error ends the session.
    fn handle(self: &Arc<Self>, f: Frame<'_>, q: &Queues) -> Result<(), MuxError> {
        let id = f.stream;
        match f.msg {
            Message::Sync => {}
            Message::Hello(h) => self.on_hello(h)?,
            Message::Control(json) => match serde_json::from_slice(json) {
                Ok(v) => {
                    if q.control.try_send(v).is_err() {
                        bump(&self.counters.dropped_control);
                        tracing::warn!("gamux: control queue full, message dropped");
                    }
                }
                Err(e) => {
                    bump(&self.counters.dropped_control);
                    tracing::warn!("gamux: control message is not JSON: {e}");
                }
            },
            Message::Open { proto, addr } => {
                let target = match proto {
                    Proto::Udp => Target::Udp(addr),
                    _ => Target::Tcp(addr),
                };
                self.on_open(id, target, q)
            }
            Message::OpenUnix(path) => {
                // The codec checked it is UTF-8.
                let path = String::from_utf8_lossy(path).into_owned();
                self.on_open(id, Target::Unix(path), q)
            }
            Message::OpenResult(res) => {
                if let Some(ss) = self.get_stream(id) {
                    let mut st = lock(&ss.state);
                    match res {
                        Ok(()) => {
                            if let Some(tx) = st.open_tx.take() {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        Err(text) => {
                            let text = String::from_utf8_lossy(text).into_owned();
                            st.reset(Reset::Rejected, MuxError::OpenRejected(text));
                            drop(st);
                            self.remove_stream(&ss);
                        }
                    }
                }
            }
            Message::Data(data) => {
                if data.is_empty() {
                    return Ok(());
                }
                let Some(ss) = self.get_stream(id) else {
                    return Ok(());
                };
                let mut st = lock(&ss.state);
                if st.reset.is_some() || st.recv_eof {
                    return Ok(());
                }
                if st.recv_len + st.consumed + data.len() > self.config.window as usize {
                    st.reset(Reset::Protocol("window exceeded"), MuxError::StreamClosed);
                    drop(st);
                    self.remove_stream(&ss);
                    self.out.push(&Frame {
                        stream: id,
                        msg: Message::Close(b"window exceeded"),
                    });
                    return Ok(());
                }
                st.recv.push_back(data.to_vec());
                st.recv_len += data.len();
                if let Some(w) = st.read_waker.take() {
                    w.wake();
                }
            }
            Message::CloseWrite => {
                if let Some(ss) = self.get_stream(id) {
                    let mut st = lock(&ss.state);
                    st.recv_eof = true;
                    if let Some(w) = st.read_waker.take() {
                        w.wake();
                    }
                }
            }
            Message::Close(reason) => {
                if let Some(ss) = self.get_stream(id) {
                    self.remove_stream(&ss);
                    let reason = String::from_utf8_lossy(reason).into_owned();
                    lock(&ss.state).reset(Reset::Peer(reason), MuxError::StreamClosed);
                }
            }
            Message::Window(n) => {
                if let Some(ss) = self.get_stream(id) {
                    let mut st = lock(&ss.state);
                    st.credit = st.credit.saturating_add(n as usize).min(u32::MAX as usize);
                    if let Some(w) = st.write_waker.take() {
                        w.wake();
                    }
                }
            }
            Message::Datagram { addr, data } => {
                let d = Datagram {
                    flow: id,
                    addr,
                    data: data.to_vec(),
                };
                if q.datagram.try_send(d).is_err() {
                    bump(&self.counters.dropped_datagrams);
                }
            }
            Message::Ping(t) => {
                self.out.try_push(&Frame {
                    stream: 0,
                    msg: Message::Pong(t),
                });
            }
            Message::Pong(t) => {
                if let Some(tx) = lock(&self.pings).remove(&t) {
                    let _ = tx.send(());
                }
            }
        }
        Ok(())
    }

    fn on_hello(&self, h: Hello) -> Result<(), MuxError> {
        if h.version != VERSION {
            return Err(MuxError::Version {
                ours: VERSION,
                theirs: h.version,
            });
        }
        if h.role == self.role {
            return Err(MuxError::SameRole(self.role));
        }
        let (changed, had, session) = {
            let mut p = lock(&self.peer);
            let changed = p.nonce != Some(h.nonce);
            let had = p.nonce.is_some();
            if changed {
                p.nonce = Some(h.nonce);
                p.generation += 1;
            }
            p.window = h.window;
            let session = Session {
                generation: p.generation,
                peer_nonce: h.nonce,
                peer_window: h.window,
            };
            (changed, had, session)
        };
        if changed {
            bump(&self.counters.sessions);
            if had {
                tracing::info!("gamux: the peer started a new session; closing old streams");
                self.reset_streams(&MuxError::SessionReset);
            }
            self.session_tx.send_replace(Some(session));
        }
        if changed || h.echo != self.local_nonce.load(Ordering::Relaxed) {
            self.out.push_hello(self.hello(h.nonce), false);
        }
        Ok(())
    }

    fn on_open(self: &Arc<Self>, id: u32, target: Target, q: &Queues) {
        let reject = |text: &[u8]| {
            self.out.push(&Frame {
                stream: id,
                msg: Message::OpenResult(Err(text)),
            });
        };
        if self.role == Role::Host {
            return reject(b"the host side does not accept streams");
        }
        let window = lock(&self.peer).window;
        let ss = StreamShared::new(id, window as usize);
        {
            let mut map = lock(&self.streams);
            if map.contains_key(&id) {
                drop(map);
                return reject(b"stream id in use");
            }
            if map.len() >= self.config.max_streams {
                drop(map);
                return reject(b"too many streams");
            }
            map.insert(id, ss.clone());
        }
        let responder = Responder::new(self.clone(), ss.clone(), target.clone());
        let req = OpenRequest { stream: id, target };
        if let Err(e) = q.accept.try_send((req, responder)) {
            // Dropping the responder rejects; say why instead.
            let (_, responder) = e.into_inner();
            responder.reject("accept backlog full");
        }
    }
}

/// The reader task's senders (dropped when it ends, which ends the receivers).
struct Queues {
    accept: mpsc::Sender<(OpenRequest, Responder)>,
    control: mpsc::Sender<serde_json::Value>,
    datagram: mpsc::Sender<Datagram>,
}

async fn reader_task<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut rd: R, q: Queues) -> MuxError {
    let mut dec = Decoder::new();
    loop {
        loop {
            match dec.next_frame() {
                Ok(None) => break,
                Ok(Some(f)) => {
                    if let Err(e) = shared.handle(f, &q) {
                        return e;
                    }
                }
                Err(e) => shared.bad_frame(e),
            }
        }
        shared
            .counters
            .skipped_bytes
            .store(dec.skipped(), Ordering::Relaxed);
        match rd.read(dec.spare()).await {
            Ok(0) => return MuxError::PeerEof,
            Ok(n) => {
                dec.filled(n);
                shared.touch();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return MuxError::io(&e),
        }
    }
}

/// Writes all of `buf`; fails when one write makes no progress for `timeout`.
async fn write_all_timed<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &[u8],
    timeout: Option<Duration>,
) -> Result<(), MuxError> {
    let mut off = 0;
    while off < buf.len() {
        let res = match timeout {
            Some(t) => match tokio::time::timeout(t, wr.write(&buf[off..])).await {
                Ok(r) => r,
                Err(_) => return Err(MuxError::WriteTimeout(t)),
            },
            None => wr.write(&buf[off..]).await,
        };
        match res {
            Ok(0) => {
                return Err(MuxError::io(&std::io::Error::from(
                    std::io::ErrorKind::WriteZero,
                )))
            }
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(MuxError::io(&e)),
        }
    }
    let flush = match timeout {
        Some(t) => tokio::time::timeout(t, wr.flush())
            .await
            .map_err(|_| MuxError::WriteTimeout(t))?,
        None => wr.flush().await,
    };
    flush.map_err(|e| MuxError::io(&e))
}

async fn writer_task<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut wr: W) -> MuxError {
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    loop {
        let closed = {
            let mut g = lock(&shared.out.inner);
            if g.buf.is_empty() {
                g.closed
            } else {
                std::mem::swap(&mut g.buf, &mut buf);
                false
            }
        };
        if buf.is_empty() {
            if closed {
                return MuxError::Shutdown;
            }
            shared.out.writer.notified().await;
            continue;
        }
        shared.out.space.notify_waiters();
        if let Err(e) = write_all_timed(&mut wr, &buf, shared.config.write_timeout).await {
            return e;
        }
        buf.clear();
        if buf.capacity() > 8 * 1024 * 1024 {
            buf = Vec::with_capacity(256 * 1024);
        }
    }
}

async fn keepalive_task(shared: Arc<Shared>, every: Duration) -> MuxError {
    let every = every.max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let idle =
            Duration::from_millis(now.saturating_sub(shared.last_read_ms.load(Ordering::Relaxed)));
        if idle > every.saturating_mul(3) {
            return MuxError::KeepaliveTimeout(idle);
        }
        shared.out.try_push(&Frame {
            stream: 0,
            msg: Message::Ping(0),
        });
    }
}

/// A multiplexed session over one byte channel. Dropping it ends the session (every stream
/// gets an error). See the crate docs for the protocol.
pub struct Mux {
    shared: Arc<Shared>,
    accept_rx: tokio::sync::Mutex<mpsc::Receiver<(OpenRequest, Responder)>>,
    control_rx: tokio::sync::Mutex<mpsc::Receiver<serde_json::Value>>,
    datagram_rx: tokio::sync::Mutex<mpsc::Receiver<Datagram>>,
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux")
            .field("role", &self.shared.role)
            .field("session", &self.session())
            .field("streams", &self.stream_count())
            .finish()
    }
}

impl Mux {
    /// Starts a session over `io` with the default [`Config`]. Must be called inside a tokio
    /// runtime (it spawns the reader and writer tasks); sends the sync marker and Hello.
    pub fn new<T>(io: T, role: Role) -> Mux
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        Mux::with_config(io, role, Config::default())
    }

    /// Starts a session with the given tunables.
    pub fn with_config<T>(io: T, role: Role, config: Config) -> Mux
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let mut config = config;
        config.window = config.window.max(1);
        let (accept_tx, accept_rx) = mpsc::channel(config.accept_backlog.max(1));
        let (control_tx, control_rx) = mpsc::channel(config.control_queue.max(1));
        let (datagram_tx, datagram_rx) = mpsc::channel(config.datagram_queue.max(1));
        let keepalive = config.keepalive;
        let shared = Arc::new(Shared {
            role,
            out: Outbox::new(config.outbox_limit.max(MAX_PAYLOAD)),
            config,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            local_nonce: AtomicU64::new(new_nonce()),
            peer: Mutex::new(PeerState {
                nonce: None,
                window: 0,
                generation: 0,
            }),
            session_tx: watch::Sender::new(None),
            closed_tx: watch::Sender::new(None),
            pings: Mutex::new(HashMap::new()),
            next_ping: AtomicU64::new(1),
            counters: Counters::default(),
            tasks: Mutex::new(Vec::new()),
            started: Instant::now(),
            last_read_ms: AtomicU64::new(0),
        });
        shared.out.push_hello(shared.hello(0), true);
        let (rd, wr) = tokio::io::split(io);
        let queues = Queues {
            accept: accept_tx,
            control: control_tx,
            datagram: datagram_tx,
        };
        let mut tasks = Vec::new();
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            let e = reader_task(s.clone(), rd, queues).await;
            s.fail(e);
        }));
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            let e = writer_task(s.clone(), wr).await;
            s.fail(e);
        }));
        if let Some(every) = keepalive {
            let s = shared.clone();
            tasks.push(tokio::spawn(async move {
                let e = keepalive_task(s.clone(), every).await;
                s.fail(e);
            }));
        }
        {
            let mut t = lock(&shared.tasks);
            if shared.close_reason().is_some() {
                tasks.iter().for_each(JoinHandle::abort);
            } else {
                t.extend(tasks);
            }
        }
        Mux {
            shared,
            accept_rx: tokio::sync::Mutex::new(accept_rx),
            control_rx: tokio::sync::Mutex::new(control_rx),
            datagram_rx: tokio::sync::Mutex::new(datagram_rx),
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// The peer's current session, if its Hello has arrived.
    pub fn session(&self) -> Option<Session> {
        *self.shared.session_tx.borrow()
    }

    /// Follows the peer's session: `None` until its Hello and after we lost sync; a new
    /// generation when the peer restarted (e.g. the host agent reconnected).
    pub fn watch_session(&self) -> watch::Receiver<Option<Session>> {
        self.shared.session_tx.subscribe()
    }

    /// Waits for the peer's Hello; an error if the session ends first.
    pub async fn ready(&self) -> Result<Session, MuxError> {
        let mut session = self.shared.session_tx.subscribe();
        let mut closed = self.shared.closed_tx.subscribe();
        loop {
            if let Some(e) = closed.borrow_and_update().clone() {
                return Err(e);
            }
            if let Some(s) = *session.borrow_and_update() {
                return Ok(s);
            }
            tokio::select! {
                r = session.changed() => if r.is_err() { return Err(MuxError::Shutdown) },
                r = closed.changed() => if r.is_err() { return Err(MuxError::Shutdown) },
            }
        }
    }

    /// Why the session ended, if it did.
    pub fn close_reason(&self) -> Option<MuxError> {
        self.shared.close_reason()
    }

    /// Waits until the session ends and returns why.
    pub async fn closed(&self) -> MuxError {
        let mut closed = self.shared.closed_tx.subscribe();
        loop {
            if let Some(e) = closed.borrow_and_update().clone() {
                return e;
            }
            if closed.changed().await.is_err() {
                return MuxError::Shutdown;
            }
        }
    }

    /// Ends the session now (as dropping the mux does).
    pub fn close(&self) {
        self.shared.fail(MuxError::Shutdown);
    }

    fn closed_err(&self) -> MuxError {
        self.shared.close_reason().unwrap_or(MuxError::Shutdown)
    }

    /// Host side: opens a stream to `addr` on the guest (TCP, or a connected UDP socket) and
    /// waits for the guest's answer. Waits for the peer's Hello first; wrap it in a timeout
    /// to bound the wait.
    pub async fn open(&self, proto: Proto, addr: SocketAddr) -> Result<Stream, MuxError> {
        let target = match proto {
            Proto::Tcp => Target::Tcp(addr),
            Proto::Udp => Target::Udp(addr),
            Proto::Unix => return Err(MuxError::BadTarget("a unix target needs a path".into())),
        };
        self.open_target(target).await
    }

    /// Host side: opens a stream to a unix socket in the guest (see [`Mux::open`]).
    pub async fn open_unix(&self, path: &str) -> Result<Stream, MuxError> {
        self.open_target(Target::Unix(path.to_string())).await
    }

    /// Host side: opens a stream to any [`Target`] (see [`Mux::open`]); a unix path that is
    /// empty, too long or holds a NUL is refused before anything is sent.
    pub async fn open_target(&self, target: Target) -> Result<Stream, MuxError> {
        if let Target::Unix(path) = &target {
            if path.is_empty() || path.len() > MAX_UNIX_PATH || path.contains('\0') {
                return Err(MuxError::BadTarget(format!("unix socket path {path:?}")));
            }
        }
        if self.shared.role != Role::Host {
            return Err(MuxError::WrongRole {
                op: "open",
                role: self.shared.role,
            });
        }
        let session = self.ready().await?;
        let (tx, rx) = oneshot::channel();
        let ss = {
            let mut map = lock(&self.shared.streams);
            if map.len() >= self.shared.config.max_streams {
                return Err(MuxError::TooManyStreams(self.shared.config.max_streams));
            }
            let id = loop {
                let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
                if id != 0 && !map.contains_key(&id) {
                    break id;
                }
            };
            let ss = StreamShared::new(id, session.peer_window as usize);
            lock(&ss.state).open_tx = Some(tx);
            map.insert(id, ss.clone());
            ss
        };
        if let Some(e) = self.shared.close_reason() {
            self.shared.remove_stream(&ss);
            return Err(e);
        }
        let id = ss.id;
        // From here on, dropping `stream` (also when this future is dropped) closes it.
        let stream = Stream::new(self.shared.clone(), ss, target.clone());
        let msg = match &target {
            Target::Tcp(a) => Message::Open {
                proto: Proto::Tcp,
                addr: *a,
            },
            Target::Udp(a) => Message::Open {
                proto: Proto::Udp,
                addr: *a,
            },
            Target::Unix(p) => Message::OpenUnix(p.as_bytes()),
        };
        let open = Frame { stream: id, msg };
        if !self.shared.out.push_wait(&open).await {
            return Err(self.closed_err());
        }
        match rx.await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.shared.close_reason().unwrap_or(MuxError::SessionReset)),
        }
    }

    /// Guest side: the next open request and its responder; an error when the session
    /// ended.
    pub async fn accept(&self) -> Result<(OpenRequest, Responder), MuxError> {
        if self.shared.role != Role::Guest {
            return Err(MuxError::WrongRole {
                op: "accept",
                role: self.shared.role,
            });
        }
        let mut rx = self.accept_rx.lock().await;
        rx.recv().await.ok_or_else(|| self.closed_err())
    }

    /// Sends a JSON control message (any `Serialize` value; at most 64 KiB encoded).
    pub async fn send_control<T: serde::Serialize + ?Sized>(
        &self,
        msg: &T,
    ) -> Result<(), MuxError> {
        let json = serde_json::to_vec(msg).map_err(|e| MuxError::Json(e.to_string()))?;
        if json.len() > MAX_PAYLOAD {
            return Err(MuxError::TooLarge {
                len: json.len(),
                max: MAX_PAYLOAD,
            });
        }
        let f = Frame {
            stream: 0,
            msg: Message::Control(&json),
        };
        if self.shared.out.push_wait(&f).await {
            Ok(())
        } else {
            Err(self.closed_err())
        }
    }

    /// The next control message from the peer (messages that arrived before the session
    /// ended are still returned, then the reason it ended).
    pub async fn recv_control(&self) -> Result<serde_json::Value, MuxError> {
        let mut rx = self.control_rx.lock().await;
        rx.recv().await.ok_or_else(|| self.closed_err())
    }

    /// Sends a datagram on a flow; `addr` is the target (host side) or the source (guest
    /// side). Payload plus address must fit one frame (64 KiB).
    pub async fn send_datagram(
        &self,
        flow: u32,
        addr: Option<SocketAddr>,
        data: &[u8],
    ) -> Result<(), MuxError> {
        let f = Frame {
            stream: flow,
            msg: Message::Datagram { addr, data },
        };
        let len = f.payload_len();
        if len > MAX_PAYLOAD {
            return Err(MuxError::TooLarge {
                len,
                max: MAX_PAYLOAD,
            });
        }
        if self.shared.out.push_wait(&f).await {
            Ok(())
        } else {
            Err(self.closed_err())
        }
    }

    /// The next datagram from the peer (datagrams that arrive while the queue is full are
    /// dropped, as UDP would).
    pub async fn recv_datagram(&self) -> Result<Datagram, MuxError> {
        let mut rx = self.datagram_rx.lock().await;
        rx.recv().await.ok_or_else(|| self.closed_err())
    }

    /// Sends a Ping and waits for its Pong: the round trip time.
    pub async fn ping(&self) -> Result<Duration, MuxError> {
        let token = self.shared.next_ping.fetch_add(1, Ordering::Relaxed).max(1);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pings).insert(token, tx);
        if let Some(e) = self.shared.close_reason() {
            lock(&self.shared.pings).remove(&token);
            return Err(e);
        }
        let start = Instant::now();
        let f = Frame {
            stream: 0,
            msg: Message::Ping(token),
        };
        let sent = self.shared.out.push_wait(&f).await;
        if !sent {
            lock(&self.shared.pings).remove(&token);
            return Err(self.closed_err());
        }
        match rx.await {
            Ok(()) => Ok(start.elapsed()),
            Err(_) => Err(self.closed_err()),
        }
    }

    /// Streams in the table (opening, open or half-closed, not yet dropped).
    pub fn stream_count(&self) -> usize {
        lock(&self.shared.streams).len()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            sessions: get(&c.sessions),
            resyncs: get(&c.resyncs),
            skipped_bytes: get(&c.skipped_bytes),
            bad_frames: get(&c.bad_frames),
            unknown_stream_frames: get(&c.unknown_stream_frames),
            dropped_datagrams: get(&c.dropped_datagrams),
            dropped_control: get(&c.dropped_control),
        }
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        self.shared.fail(MuxError::Shutdown);
    }
}
