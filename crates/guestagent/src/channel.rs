//! The byte channel to the host agent: the virtio-serial port (default
//! [`DEFAULT_DEVICE`](crate::daemon::DEFAULT_DEVICE)) or, for tests and debugging, a unix socket.
//!
//! [`Device`] opens the port read/write with `O_NONBLOCK` and drives it through tokio's
//! [`AsyncFd`] (epoll), so no thread ever sits in a blocking `read`/`write`: a virtio-serial
//! write blocks while the host side is not connected or not reading, and a blocked writer
//! must not wedge the agent. A write that waits too long is ended by `gamux`'s write timeout.
//!
//! The port's epoll semantics (Linux `virtio_console`): while the host side is not
//! connected, `poll` reports `EPOLLHUP` (and readable: `read` returns 0, end of file);
//! writes would block. tokio keeps a "closed" readiness once seen on a registration, so
//! after a hang-up the fd would look ready for ever; [`Device`] therefore treats
//! "would block" on a registration that saw a hang-up as the end of the channel (EOF for
//! reads, `BrokenPipe` for writes) instead of retrying in a loop. The daemon then opens
//! the port again, which registers it afresh.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A character device (or FIFO, socket) opened non-blocking and polled with epoll.
#[derive(Debug)]
pub struct Device {
    fd: AsyncFd<File>,
}

impl Device {
    /// Opens `path` read/write, non-blocking, close-on-exec. Must be called inside a tokio
    /// runtime. Fails for files epoll cannot watch (regular files).
    pub fn open(path: &Path) -> io::Result<Device> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)?;
        Device::from_file(file)
    }

    /// Wraps an already open file, which must be in non-blocking mode.
    pub fn from_file(file: File) -> io::Result<Device> {
        // SAFETY: the `File` owns its descriptor, and the `AsyncFd` owns the `File` and never
        // replaces or closes the descriptor while it is registered.
        let fd = unsafe { AsyncFd::register(file)? };
        Ok(Device { fd })
    }
}

impl AsyncRead for Device {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.fd.poll_read_ready(cx))?;
            let hung_up = guard.ready().is_read_closed();
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|f| f.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // A stale hang-up: end of this channel (see the module docs).
                Err(_) if hung_up => return Poll::Ready(Ok(())),
                Err(_) => continue,
            }
        }
    }
}

impl AsyncWrite for Device {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.fd.poll_write_ready(cx))?;
            let hung_up = guard.ready().is_write_closed();
            match guard.try_io(|f| f.get_ref().write(data)) {
                Ok(Ok(n)) => return Poll::Ready(Ok(n)),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_) if hung_up => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the channel's other side hung up",
                    )))
                }
                Err(_) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A serial port has no half-close; the fd closes when the device is dropped.
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn pair() -> (Device, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let file = File::from(std::os::fd::OwnedFd::from(a));
        (Device::from_file(file).unwrap(), b)
    }

    #[tokio::test]
    async fn reads_writes_and_sees_eof() {
        let (mut dev, mut peer) = pair();
        dev.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        peer.write_all(b"pong").unwrap();
        dev.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        drop(peer);
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), dev.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn opens_a_path_non_blocking() {
        // A FIFO opened read/write loops back: what is written is read.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("port");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: no mkfifo");
            return;
        }
        let mut dev = Device::open(&fifo).unwrap();
        dev.write_all(b"loop").await.unwrap();
        let mut got = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), dev.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"loop");
        // Nothing more to read: the read waits (no busy loop, no blocked thread).
        let more = tokio::time::timeout(Duration::from_millis(100), dev.read(&mut got)).await;
        assert!(more.is_err(), "{more:?}");
        assert!(Device::open(&dir.path().join("missing")).is_err());
    }

    #[tokio::test]
    async fn a_full_channel_never_blocks_the_thread() {
        // The peer never reads: writes fill the socket buffer, then wait (Pending) without
        // blocking the runtime's only thread; gamux's write timeout ends the session.
        let (dev, _peer) = pair();
        let config = gamux::Config {
            write_timeout: Some(Duration::from_millis(300)),
            ..gamux::Config::default()
        };
        let mux = gamux::Mux::with_config(dev, gamux::Role::Guest, config);
        let big = vec![0u8; 60_000];
        let sender = async {
            for _ in 0..100 {
                if mux.send_control(&[0u8; 0]).await.is_err() {
                    break;
                }
                if mux.send_datagram(1, None, &big).await.is_err() {
                    break;
                }
            }
        };
        let reason = tokio::time::timeout(Duration::from_secs(10), async {
            sender.await;
            mux.closed().await
        })
        .await
        .expect("the mux ended within 10 s");
        assert!(
            matches!(reason, gamux::MuxError::WriteTimeout(_)),
            "{reason}"
        );
    }
}
