//! The crate's error types: [`FrameError`] for bytes that are not a valid frame (the codec's
//! answer, never a panic) and [`MuxError`] for everything the multiplexer reports to its user.

use std::time::Duration;

use thiserror::Error;

/// Why bytes read from the channel are not a valid frame. Header errors make the decoder
/// lose sync (it then scans for the sync marker); payload errors skip only that frame.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The first header byte is not the protocol's magic byte.
    #[error("bad magic byte {0:#04x}")]
    BadMagic(u8),
    /// The type byte names no frame type.
    #[error("unknown frame type {0:#04x}")]
    BadType(u8),
    /// The reserved flags are not zero.
    #[error("reserved flags {0:#06x} are not zero")]
    BadFlags(u16),
    /// The length is above the maximum payload.
    #[error("payload length {len} is above the maximum {max}")]
    Oversize {
        /// The length in the header.
        len: u32,
        /// The maximum payload length.
        max: usize,
    },
    /// A sync marker was damaged (type 0 but not the whole marker).
    #[error("damaged sync marker")]
    BadSync,
    /// The stream id is not allowed for this frame type (0 for session frames, non-zero
    /// for stream frames).
    #[error("stream id {stream} is not allowed for a {ty} frame")]
    BadStream {
        /// The frame type's name.
        ty: &'static str,
        /// The stream id in the header.
        stream: u32,
    },
    /// The payload does not parse for its frame type.
    #[error("bad {ty} payload on stream {stream}: {reason}")]
    BadPayload {
        /// The frame type's name.
        ty: &'static str,
        /// The stream id in the header.
        stream: u32,
        /// What is wrong.
        reason: &'static str,
    },
}

impl FrameError {
    /// Whether the error is in the header (the decoder lost sync) rather than in one
    /// frame's payload (the frame was skipped and the decoder is still in sync).
    pub fn loses_sync(&self) -> bool {
        !matches!(
            self,
            FrameError::BadPayload { .. } | FrameError::BadStream { .. }
        )
    }
}

/// What the multiplexer reports: why the session ended, why an open failed, a misuse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MuxError {
    /// Reading or writing the channel failed.
    #[error("channel i/o error ({kind:?}): {message}")]
    Io {
        /// The error's kind.
        kind: std::io::ErrorKind,
        /// The error's text.
        message: String,
    },
    /// The peer closed the channel (end of file).
    #[error("the peer closed the channel")]
    PeerEof,
    /// A write to the channel made no progress for the write timeout: the peer is gone or
    /// not reading.
    #[error("a write to the channel made no progress for {0:?}")]
    WriteTimeout(Duration),
    /// Nothing was read from the peer for three keepalive intervals.
    #[error("no answer from the peer for {0:?}")]
    KeepaliveTimeout(Duration),
    /// The local side shut the multiplexer down (it was dropped or closed).
    #[error("the multiplexer was shut down")]
    Shutdown,
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: ours {ours}, the peer's {theirs}")]
    Version {
        /// Our version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// The peer has the same role as we do (two hosts or two guests).
    #[error("the peer has the same role ({0:?})")]
    SameRole(crate::Role),
    /// The operation is for the other role (only the host opens streams, only the guest
    /// accepts them).
    #[error("{op} is not available to the {role:?} side")]
    WrongRole {
        /// The operation.
        op: &'static str,
        /// Our role.
        role: crate::Role,
    },
    /// The stream table is full.
    #[error("too many streams (at most {0})")]
    TooManyStreams(usize),
    /// The guest answered an open with an error (e.g. connection refused).
    #[error("open rejected by the peer: {0}")]
    OpenRejected(String),
    /// The peer restarted its session (or we lost sync) while the operation was under way.
    #[error("the session was reset")]
    SessionReset,
    /// The stream was closed before the operation.
    #[error("the stream is closed")]
    StreamClosed,
    /// A payload is larger than one frame can carry.
    #[error("payload of {len} bytes is above the maximum {max}")]
    TooLarge {
        /// The payload length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// An open's target cannot be sent (e.g. an empty or too long unix socket path).
    #[error("bad open target: {0}")]
    BadTarget(String),
    /// A control message could not be encoded as JSON.
    #[error("control message is not valid JSON: {0}")]
    Json(String),
}

impl MuxError {
    pub(crate) fn io(e: &std::io::Error) -> MuxError {
        MuxError::Io {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}
