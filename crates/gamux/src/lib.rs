//! `gamux` — layer 1.0 (guest-side kind, also used by the host side): the guest agent's wire
//! protocol (issue 9). The guest agent (inside the VM) and the host agent talk over one byte
//! channel — qemu's virtio-serial port (`/dev/virtio-ports/io.lima-vm.guest_agent.0` in the
//! guest, the unix socket `ga.sock` on the host, which the host agent may leave and rejoin at
//! any time). Over it this crate carries a JSON control channel, many byte streams (one per
//! forwarded TCP or unix-socket connection, opened by the host with a target), and UDP
//! datagrams per flow.
//! No workspace dependencies.
//!
//! # API
//!
//! [`Mux::new`]`(io, Role::Host | Role::Guest)` over any `AsyncRead + AsyncWrite + Send`
//! (split into a reader task and a writer task). The host calls [`Mux::open`]`(proto, addr)`
//! [`Mux::open_unix`]`(path)` or [`Mux::open_target`] and gets a [`Stream`] (`AsyncRead + AsyncWrite`; `shutdown()` half-closes). The guest
//! calls [`Mux::accept`] and answers each [`OpenRequest`] with [`Responder::accept`] (after
//! connecting to the target) or [`Responder::reject`]. Both sides have
//! [`Mux::send_control`] / [`Mux::recv_control`] (JSON), [`Mux::send_datagram`] /
//! [`Mux::recv_datagram`], [`Mux::ping`], [`Mux::watch_session`] (the peer's session
//! generation: the guest re-announces its ports when the host reconnects) and
//! [`Mux::closed`]. [`frame`] is the I/O-free codec.
//!
//! # Frames
//!
//! Every frame is a 12-byte header and a payload of at most [`MAX_PAYLOAD`] (64 KiB); all
//! integers are big endian.
//!
//! | bytes | field | value |
//! | --- | --- | --- |
//! | 0 | magic | `0xA7` |
//! | 1 | type | see below |
//! | 2–3 | flags | reserved, must be 0 |
//! | 4–7 | stream | stream id (0 for session frames; the flow id for Datagram) |
//! | 8–11 | length | payload length, ≤ 65536 |
//!
//! | type | name | stream | payload |
//! | --- | --- | --- | --- |
//! | `0x00` | Sync | — | none: the whole 12-byte marker is `A7 00 "gamux/sync"` |
//! | `0x01` | Hello | 0 | version u16, role u8 (1 host, 2 guest), 0 u8, nonce u64 (≠ 0), echo u64 (the peer nonce last seen, 0 none), window u32 (≠ 0) |
//! | `0x02` | Control | 0 | JSON |
//! | `0x03` | Open | ≠ 0 | proto u8 (1 tcp, 2 udp) and an address; or proto 3 (unix) and the socket's path (UTF-8, no NUL, 1–4096 bytes) |
//! | `0x04` | OpenResult | ≠ 0 | 0 (ok) or 1 followed by UTF-8 error text |
//! | `0x05` | Data | ≠ 0 | bytes |
//! | `0x06` | CloseWrite | ≠ 0 | none: the sender will send no more data (half-close) |
//! | `0x07` | Close | ≠ 0 | optional UTF-8 reason: the stream is gone both ways (reset) |
//! | `0x08` | Window | ≠ 0 | increment u32 (≠ 0) |
//! | `0x09` | Datagram | flow | address or `0`, then the datagram |
//! | `0x0A` | Ping | 0 | token u64 |
//! | `0x0B` | Pong | 0 | the Ping's token |
//!
//! An address is a family byte (`0` none, `4` then 4 bytes, `6` then 16 bytes) and, for 4
//! and 6, a port u16. The codec rejects a bad magic, type, flags or length (it then has lost
//! sync) and a payload or stream id that does not fit its type (that frame is skipped);
//! it never allocates: it parses in place in one fixed buffer of four maximal frames.
//!
//! # Streams
//!
//! Only the host opens streams; it picks the ids (never 0, never one in use). Open is
//! answered by OpenResult. Each direction ends with CloseWrite (the other direction goes on:
//! a client can shut down its write side and still receive the reply) and a stream is
//! forgotten by a side when its handle is dropped: if both CloseWrites were exchanged
//! nothing more is sent, otherwise the drop sends Close and the peer's reads fail with
//! `ConnectionReset` (after any data already received), its writes too. Frames for unknown
//! streams are ignored (they race with a Close).
//!
//! # Flow control
//!
//! Each side advertises in Hello its per-stream receive window `W` (default 256 KiB). A
//! sender starts each stream with `W` bytes of credit, spends it on Data, and waits when it
//! has none; the receiver buffers at most `W` bytes per stream and grants the bytes its
//! user has read back with Window once they reach `W/4`. Data beyond the window resets the
//! stream. So a stream whose reader never reads stops only its own sender: the reader task
//! never waits on a stream, and the channel keeps flowing for the others. Memory is bounded
//! by `W × max_streams` for streams, by [`Config::outbox_limit`] for queued control,
//! datagram and open frames, and by fixed queue lengths on the receiving side (control and
//! datagrams beyond them are dropped and counted, opens beyond the backlog are rejected).
//!
//! # Datagrams
//!
//! UDP needs no stream: the host gives each (client address, guest port) pair a flow id and
//! sends Datagram frames carrying the target address; the guest keeps one UDP socket per
//! flow and answers on the same flow id with the source address. Datagrams are never
//! stored beyond a fixed queue: when the receiver lags they are dropped, as UDP would.
//!
//! # Sessions, resync and dead peers
//!
//! Each side starts by sending one maximal frame's worth of zero bytes (65548: they complete
//! any frame a previous writer on the channel left half-written, so a peer reader stuck
//! mid-frame then sees a bad header and rescans), then Sync, then Hello with a fresh random
//! nonce; its reader starts by scanning: it discards bytes (a half frame, stale bytes from an earlier host
//! connection) until the marker, then expects a Hello (anything else: scan again). A Hello
//! with a nonce different from the last one seen starts a new peer session: every stream
//! of the old one is reset, and [`Mux::watch_session`] reports the new generation. A side
//! answers with its own Sync + Hello whenever the peer's nonce is new or the peer's echo is
//! not its own nonce, so both sides converge after at most two Hellos each. A header that
//! does not parse mid-session means lost sync: the side resets its streams, takes a new
//! nonce and sends Sync + Hello, which makes the peer reset and answer likewise.
//!
//! The writer task writes whatever is queued in one buffer; a write that makes no progress
//! for [`Config::write_timeout`] (default 10 s) ends the session, as do EOF, an I/O error
//! and (if enabled) [`Config::keepalive`] seeing nothing from the peer for three intervals.
//! The end wakes every stream, open, accept and receive with the reason, so a guest
//! writer blocked on a virtio-serial port whose host side went away cannot wedge the
//! agent: the agent then opens the port again and starts a new [`Mux`].
//!
//! A limit: when the peer's reader was in the middle of a Data frame, the zero filler that
//! completes it is delivered to that (old-session) stream just before the stream is reset;
//! frames carry no checksum.

pub mod error;
pub mod frame;
mod mux;
mod stream;

pub use error::{FrameError, MuxError};
pub use frame::{Proto, Target, MAX_PAYLOAD, MAX_UNIX_PATH};
pub use mux::{Config, Datagram, Mux, Session, Stats};
pub use stream::{OpenRequest, Responder, Stream};

/// Which end of the channel this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The host agent: opens streams.
    Host,
    /// The guest agent: accepts streams and connects them to their targets.
    Guest,
}
