//! The forwarding loop against a stand-in guest agent (a `gamux` guest session over the unix
//! socket the forwarder connects to, as qemu's `ga.sock` would be): a reported port gets a
//! host listener, connections are tunnelled with half-close, a removed port is released, and
//! a new session's snapshot replaces the old ports. Loopback only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gamux::{Mux, Role};
use limatype::PortForward;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener};

/// An echo server on the "guest" side (this host): replies with what it read, after EOF.
async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                c.read_to_end(&mut buf).await.unwrap();
                c.write_all(&buf).await.unwrap();
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The guest agent's side: answers opens by connecting to the requested address.
fn serve_opens(mux: Arc<Mux>) {
    tokio::spawn(async move {
        while let Ok((req, responder)) = mux.accept().await {
            tokio::spawn(async move {
                let Some(addr) = req.target.addr() else {
                    responder.reject("not a tcp target");
                    return;
                };
                match TcpStream::connect(addr).await {
                    Ok(mut c) => {
                        let mut s = responder.accept().unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                    }
                    Err(e) => responder.reject(&e.to_string()),
                }
            });
        }
    });
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn round_trip(host_port: u16, msg: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(("127.0.0.1", host_port)).await.unwrap();
    c.write_all(msg).await.unwrap();
    c.shutdown().await.unwrap(); // half-close: the reply must still come back
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out))
        .await
        .expect("reply in time")
        .unwrap();
    out
}

#[tokio::test]
async fn reported_ports_are_forwarded_and_released() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ga.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let echo = echo_server().await;
    let host_port = free_port();
    // The guest port is remapped: the stand-in "guest" server runs on this host too.
    let remap = PortForward {
        guest_ip: Some("127.0.0.1".into()),
        guest_ip_must_be_zero: Some(false),
        guest_port_range: Some([echo.port().into(), echo.port().into()]),
        host_ip: Some("127.0.0.1".into()),
        host_port_range: Some([host_port.into(), host_port.into()]),
        proto: Some("tcp".into()),
        ..Default::default()
    };
    let rules = portfwd::effective_rules(&[remap], 22);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let report: portfwd::Report = Arc::new(move |l| sink.lock().unwrap().push(l));
    let fwd = tokio::spawn(portfwd::run(sock.clone(), rules, report));

    let (conn, _) = listener.accept().await.unwrap();
    let guest = Arc::new(Mux::new(conn, Role::Guest));
    serve_opens(guest.clone());
    let port = serde_json::json!({"proto": "tcp", "family": "ipv4", "ip": "127.0.0.1", "port": echo.port()});
    guest
        .send_control(&serde_json::json!({"type": "ports", "ports": [port.clone()]}))
        .await
        .unwrap();
    wait_for("the forward", || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("Forwarding TCP"))
    })
    .await;
    assert_eq!(
        lines.lock().unwrap()[0],
        format!("Forwarding TCP from {echo} to 127.0.0.1:{host_port}")
    );
    assert_eq!(round_trip(host_port, b"hello").await, b"hello");
    for i in 0..200 {
        let msg = format!("message {i}");
        assert_eq!(round_trip(host_port, msg.as_bytes()).await, msg.as_bytes());
    }

    // Removed in the guest: the host port is released.
    guest
        .send_control(&serde_json::json!({"type": "removed", "port": port}))
        .await
        .unwrap();
    wait_for("the release", || {
        std::net::TcpListener::bind(("127.0.0.1", host_port)).is_ok()
    })
    .await;

    // The channel ends (the VM went away) and comes back: the forwarder reconnects, and the
    // new session's snapshot counts.
    guest.close();
    drop(guest);
    let (conn, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the forwarder reconnects")
        .unwrap();
    let guest = Arc::new(Mux::new(conn, Role::Guest));
    serve_opens(guest.clone());
    guest
        .send_control(&serde_json::json!({"type": "ports", "ports": [port]}))
        .await
        .unwrap();
    let t = Instant::now();
    loop {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", host_port)).await {
            c.write_all(b"again").await.unwrap();
            c.shutdown().await.unwrap();
            let mut out = Vec::new();
            if c.read_to_end(&mut out).await.is_ok() && out == b"again" {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "not forwarded after reconnect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fwd.abort();
}

#[tokio::test]
async fn a_busy_host_port_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ga.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let report: portfwd::Report = Arc::new(move |l| sink.lock().unwrap().push(l));
    let fwd = tokio::spawn(portfwd::run(
        sock,
        portfwd::effective_rules(&[], 22),
        report,
    ));
    let (conn, _) = listener.accept().await.unwrap();
    let guest = Mux::new(conn, Role::Guest);
    let ports = serde_json::json!([{"proto": "tcp", "ip": "0.0.0.0", "port": port},
                                   {"proto": "tcp", "ip": "0.0.0.0", "port": 22}]);
    guest
        .send_control(&serde_json::json!({"type": "ports", "ports": ports}))
        .await
        .unwrap();
    wait_for("the report", || !lines.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("cannot listen") && lines[0].contains(&port.to_string()),
        "{lines:?}"
    );
    assert!(!fwd.is_finished());
    fwd.abort();
}
