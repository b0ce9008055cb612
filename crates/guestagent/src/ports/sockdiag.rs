//! The Linux side of port discovery: netlink `sock_diag` dumps (`SOCK_DIAG_BY_FAMILY` with an
//! `inet_diag_req_v2`, as `ss -ltun` does), one per protocol and family, on one netlink socket.
//!
//! The request is built with `netlink-packet-sock-diag`; the answer is framed message by
//! message with `netlink-packet-core`'s checked buffers, and of each socket record only the
//! fixed `inet_diag_msg` header is read (its attributes are not asked for). Nothing the kernel
//! sends can panic this code: a record that does not parse is counted and skipped; a message
//! whose netlink header is cut short ends the dump with [`PortsError::Malformed`]; a datagram
//! larger than the buffer is [`PortsError::Truncated`]; a silent kernel is a
//! [`PortsError::Timeout`].

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, Parseable, NLMSG_ALIGNTO,
    NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY, TCP_CLOSE, TCP_LISTEN,
};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use super::{Family, Listener, PortsError, Proto, Query, Snapshot};

/// The receive buffer. The kernel sizes a dump's datagrams from the reader's buffer, capped at
/// 32 KiB; twice that leaves room, and a larger datagram is an error rather than a silent cut.
const RECV_BUF: usize = 64 * 1024;

/// How long one dump may take, all of its datagrams together.
const DUMP_TIMEOUT: Duration = Duration::from_secs(5);

/// The length of a netlink message header (`struct nlmsghdr`).
const NLMSG_HDRLEN: usize = 16;

/// One snapshot: the four dumps of [`Query::ALL`] on one netlink socket.
pub(super) fn snapshot() -> Result<Snapshot, PortsError> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(PortsError::Open)?;
    socket.bind_auto().map_err(PortsError::Open)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(PortsError::Open)?;
    set_recv_timeout(&socket, DUMP_TIMEOUT).map_err(PortsError::Open)?;

    let mut buf = vec![0u8; RECV_BUF];
    let mut snap = Snapshot::default();
    for (seq, query) in (1u32..).zip(Query::ALL) {
        send_request(&socket, query, seq)?;
        match receive_dump(&socket, &mut buf, query, seq, &mut snap) {
            Ok(()) => {}
            Err(PortsError::Kernel { query, source })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                snap.unsupported.push(query);
            }
            Err(e) => return Err(e),
        }
    }
    snap.listeners.sort();
    snap.listeners.dedup();
    Ok(snap)
}

/// `SO_RCVTIMEO`, so that a receive never blocks for ever.
fn set_recv_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_usec: timeout.subsec_micros().into(),
    };
    // SAFETY: the fd is the open netlink socket `socket` owns; `tv` is a valid timeval that
    // outlives the call, and its size is the length passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The socket states a dump asks for: the kernel filters by them, and [`record`] checks again.
fn wanted_state(proto: Proto) -> (StateFlags, u8) {
    match proto {
        Proto::Tcp => (StateFlags::LISTEN, TCP_LISTEN),
        // An unconnected UDP socket is in TCP_CLOSE; a connected one in TCP_ESTABLISHED.
        Proto::Udp => (StateFlags::CLOSE, TCP_CLOSE),
    }
}

/// The dump request for `query`, as bytes.
fn request(query: Query, seq: u32) -> Vec<u8> {
    let (family, socket_id) = match query.family {
        Family::Ipv4 => (AF_INET, SocketId::new_v4()),
        Family::Ipv6 => (AF_INET6, SocketId::new_v6()),
    };
    let protocol = match query.proto {
        Proto::Tcp => IPPROTO_TCP,
        Proto::Udp => IPPROTO_UDP,
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let request = InetRequest {
        family,
        protocol,
        extensions: ExtensionFlags::empty(),
        states: wanted_state(query.proto).0,
        socket_id,
    };
    let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    packet.finalize();
    let mut bytes = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut bytes);
    bytes
}

fn send_request(socket: &Socket, query: Query, seq: u32) -> Result<(), PortsError> {
    let bytes = request(query, seq);
    let sent = socket
        .send(&bytes, 0)
        .map_err(|source| PortsError::Send { query, source })?;
    if sent != bytes.len() {
        return Err(PortsError::Send {
            query,
            source: io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", bytes.len()),
            ),
        });
    }
    Ok(())
}

/// Reads datagrams until the dump's `NLMSG_DONE`, adding its listeners to `snap`.
fn receive_dump(
    socket: &Socket,
    buf: &mut [u8],
    query: Query,
    seq: u32,
    snap: &mut Snapshot,
) -> Result<(), PortsError> {
    let timeout = || PortsError::Timeout {
        query,
        secs: DUMP_TIMEOUT.as_secs(),
    };
    let deadline = Instant::now() + DUMP_TIMEOUT;
    loop {
        if Instant::now() > deadline {
            return Err(timeout());
        }
        // MSG_TRUNC: the datagram's real length, even when it did not fit.
        let len = match socket.recv(&mut &mut buf[..], libc::MSG_TRUNC) {
            Ok(len) => len,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timeout())
            }
            Err(source) => return Err(PortsError::Receive { query, source }),
        };
        if len > buf.len() {
            return Err(PortsError::Truncated {
                query,
                len,
                cap: buf.len(),
            });
        }
        if parse_datagram(&buf[..len], query, seq, snap)? == Dump::Done {
            return Ok(());
        }
    }
}

/// Whether a dump has more datagrams to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dump {
    More,
    Done,
}

/// One datagram of a dump: its messages, one after the other. Messages of another sequence
/// number (a stale answer) and types other than a socket record, an error and the end are
/// ignored.
fn parse_datagram(
    mut bytes: &[u8],
    query: Query,
    seq: u32,
    snap: &mut Snapshot,
) -> Result<Dump, PortsError> {
    while !bytes.is_empty() {
        let msg = NetlinkBuffer::new_checked(bytes).map_err(|e| PortsError::Malformed {
            query,
            detail: e.to_string(),
        })?;
        // new_checked: NLMSG_HDRLEN <= len <= bytes.len().
        let len = msg.length() as usize;
        let payload = &bytes[NLMSG_HDRLEN..len];
        if msg.sequence_number() == seq {
            match msg.message_type() {
                NLMSG_DONE => {
                    let code = done_code(payload);
                    if code < 0 {
                        return Err(kernel_error(query, code));
                    }
                    return Ok(Dump::Done);
                }
                NLMSG_ERROR => {
                    let code = ErrorBuffer::new_checked(payload)
                        .map_err(|e| PortsError::Malformed {
                            query,
                            detail: format!("NLMSG_ERROR: {e}"),
                        })?
                        .code();
                    // A zero code is an acknowledgement; a dump does not ask for one.
                    if let Some(code) = code {
                        return Err(kernel_error(query, code.get()));
                    }
                }
                SOCK_DIAG_BY_FAMILY => match record(query, payload) {
                    Ok(Some(listener)) => snap.listeners.push(listener),
                    Ok(None) => {}
                    Err(()) => snap.skipped += 1,
                },
                _ => {}
            }
        }
        let aligned = len
            .next_multiple_of(usize::from(NLMSG_ALIGNTO))
            .min(bytes.len());
        bytes = &bytes[aligned..];
    }
    Ok(Dump::More)
}

/// The error code an `NLMSG_DONE` carries (0 when its payload is empty, as the kernel allows).
fn done_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .unwrap_or(0)
}

/// A negative errno from the kernel as an error.
fn kernel_error(query: Query, code: i32) -> PortsError {
    PortsError::Kernel {
        query,
        source: io::Error::from_raw_os_error(code.saturating_neg()),
    }
}

/// One `inet_diag_msg`: `Ok(Some)` for a listener, `Ok(None)` for a socket in another state (or
/// a UDP socket without a port), `Err` for a record that does not parse (too short, an address
/// family other than IPv4 and IPv6).
fn record(query: Query, payload: &[u8]) -> Result<Option<Listener>, ()> {
    let header = InetResponseHeader::parse(payload).map_err(drop)?;
    let family = match header.family {
        AF_INET => Family::Ipv4,
        AF_INET6 => Family::Ipv6,
        _ => return Err(()),
    };
    let id = &header.socket_id;
    let wanted = header.state == wanted_state(query.proto).1;
    if !wanted || (query.proto == Proto::Udp && id.source_port == 0) {
        return Ok(None);
    }
    Ok(Some(Listener {
        proto: query.proto,
        family,
        ip: id.source_address,
        port: id.source_port,
        uid: header.uid,
        inode: header.inode,
    }))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use netlink_packet_core::{Emitable, NLM_F_MULTIPART};
    use netlink_packet_sock_diag::constants::TCP_ESTABLISHED;

    use super::*;

    const TCP4: Query = Query::ALL[0];
    const UDP6: Query = Query::ALL[3];

    /// A netlink message: header, then `payload`, padded to 4 bytes.
    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + payload.len()) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&NLM_F_MULTIPART.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    /// An `inet_diag_msg` for a socket on `ip:port` in `state`.
    fn inet_record(state: u8, ip: &str, port: u16, inode: u32) -> Vec<u8> {
        let ip: IpAddr = ip.parse().unwrap();
        let (family, mut socket_id) = match ip {
            IpAddr::V4(_) => (AF_INET, SocketId::new_v4()),
            IpAddr::V6(_) => (AF_INET6, SocketId::new_v6()),
        };
        socket_id.source_address = ip;
        socket_id.source_port = port;
        let header = InetResponseHeader {
            family,
            state,
            timer: None,
            socket_id,
            recv_queue: 0,
            send_queue: 128,
            uid: 1000,
            inode,
        };
        let mut out = vec![0u8; header.buffer_len()];
        header.emit(&mut out);
        out
    }

    fn done(seq: u32) -> Vec<u8> {
        message(NLMSG_DONE, seq, &0i32.to_ne_bytes())
    }

    #[test]
    fn request_is_an_inet_diag_req_v2_dump() {
        let bytes = request(UDP6, 7);
        // nlmsghdr (16) + inet_diag_req_v2 (56).
        assert_eq!(bytes.len(), 72);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 72);
        assert_eq!(
            u16::from_ne_bytes(bytes[4..6].try_into().unwrap()),
            SOCK_DIAG_BY_FAMILY
        );
        assert_eq!(
            u16::from_ne_bytes(bytes[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_DUMP
        );
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        assert_eq!(bytes[16], AF_INET6);
        assert_eq!(bytes[17], IPPROTO_UDP);
        assert_eq!(
            u32::from_ne_bytes(bytes[20..24].try_into().unwrap()),
            1 << TCP_CLOSE
        );
    }

    #[test]
    fn listeners_then_done() {
        let mut dgram = message(
            SOCK_DIAG_BY_FAMILY,
            1,
            &inet_record(TCP_LISTEN, "127.0.0.1", 8080, 11),
        );
        dgram.extend(message(
            SOCK_DIAG_BY_FAMILY,
            1,
            &inet_record(TCP_LISTEN, "0.0.0.0", 22, 12),
        ));
        let mut snap = Snapshot::default();
        assert_eq!(
            parse_datagram(&dgram, TCP4, 1, &mut snap).unwrap(),
            Dump::More
        );
        assert_eq!(
            parse_datagram(&done(1), TCP4, 1, &mut snap).unwrap(),
            Dump::Done
        );
        let got: Vec<String> = snap
            .listeners
            .iter()
            .map(|l| l.addr().to_string())
            .collect();
        assert_eq!(got, ["127.0.0.1:8080", "0.0.0.0:22"]);
        assert_eq!(snap.listeners[0].proto, Proto::Tcp);
        assert_eq!(snap.listeners[0].family, Family::Ipv4);
        assert_eq!((snap.listeners[0].uid, snap.listeners[0].inode), (1000, 11));
        assert_eq!(snap.skipped, 0);
    }

    #[test]
    fn other_states_and_portless_udp_are_left_out() {
        let mut dgram = message(
            SOCK_DIAG_BY_FAMILY,
            1,
            &inet_record(TCP_ESTABLISHED, "127.0.0.1", 40000, 1),
        );
        dgram.extend(done(1));
        let mut snap = Snapshot::default();
        assert_eq!(
            parse_datagram(&dgram, TCP4, 1, &mut snap).unwrap(),
            Dump::Done
        );
        assert!(snap.listeners.is_empty());

        let mut dgram = message(SOCK_DIAG_BY_FAMILY, 4, &inet_record(TCP_CLOSE, "::", 0, 1));
        dgram.extend(message(
            SOCK_DIAG_BY_FAMILY,
            4,
            &inet_record(TCP_ESTABLISHED, "::1", 53, 2),
        ));
        dgram.extend(message(
            SOCK_DIAG_BY_FAMILY,
            4,
            &inet_record(TCP_CLOSE, "::1", 5353, 3),
        ));
        let mut snap = Snapshot::default();
        assert_eq!(
            parse_datagram(&dgram, UDP6, 4, &mut snap).unwrap(),
            Dump::More
        );
        assert_eq!(snap.listeners.len(), 1);
        assert_eq!(snap.listeners[0].addr().to_string(), "[::1]:5353");
        assert_eq!(snap.listeners[0].proto, Proto::Udp);
        assert_eq!(snap.listeners[0].family, Family::Ipv6);
    }

    #[test]
    fn odd_records_are_skipped() {
        let mut unknown_family = inet_record(TCP_LISTEN, "127.0.0.1", 80, 1);
        unknown_family[0] = 99;
        let short = &inet_record(TCP_LISTEN, "127.0.0.1", 81, 2)[..20];
        let mut dgram = message(SOCK_DIAG_BY_FAMILY, 1, &unknown_family);
        dgram.extend(message(SOCK_DIAG_BY_FAMILY, 1, short));
        dgram.extend(message(SOCK_DIAG_BY_FAMILY, 1, &[]));
        dgram.extend(message(
            SOCK_DIAG_BY_FAMILY,
            1,
            &inet_record(TCP_LISTEN, "127.0.0.1", 82, 3),
        ));
        let mut snap = Snapshot::default();
        assert_eq!(
            parse_datagram(&dgram, TCP4, 1, &mut snap).unwrap(),
            Dump::More
        );
        assert_eq!(snap.skipped, 3);
        assert_eq!(snap.listeners.len(), 1);
        assert_eq!(snap.listeners[0].port, 82);
    }

    #[test]
    fn cut_headers_are_malformed_not_panics() {
        let full = message(
            SOCK_DIAG_BY_FAMILY,
            1,
            &inet_record(TCP_LISTEN, "127.0.0.1", 80, 1),
        );
        // Every prefix of a message: a whole one parses, anything shorter is an error.
        for cut in 1..full.len() {
            let mut snap = Snapshot::default();
            let res = parse_datagram(&full[..cut], TCP4, 1, &mut snap);
            assert!(
                matches!(res, Err(PortsError::Malformed { .. })),
                "cut at {cut}: {res:?}"
            );
        }
        // A length field shorter than a header, or longer than the datagram.
        for bad_len in [0u32, 8, 15, 4096] {
            let mut m = full.clone();
            m[0..4].copy_from_slice(&bad_len.to_ne_bytes());
            let mut snap = Snapshot::default();
            let res = parse_datagram(&m, TCP4, 1, &mut snap);
            assert!(
                matches!(res, Err(PortsError::Malformed { .. })),
                "len {bad_len}: {res:?}"
            );
        }
    }

    #[test]
    fn kernel_errors() {
        let mut snap = Snapshot::default();
        // NLMSG_ERROR with -ENOENT (no diag handler for the protocol).
        let mut payload = (-libc::ENOENT).to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0u8; 16]);
        let res = parse_datagram(&message(NLMSG_ERROR, 1, &payload), TCP4, 1, &mut snap);
        match res {
            Err(PortsError::Kernel { query, source }) => {
                assert_eq!(query, TCP4);
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("{other:?}"),
        }
        // An NLMSG_ERROR too short to hold its code.
        let res = parse_datagram(&message(NLMSG_ERROR, 1, &[1, 2]), TCP4, 1, &mut snap);
        assert!(matches!(res, Err(PortsError::Malformed { .. })), "{res:?}");
        // NLMSG_DONE with an error; with an empty payload; an acknowledgement is no error.
        let res = parse_datagram(
            &message(NLMSG_DONE, 1, &(-libc::EPERM).to_ne_bytes()),
            TCP4,
            1,
            &mut snap,
        );
        assert!(matches!(res, Err(PortsError::Kernel { .. })), "{res:?}");
        let res = parse_datagram(&message(NLMSG_DONE, 1, &[]), TCP4, 1, &mut snap);
        assert_eq!(res.unwrap(), Dump::Done);
        let res = parse_datagram(&message(NLMSG_ERROR, 1, &[0u8; 20]), TCP4, 1, &mut snap);
        assert_eq!(res.unwrap(), Dump::More);
        // i32::MIN as a code does not overflow.
        let res = parse_datagram(
            &message(NLMSG_DONE, 1, &i32::MIN.to_ne_bytes()),
            TCP4,
            1,
            &mut snap,
        );
        assert!(matches!(res, Err(PortsError::Kernel { .. })), "{res:?}");
    }

    #[test]
    fn other_sequence_numbers_and_types_are_ignored() {
        let mut dgram = message(
            SOCK_DIAG_BY_FAMILY,
            9,
            &inet_record(TCP_LISTEN, "127.0.0.1", 80, 1),
        );
        dgram.extend(done(9));
        dgram.extend(message(0x1234, 2, &[1, 2, 3]));
        let mut snap = Snapshot::default();
        assert_eq!(
            parse_datagram(&dgram, TCP4, 2, &mut snap).unwrap(),
            Dump::More
        );
        assert!(snap.listeners.is_empty());
    }

    #[test]
    fn the_real_kernel_answers() {
        let snap = snapshot().expect("sock_diag snapshot");
        assert!(
            snap.listeners.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
    }
}
