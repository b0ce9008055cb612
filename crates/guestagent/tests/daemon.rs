//! The daemon against an in-process host: a `gamux::Mux` with `Role::Host` over a unix socket
//! pair (or a unix listener the daemon connects to, as `--connect-unix` does). Loopback only,
//! every wait bounded: the snapshot arrives on each new host session, a listener bound during
//! the test is announced as `added` (and `removed` when closed), an open reaches a local echo
//! server and round-trips bytes with half-close, refused and udp opens are rejected with a
//! reason, and the daemon reconnects after the host goes away.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::time::Duration;

use gamux::{Mux, MuxError, Proto, Role};
use guestagent::daemon::{self, Endpoint, Options};
use guestagent::ports::Watcher;
use guestagent::proto::{Message, Port, VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn watcher() -> Watcher {
    Watcher::with_interval(Duration::from_millis(50))
}

/// Serves one guest end in a task; returns the watcher and how it ended. The boot scripts'
/// done file is one that does not exist (unless a test makes it: [`serve_booting`]).
fn serve(io: UnixStream, w: Watcher) -> JoinHandle<(Watcher, daemon::Outcome)> {
    serve_booting(io, w, "/nonexistent/lima-boot-done".into())
}

fn serve_booting(
    io: UnixStream,
    mut w: Watcher,
    boot_done_file: std::path::PathBuf,
) -> JoinHandle<(Watcher, daemon::Outcome)> {
    let options = Options {
        boot_done_file,
        ..Options::default()
    };
    tokio::spawn(async move {
        let outcome = daemon::serve(io, &mut w, &options).await;
        (w, outcome)
    })
}

async fn next_message(host: &Mux) -> Message {
    let v = timeout(WAIT, host.recv_control())
        .await
        .expect("a control message within the deadline")
        .expect("the session is up");
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// The next snapshot (skipping port changes of other processes).
async fn snapshot(host: &Mux) -> Vec<Port> {
    loop {
        if let Message::Ports { version, ports } = next_message(host).await {
            assert_eq!(version, VERSION);
            return ports;
        }
    }
}

fn has(ports: &[Port], addr: SocketAddr) -> bool {
    ports.iter().any(|p| {
        p.proto == guestagent::ports::Proto::Tcp && p.ip == addr.ip() && p.port == addr.port()
    })
}

/// Waits for `added` (or `removed`) of `addr`, skipping other messages.
async fn change(host: &Mux, added: bool, addr: SocketAddr) {
    loop {
        match next_message(host).await {
            Message::Added { port } if added && has(std::slice::from_ref(&port), addr) => return,
            Message::Removed { port } if !added && has(std::slice::from_ref(&port), addr) => return,
            _ => {}
        }
    }
}

/// An echo server: reads to EOF, then writes back what it got and `|eof`, then closes. The
/// reply only comes if the host's half-close reached the TCP connection.
async fn echo_once(listener: TcpListener) {
    let (mut conn, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).await.unwrap();
    got.extend_from_slice(b"|eof");
    conn.write_all(&got).await.unwrap();
    conn.shutdown().await.unwrap();
}

/// The boot announcement: nothing while the done file is missing, `boot` once it appears,
/// and again at once on the next host session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_done_is_announced_when_the_file_appears_and_on_each_session() {
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("lima-boot-done");
    let is_boot = |m: &Message| matches!(m, Message::Boot { done: true });

    let (guest_io, host_io) = UnixStream::pair().unwrap();
    let task = serve_booting(guest_io, watcher(), done.clone());
    let host = Mux::new(host_io, Role::Host);
    // Not done: for a while, only port messages come.
    let quiet = timeout(Duration::from_millis(800), async {
        loop {
            if is_boot(&next_message(&host).await) {
                return;
            }
        }
    })
    .await;
    assert!(
        quiet.is_err(),
        "boot announced before the done file existed"
    );
    std::fs::write(&done, "").unwrap();
    let t = std::time::Instant::now();
    while !is_boot(&next_message(&host).await) {}
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(host);
    let (w, _) = timeout(WAIT, task).await.unwrap().unwrap();

    // A new session hears it at once.
    let (guest_io, host_io) = UnixStream::pair().unwrap();
    let _task = serve_booting(guest_io, w, done);
    let host = Mux::new(host_io, Role::Host);
    while !is_boot(&next_message(&host).await) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_changes_opens_and_a_second_session() {
    let (guest_io, host_io) = UnixStream::pair().unwrap();
    let task = serve(guest_io, watcher());
    let host = Mux::new(host_io, Role::Host);

    // The snapshot comes first.
    let first = snapshot(&host).await;

    // A listener bound now is announced.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(!has(&first, addr));
    change(&host, true, addr).await;

    // An open reaches it; half-close goes through and the reply still flows back.
    let server = tokio::spawn(echo_once(listener));
    let mut stream = timeout(WAIT, host.open(Proto::Tcp, addr))
        .await
        .unwrap()
        .expect("the guest accepted the open");
    stream.write_all(b"hello over gamux").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut reply = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, b"hello over gamux|eof");
    timeout(WAIT, server).await.unwrap().unwrap();
    drop(stream);

    // The listener went with the server: removed.
    change(&host, false, addr).await;

    // A refused connect is a rejection with the reason.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    match timeout(WAIT, host.open(Proto::Tcp, closed_addr))
        .await
        .unwrap()
    {
        Err(MuxError::OpenRejected(text)) => {
            assert!(text.contains(&closed_addr.to_string()), "{text}");
            assert!(text.to_lowercase().contains("refused"), "{text}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // UDP streams are refused plainly.
    match timeout(WAIT, host.open(Proto::Udp, closed_addr))
        .await
        .unwrap()
    {
        Err(MuxError::OpenRejected(text)) => assert!(text.contains("udp"), "{text}"),
        other => panic!("expected a rejection, got {other:?}"),
    }

    // The host goes away: the daemon's serve ends with the channel.
    let keep = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let keep_addr = keep.local_addr().unwrap();
    change(&host, true, keep_addr).await;
    drop(host);
    let (w, outcome) = timeout(WAIT, task).await.unwrap().unwrap();
    assert!(outcome.had_session);

    // A second host session on a new channel gets a fresh, full snapshot.
    let (guest_io, host_io) = UnixStream::pair().unwrap();
    let task = serve(guest_io, w);
    let host = Mux::new(host_io, Role::Host);
    let second = snapshot(&host).await;
    assert!(has(&second, keep_addr), "{second:?}");
    assert!(!has(&second, addr));
    drop(host);
    timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reconnects_to_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ga.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let endpoint = Endpoint::Unix(path);
    let options = Options {
        retry_delay: Duration::from_millis(50),
        ..Options::default()
    };
    let daemon = tokio::spawn(async move {
        let mut w = watcher();
        daemon::run(&endpoint, &mut w, &options).await
    });
    let keep = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let keep_addr = keep.local_addr().unwrap();
    for _ in 0..2 {
        let (conn, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
        let host = Mux::new(conn, Role::Host);
        let ports = snapshot(&host).await;
        assert!(has(&ports, keep_addr), "{ports:?}");
        // The host agent goes away; the daemon comes back.
        drop(host);
    }
    daemon.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_retries_when_the_socket_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ga.sock");
    let endpoint = Endpoint::Unix(path.clone());
    let options = Options {
        retry_delay: Duration::from_millis(50),
        ..Options::default()
    };
    let daemon = tokio::spawn(async move {
        let mut w = watcher();
        daemon::run(&endpoint, &mut w, &options).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listener = UnixListener::bind(&path).unwrap();
    let (conn, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let host = Mux::new(conn, Role::Host);
    snapshot(&host).await;
    daemon.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ga.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lima-guestagent"))
        .arg("daemon")
        .arg("--connect-unix")
        .arg(&path)
        .args(["--retry-ms", "50"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let keep = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let keep_addr = keep.local_addr().unwrap();
    for _ in 0..2 {
        let (conn, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
        let host = Mux::new(conn, Role::Host);
        let ports = snapshot(&host).await;
        assert!(has(&ports, keep_addr), "{ports:?}");
        drop(host);
    }
    child.kill().await.unwrap();
}
