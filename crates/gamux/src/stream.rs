//! One multiplexed byte stream: its shared state (receive buffer bounded by the window, send
//! credit, half-close and reset flags, wakers), the [`Stream`] handle (`AsyncRead` +
//! `AsyncWrite`; `shutdown` sends CloseWrite, drop sends Close unless both directions ended)
//! and the guest's [`Responder`] for an open request.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use crate::error::MuxError;
use crate::frame::{Frame, Message, Target, MAX_PAYLOAD};
use crate::mux::{lock, Shared};

/// Why a stream ended abruptly.
#[derive(Debug, Clone)]
pub(crate) enum Reset {
    /// The peer sent Close.
    Peer(String),
    /// Our handle was dropped.
    Local,
    /// The session ended or was reset.
    Session(MuxError),
    /// The peer broke the protocol on this stream (e.g. exceeded the window).
    Protocol(&'static str),
    /// The open was rejected or never answered.
    Rejected,
}

impl Reset {
    fn io_error(&self) -> io::Error {
        match self {
            Reset::Peer(r) if r.is_empty() => {
                io::Error::new(io::ErrorKind::ConnectionReset, "stream closed by the peer")
            }
            Reset::Peer(r) => io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("stream closed by the peer: {r}"),
            ),
            Reset::Local => io::Error::new(io::ErrorKind::NotConnected, "stream closed"),
            Reset::Session(e) => io::Error::new(io::ErrorKind::ConnectionAborted, e.clone()),
            Reset::Protocol(what) => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("protocol error on stream: {what}"),
            ),
            Reset::Rejected => io::Error::new(io::ErrorKind::NotConnected, "stream not opened"),
        }
    }
}

/// A stream's mutable state, behind [`StreamShared::state`].
#[derive(Default)]
pub(crate) struct StreamState {
    /// Received chunks not yet read, and the read offset into the first.
    pub(crate) recv: VecDeque<Vec<u8>>,
    pub(crate) recv_off: usize,
    /// Bytes in `recv` (from `recv_off`).
    pub(crate) recv_len: usize,
    /// Bytes read by the user and not yet granted back with Window.
    pub(crate) consumed: usize,
    /// The peer sent CloseWrite.
    pub(crate) recv_eof: bool,
    /// We sent CloseWrite.
    pub(crate) sent_close_write: bool,
    pub(crate) reset: Option<Reset>,
    /// Bytes we may still send.
    pub(crate) credit: usize,
    pub(crate) read_waker: Option<Waker>,
    pub(crate) write_waker: Option<Waker>,
    /// The host's pending open, answered by OpenResult.
    pub(crate) open_tx: Option<oneshot::Sender<Result<(), MuxError>>>,
}

impl StreamState {
    /// Wakes both directions (after a state change that ends them).
    pub(crate) fn wake_all(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    /// Marks the stream reset (unless it already is), answers a pending open and wakes.
    pub(crate) fn reset(&mut self, why: Reset, open_err: MuxError) {
        if self.reset.is_none() {
            self.reset = Some(why);
        }
        if let Some(tx) = self.open_tx.take() {
            let _ = tx.send(Err(open_err));
        }
        self.wake_all();
    }
}

/// The part of a stream shared by the handle, the reader task and the stream table.
pub(crate) struct StreamShared {
    pub(crate) id: u32,
    pub(crate) state: Mutex<StreamState>,
}

impl StreamShared {
    pub(crate) fn new(id: u32, credit: usize) -> Arc<StreamShared> {
        Arc::new(StreamShared {
            id,
            state: Mutex::new(StreamState {
                credit,
                ..StreamState::default()
            }),
        })
    }
}

/// A multiplexed byte stream. Reads return the peer's data, then EOF after its CloseWrite
/// (or an error after a reset); `shutdown` sends CloseWrite (half-close: reading goes on);
/// dropping the handle sends Close unless both directions had already ended.
pub struct Stream {
    shared: Arc<Shared>,
    ss: Arc<StreamShared>,
    target: Target,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.ss.id)
            .field("target", &self.target)
            .finish()
    }
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, ss: Arc<StreamShared>, target: Target) -> Stream {
        Stream { shared, ss, target }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.ss.id
    }

    /// What the stream was opened to (as seen from the guest).
    pub fn target(&self) -> &Target {
        &self.target
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut st = lock(&this.ss.state);
        if st.recv_len > 0 {
            let mut n = 0;
            while buf.remaining() > 0 {
                let off = st.recv_off;
                let Some(front) = st.recv.front() else { break };
                let chunk = front.get(off..).unwrap_or(&[]);
                let k = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..k]);
                let done = off + k >= front.len();
                n += k;
                if done {
                    st.recv.pop_front();
                    st.recv_off = 0;
                } else {
                    st.recv_off = off + k;
                }
            }
            st.recv_len = st.recv_len.saturating_sub(n);
            st.consumed += n;
            let threshold = (this.shared.config.window as usize / 4).max(1);
            let grant = if st.consumed >= threshold && !st.recv_eof && st.reset.is_none() {
                std::mem::take(&mut st.consumed)
            } else {
                0
            };
            drop(st);
            if grant > 0 {
                let grant = u32::try_from(grant).unwrap_or(u32::MAX);
                this.shared.out.push(&Frame {
                    stream: this.ss.id,
                    msg: Message::Window(grant),
                });
            }
            return Poll::Ready(Ok(()));
        }
        if st.recv_eof {
            return Poll::Ready(Ok(()));
        }
        if let Some(r) = &st.reset {
            return Poll::Ready(Err(r.io_error()));
        }
        st.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut st = lock(&this.ss.state);
        if let Some(r) = &st.reset {
            return Poll::Ready(Err(r.io_error()));
        }
        if st.sent_close_write {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        if st.credit == 0 {
            st.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(st.credit).min(MAX_PAYLOAD);
        st.credit -= n;
        drop(st);
        if !this.shared.out.push_data(this.ss.id, &buf[..n]) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the multiplexer is closed",
            )));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = lock(&this.ss.state);
        if st.sent_close_write || st.reset.is_some() {
            return Poll::Ready(Ok(()));
        }
        st.sent_close_write = true;
        drop(st);
        this.shared.out.push(&Frame {
            stream: this.ss.id,
            msg: Message::CloseWrite,
        });
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let send_close = {
            let mut st = lock(&self.ss.state);
            let ended = st.sent_close_write && st.recv_eof;
            let send = st.reset.is_none() && !ended;
            if st.reset.is_none() {
                st.reset = Some(Reset::Local);
            }
            send
        };
        self.shared.remove_stream(&self.ss);
        if send_close {
            self.shared.out.push(&Frame {
                stream: self.ss.id,
                msg: Message::Close(b""),
            });
        }
    }
}

/// What the host asked the guest to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// The new stream's id.
    pub stream: u32,
    /// What to connect to (as seen from the guest).
    pub target: Target,
}

/// The guest's answer to one [`OpenRequest`]: [`Responder::accept`] after connecting to the
/// target, or [`Responder::reject`] with the error. Dropping it rejects the open.
pub struct Responder {
    shared: Arc<Shared>,
    ss: Option<Arc<StreamShared>>,
    target: Target,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("stream", &self.ss.as_ref().map(|s| s.id))
            .finish()
    }
}

impl Responder {
    pub(crate) fn new(shared: Arc<Shared>, ss: Arc<StreamShared>, target: Target) -> Responder {
        Responder {
            shared,
            ss: Some(ss),
            target,
        }
    }

    /// Answers OK and returns the stream; an error if the host already closed it or the
    /// session was reset meanwhile.
    pub fn accept(mut self) -> Result<Stream, MuxError> {
        let Some(ss) = self.ss.take() else {
            return Err(MuxError::StreamClosed);
        };
        if lock(&ss.state).reset.is_some() {
            self.shared.remove_stream(&ss);
            return Err(MuxError::StreamClosed);
        }
        if !self.shared.out.push(&Frame {
            stream: ss.id,
            msg: Message::OpenResult(Ok(())),
        }) {
            self.shared.remove_stream(&ss);
            return Err(self.shared.close_reason().unwrap_or(MuxError::Shutdown));
        }
        Ok(Stream::new(self.shared.clone(), ss, self.target.clone()))
    }

    /// Answers with an error text (e.g. "connection refused"); the host's `open` fails with it.
    pub fn reject(mut self, reason: &str) {
        self.reject_inner(reason);
    }

    fn reject_inner(&mut self, reason: &str) {
        let Some(ss) = self.ss.take() else { return };
        let was_reset = {
            let mut st = lock(&ss.state);
            let was = st.reset.is_some();
            st.reset(Reset::Rejected, MuxError::StreamClosed);
            was
        };
        self.shared.remove_stream(&ss);
        if !was_reset {
            let text = truncate(reason.as_bytes(), MAX_PAYLOAD - 1);
            self.shared.out.push(&Frame {
                stream: ss.id,
                msg: Message::OpenResult(Err(text)),
            });
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.reject_inner("the guest did not answer the open");
    }
}

/// At most `max` bytes of `b`.
pub(crate) fn truncate(b: &[u8], max: usize) -> &[u8] {
    &b[..b.len().min(max)]
}
