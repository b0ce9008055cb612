//! Port discovery against this machine's kernel: sockets bound on loopback (and `[::]`, port 0)
//! show up in `ports::listening()` as what they are, sockets that do not listen do not, and
//! the `Watcher` sees a listener come and go within the bounds (under 1 s, under 2 s).
//! Other processes' sockets may be listed too; each test looks only for its own ports.
#![cfg(target_os = "linux")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use guestagent::ports::{self, Event, Family, Listener, Proto, Watcher};

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").expect("/proc/self").uid()
}

fn find(list: &[Listener], proto: Proto, port: u16) -> Vec<&Listener> {
    list.iter()
        .filter(|l| l.proto == proto && l.port == port)
        .collect()
}

#[test]
fn tcp_on_ipv4_loopback_is_listed() {
    let sock = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let list = ports::listening().unwrap();
    let found = find(&list, Proto::Tcp, port);
    assert_eq!(found.len(), 1, "{found:?}");
    let l = found[0];
    assert_eq!(l.family, Family::Ipv4);
    assert_eq!(l.ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(l.addr(), sock.local_addr().unwrap());
    assert_eq!(l.uid, my_uid());
    assert_ne!(l.inode, 0);
}

#[test]
fn tcp_on_ipv6_any_is_listed() {
    let sock = TcpListener::bind("[::]:0").expect("IPv6 on this host");
    let port = sock.local_addr().unwrap().port();
    let list = ports::listening().unwrap();
    let found = find(&list, Proto::Tcp, port);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].family, Family::Ipv6);
    assert_eq!(found[0].ip, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
}

#[test]
fn bound_udp_is_listed_as_udp_and_connected_udp_is_not() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(server.local_addr().unwrap()).unwrap();
    let client_port = client.local_addr().unwrap().port();

    let list = ports::listening().unwrap();
    let found = find(&list, Proto::Udp, port);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].family, Family::Ipv4);
    assert_eq!(found[0].ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(find(&list, Proto::Tcp, port).is_empty());
    assert!(find(&list, Proto::Udp, client_port).is_empty());
}

#[test]
fn bound_udp_on_ipv6_loopback_is_listed() {
    let sock = UdpSocket::bind("[::1]:0").expect("IPv6 on this host");
    let port = sock.local_addr().unwrap().port();
    let list = ports::listening().unwrap();
    let found = find(&list, Proto::Udp, port);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].family, Family::Ipv6);
    assert_eq!(found[0].ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
}

#[test]
fn connected_tcp_sockets_are_not_listed() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
    let (_accepted, _) = server.accept().unwrap();
    let client_port = client.local_addr().unwrap().port();

    let list = ports::listening().unwrap();
    // The listener once, not the accepted socket on the same port; not the client at all.
    assert_eq!(find(&list, Proto::Tcp, port).len(), 1);
    assert!(find(&list, Proto::Tcp, client_port).is_empty());
}

/// Events until one matches, or the time is up.
async fn wait_for(
    watcher: &mut Watcher,
    within: Duration,
    want: impl Fn(&Event) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    tokio::time::timeout(within, async {
        loop {
            match watcher.next().await {
                Ok(e) if want(&e) => return start.elapsed(),
                Ok(_) => {}
                Err(e) => panic!("poll failed: {e}"),
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn watcher_sees_a_listener_come_and_go() {
    let mut watcher = Watcher::new();
    // A sentinel bound before the first poll: once its Added is seen, that poll is done, so
    // the listener bound next is new to the watcher.
    let sentinel = TcpListener::bind("127.0.0.1:0").unwrap();
    let sentinel_port = sentinel.local_addr().unwrap().port();
    let seen = wait_for(
        &mut watcher,
        Duration::from_secs(5),
        |e| matches!(e, Event::Added(l) if l.proto == Proto::Tcp && l.port == sentinel_port),
    )
    .await;
    assert!(
        seen.is_some(),
        "the first poll reports what already listens"
    );

    let sock = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let added = wait_for(
        &mut watcher,
        Duration::from_secs(1),
        |e| matches!(e, Event::Added(l) if l.proto == Proto::Tcp && l.port == port),
    )
    .await;
    assert!(added.is_some(), "no Added within 1 s of binding");

    drop(sock);
    let removed = wait_for(
        &mut watcher,
        Duration::from_secs(2),
        |e| matches!(e, Event::Removed(l) if l.proto == Proto::Tcp && l.port == port),
    )
    .await;
    assert!(removed.is_some(), "no Removed within 2 s of closing");
    drop(sentinel);
}

#[tokio::test]
async fn watch_stream_reports_udp_too() {
    use futures::StreamExt;

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let mut events = Box::pin(ports::watch(Duration::from_millis(50)));
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = events.next().await {
            let e = e.expect("poll");
            if let Event::Added(l) = &e {
                if l.proto == Proto::Udp && l.port == port {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true));
}
