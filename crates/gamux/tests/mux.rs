//! End-to-end tests of the multiplexer over in-process pipes (`tokio::io::duplex`, a unix
//! socket pair): open/echo, half-close, close propagation, many streams without leaks, large
//! transfers with checksums, flow control isolation, datagrams, control messages, resync
//! after garbage and after a host reconnect, dead peers, random input. Each test is bounded
//! in time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gamux::frame::{Frame, Hello, Message, SYNC, VERSION};
use gamux::{Config, Mux, MuxError, Proto, Role, Stream, Target};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

async fn bounded<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test took too long")
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn pair_with(cfg: Config) -> (Arc<Mux>, Arc<Mux>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (
        Arc::new(Mux::with_config(a, Role::Host, cfg.clone())),
        Arc::new(Mux::with_config(b, Role::Guest, cfg)),
    )
}

fn pair() -> (Arc<Mux>, Arc<Mux>) {
    pair_with(Config::default())
}

/// Guest side: accepts every stream and echoes it (read to EOF, write back, shut down).
fn spawn_echo(guest: Arc<Mux>) {
    tokio::spawn(async move {
        while let Ok((_req, resp)) = guest.accept().await {
            let Ok(s) = resp.accept() else { continue };
            tokio::spawn(echo(s));
        }
    });
}

async fn echo(s: Stream) {
    let (mut r, mut w) = tokio::io::split(s);
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

async fn roundtrip(host: &Mux, msg: &[u8]) -> Vec<u8> {
    let s = host.open(Proto::Tcp, addr(80)).await.unwrap();
    let (mut r, mut w) = tokio::io::split(s);
    let mut out = Vec::new();
    let (wrote, read) = tokio::join!(
        async {
            w.write_all(msg).await?;
            w.shutdown().await
        },
        r.read_to_end(&mut out)
    );
    wrote.unwrap();
    read.unwrap();
    out
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A fast non-cryptographic hash over 8-byte words (sha2 is too slow unoptimized).
#[derive(Default)]
struct Hash {
    h: u64,
    n: u64,
    tail: Vec<u8>,
}

impl Hash {
    fn update(&mut self, mut b: &[u8]) {
        self.n += b.len() as u64;
        if !self.tail.is_empty() {
            let need = 8 - self.tail.len();
            let k = need.min(b.len());
            self.tail.extend_from_slice(&b[..k]);
            b = &b[k..];
            if self.tail.len() < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.tail[..8].try_into().unwrap());
            self.word(w);
            self.tail.clear();
        }
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().unwrap()));
        }
        self.tail.extend_from_slice(chunks.remainder());
    }

    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(0x100_0000_01b3).rotate_left(29);
    }

    fn finish(mut self) -> (u64, u64) {
        let tail = std::mem::take(&mut self.tail);
        for b in tail {
            self.word(u64::from(b));
        }
        (self.h, self.n)
    }
}

/// Writes `total` pseudo-random bytes (seeded) in odd-sized writes; returns their hash.
async fn send_random<W: AsyncWrite + Unpin>(w: &mut W, seed: u64, total: usize) -> (u64, u64) {
    let mut x = seed | 1;
    let mut hash = Hash::default();
    let mut buf = vec![0u8; 100_003];
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len());
        for c in buf[..n].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            c.copy_from_slice(&bytes[..c.len()]);
        }
        w.write_all(&buf[..n]).await.unwrap();
        hash.update(&buf[..n]);
        left -= n;
    }
    hash.finish()
}

async fn recv_hash<R: AsyncRead + Unpin>(r: &mut R) -> (u64, u64) {
    let mut hash = Hash::default();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return hash.finish();
        }
        hash.update(&buf[..n]);
    }
}

#[tokio::test]
async fn open_echo_over_duplex() {
    bounded(10, async {
        let (host, guest) = pair();
        spawn_echo(guest.clone());
        assert_eq!(roundtrip(&host, b"hello").await, b"hello");
        let s = host.ready().await.unwrap();
        assert_eq!(s.generation, 1);
        assert!(host.ping().await.unwrap() < Duration::from_secs(5));
    })
    .await;
}

#[tokio::test]
async fn open_echo_over_unix_socket_pair() {
    bounded(10, async {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let host = Mux::new(a, Role::Host);
        let guest = Arc::new(Mux::new(b, Role::Guest));
        spawn_echo(guest.clone());
        assert_eq!(roundtrip(&host, b"over unix").await, b"over unix");
        let big = vec![7u8; 3 * 1024 * 1024 + 5];
        assert_eq!(roundtrip(&host, &big).await, big);
    })
    .await;
}

#[tokio::test]
async fn unix_opens_carry_the_path_and_bad_paths_are_refused_before_sending() {
    bounded(10, async {
        let (host, guest) = pair();
        let g = guest.clone();
        tokio::spawn(async move {
            while let Ok((req, resp)) = g.accept().await {
                assert_eq!(req.target, Target::Unix("/run/app.sock".into()));
                let mut s = resp.accept().unwrap();
                s.write_all(b"unix").await.unwrap();
                s.shutdown().await.unwrap();
            }
        });
        let mut s = host.open_unix("/run/app.sock").await.unwrap();
        assert_eq!(s.target(), &Target::Unix("/run/app.sock".into()));
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "unix");
        for bad in ["", "/a\0b"] {
            assert!(matches!(
                host.open_unix(bad).await,
                Err(MuxError::BadTarget(_))
            ));
        }
        let long = "/".repeat(gamux::MAX_UNIX_PATH + 1);
        assert!(matches!(
            host.open_unix(&long).await,
            Err(MuxError::BadTarget(_))
        ));
        assert!(matches!(
            host.open(Proto::Unix, addr(1)).await,
            Err(MuxError::BadTarget(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn open_request_carries_the_target_and_rejections_arrive() {
    bounded(10, async {
        let (host, guest) = pair();
        let g = guest.clone();
        tokio::spawn(async move {
            while let Ok((req, resp)) = g.accept().await {
                if req.target.addr().unwrap().port() == 1 {
                    resp.reject("connection refused");
                } else {
                    assert_eq!(req.target.proto(), Proto::Udp);
                    drop(resp); // not answered: rejected too
                }
            }
        });
        let err = host.open(Proto::Tcp, addr(1)).await.unwrap_err();
        assert_eq!(err, MuxError::OpenRejected("connection refused".into()));
        let err = host.open(Proto::Udp, addr(2)).await.unwrap_err();
        assert!(matches!(err, MuxError::OpenRejected(_)), "{err:?}");
        wait_until("no streams", || {
            host.stream_count() == 0 && guest.stream_count() == 0
        })
        .await;
        assert!(matches!(
            guest.open(Proto::Tcp, addr(1)).await,
            Err(MuxError::WrongRole { .. })
        ));
        assert!(matches!(
            host.accept().await,
            Err(MuxError::WrongRole { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn half_close_lets_the_reply_through() {
    bounded(10, async {
        let (host, guest) = pair();
        let g = guest.clone();
        tokio::spawn(async move {
            let (_req, resp) = g.accept().await.unwrap();
            let mut s = resp.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap(); // EOF: the client shut down its write side
            let reply = format!("got {} bytes", got.len());
            s.write_all(reply.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        });
        let mut s = host.open(Proto::Tcp, addr(80)).await.unwrap();
        s.write_all(&[1u8; 1000]).await.unwrap();
        s.shutdown().await.unwrap();
        assert!(s.write_all(b"more").await.is_err(), "write after shutdown");
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert_eq!(reply, "got 1000 bytes");
        drop(s);
        wait_until("no streams", || {
            host.stream_count() == 0 && guest.stream_count() == 0
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn close_on_one_side_closes_the_other_within_a_second() {
    bounded(10, async {
        let (host, guest) = pair();
        let (tx, mut rx) = mpsc::channel(4);
        let g = guest.clone();
        tokio::spawn(async move {
            while let Ok((_req, resp)) = g.accept().await {
                tx.send(resp.accept().unwrap()).await.unwrap();
            }
        });
        // The host drops its stream: the guest's read ends.
        let s = host.open(Proto::Tcp, addr(80)).await.unwrap();
        let mut gs = rx.recv().await.unwrap();
        drop(s);
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_secs(1), gs.read(&mut buf))
            .await
            .expect("the guest's read did not end within 1 s");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        assert!(gs.write_all(b"x").await.is_err());
        drop(gs);
        // The guest drops its stream: the host's read fails and its writes fail.
        let mut s = host.open(Proto::Tcp, addr(80)).await.unwrap();
        let gs = rx.recv().await.unwrap();
        drop(gs);
        let r = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf))
            .await
            .expect("the host's read did not end within 1 s");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        drop(s);
        wait_until("no streams", || {
            host.stream_count() == 0 && guest.stream_count() == 0
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_thousand_sequential_streams_leave_no_state() {
    bounded(30, async {
        let (host, guest) = pair();
        spawn_echo(guest.clone());
        for i in 0..1000u32 {
            let msg = i.to_be_bytes();
            assert_eq!(roundtrip(&host, &msg).await, msg);
        }
        wait_until("no streams", || {
            host.stream_count() == 0 && guest.stream_count() == 0
        })
        .await;
        assert_eq!(host.stats().unknown_stream_frames, 0);
    })
    .await;
}

#[tokio::test]
async fn sixty_four_concurrent_streams() {
    bounded(30, async {
        let (host, guest) = pair();
        spawn_echo(guest.clone());
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let host = host.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = host.open(Proto::Tcp, addr(80)).await.unwrap();
                let (mut r, mut w) = tokio::io::split(&mut s);
                let (sent, got) = tokio::join!(
                    async {
                        let h = send_random(&mut w, i, 300_000 + i as usize).await;
                        w.shutdown().await.unwrap();
                        h
                    },
                    recv_hash(&mut r)
                );
                assert_eq!(sent, got, "stream {i}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        wait_until("no streams", || {
            host.stream_count() == 0 && guest.stream_count() == 0
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn sixty_four_mib_each_way_with_matching_checksums() {
    const TOTAL: usize = 64 * 1024 * 1024;
    bounded(50, async {
        let (host, guest) = pair();
        let g = guest.clone();
        let server = tokio::spawn(async move {
            let (_req, resp) = g.accept().await.unwrap();
            let s = resp.accept().unwrap();
            let (mut r, mut w) = tokio::io::split(s);
            let (got, sent) = tokio::join!(recv_hash(&mut r), async {
                let h = send_random(&mut w, 2, TOTAL).await;
                w.shutdown().await.unwrap();
                h
            });
            (got, sent)
        });
        let s = host.open(Proto::Tcp, addr(80)).await.unwrap();
        let (mut r, mut w) = tokio::io::split(s);
        let (sent, got) = tokio::join!(
            async {
                let h = send_random(&mut w, 1, TOTAL).await;
                w.shutdown().await.unwrap();
                h
            },
            recv_hash(&mut r)
        );
        let (guest_got, guest_sent) = server.await.unwrap();
        assert_eq!(sent.1, TOTAL as u64);
        assert_eq!(sent, guest_got, "host to guest");
        assert_eq!(guest_sent, got, "guest to host");
    })
    .await;
}

#[tokio::test]
async fn a_reader_that_never_reads_blocks_no_other_stream() {
    bounded(30, async {
        let cfg = Config::default();
        let window = cfg.window as usize;
        let (host, guest) = pair_with(cfg);
        let written = Arc::new(AtomicUsize::new(0));
        let w2 = written.clone();
        let g = guest.clone();
        tokio::spawn(async move {
            while let Ok((req, resp)) = g.accept().await {
                let s = resp.accept().unwrap();
                if req.target.addr().unwrap().port() == 1 {
                    // A firehose towards a host reader that never reads.
                    let w2 = w2.clone();
                    tokio::spawn(async move {
                        let mut s = s;
                        let chunk = vec![0u8; 8192];
                        while s.write_all(&chunk).await.is_ok() {
                            w2.fetch_add(chunk.len(), Ordering::SeqCst);
                        }
                    });
                } else {
                    tokio::spawn(echo(s));
                }
            }
        });
        let _stuck = host.open(Proto::Tcp, addr(1)).await.unwrap();
        wait_until("the firehose filled its window", || {
            written.load(Ordering::SeqCst) + 8192 > window
        })
        .await;
        // Another stream still moves 8 MiB both ways.
        let s = host.open(Proto::Tcp, addr(2)).await.unwrap();
        let (mut r, mut w) = tokio::io::split(s);
        let (sent, got) = tokio::join!(
            async {
                let h = send_random(&mut w, 9, 8 << 20).await;
                w.shutdown().await.unwrap();
                h
            },
            recv_hash(&mut r)
        );
        assert_eq!(sent, got);
        // The firehose is held at its window: nothing more was buffered for it.
        assert!(
            written.load(Ordering::SeqCst) <= window,
            "{}",
            written.load(Ordering::SeqCst)
        );
    })
    .await;
}

#[tokio::test]
async fn datagrams_and_control_both_ways() {
    bounded(10, async {
        let (host, guest) = pair();
        let target = addr(53);
        host.send_datagram(7, Some(target), b"query").await.unwrap();
        let d = guest.recv_datagram().await.unwrap();
        assert_eq!(
            (d.flow, d.addr, d.data.as_slice()),
            (7, Some(target), &b"query"[..])
        );
        guest
            .send_datagram(7, Some(target), b"answer")
            .await
            .unwrap();
        let d = host.recv_datagram().await.unwrap();
        assert_eq!(
            (d.flow, d.addr, d.data.as_slice()),
            (7, Some(target), &b"answer"[..])
        );
        let big = vec![3u8; 65_507];
        guest.send_datagram(0, None, &big).await.unwrap();
        assert_eq!(host.recv_datagram().await.unwrap().data, big);
        let too_big = vec![0u8; 70_000];
        assert!(matches!(
            host.send_datagram(1, None, &too_big).await,
            Err(MuxError::TooLarge { .. })
        ));

        let msg = serde_json::json!({"type": "ports", "ports": [{"proto": "tcp", "port": 8080}]});
        guest.send_control(&msg).await.unwrap();
        assert_eq!(host.recv_control().await.unwrap(), msg);
        host.send_control(&serde_json::json!({"type": "info"}))
            .await
            .unwrap();
        assert_eq!(guest.recv_control().await.unwrap()["type"], "info");
    })
    .await;
}

fn hello_bytes(role: Role, nonce: u64) -> Vec<u8> {
    let mut out = SYNC.to_vec();
    Frame {
        stream: 0,
        msg: Message::Hello(Hello {
            version: VERSION,
            role,
            nonce,
            echo: 0,
            window: 1 << 16,
        }),
    }
    .encode(&mut out)
    .unwrap();
    out
}

/// Stale bytes (garbage, a stray marker with no Hello, half a Data frame) reach the
/// `stale_to` side before its peer starts; the session still works.
async fn resync_case(stale_to: Role) {
    let (mut a, b) = tokio::io::duplex(1 << 20);
    let victim = Arc::new(Mux::new(b, stale_to));
    let mut stale = b"\x00\x01garbage\xa7\xa7\xa7".to_vec();
    stale.extend_from_slice(&SYNC);
    stale.extend_from_slice(&[0xA7, 0x05, 0, 0, 0, 0, 0, 1, 0, 0, 0x10, 0]);
    stale.extend_from_slice(b"half");
    a.write_all(&stale).await.unwrap();
    let other_role = if stale_to == Role::Guest {
        Role::Host
    } else {
        Role::Guest
    };
    let other = Arc::new(Mux::new(a, other_role));
    let (host, guest) = if stale_to == Role::Guest {
        (other, victim.clone())
    } else {
        (victim.clone(), other)
    };
    spawn_echo(guest);
    assert_eq!(roundtrip(&host, b"after resync").await, b"after resync");
    assert!(victim.stats().skipped_bytes > 0);
}

#[tokio::test]
async fn resync_after_garbage_and_a_half_frame() {
    bounded(10, async {
        resync_case(Role::Guest).await;
        resync_case(Role::Host).await;
    })
    .await;
}

#[tokio::test]
async fn a_raw_peer_hello_then_new_nonce_resets_old_streams() {
    bounded(10, async {
        // A hand-written host: Hello, Open, then a Hello with a new nonce.
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let guest = Arc::new(Mux::new(b, Role::Guest));
        let mut bytes = hello_bytes(Role::Host, 11);
        Frame {
            stream: 5,
            msg: Message::Open {
                proto: Proto::Tcp,
                addr: addr(22),
            },
        }
        .encode(&mut bytes)
        .unwrap();
        a.write_all(&bytes).await.unwrap();
        let (req, resp) = guest.accept().await.unwrap();
        assert_eq!((req.stream, req.target), (5, Target::Tcp(addr(22))));
        let mut s = resp.accept().unwrap();
        assert_eq!(guest.stream_count(), 1);
        assert_eq!(guest.session().unwrap().generation, 1);
        a.write_all(&hello_bytes(Role::Host, 12)).await.unwrap();
        let mut buf = [0u8; 4];
        let r = s.read(&mut buf).await;
        assert!(r.is_err(), "{r:?}");
        assert_eq!(guest.stream_count(), 0);
        assert_eq!(guest.session().unwrap().generation, 2);
        // Keep `a` read so the guest's writes never block.
        let mut sink = vec![0u8; 1 << 16];
        let _ = tokio::time::timeout(Duration::from_millis(50), a.read(&mut sink)).await;
    })
    .await;
}

/// The virtio-serial port seen from the guest: one long-lived byte channel whose host side
/// comes and goes. Each new host connection replaces the previous one.
async fn relay(guest_side: DuplexStream, mut conns: mpsc::Receiver<DuplexStream>) {
    let (mut gr, mut gw) = tokio::io::split(guest_side);
    let mut gbuf = vec![0u8; 1 << 16];
    let mut hbuf = vec![0u8; 1 << 16];
    let mut cur: Option<DuplexStream> = None;
    loop {
        let Some(conn) = cur.as_mut() else {
            match conns.recv().await {
                Some(c) => cur = Some(c),
                None => return,
            }
            continue;
        };
        let (mut hr, mut hw) = tokio::io::split(conn);
        tokio::select! {
            n = gr.read(&mut gbuf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if hw.write_all(&gbuf[..n]).await.is_err() { cur = None },
            },
            n = hr.read(&mut hbuf) => match n {
                Ok(0) | Err(_) => cur = None,
                Ok(n) => if gw.write_all(&hbuf[..n]).await.is_err() { return },
            },
            c = conns.recv() => cur = c,
        }
    }
}

#[tokio::test]
async fn host_reconnect_resets_old_streams_and_works_again() {
    bounded(20, async {
        let (g_end, relay_end) = tokio::io::duplex(1 << 20);
        let (conn_tx, conn_rx) = mpsc::channel(1);
        tokio::spawn(relay(relay_end, conn_rx));
        let guest = Arc::new(Mux::new(g_end, Role::Guest));
        let mut sessions = guest.watch_session();
        let (tx, mut rx) = mpsc::channel(4);
        let g = guest.clone();
        tokio::spawn(async move {
            while let Ok((_req, resp)) = g.accept().await {
                let _ = tx.send(resp.accept().unwrap()).await;
            }
        });

        let (h1, r1) = tokio::io::duplex(1 << 20);
        conn_tx.send(r1).await.unwrap();
        let host1 = Mux::new(h1, Role::Host);
        let mut s1 = host1.open(Proto::Tcp, addr(80)).await.unwrap();
        let mut g1 = rx.recv().await.unwrap();
        // Leave a stream busy mid-transfer, so that half frames are in flight.
        s1.write_all(&vec![1u8; 100_000]).await.unwrap();
        let _ = g1.write(&vec![2u8; 200_000]).await.unwrap();
        drop(host1);
        drop(s1);
        // A host connection that leaves half a Data frame for stream 1 (32 KiB announced,
        // 100 bytes sent) before it goes away: the guest's reader is mid-frame when the next
        // host arrives, and the newcomer's zero filler completes that frame.
        let (mut hx, rx_half) = tokio::io::duplex(1 << 16);
        conn_tx.send(rx_half).await.unwrap();
        let mut half = vec![0xA7, 0x05, 0, 0, 0, 0, 0, 1, 0, 0, 0x80, 0];
        half.extend_from_slice(&[9u8; 100]);
        hx.write_all(&half).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(hx);
        tokio::time::sleep(Duration::from_millis(50)).await;

        let (h2, r2) = tokio::io::duplex(1 << 20);
        conn_tx.send(r2).await.unwrap();
        let host2 = Arc::new(Mux::new(h2, Role::Host));
        let g = guest.clone();
        let echo_task = tokio::spawn(async move {
            let mut s: Stream = rx.recv().await.unwrap();
            let mut buf = vec![0u8; 64];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(&buf[..n]).await.unwrap();
            s.shutdown().await.unwrap();
            drop(g);
        });
        let mut s2 = host2.open(Proto::Tcp, addr(80)).await.unwrap();
        s2.write_all(b"again").await.unwrap();
        let mut out = Vec::new();
        s2.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"again");
        echo_task.await.unwrap();
        // The old guest stream was reset by the new session.
        let mut drain = vec![0u8; 1 << 20];
        let old = loop {
            match g1.read(&mut drain).await {
                Ok(n) if n > 0 => continue,
                other => break other,
            }
        };
        assert!(old.is_err(), "{old:?}");
        assert!(sessions.borrow_and_update().unwrap().generation >= 2);
        assert!(guest.stats().resyncs >= 1, "{:?}", guest.stats());
    })
    .await;
}

#[tokio::test]
async fn a_dead_peer_ends_the_session_by_write_timeout() {
    bounded(10, async {
        let (a, _b) = tokio::io::duplex(4096); // `_b` is never read
        let cfg = Config {
            write_timeout: Some(Duration::from_millis(200)),
            ..Config::default()
        };
        let host = Mux::with_config(a, Role::Host, cfg);
        let big = vec![0u8; 60_000];
        for _ in 0..100 {
            if host.send_datagram(1, None, &big).await.is_err() {
                break;
            }
        }
        let why = tokio::time::timeout(Duration::from_secs(2), host.closed())
            .await
            .expect("the session did not end");
        assert_eq!(why, MuxError::WriteTimeout(Duration::from_millis(200)));
        assert!(host.send_control(&1).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn keepalive_ends_a_silent_session() {
    bounded(10, async {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 16];
            while matches!(b.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        let cfg = Config {
            keepalive: Some(Duration::from_millis(50)),
            ..Config::default()
        };
        let host = Mux::with_config(a, Role::Host, cfg);
        let why = host.closed().await;
        assert!(matches!(why, MuxError::KeepaliveTimeout(_)), "{why:?}");
    })
    .await;
}

#[tokio::test]
async fn eof_ends_everything_and_wakes_waiters() {
    bounded(10, async {
        let (host, guest) = pair();
        let g = guest.clone();
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let (_req, resp) = g.accept().await.unwrap();
            tx.send(resp.accept().unwrap()).await.unwrap();
            let after = g.accept().await;
            assert!(after.is_err());
        });
        let mut s = host.open(Proto::Tcp, addr(80)).await.unwrap();
        let mut gs = rx.recv().await.unwrap();
        let waiter = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            gs.read(&mut buf).await
        });
        host.close();
        let r = waiter.await.unwrap();
        assert!(r.is_err(), "{r:?}");
        assert!(s.read(&mut [0u8; 8]).await.is_err());
        assert_eq!(guest.closed().await, MuxError::PeerEof);
        assert!(guest.recv_control().await.is_err());
        assert!(guest.recv_datagram().await.is_err());
        assert_eq!(guest.stream_count(), 0);
    })
    .await;
}

#[tokio::test]
async fn same_role_on_both_sides_is_an_error() {
    bounded(10, async {
        let (a, b) = tokio::io::duplex(1 << 20);
        let one = Mux::new(a, Role::Host);
        let two = Mux::new(b, Role::Host);
        let (x, y) = tokio::join!(one.closed(), two.closed());
        let want = MuxError::SameRole(Role::Host);
        assert!(x == want || y == want, "{x:?} {y:?}");
    })
    .await;
}

#[tokio::test]
async fn random_input_never_panics() {
    bounded(30, async {
        let mut x: u64 = 0xDEAD_BEEF_CAFE_F00D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..40 {
            let (mut a, b) = tokio::io::duplex(1 << 20);
            let guest = Mux::new(
                b,
                if round % 2 == 0 {
                    Role::Guest
                } else {
                    Role::Host
                },
            );
            let drain = tokio::spawn(async move {
                let mut bytes = Vec::new();
                if round % 4 < 2 {
                    bytes = hello_bytes(
                        if round % 2 == 0 {
                            Role::Host
                        } else {
                            Role::Guest
                        },
                        99,
                    );
                }
                for _ in 0..200 {
                    let len = (next() % 200) as usize;
                    let mut chunk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    if next() % 2 == 0 && chunk.len() >= 12 {
                        chunk[0] = 0xA7;
                        chunk[1] = (next() % 12) as u8;
                        chunk[2..4].fill(0);
                        chunk[4..8].copy_from_slice(&((next() % 4) as u32).to_be_bytes());
                        chunk[8..11].fill(0);
                        chunk[11] = (next() % 30) as u8;
                    }
                    if next() % 17 == 0 {
                        chunk.extend_from_slice(&SYNC);
                    }
                    bytes.extend_from_slice(&chunk);
                }
                let (mut r, mut w) = tokio::io::split(&mut a);
                let mut sink = vec![0u8; 1 << 16];
                let _ = tokio::join!(w.write_all(&bytes), async {
                    let _ = tokio::time::timeout(Duration::from_millis(20), async {
                        while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
                    })
                    .await;
                });
            });
            drain.await.unwrap();
            // Whatever happened, the mux answers or has ended with a reason.
            let _ = guest.stats();
            let _ = guest.close_reason();
        }
    })
    .await;
}

#[tokio::test]
async fn stream_table_and_accept_backlog_are_bounded() {
    bounded(10, async {
        let cfg = Config {
            max_streams: 4,
            accept_backlog: 2,
            ..Config::default()
        };
        let (host, guest) = pair_with(cfg);
        // Nobody accepts yet: two opens wait in the backlog, the third is rejected.
        let (h1, h2) = (host.clone(), host.clone());
        let a = tokio::spawn(async move { h1.open(Proto::Tcp, addr(1)).await });
        let b = tokio::spawn(async move { h2.open(Proto::Tcp, addr(2)).await });
        wait_until("two opens queued", || guest.stream_count() == 2).await;
        let third = host.open(Proto::Tcp, addr(3)).await;
        assert!(matches!(third, Err(MuxError::OpenRejected(_))), "{third:?}");
        spawn_echo(guest.clone());
        let (_a, _b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
        let _c = host.open(Proto::Tcp, addr(4)).await.unwrap();
        let _d = host.open(Proto::Tcp, addr(5)).await.unwrap();
        assert_eq!(host.stream_count(), 4);
        let e = host.open(Proto::Tcp, addr(6)).await;
        assert_eq!(e.unwrap_err(), MuxError::TooManyStreams(4));
    })
    .await;
}
