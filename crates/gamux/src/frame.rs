//! The frame codec, without I/O: the header layout, each frame type's payload, encoding into
//! a byte buffer, and a [`Decoder`] that finds the sync marker, checks every header and
//! payload (bad magic, type, flags, length, stream id, payload shape are errors, never
//! panics) and never holds more than one fixed buffer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::FrameError;
use crate::Role;

/// The first byte of every frame (also the marker's first byte).
pub const MAGIC: u8 = 0xA7;
/// The protocol version carried in Hello.
pub const VERSION: u16 = 1;
/// Header length: magic u8, type u8, flags u16, stream u32, length u32 (big endian).
pub const HEADER_LEN: usize = 12;
/// The largest payload of one frame.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// The sync marker: a header-sized sequence (magic, type 0, then `gamux/sync`) sent before
/// every Hello; a reader that lost sync scans for it.
pub const SYNC: [u8; HEADER_LEN] = [
    MAGIC, 0x00, b'g', b'a', b'm', b'u', b'x', b'/', b's', b'y', b'n', b'c',
];
/// The longest unix socket path an Open may carry.
pub const MAX_UNIX_PATH: usize = 4096;
/// The Hello payload's length.
pub const HELLO_LEN: usize = 24;

/// Frame type bytes.
mod ty {
    pub const SYNC: u8 = 0x00;
    pub const HELLO: u8 = 0x01;
    pub const CONTROL: u8 = 0x02;
    pub const OPEN: u8 = 0x03;
    pub const OPEN_RESULT: u8 = 0x04;
    pub const DATA: u8 = 0x05;
    pub const CLOSE_WRITE: u8 = 0x06;
    pub const CLOSE: u8 = 0x07;
    pub const WINDOW: u8 = 0x08;
    pub const DATAGRAM: u8 = 0x09;
    pub const PING: u8 = 0x0A;
    pub const PONG: u8 = 0x0B;
}

/// The transport of an opened target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// A TCP connection.
    Tcp,
    /// UDP (a connected socket per stream; datagrams usually use [`Message::Datagram`]).
    Udp,
    /// A unix stream socket, named by its path in the guest.
    Unix,
}

impl Proto {
    fn byte(self) -> u8 {
        match self {
            Proto::Tcp => 1,
            Proto::Udp => 2,
            Proto::Unix => 3,
        }
    }
}

/// What a stream is opened to, as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A UDP address (a connected socket).
    Udp(SocketAddr),
    /// A unix stream socket's path.
    Unix(String),
}

impl Target {
    /// The transport.
    pub fn proto(&self) -> Proto {
        match self {
            Target::Tcp(_) => Proto::Tcp,
            Target::Udp(_) => Proto::Udp,
            Target::Unix(_) => Proto::Unix,
        }
    }

    /// The IP address, for TCP and UDP targets.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Target::Tcp(a) | Target::Udp(a) => Some(*a),
            Target::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp {a}"),
            Target::Udp(a) => write!(f, "udp {a}"),
            Target::Unix(p) => write!(f, "unix {p}"),
        }
    }
}

/// The Hello payload: who we are and which peer session we have seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version ([`VERSION`]).
    pub version: u16,
    /// The sender's role.
    pub role: Role,
    /// The sender's session nonce (never 0); a new nonce means a new session.
    pub nonce: u64,
    /// The last nonce the sender has seen from its peer (0: none).
    pub echo: u64,
    /// The receive window the sender grants each stream (the peer's initial credit).
    pub window: u32,
}

/// One decoded frame's meaning; byte payloads borrow the decoder's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// The sync marker (a Hello follows).
    Sync,
    /// A session start.
    Hello(Hello),
    /// A JSON control message.
    Control(&'a [u8]),
    /// Open a stream to a TCP or UDP target (host to guest).
    Open {
        /// Transport.
        proto: Proto,
        /// Target address, as seen from the guest.
        addr: SocketAddr,
    },
    /// Open a stream to a unix socket in the guest (an Open frame with proto 3): its path,
    /// UTF-8, 1 to 4096 bytes.
    OpenUnix(&'a [u8]),
    /// The answer to Open: `Ok` or the error text.
    OpenResult(Result<(), &'a [u8]>),
    /// Stream bytes (counted against the receiver's window).
    Data(&'a [u8]),
    /// The sender will send no more data on the stream (half-close).
    CloseWrite,
    /// The stream is gone both ways (reset), with an optional reason text.
    Close(&'a [u8]),
    /// The receiver consumed this many bytes: the sender may send that much more.
    Window(u32),
    /// A UDP datagram on a flow (the frame's stream id), with an optional address (the
    /// target from the host, the source from the guest).
    Datagram {
        /// The target or source address.
        addr: Option<SocketAddr>,
        /// The datagram.
        data: &'a [u8],
    },
    /// A liveness probe.
    Ping(u64),
    /// The answer to Ping with its token.
    Pong(u64),
}

impl Message<'_> {
    /// The frame type's name (for errors and logs).
    pub fn name(&self) -> &'static str {
        type_name(self.type_byte())
    }

    fn type_byte(&self) -> u8 {
        match self {
            Message::Sync => ty::SYNC,
            Message::Hello(_) => ty::HELLO,
            Message::Control(_) => ty::CONTROL,
            Message::Open { .. } | Message::OpenUnix(_) => ty::OPEN,
            Message::OpenResult(_) => ty::OPEN_RESULT,
            Message::Data(_) => ty::DATA,
            Message::CloseWrite => ty::CLOSE_WRITE,
            Message::Close(_) => ty::CLOSE,
            Message::Window(_) => ty::WINDOW,
            Message::Datagram { .. } => ty::DATAGRAM,
            Message::Ping(_) => ty::PING,
            Message::Pong(_) => ty::PONG,
        }
    }
}

fn type_name(t: u8) -> &'static str {
    match t {
        ty::SYNC => "sync",
        ty::HELLO => "hello",
        ty::CONTROL => "control",
        ty::OPEN => "open",
        ty::OPEN_RESULT => "open-result",
        ty::DATA => "data",
        ty::CLOSE_WRITE => "close-write",
        ty::CLOSE => "close",
        ty::WINDOW => "window",
        ty::DATAGRAM => "datagram",
        ty::PING => "ping",
        ty::PONG => "pong",
        _ => "unknown",
    }
}

/// Whether frames of this type carry stream id 0 (session frames) or any id (datagram
/// flows) or a non-zero id (stream frames).
enum StreamRule {
    Zero,
    Any,
    NonZero,
}

fn stream_rule(t: u8) -> StreamRule {
    match t {
        ty::HELLO | ty::CONTROL | ty::PING | ty::PONG | ty::SYNC => StreamRule::Zero,
        ty::DATAGRAM => StreamRule::Any,
        _ => StreamRule::NonZero,
    }
}

/// One frame: a stream id (0 for session frames, the flow id for datagrams) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The stream (or flow) id.
    pub stream: u32,
    /// What the frame says.
    pub msg: Message<'a>,
}

fn addr_len(addr: Option<&SocketAddr>) -> usize {
    match addr {
        None => 1,
        Some(SocketAddr::V4(_)) => 1 + 4 + 2,
        Some(SocketAddr::V6(_)) => 1 + 16 + 2,
    }
}

fn put_addr(out: &mut Vec<u8>, addr: Option<&SocketAddr>) {
    match addr {
        None => out.push(0),
        Some(SocketAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        Some(SocketAddr::V6(a)) => {
            out.push(6);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
    }
}

/// Parses an address (family byte 0, 4 or 6) at the start of `p`; returns it and the rest.
fn get_addr(p: &[u8]) -> Option<(Option<SocketAddr>, &[u8])> {
    let (&family, rest) = p.split_first()?;
    match family {
        0 => Some((None, rest)),
        4 => {
            let ip: [u8; 4] = rest.get(..4)?.try_into().ok()?;
            let port: [u8; 2] = rest.get(4..6)?.try_into().ok()?;
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), u16::from_be_bytes(port));
            Some((Some(addr), rest.get(6..)?))
        }
        6 => {
            let ip: [u8; 16] = rest.get(..16)?.try_into().ok()?;
            let port: [u8; 2] = rest.get(16..18)?.try_into().ok()?;
            let addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), u16::from_be_bytes(port));
            Some((Some(addr), rest.get(18..)?))
        }
        _ => None,
    }
}

fn u64_at(p: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(p.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?))
}

/// Appends one frame header.
fn put_header(out: &mut Vec<u8>, t: u8, stream: u32, len: usize) {
    out.push(MAGIC);
    out.push(t);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(&(len as u32).to_be_bytes());
}

impl Frame<'_> {
    /// The payload length this frame encodes to.
    pub fn payload_len(&self) -> usize {
        match &self.msg {
            Message::Sync => 0,
            Message::Hello(_) => HELLO_LEN,
            Message::Control(b) | Message::Data(b) | Message::Close(b) => b.len(),
            Message::Open { addr, .. } => 1 + addr_len(Some(addr)),
            Message::OpenUnix(path) => 1 + path.len(),
            Message::OpenResult(Ok(())) => 1,
            Message::OpenResult(Err(t)) => 1 + t.len(),
            Message::CloseWrite => 0,
            Message::Window(_) => 4,
            Message::Datagram { addr, data } => addr_len(addr.as_ref()) + data.len(),
            Message::Ping(_) | Message::Pong(_) => 8,
        }
    }

    /// Appends the encoded frame to `out`; a payload above [`MAX_PAYLOAD`] is an error and
    /// appends nothing. Sync ignores the stream id (it is the fixed marker).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let len = self.payload_len();
        if len > MAX_PAYLOAD {
            return Err(FrameError::Oversize {
                len: u32::try_from(len).unwrap_or(u32::MAX),
                max: MAX_PAYLOAD,
            });
        }
        let t = self.msg.type_byte();
        let bad_stream = match stream_rule(t) {
            StreamRule::Zero => self.stream != 0,
            StreamRule::NonZero => self.stream == 0,
            StreamRule::Any => false,
        };
        if bad_stream && t != ty::SYNC {
            return Err(FrameError::BadStream {
                ty: type_name(t),
                stream: self.stream,
            });
        }
        if let Message::Sync = self.msg {
            out.extend_from_slice(&SYNC);
            return Ok(());
        }
        out.reserve(HEADER_LEN + len);
        put_header(out, t, self.stream, len);
        match &self.msg {
            Message::Sync | Message::CloseWrite => {}
            Message::Hello(h) => {
                out.extend_from_slice(&h.version.to_be_bytes());
                out.push(match h.role {
                    Role::Host => 1,
                    Role::Guest => 2,
                });
                out.push(0);
                out.extend_from_slice(&h.nonce.to_be_bytes());
                out.extend_from_slice(&h.echo.to_be_bytes());
                out.extend_from_slice(&h.window.to_be_bytes());
            }
            Message::Control(b) | Message::Data(b) | Message::Close(b) => out.extend_from_slice(b),
            Message::Open { proto, addr } => {
                out.push(proto.byte());
                put_addr(out, Some(addr));
            }
            Message::OpenUnix(path) => {
                out.push(Proto::Unix.byte());
                out.extend_from_slice(path);
            }
            Message::OpenResult(Ok(())) => out.push(0),
            Message::OpenResult(Err(t)) => {
                out.push(1);
                out.extend_from_slice(t);
            }
            Message::Window(n) => out.extend_from_slice(&n.to_be_bytes()),
            Message::Datagram { addr, data } => {
                put_addr(out, addr.as_ref());
                out.extend_from_slice(data);
            }
            Message::Ping(t) | Message::Pong(t) => out.extend_from_slice(&t.to_be_bytes()),
        }
        Ok(())
    }
}

/// Appends a Data frame header for `len` bytes on `stream` (the caller appends the bytes):
/// the writer's fast path, which avoids building a [`Frame`].
pub(crate) fn put_data_header(out: &mut Vec<u8>, stream: u32, len: usize) {
    put_header(out, ty::DATA, stream, len);
}

/// A checked header: type, stream id, payload length.
struct Header {
    t: u8,
    stream: u32,
    len: usize,
}

fn parse_header(h: &[u8]) -> Result<Header, FrameError> {
    let get = |i: usize| h.get(i).copied().unwrap_or(0);
    if get(0) != MAGIC {
        return Err(FrameError::BadMagic(get(0)));
    }
    let t = get(1);
    if t == ty::SYNC {
        return if h.get(..HEADER_LEN) == Some(&SYNC[..]) {
            Ok(Header {
                t,
                stream: 0,
                len: 0,
            })
        } else {
            Err(FrameError::BadSync)
        };
    }
    if t > ty::PONG {
        return Err(FrameError::BadType(t));
    }
    let flags = u16::from_be_bytes([get(2), get(3)]);
    if flags != 0 {
        return Err(FrameError::BadFlags(flags));
    }
    let stream = u32::from_be_bytes([get(4), get(5), get(6), get(7)]);
    let len32 = u32::from_be_bytes([get(8), get(9), get(10), get(11)]);
    let len = usize::try_from(len32).unwrap_or(usize::MAX);
    if len > MAX_PAYLOAD {
        return Err(FrameError::Oversize {
            len: len32,
            max: MAX_PAYLOAD,
        });
    }
    Ok(Header { t, stream, len })
}

/// Parses a payload for a checked header.
fn parse_payload<'a>(h: &Header, p: &'a [u8]) -> Result<Message<'a>, FrameError> {
    let name = type_name(h.t);
    let bad = |reason: &'static str| FrameError::BadPayload {
        ty: name,
        stream: h.stream,
        reason,
    };
    let bad_stream = match stream_rule(h.t) {
        StreamRule::Zero => h.stream != 0,
        StreamRule::NonZero => h.stream == 0,
        StreamRule::Any => false,
    };
    if bad_stream {
        return Err(FrameError::BadStream {
            ty: name,
            stream: h.stream,
        });
    }
    let exact = |n: usize| {
        if p.len() == n {
            Ok(())
        } else {
            Err(bad("wrong length"))
        }
    };
    Ok(match h.t {
        ty::SYNC => Message::Sync,
        ty::HELLO => {
            exact(HELLO_LEN)?;
            let version = u16::from_be_bytes([p[0], p[1]]);
            let role = match p[2] {
                1 => Role::Host,
                2 => Role::Guest,
                _ => return Err(bad("unknown role")),
            };
            if p[3] != 0 {
                return Err(bad("reserved byte is not zero"));
            }
            let nonce = u64_at(p, 4).ok_or_else(|| bad("short"))?;
            if nonce == 0 {
                return Err(bad("zero nonce"));
            }
            let echo = u64_at(p, 12).ok_or_else(|| bad("short"))?;
            let window = u32_at(p, 20).ok_or_else(|| bad("short"))?;
            if window == 0 {
                return Err(bad("zero window"));
            }
            Message::Hello(Hello {
                version,
                role,
                nonce,
                echo,
                window,
            })
        }
        ty::CONTROL => Message::Control(p),
        ty::OPEN => {
            let (&proto, rest) = p.split_first().ok_or_else(|| bad("empty"))?;
            let proto = match proto {
                1 => Proto::Tcp,
                2 => Proto::Udp,
                3 => {
                    if rest.is_empty()
                        || rest.len() > MAX_UNIX_PATH
                        || rest.contains(&0)
                        || std::str::from_utf8(rest).is_err()
                    {
                        return Err(bad("bad unix socket path"));
                    }
                    return Ok(Message::OpenUnix(rest));
                }
                _ => return Err(bad("unknown proto")),
            };
            match get_addr(rest) {
                Some((Some(addr), [])) => Message::Open { proto, addr },
                _ => return Err(bad("bad address")),
            }
        }
        ty::OPEN_RESULT => match p.split_first() {
            Some((0, [])) => Message::OpenResult(Ok(())),
            Some((1, text)) => Message::OpenResult(Err(text)),
            _ => return Err(bad("bad status")),
        },
        ty::DATA => Message::Data(p),
        ty::CLOSE_WRITE => {
            exact(0)?;
            Message::CloseWrite
        }
        ty::CLOSE => Message::Close(p),
        ty::WINDOW => {
            exact(4)?;
            let n = u32_at(p, 0).ok_or_else(|| bad("short"))?;
            if n == 0 {
                return Err(bad("zero increment"));
            }
            Message::Window(n)
        }
        ty::DATAGRAM => {
            let (addr, data) = get_addr(p).ok_or_else(|| bad("bad address"))?;
            Message::Datagram { addr, data }
        }
        ty::PING | ty::PONG => {
            exact(8)?;
            let t = u64_at(p, 0).ok_or_else(|| bad("short"))?;
            if h.t == ty::PING {
                Message::Ping(t)
            } else {
                Message::Pong(t)
            }
        }
        other => return Err(FrameError::BadType(other)),
    })
}

/// Where the decoder is: looking for the marker, expecting the Hello after it, or reading
/// frames of an established session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderState {
    /// Discarding bytes until the sync marker.
    Scan,
    /// The marker was seen; the next frame must be Hello (anything else: back to Scan).
    AwaitHello,
    /// In a session: every frame is checked and returned.
    Synced,
}

/// The decoder's buffer size: room for several maximal frames.
const BUF_LEN: usize = 4 * (HEADER_LEN + MAX_PAYLOAD);

/// An incremental frame decoder over one fixed buffer. Fill it with [`Decoder::spare`] and
/// [`Decoder::filled`] (or [`Decoder::feed`]), then call [`Decoder::next_frame`] until it
/// returns `Ok(None)`. It starts in [`DecoderState::Scan`].
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    state: DecoderState,
    skipped: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// One step of the decoder, without borrowing the buffer.
enum Step {
    NeedMore,
    Again,
    Frame { at: usize, len: usize },
    Err(FrameError),
}

impl Decoder {
    /// A decoder in scan mode with an empty buffer.
    pub fn new() -> Decoder {
        Decoder {
            buf: vec![0; BUF_LEN],
            start: 0,
            end: 0,
            state: DecoderState::Scan,
            skipped: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> DecoderState {
        self.state
    }

    /// Bytes discarded while scanning for the marker, in total.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Go back to scanning (e.g. after the local side restarted its session).
    pub fn resync(&mut self) {
        self.state = DecoderState::Scan;
    }

    /// Free space to read into (never empty: at least one maximal frame's worth).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < HEADER_LEN + MAX_PAYLOAD {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let end = self.end;
        &mut self.buf[end..]
    }

    /// Records that `n` bytes were written into [`Decoder::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Copies as much of `data` as fits; returns how many bytes were taken. Call
    /// [`Decoder::next_frame`] until `Ok(None)` before feeding more.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let spare = self.spare();
        let n = spare.len().min(data.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.filled(n);
        n
    }

    /// The next frame, `Ok(None)` when more bytes are needed, or an error for a bad frame
    /// (header errors also switch to scanning; payload errors skip just that frame).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        loop {
            match self.step() {
                Step::NeedMore => return Ok(None),
                Step::Again => continue,
                Step::Err(e) => return Err(e),
                Step::Frame { at, len } => {
                    let bytes = &self.buf[at..at + len];
                    let header = parse_header(bytes)?;
                    let payload = bytes.get(HEADER_LEN..).unwrap_or(&[]);
                    let msg = parse_payload(&header, payload)?;
                    return Ok(Some(Frame {
                        stream: header.stream,
                        msg,
                    }));
                }
            }
        }
    }

    fn step(&mut self) -> Step {
        let avail = &self.buf[self.start..self.end];
        if self.state == DecoderState::Scan {
            if let Some(i) = avail.windows(SYNC.len()).position(|w| w == SYNC) {
                self.skipped += i as u64;
                self.start += i + SYNC.len();
                self.state = DecoderState::AwaitHello;
                return Step::Again;
            }
            let drop = avail.len().saturating_sub(SYNC.len() - 1);
            self.skipped += drop as u64;
            self.start += drop;
            return Step::NeedMore;
        }
        if avail.len() < HEADER_LEN {
            return Step::NeedMore;
        }
        let header = match parse_header(&avail[..HEADER_LEN]) {
            Ok(h) => h,
            Err(e) => {
                let was_synced = self.state == DecoderState::Synced;
                self.state = DecoderState::Scan;
                self.start += 1;
                self.skipped += 1;
                return if was_synced {
                    Step::Err(e)
                } else {
                    Step::Again
                };
            }
        };
        let total = HEADER_LEN + header.len;
        if avail.len() < total {
            return Step::NeedMore;
        }
        let at = self.start;
        self.start += total;
        if header.t == ty::SYNC {
            self.state = DecoderState::AwaitHello;
            return Step::Again;
        }
        let checked = parse_payload(&header, &avail[HEADER_LEN..total]).map(|m| m.type_byte());
        match (self.state, checked) {
            (DecoderState::AwaitHello, Ok(ty::HELLO)) => {
                self.state = DecoderState::Synced;
                Step::Frame { at, len: total }
            }
            (DecoderState::AwaitHello, _) => {
                // Not the Hello that must follow the marker: keep scanning inside it.
                self.start = at + 1;
                self.skipped += 1;
                self.state = DecoderState::Scan;
                Step::Again
            }
            (_, Ok(_)) => Step::Frame { at, len: total },
            (_, Err(e)) => Step::Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            version: VERSION,
            role: Role::Host,
            nonce: 7,
            echo: 0,
            window: 1 << 18,
        }
    }

    fn enc(frames: &[Frame<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            f.encode(&mut out).unwrap();
        }
        out
    }

    fn all(d: &mut Decoder) -> Vec<Result<String, FrameError>> {
        let mut got = Vec::new();
        loop {
            match d.next_frame() {
                Ok(Some(f)) => got.push(Ok(format!("{f:?}"))),
                Ok(None) => return got,
                Err(e) => got.push(Err(e)),
            }
        }
    }

    #[test]
    fn roundtrip_every_type() {
        let addr4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let addr6: SocketAddr = "[::1]:53".parse().unwrap();
        let frames = vec![
            Frame {
                stream: 0,
                msg: Message::Hello(hello()),
            },
            Frame {
                stream: 0,
                msg: Message::Control(br#"{"a":1}"#),
            },
            Frame {
                stream: 3,
                msg: Message::Open {
                    proto: Proto::Tcp,
                    addr: addr4,
                },
            },
            Frame {
                stream: 3,
                msg: Message::Open {
                    proto: Proto::Udp,
                    addr: addr6,
                },
            },
            Frame {
                stream: 9,
                msg: Message::OpenUnix(b"/run/user/1000/app.sock"),
            },
            Frame {
                stream: 3,
                msg: Message::OpenResult(Ok(())),
            },
            Frame {
                stream: 3,
                msg: Message::OpenResult(Err(b"refused")),
            },
            Frame {
                stream: 3,
                msg: Message::Data(b"hello"),
            },
            Frame {
                stream: 3,
                msg: Message::CloseWrite,
            },
            Frame {
                stream: 3,
                msg: Message::Close(b""),
            },
            Frame {
                stream: 3,
                msg: Message::Window(65536),
            },
            Frame {
                stream: 0,
                msg: Message::Datagram {
                    addr: None,
                    data: b"x",
                },
            },
            Frame {
                stream: 9,
                msg: Message::Datagram {
                    addr: Some(addr6),
                    data: b"",
                },
            },
            Frame {
                stream: 0,
                msg: Message::Ping(1),
            },
            Frame {
                stream: 0,
                msg: Message::Pong(u64::MAX),
            },
        ];
        let mut bytes = SYNC.to_vec();
        bytes.extend(enc(&frames));
        let mut d = Decoder::new();
        assert_eq!(d.feed(&bytes), bytes.len());
        let mut got = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            got.push(format!("{f:?}"));
        }
        let want: Vec<String> = frames.iter().map(|f| format!("{f:?}")).collect();
        assert_eq!(got, want);
        assert_eq!(d.state(), DecoderState::Synced);
    }

    #[test]
    fn scan_skips_garbage_and_half_frames() {
        let mut bytes = b"garbage\xa7\x05".to_vec();
        let data = enc(&[Frame {
            stream: 1,
            msg: Message::Data(b"0123456789"),
        }]);
        bytes.extend_from_slice(&data[..data.len() / 2]);
        bytes.extend_from_slice(&data); // a whole frame, but before the marker: skipped
        bytes.extend_from_slice(&SYNC);
        bytes.extend(enc(&[Frame {
            stream: 0,
            msg: Message::Hello(hello()),
        }]));
        bytes.extend(enc(&[Frame {
            stream: 1,
            msg: Message::Data(b"ok"),
        }]));
        // One byte at a time: the marker may be split across reads.
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &bytes {
            d.feed(std::slice::from_ref(b));
            got.extend(all(&mut d));
        }
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].as_ref().unwrap().contains("Hello"));
        assert!(got[1].as_ref().unwrap().contains("Data"));
    }

    #[test]
    fn marker_without_hello_goes_back_to_scanning() {
        let mut bytes = SYNC.to_vec();
        bytes.extend(enc(&[Frame {
            stream: 1,
            msg: Message::Data(b"no"),
        }]));
        let mut d = Decoder::new();
        d.feed(&bytes);
        assert!(all(&mut d).is_empty());
        assert_eq!(d.state(), DecoderState::Scan);
    }

    #[test]
    fn rejects_bad_headers_and_payloads() {
        let mut prefix = SYNC.to_vec();
        prefix.extend(enc(&[Frame {
            stream: 0,
            msg: Message::Hello(hello()),
        }]));
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (vec![0x00; 12], FrameError::BadMagic(0)),
            (
                vec![MAGIC, 0x42, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
                FrameError::BadType(0x42),
            ),
            (
                vec![MAGIC, 0x05, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0],
                FrameError::BadFlags(1),
            ),
            (
                vec![MAGIC, 0x05, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff],
                FrameError::Oversize {
                    len: u32::MAX,
                    max: MAX_PAYLOAD,
                },
            ),
            (
                vec![MAGIC, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                FrameError::BadStream {
                    ty: "data",
                    stream: 0,
                },
            ),
            (
                vec![MAGIC, 0x08, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 9],
                FrameError::BadPayload {
                    ty: "window",
                    stream: 1,
                    reason: "wrong length",
                },
            ),
            // A unix open with an empty path, a NUL in it, or bytes that are not UTF-8.
            (
                vec![MAGIC, 0x03, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 3],
                FrameError::BadPayload {
                    ty: "open",
                    stream: 1,
                    reason: "bad unix socket path",
                },
            ),
            (
                vec![MAGIC, 0x03, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3, 3, b'/', 0],
                FrameError::BadPayload {
                    ty: "open",
                    stream: 1,
                    reason: "bad unix socket path",
                },
            ),
            (
                vec![MAGIC, 0x03, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3, 3, b'/', 0xff],
                FrameError::BadPayload {
                    ty: "open",
                    stream: 1,
                    reason: "bad unix socket path",
                },
            ),
        ];
        for (bad, want) in cases {
            let mut d = Decoder::new();
            let mut bytes = prefix.clone();
            bytes.extend_from_slice(&bad);
            d.feed(&bytes);
            let got = all(&mut d);
            assert!(got[0].is_ok());
            assert_eq!(got[1], Err(want.clone()), "{bad:?}");
            assert_eq!(
                d.state() == DecoderState::Scan,
                want.loses_sync(),
                "{want:?}"
            );
        }
    }

    #[test]
    fn encode_refuses_oversize_and_bad_stream_ids() {
        let big = vec![0u8; MAX_PAYLOAD + 1];
        let mut out = Vec::new();
        assert!(Frame {
            stream: 1,
            msg: Message::Data(&big)
        }
        .encode(&mut out)
        .is_err());
        assert!(Frame {
            stream: 0,
            msg: Message::Data(b"x")
        }
        .encode(&mut out)
        .is_err());
        assert!(Frame {
            stream: 1,
            msg: Message::Ping(1)
        }
        .encode(&mut out)
        .is_err());
        assert!(out.is_empty());
    }

    /// A seeded xorshift: random bytes, random-ish headers, never a panic.
    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..300 {
            let mut d = Decoder::new();
            if round % 2 == 0 {
                d.feed(&SYNC);
                let mut h = Vec::new();
                Frame {
                    stream: 0,
                    msg: Message::Hello(hello()),
                }
                .encode(&mut h)
                .unwrap();
                d.feed(&h);
            }
            for _ in 0..50 {
                let len = (next() % 300) as usize;
                let mut chunk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if next() % 3 == 0 && chunk.len() >= 12 {
                    // A plausible header: magic, a known type, small length.
                    chunk[0] = MAGIC;
                    chunk[1] = (next() % 13) as u8;
                    chunk[2] = 0;
                    chunk[3] = 0;
                    chunk[8] = 0;
                    chunk[9] = 0;
                    chunk[10] = 0;
                    chunk[11] = (next() % 40) as u8;
                }
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    let n = d.feed(rest);
                    rest = &rest[n..];
                    for _ in 0..10_000 {
                        if let Ok(None) = d.next_frame() {
                            break;
                        }
                    }
                }
            }
        }
    }
}
