//! Throughput of gamux streams over an in-process pipe: `cargo run --release -p gamux
//! --example throughput [MiB]` prints MB/s for one stream and for four concurrent streams
//! (host to guest, the guest reading and discarding), over `tokio::io::duplex` and over a
//! unix socket pair, next to the raw pipe without the mux and to HTTP/2 (the `h2` crate:
//! gRPC's transport, so an upper bound for a gRPC tunnel, which adds protobuf framing on
//! top) over the same socket pair with the same 256 KiB stream window. Figures only, no
//! assertions: docs/port-forwarding.md quotes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gamux::{Config, Mux, Proto, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const CHUNK: usize = 256 * 1024;

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Sends `total` bytes on each of `streams` streams; returns the elapsed time until the
/// guest has read everything.
async fn run<T>(host_io: T, guest_io: T, streams: usize, total: usize) -> Duration
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let host = Arc::new(Mux::with_config(host_io, Role::Host, Config::default()));
    let guest = Arc::new(Mux::with_config(guest_io, Role::Guest, Config::default()));
    let g = guest.clone();
    let sink = tokio::spawn(async move {
        let mut readers = Vec::new();
        for _ in 0..streams {
            let (_req, resp) = g.accept().await.expect("accept");
            let mut s = resp.accept().expect("accept");
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                let mut n = 0usize;
                loop {
                    let k = s.read(&mut buf).await.expect("read");
                    if k == 0 {
                        return n;
                    }
                    n += k;
                }
            }));
        }
        let mut got = 0;
        for r in readers {
            got += r.await.expect("reader");
        }
        got
    });
    host.ready().await.expect("ready");
    let start = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..streams {
        let host = host.clone();
        writers.push(tokio::spawn(async move {
            let mut s = host
                .open(Proto::Tcp, ([127, 0, 0, 1], 80).into())
                .await
                .expect("open");
            let buf = vec![0x5au8; CHUNK];
            let mut left = total;
            while left > 0 {
                let n = left.min(CHUNK);
                s.write_all(&buf[..n]).await.expect("write");
                left -= n;
            }
            s.shutdown().await.expect("shutdown");
            s
        }));
    }
    let mut keep = Vec::new();
    for w in writers {
        keep.push(w.await.expect("writer"));
    }
    let got = sink.await.expect("sink");
    let took = start.elapsed();
    assert_eq!(got, total * streams);
    took
}

/// The pipe alone: one writer, one reader, no framing.
async fn raw<T>(a: T, b: T, total: usize) -> Duration
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut a, mut b) = (a, b);
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0;
        while n < total {
            n += b.read(&mut buf).await.expect("read");
        }
    });
    let buf = vec![0x5au8; CHUNK];
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK);
        a.write_all(&buf[..n]).await.expect("write");
        left -= n;
    }
    reader.await.expect("reader");
    start.elapsed()
}

/// The same transfer over HTTP/2: one request per stream, the body streamed with h2's
/// capacity-based flow control, the server reading and releasing capacity.
async fn h2_run(
    io_client: tokio::net::UnixStream,
    io_server: tokio::net::UnixStream,
    streams: usize,
    total: usize,
) -> Duration {
    const WINDOW: u32 = 256 * 1024;
    let server = tokio::spawn(async move {
        let mut conn = h2::server::Builder::new()
            .initial_window_size(WINDOW)
            .initial_connection_window_size(WINDOW * 16)
            .max_frame_size(64 * 1024 - 1)
            .handshake::<_, bytes::Bytes>(io_server)
            .await
            .expect("h2 server handshake");
        let mut readers = Vec::new();
        for _ in 0..streams {
            let (req, mut respond) = conn.accept().await.expect("stream").expect("accept");
            readers.push(tokio::spawn(async move {
                let mut body = req.into_body();
                let mut n = 0usize;
                while let Some(chunk) = body.data().await {
                    let chunk = chunk.expect("data");
                    n += chunk.len();
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
                let _ = respond.send_response(http::Response::new(()), true);
                n
            }));
        }
        tokio::spawn(async move { while conn.accept().await.is_some() {} });
        let mut got = 0;
        for r in readers {
            got += r.await.expect("reader");
        }
        got
    });
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW * 16)
        .max_frame_size(64 * 1024 - 1)
        .handshake::<_, bytes::Bytes>(io_client)
        .await
        .expect("h2 client handshake");
    tokio::spawn(conn);
    let start = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..streams {
        let mut client = client.clone().ready().await.expect("ready");
        writers.push(tokio::spawn(async move {
            let req = http::Request::post("http://guest/tunnel")
                .body(())
                .expect("request");
            let (resp, mut body) = client.send_request(req, false).expect("send");
            let data = bytes::Bytes::from(vec![0x5au8; CHUNK]);
            let mut left = total;
            while left > 0 {
                body.reserve_capacity(left.min(CHUNK));
                let cap = futures::future::poll_fn(|cx| body.poll_capacity(cx))
                    .await
                    .expect("capacity")
                    .expect("capacity");
                let n = cap.min(left);
                body.send_data(data.slice(..n), false).expect("send data");
                left -= n;
            }
            body.send_data(bytes::Bytes::new(), true).expect("end");
            // Dropping the stream before the answer would cancel what is still queued.
            resp.await.expect("response");
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let got = server.await.expect("server");
    let took = start.elapsed();
    assert_eq!(got, total * streams);
    took
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let total = mib * 1024 * 1024;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (a, b) = tokio::io::duplex(4 << 20);
        let d = raw(a, b, total).await;
        println!("duplex raw pipe          : {:8.0} MB/s", mbps(total, d));
        let (a, b) = tokio::io::duplex(4 << 20);
        let d = run(a, b, 1, total).await;
        println!("duplex gamux 1 stream    : {:8.0} MB/s", mbps(total, d));
        let (a, b) = tokio::io::duplex(4 << 20);
        let d = run(a, b, 4, total / 4).await;
        println!(
            "duplex gamux 4 streams   : {:8.0} MB/s (total)",
            mbps(total, d)
        );

        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        let d = raw(a, b, total).await;
        println!("unix raw socketpair      : {:8.0} MB/s", mbps(total, d));
        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        let d = run(a, b, 1, total).await;
        println!("unix gamux 1 stream      : {:8.0} MB/s", mbps(total, d));
        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        let d = run(a, b, 4, total / 4).await;
        println!(
            "unix gamux 4 streams     : {:8.0} MB/s (total)",
            mbps(total, d)
        );
        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        let d = h2_run(a, b, 1, total).await;
        println!("unix HTTP/2 1 stream     : {:8.0} MB/s", mbps(total, d));
        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        let d = h2_run(a, b, 4, total / 4).await;
        println!(
            "unix HTTP/2 4 streams    : {:8.0} MB/s (total)",
            mbps(total, d)
        );
    });
}
