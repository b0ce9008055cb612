//! The host forwarder (`portfwd::run`) against the real guest agent (`guestagent::daemon`,
//! with its netlink `sock_diag` port discovery) over a unix socket standing in for qemu's
//! `ga.sock`, both in this process and on this machine's loopback (the "guest" is the host
//! here: rules remap each guest port to another host port and ignore every other one). TCP
//! with half-close, large transfers both ways, a server that never reads, release on close,
//! UDP request/response, unix sockets, static rules and hostile bytes on the channel.
#![cfg(target_os = "linux")]

use std::hash::Hasher;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use limatype::PortForward;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use tokio::task::JoinHandle;

struct Harness {
    /// Holds the channel's socket.
    _dir: tempfile::TempDir,
    lines: Arc<Mutex<Vec<String>>>,
    forwarder: JoinHandle<()>,
    agent: Option<JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.forwarder.abort();
        if let Some(a) = &self.agent {
            a.abort();
        }
    }
}

impl Harness {
    /// The forwarder with `rules` (then an ignore-everything rule), and the guest agent
    /// serving it if `with_agent`.
    async fn start(rules: Vec<PortForward>, with_agent: bool) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ga.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let rules = only(rules);
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let report: portfwd::Report = Arc::new(move |l| sink.lock().unwrap().push(l));
        let forwarder = tokio::spawn(portfwd::run(sock, rules, report));
        let mut h = Harness {
            _dir: dir,
            lines,
            forwarder,
            agent: None,
        };
        if with_agent {
            h.agent = Some(tokio::spawn(serve_agent(listener)));
        } else {
            // Keep the socket's listener alive without answering: no session.
            h.agent = Some(tokio::spawn(async move {
                let _keep = listener;
                std::future::pending::<()>().await;
            }));
        }
        h
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// `rules`, then one ignoring every other port (the "guest" is this host, with its own
/// listeners), as the forwarder gets them.
fn only(mut rules: Vec<PortForward>) -> Vec<PortForward> {
    rules.push(PortForward {
        guest_ip: Some("0.0.0.0".into()),
        guest_ip_must_be_zero: Some(false),
        guest_port_range: Some([1, 65535]),
        proto: Some("any".into()),
        ignore: Some(true),
        ..Default::default()
    });
    portfwd::effective_rules(&rules, 22)
}

/// The guest agent's daemon loop over the stand-in socket: each connection the forwarder
/// makes is served until it ends.
async fn serve_agent(listener: UnixListener) {
    serve_agent_booting(listener, "/nonexistent/lima-boot-done".into()).await
}

/// [`serve_agent`], with the boot scripts' done file at `boot_done_file`.
async fn serve_agent_booting(listener: UnixListener, boot_done_file: std::path::PathBuf) {
    let mut watcher = guestagent::ports::Watcher::new();
    let options = guestagent::daemon::Options {
        boot_done_file,
        ..Default::default()
    };
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            return;
        };
        guestagent::daemon::serve(conn, &mut watcher, &options).await;
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn remap(guest: u16, host: u16, proto: &str) -> PortForward {
    PortForward {
        guest_ip: Some("127.0.0.1".into()),
        guest_ip_must_be_zero: Some(false),
        guest_port_range: Some([guest.into(), guest.into()]),
        host_ip: Some("127.0.0.1".into()),
        host_port_range: Some([host.into(), host.into()]),
        proto: Some(proto.into()),
        ..Default::default()
    }
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.elapsed()
}

/// A TCP server on `port` that answers each connection with what it read, after EOF.
async fn echo_server(port: u16) -> JoinHandle<()> {
    let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if c.read_to_end(&mut buf).await.is_ok() {
                    let _ = c.write_all(&buf).await;
                }
            });
        }
    })
}

async fn echo_once(port: u16, msg: &[u8]) -> Option<Vec<u8>> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    c.write_all(msg).await.ok()?;
    c.shutdown().await.ok()?; // half-close: the reply must still come back
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(out)
}

/// Deterministic bytes (xorshift) and their checksum, to move large amounts cheaply.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let b = state.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

const BIG: usize = 256 << 20;

async fn send_big<W: tokio::io::AsyncWrite + Unpin>(w: &mut W) -> u64 {
    let mut sum = std::collections::hash_map::DefaultHasher::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..BIG / buf.len() {
        fill(&mut buf, &mut state);
        sum.write(&buf);
        w.write_all(&buf).await.unwrap();
    }
    w.shutdown().await.unwrap();
    sum.finish()
}

async fn recv_all<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> (usize, u64) {
    let mut sum = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return (total, sum.finish());
        }
        sum.write(&buf[..n]);
        total += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_forwards_appear_fast_carry_256mib_both_ways_and_are_released() {
    // Five guest ports, each remapped to its own host port.
    let ports: Vec<(u16, u16)> = (0..5).map(|_| (free_tcp_port(), free_tcp_port())).collect();
    let (big_guest, big_host) = (free_tcp_port(), free_tcp_port());
    let (stuck_guest, stuck_host) = (free_tcp_port(), free_tcp_port());
    let mut rules: Vec<PortForward> = ports.iter().map(|&(g, h)| remap(g, h, "tcp")).collect();
    rules.push(remap(big_guest, big_host, "tcp"));
    rules.push(remap(stuck_guest, stuck_host, "tcp"));
    let h = Harness::start(rules, true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A new listener in the "guest" is reachable on the host within 1 s (median).
    let mut servers = Vec::new();
    let mut delays = Vec::new();
    for &(g, hp) in &ports {
        servers.push(echo_server(g).await);
        let d = wait_for(
            "a new guest listener on the host",
            Duration::from_secs(5),
            || async { echo_once(hp, b"ping").await.as_deref() == Some(b"ping") },
        )
        .await;
        delays.push(d);
    }
    delays.sort();
    eprintln!("new listener to forwarded: {delays:?}");
    assert!(
        delays[2] < Duration::from_secs(1),
        "median {:?} is not under 1 s",
        delays[2]
    );
    assert!(
        h.log().contains(&format!(
            "Forwarding TCP from 127.0.0.1:{} to 127.0.0.1:{}",
            ports[0].0, ports[0].1
        )),
        "{}",
        h.log()
    );

    // 256 MiB each way with matching checksums: the guest server checks what it got and
    // answers with its own 256 MiB.
    let guest_side = TcpListener::bind(("127.0.0.1", big_guest)).await.unwrap();
    let server = tokio::spawn(async move {
        let (c, _) = guest_side.accept().await.unwrap();
        let (mut r, mut w) = c.into_split();
        let got = recv_all(&mut r).await;
        let sent = send_big(&mut w).await;
        (got, sent)
    });
    wait_for("the big port", Duration::from_secs(5), || async {
        h.log().contains(&format!("to 127.0.0.1:{big_host}"))
    })
    .await;
    let c = TcpStream::connect(("127.0.0.1", big_host)).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let t = Instant::now();
    let (sent, got) = tokio::join!(send_big(&mut w), recv_all(&mut r));
    let ((guest_got_len, guest_got_sum), guest_sent_sum) = server.await.unwrap();
    eprintln!(
        "256 MiB each way through the forwarder in {:?}",
        t.elapsed()
    );
    assert_eq!(guest_got_len, BIG, "host to guest lost bytes");
    assert_eq!(guest_got_sum, sent, "host to guest checksum");
    assert_eq!(got.0, BIG, "guest to host lost bytes");
    assert_eq!(got.1, guest_sent_sum, "guest to host checksum");

    // A guest server that accepts and never reads stalls only its own connection.
    let stuck = TcpListener::bind(("127.0.0.1", stuck_guest)).await.unwrap();
    let _stuck_server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = stuck.accept().await {
            held.push(c);
        }
    });
    wait_for("the stuck port", Duration::from_secs(5), || async {
        h.log().contains(&format!("to 127.0.0.1:{stuck_host}"))
    })
    .await;
    let mut writer = TcpStream::connect(("127.0.0.1", stuck_host)).await.unwrap();
    let chunk = vec![7u8; 1 << 20];
    let filled = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            writer.write_all(&chunk).await.unwrap();
        }
    })
    .await;
    assert!(
        filled.is_err(),
        "the writer to a never-reading server never blocked"
    );
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            echo_once(ports[1].1, b"still").await.as_deref(),
            Some(&b"still"[..])
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "other connections were slowed: {:?}",
        t.elapsed()
    );

    // Closing the guest server releases the host port within 2 s.
    servers[0].abort();
    let _ = (&mut servers[0]).await;
    let released = wait_for(
        "the host port to be released",
        Duration::from_secs(5),
        || async { std::net::TcpListener::bind(("127.0.0.1", ports[0].1)).is_ok() },
    )
    .await;
    eprintln!("host port released {released:?} after the guest server closed");
    assert!(released < Duration::from_secs(2), "{released:?}");
    assert!(h.log().contains("Stopping forwarding TCP"), "{}", h.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_request_response_per_client() {
    let (g, hp) = (free_udp_port(), free_udp_port());
    let h = Harness::start(vec![remap(g, hp, "udp")], true).await;
    // A DNS-style server: answers each datagram to its sender, prefixed.
    let server = UdpSocket::bind(("127.0.0.1", g)).await.unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = server.recv_from(&mut buf).await {
            let mut reply = b"re:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = server.send_to(&reply, from).await;
        }
    });
    let ask = |msg: Vec<u8>| async move {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(("127.0.0.1", hp)).await.unwrap();
        for _ in 0..3 {
            let _ = c.send(&msg).await;
            let mut buf = vec![0u8; 65536];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(500), c.recv(&mut buf)).await
            {
                return Some(buf[..n].to_vec());
            }
        }
        None
    };
    wait_for("the udp forward", Duration::from_secs(5), || async {
        ask(b"hello".to_vec()).await.as_deref() == Some(b"re:hello")
    })
    .await;
    assert!(
        h.log().contains(&format!(
            "Forwarding UDP from 127.0.0.1:{g} to 127.0.0.1:{hp}"
        )),
        "{}",
        h.log()
    );
    // Many clients at once, each gets its own answer; a large datagram too.
    let clients: Vec<_> = (0..50)
        .map(|i| tokio::spawn(ask(format!("q{i}").into_bytes())))
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        assert_eq!(c.await.unwrap(), Some(format!("re:q{i}").into_bytes()));
    }
    let big = vec![9u8; 60_000];
    let got = ask(big.clone())
        .await
        .expect("a 60000-byte datagram answered");
    assert_eq!(&got[3..], &big[..]);
}

/// A unix socket server answering with what it read, after EOF.
fn unix_echo(path: &Path) -> JoinHandle<()> {
    let l = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if c.read_to_end(&mut buf).await.is_ok() {
                    let _ = c.write_all(&buf).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_socket_to_host_socket() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let guest = dir.path().join("guest.sock");
    let host = dir.path().join("sock/host.sock");
    let _server = unix_echo(&guest);
    let rule = PortForward {
        guest_socket: Some(guest.display().to_string()),
        host_socket: Some(host.display().to_string()),
        ..Default::default()
    };
    let h = Harness::start(vec![rule], true).await;
    wait_for("the host socket", Duration::from_secs(5), || async {
        host.exists()
    })
    .await;
    let mode = std::fs::metadata(&host).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the host socket must be owner-only");
    let mut c = UnixStream::connect(&host).await.unwrap();
    c.write_all(b"through a unix socket").await.unwrap();
    c.shutdown().await.unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "through a unix socket");
    assert!(h.log().contains("to unix"), "{}", h.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_rules_listen_before_the_guest_agent_answers() {
    let (g, hp) = (free_tcp_port(), free_tcp_port());
    let mut rule = remap(g, hp, "any");
    rule.static_ = Some(true);
    let h = Harness::start(vec![rule], false).await;
    wait_for("the static forwards", Duration::from_secs(5), || async {
        std::net::TcpListener::bind(("127.0.0.1", hp)).is_err()
            && std::net::UdpSocket::bind(("127.0.0.1", hp)).is_err()
    })
    .await;
    assert!(
        h.log().contains(&format!(
            "Forwarding TCP from 127.0.0.1:{g} to 127.0.0.1:{hp} (static)"
        )),
        "{}",
        h.log()
    );
    assert!(h.log().contains("Forwarding UDP"), "{}", h.log());
}

/// Garbage, truncated frames, a bogus Hello and huge lengths from the "guest" side: the
/// forwarder survives, and forwards once a real guest agent answers on its next connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_from_the_guest_side_do_not_stop_the_forwarder() {
    use gamux::frame::{Frame, Hello, Message, SYNC, VERSION};
    let (g, hp) = (free_tcp_port(), free_tcp_port());
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ga.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let rules = only(vec![remap(g, hp, "tcp")]);
    let forwarder = tokio::spawn(portfwd::run(sock, rules, Arc::new(|_| {})));

    let mut state = 42u64;
    for round in 0..4 {
        let (mut c, _) = listener.accept().await.unwrap();
        let mut bytes = vec![0u8; 200_000];
        fill(&mut bytes, &mut state);
        if round >= 1 {
            // A valid start, then frames that lie.
            let mut start = SYNC.to_vec();
            Frame {
                stream: 0,
                msg: Message::Hello(Hello {
                    version: VERSION,
                    role: gamux::Role::Guest,
                    nonce: 99 + round,
                    echo: 0,
                    window: 1,
                }),
            }
            .encode(&mut start)
            .unwrap();
            // Control that is not JSON, a port report with nonsense, data for unknown
            // streams, a header claiming 4 GiB.
            for (t, stream, payload) in [
                (0x02u8, 0u32, b"{not json".to_vec()),
                (
                    0x02,
                    0,
                    br#"{"type":"ports","ports":[{"proto":"tcp","ip":"x","port":99999}]}"#.to_vec(),
                ),
                (
                    0x02,
                    0,
                    br#"{"type":"added","port":{"proto":"tcp","ip":"127.0.0.1","port":0}}"#
                        .to_vec(),
                ),
                (0x05, 77, vec![1; 1000]),
                (0x04, 78, vec![0]),
                (0x09, 5, vec![4, 1, 2, 3, 4, 0, 53, 1]),
            ] {
                start.extend_from_slice(&[0xA7, t, 0, 0]);
                start.extend_from_slice(&stream.to_be_bytes());
                start.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                start.extend_from_slice(&payload);
            }
            start.extend_from_slice(&[0xA7, 0x05, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
            bytes.splice(0..0, start);
        }
        let _ = c.write_all(&bytes).await;
        // Read a little of what the forwarder says, then hang up.
        let mut sink = vec![0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(200), c.read(&mut sink)).await;
        drop(c);
        assert!(
            !forwarder.is_finished(),
            "the forwarder stopped in round {round}"
        );
    }
    let _agent = tokio::spawn(serve_agent(listener));
    let _server = echo_server(g).await;
    wait_for(
        "forwarding after the hostile peers",
        Duration::from_secs(10),
        || async { echo_once(hp, b"ok").await.as_deref() == Some(b"ok") },
    )
    .await;
    assert!(!forwarder.is_finished());
    forwarder.abort();
}

/// `mountInotify`: a host message names a changed file; the guest agent sets its times to the
/// host's modification time (which is what raises inotify events in the guest).
#[tokio::test]
async fn inotify_message_sets_the_file_times_in_the_guest() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ga.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let (status, _) = tokio::sync::watch::channel(portfwd::GuestStatus::default());
    let forwarder = tokio::spawn(portfwd::run_with(
        sock,
        only(vec![]),
        Arc::new(|_| {}),
        rx,
        status,
    ));
    let agent = tokio::spawn(serve_agent(listener));
    let file = dir.path().join("watched.txt");
    std::fs::write(&file, "x").unwrap();
    let host_mtime_ms: i64 = 1_000_000_000_250; // 2001-09-09, far from now
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let _ = tx.try_send(serde_json::json!({
            "type": "inotify",
            "path": file.display().to_string(),
            "unix_ms": host_mtime_ms,
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let meta = std::fs::metadata(&file).unwrap();
        if meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000 == host_mtime_ms {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the guest agent did not set the times"
        );
    }
    forwarder.abort();
    agent.abort();
}

/// Readiness by event: the forwarder's status shows the agent's protocol once its session is
/// up, the boot scripts' end once the agent sees their done file, and resets when the agent
/// goes away.
#[tokio::test]
async fn guest_status_follows_the_agent_and_its_boot_announcement() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ga.sock");
    let done = dir.path().join("lima-boot-done");
    let listener = UnixListener::bind(&sock).unwrap();
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    let (status_tx, mut status) = tokio::sync::watch::channel(portfwd::GuestStatus::default());
    let forwarder = tokio::spawn(portfwd::run_with(
        sock,
        only(vec![]),
        Arc::new(|_| {}),
        rx,
        status_tx,
    ));
    let agent = tokio::spawn(serve_agent_booting(listener, done.clone()));
    let up = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.announces_boot()),
    )
    .await
    .expect("the agent's session within 10 s")
    .unwrap()
    .boot_done;
    assert!(!up, "boot announced before the done file existed");
    std::fs::write(&done, "").unwrap();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.boot_done))
        .await
        .expect("the boot announcement within 5 s")
        .unwrap();
    agent.abort();
    let _ = agent.await;
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| *s == portfwd::GuestStatus::default()),
    )
    .await
    .expect("the status reset when the agent went away")
    .unwrap();
    forwarder.abort();
}
