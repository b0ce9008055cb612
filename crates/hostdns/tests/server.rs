//! The DNS server over real sockets: queries built with hickory-proto sent over UDP and TCP
//! (length-prefixed) to 127.0.0.1, answers decoded and checked; a fake upstream nameserver
//! (a UDP socket in the test) shows what is forwarded and relayed.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn config(hosts: &[(&str, &str)], ipv6: bool, upstream: Vec<SocketAddr>) -> hostdns::Config {
    let hosts: BTreeMap<String, String> = hosts
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut c = hostdns::Config::for_instance("dnstest", hosts, ipv6);
    c.upstream = Some(upstream);
    c.forward_timeout = Duration::from_millis(500);
    c
}

fn query(id: u16, name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m.to_vec().unwrap()
}

async fn udp_exchange(port: u16, packet: &[u8]) -> Option<Message> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(("127.0.0.1", port)).await.unwrap();
    sock.send(packet).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(Message::from_vec(&buf[..n]).unwrap())
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn hosts_entries_and_builtin_names_over_udp() {
    let srv = hostdns::start(config(
        &[
            ("DB.Example.test", "10.1.2.3"),
            ("alias.test", "db.example.test"),
        ],
        false,
        vec![],
    ))
    .await
    .unwrap();
    for (name, want) in [
        ("db.example.test.", "10.1.2.3"),
        ("db.EXAMPLE.test", "10.1.2.3"),
        ("alias.test.", "10.1.2.3"),
        ("host.lima.internal.", "192.168.5.2"),
        ("lima-dnstest.", "192.168.5.15"),
    ] {
        let r = udp_exchange(srv.udp_port, &query(7, name, RecordType::A))
            .await
            .unwrap();
        assert_eq!(r.id(), 7);
        assert_eq!(r.message_type(), MessageType::Response);
        assert_eq!(r.response_code(), ResponseCode::NoError, "{name}");
        assert_eq!(addrs(&r), vec![ip(want)], "{name}");
        assert_eq!(r.queries()[0].name().to_ascii().to_lowercase(), {
            let n = name.to_lowercase();
            if n.ends_with('.') {
                n
            } else {
                n + "."
            }
        });
    }
    // The alias is also a CNAME answer.
    let r = udp_exchange(srv.udp_port, &query(8, "alias.test.", RecordType::CNAME))
        .await
        .unwrap();
    match r.answers().first().map(Record::data) {
        Some(RData::CNAME(c)) => assert_eq!(c.0.to_ascii(), "db.example.test."),
        other => panic!("no CNAME answer: {other:?}"),
    }
}

#[tokio::test]
async fn ipv6_false_answers_aaaa_with_no_records() {
    let hosts = [("v6.test", "fd00::1"), ("v4.test", "10.0.0.4")];
    let off = hostdns::start(config(&hosts, false, vec![])).await.unwrap();
    let r = udp_exchange(off.udp_port, &query(1, "v6.test.", RecordType::AAAA))
        .await
        .unwrap();
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(r.answers().is_empty(), "{r:?}");

    let on = hostdns::start(config(&hosts, true, vec![])).await.unwrap();
    let r = udp_exchange(on.udp_port, &query(2, "v6.test.", RecordType::AAAA))
        .await
        .unwrap();
    assert_eq!(addrs(&r), vec![ip("fd00::1")]);
    // An A query of a v6-only entry has no A record; nor does AAAA of a v4-only one, which
    // then goes on to the (here absent) nameservers.
    let r = udp_exchange(on.udp_port, &query(3, "v4.test.", RecordType::AAAA))
        .await
        .unwrap();
    assert!(addrs(&r).is_empty());
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_nothing_and_the_server_keeps_going() {
    let srv = hostdns::start(config(&[("a.test", "10.0.0.1")], false, vec![]))
        .await
        .unwrap();
    // A header claiming one question, then garbage.
    let mut bad = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&[0xff; 9]);
    let r = udp_exchange(srv.udp_port, &bad).await.unwrap();
    assert_eq!(r.id(), 0x1234);
    assert_eq!(r.response_code(), ResponseCode::FormErr);
    // Too short for a header: no reply at all.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(("127.0.0.1", srv.udp_port)).await.unwrap();
    sock.send(&[1, 2, 3]).await.unwrap();
    let mut buf = [0u8; 512];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sock.recv(&mut buf))
            .await
            .is_err()
    );
    let r = udp_exchange(srv.udp_port, &query(9, "a.test.", RecordType::A))
        .await
        .unwrap();
    assert_eq!(addrs(&r), vec![ip("10.0.0.1")]);
}

#[tokio::test]
async fn tcp_is_length_prefixed_and_keeps_the_connection() {
    let srv = hostdns::start(config(
        &[("a.test", "10.0.0.1"), ("b.test", "10.0.0.2")],
        false,
        vec![],
    ))
    .await
    .unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", srv.tcp_port))
        .await
        .unwrap();
    for (id, name, want) in [(1, "a.test.", "10.0.0.1"), (2, "b.test.", "10.0.0.2")] {
        let q = query(id, name, RecordType::A);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        s.write_all(&framed).await.unwrap();
        let len = s.read_u16().await.unwrap();
        let mut body = vec![0u8; usize::from(len)];
        s.read_exact(&mut body).await.unwrap();
        let r = Message::from_vec(&body).unwrap();
        assert_eq!(r.id(), id);
        assert_eq!(addrs(&r), vec![ip(want)]);
    }
}

#[tokio::test]
async fn other_types_are_forwarded_and_unknown_names_are_nxdomain() {
    // A fake nameserver: answers every query with one TXT record.
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = upstream.recv_from(&mut buf).await.unwrap();
            let req = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::new();
            r.set_id(req.id())
                .set_message_type(MessageType::Response)
                .set_op_code(OpCode::Query);
            r.add_queries(req.queries().iter().cloned());
            r.add_answer(Record::from_rdata(
                req.queries()[0].name().clone(),
                60,
                RData::TXT(TXT::new(vec!["from upstream".into()])),
            ));
            upstream.send_to(&r.to_vec().unwrap(), peer).await.unwrap();
        }
    });
    let srv = hostdns::start(config(&[], false, vec![up_addr]))
        .await
        .unwrap();
    let r = udp_exchange(srv.udp_port, &query(5, "txt.test.", RecordType::TXT))
        .await
        .unwrap();
    assert_eq!(r.id(), 5);
    match r.answers().first().map(Record::data) {
        Some(RData::TXT(t)) => assert_eq!(t.to_string(), "from upstream"),
        other => panic!("no TXT answer: {other:?}"),
    }

    // No nameserver answers (none configured) and the system resolver does not know it.
    let none = hostdns::start(config(&[], false, vec![])).await.unwrap();
    let r = udp_exchange(
        none.udp_port,
        &query(6, "no-such-name.invalid.", RecordType::A),
    )
    .await
    .unwrap();
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
    assert!(r.answers().is_empty());
}
