//! `hostdns` — layer 7.0: the host agent's DNS server for `hostResolver` (upstream's
//! `pkg/hostagent/dns`): UDP and TCP on 127.0.0.1 ephemeral ports, which the guest reaches
//! through slirp's gateway after its boot script DNATs 192.168.5.3:53 there.
//!
//! Answers, as upstream does: A/AAAA from the static hosts (`hostResolver.hosts` plus
//! `host.lima.internal` and `lima-NAME`, names case-insensitive, a value that is not an address
//! an alias followed through the map), then from the host's system resolver; `ipv6: false`
//! answers AAAA with no records (NODATA). CNAME of an alias in the map is answered too.
//! Everything else (other types, other opcodes, names the system resolver does not know) is
//! forwarded as it is to the nameservers of the host's `/etc/resolv.conf` (UDP, then TCP),
//! where upstream uses the system resolver for TXT/MX/NS/SRV. UDP replies are cut to 512 bytes
//! with the TC bit set, as upstream does for `busybox nslookup`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use limatype::network;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// TTL of the answers this server makes itself (upstream's).
const TTL: u32 = 5;
/// Largest UDP reply (upstream truncates there for `busybox nslookup`, lima#380).
const UDP_REPLY_MAX: usize = 512;
/// Upstream's fallback when the host has no usable resolv.conf.
const FALLBACK_NAMESERVERS: [Ipv4Addr; 2] = [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(1, 1, 1, 1)];

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen on 127.0.0.1 ({proto}): {source}")]
    Listen {
        proto: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// What the server answers and where it forwards the rest.
#[derive(Debug, Clone)]
pub struct Config {
    /// Name -> address, or name -> another name (an alias, followed through this map and
    /// then the system resolver).
    pub hosts: BTreeMap<String, String>,
    /// `hostResolver.ipv6`: answer AAAA queries (false: NODATA).
    pub ipv6: bool,
    /// Where queries this server does not answer go; `None`: the host's `/etc/resolv.conf`.
    pub upstream: Option<Vec<SocketAddr>>,
    /// How long a forwarded query may take per nameserver.
    pub forward_timeout: Duration,
}

impl Config {
    /// The host agent's configuration: `hosts` plus upstream's two built-in names.
    pub fn for_instance(
        instance_name: &str,
        mut hosts: BTreeMap<String, String>,
        ipv6: bool,
    ) -> Config {
        hosts.insert(
            network::HOST_NAME_IN_GUEST.into(),
            network::SLIRP_GATEWAY.into(),
        );
        hosts.insert(
            format!("lima-{instance_name}"),
            network::SLIRP_GUEST_IP.into(),
        );
        Config {
            hosts,
            ipv6,
            upstream: None,
            forward_timeout: Duration::from_secs(3),
        }
    }
}

/// A running server; dropping it stops both listeners.
#[derive(Debug)]
pub struct Server {
    pub udp_port: u16,
    pub tcp_port: u16,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the UDP and TCP listeners on 127.0.0.1 (ephemeral ports).
pub async fn start(config: Config) -> Result<Server, DnsError> {
    let handler = Arc::new(Handler::new(config));
    let udp = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|source| DnsError::Listen {
            proto: "udp",
            source,
        })?;
    let tcp = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| DnsError::Listen {
            proto: "tcp",
            source,
        })?;
    let port = |r: std::io::Result<SocketAddr>, proto| {
        r.map(|a| a.port())
            .map_err(|source| DnsError::Listen { proto, source })
    };
    let udp_port = port(udp.local_addr(), "udp")?;
    let tcp_port = port(tcp.local_addr(), "tcp")?;
    tracing::debug!("DNS server on 127.0.0.1 udp:{udp_port} tcp:{tcp_port}");
    let tasks = vec![
        tokio::spawn(serve_udp(Arc::new(udp), handler.clone())),
        tokio::spawn(serve_tcp(tcp, handler)),
    ];
    Ok(Server {
        udp_port,
        tcp_port,
        tasks,
    })
}

async fn serve_udp(sock: Arc<UdpSocket>, handler: Arc<Handler>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors of earlier replies show up here on Linux; keep serving.
                tracing::debug!("DNS udp receive: {e}");
                continue;
            }
        };
        let packet = buf[..n].to_vec();
        let (sock, handler) = (sock.clone(), handler.clone());
        tokio::spawn(async move {
            if let Some(reply) = handler.answer(&packet, Transport::Udp).await {
                if let Err(e) = sock.send_to(&reply, peer).await {
                    tracing::debug!("DNS udp reply to {peer}: {e}");
                }
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_tcp_conn(stream, handler.clone()));
            }
            Err(e) => {
                tracing::debug!("DNS tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One TCP connection: length-prefixed messages (RFC 1035 4.2.2), answered in order until
/// the client closes or sends something that is not DNS.
async fn serve_tcp_conn(mut stream: TcpStream, handler: Arc<Handler>) {
    loop {
        let Some(packet) = read_tcp_msg(&mut stream).await else {
            return;
        };
        let Some(reply) = handler.answer(&packet, Transport::Tcp).await else {
            return;
        };
        if write_tcp_msg(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

async fn read_tcp_msg(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let len = stream.read_u16().await.ok()?;
    let mut packet = vec![0u8; usize::from(len)];
    stream.read_exact(&mut packet).await.ok()?;
    Some(packet)
}

async fn write_tcp_msg(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out).await
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Udp,
    Tcp,
}

struct Handler {
    ipv6: bool,
    /// Canonical name (lower case, no trailing dot) -> address.
    host_to_ip: BTreeMap<String, IpAddr>,
    /// Canonical name -> canonical name it stands for.
    alias: BTreeMap<String, String>,
    upstream: Vec<SocketAddr>,
    forward_timeout: Duration,
}

/// A name as the maps key it: lower case (RFC 4343), no trailing dot.
fn canonical(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Handler {
    fn new(config: Config) -> Handler {
        let mut host_to_ip = BTreeMap::new();
        let mut alias = BTreeMap::new();
        for (name, value) in &config.hosts {
            match value.parse::<IpAddr>() {
                Ok(ip) => {
                    host_to_ip.insert(canonical(name), ip);
                }
                Err(_) => {
                    alias.insert(canonical(name), canonical(value));
                }
            }
        }
        let upstream = config.upstream.unwrap_or_else(resolv_conf_nameservers);
        Handler {
            ipv6: config.ipv6,
            host_to_ip,
            alias,
            upstream,
            forward_timeout: config.forward_timeout,
        }
    }

    /// `name` with aliases followed (a cycle stops at the first name seen again).
    fn resolve_alias(&self, name: &str) -> String {
        let mut name = canonical(name);
        let mut seen = std::collections::BTreeSet::new();
        while let Some(next) = self.alias.get(&name) {
            if !seen.insert(name.clone()) {
                break;
            }
            name = next.clone();
        }
        name
    }

    /// The reply to one packet; `None` when it is not worth one (no DNS header to echo).
    async fn answer(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let req = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("DNS: malformed query: {e}");
                return formerr(packet);
            }
        };
        if req.message_type() != MessageType::Query {
            return None;
        }
        let reply = if req.op_code() == OpCode::Query {
            self.handle_query(&req).await
        } else {
            None
        };
        let reply = match reply {
            Some(r) => r,
            None => match self.forward(packet, &req, transport).await {
                Some(raw) => return Some(limit(raw, transport)),
                None => self.unanswered(&req),
            },
        };
        let bytes = reply.to_vec().ok()?;
        Some(limit(bytes, transport))
    }

    /// The answers this server makes itself (upstream's `handleQuery`); `None` when it has
    /// none, so the query is forwarded.
    async fn handle_query(&self, req: &Message) -> Option<Message> {
        let mut reply = reply_to(req);
        let mut handled = false;
        for q in req.queries() {
            let qname = q.name().clone();
            match q.query_type() {
                RecordType::AAAA if !self.ipv6 => handled = true,
                t @ (RecordType::A | RecordType::AAAA) => {
                    let target = self.resolve_alias(&qname.to_ascii());
                    let addrs = match self.host_to_ip.get(&target) {
                        Some(ip) => vec![*ip],
                        None => match system_lookup(&target).await {
                            Some(a) => a,
                            None => continue,
                        },
                    };
                    for ip in addrs {
                        let rdata = match (t, ip) {
                            (RecordType::A, IpAddr::V4(v4)) => RData::A(A(v4)),
                            (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(v6)),
                            _ => continue,
                        };
                        reply.add_answer(Record::from_rdata(qname.clone(), TTL, rdata));
                        handled = true;
                    }
                }
                RecordType::CNAME => {
                    let target = self.resolve_alias(&qname.to_ascii());
                    if target != canonical(&qname.to_ascii()) {
                        let Ok(mut name) = Name::from_ascii(&target) else {
                            continue;
                        };
                        name.set_fqdn(true);
                        reply.add_answer(Record::from_rdata(
                            qname.clone(),
                            TTL,
                            RData::CNAME(CNAME(name)),
                        ));
                        handled = true;
                    }
                }
                _ => {}
            }
        }
        handled.then_some(reply)
    }

    /// The raw query sent to each nameserver over UDP, then over TCP (upstream's
    /// `handleDefault`); the first answer comes back unchanged. A truncated UDP answer to a
    /// TCP client is asked again over TCP.
    async fn forward(&self, packet: &[u8], req: &Message, transport: Transport) -> Option<Vec<u8>> {
        for server in &self.upstream {
            match tokio::time::timeout(self.forward_timeout, forward_udp(packet, *server, req.id()))
                .await
            {
                Ok(Ok(raw)) => {
                    let truncated = Message::from_vec(&raw).map(|m| m.truncated());
                    if transport == Transport::Tcp && truncated.unwrap_or(false) {
                        break;
                    }
                    return Some(raw);
                }
                Ok(Err(e)) => tracing::debug!("DNS forward to {server} (udp): {e}"),
                Err(_) => tracing::debug!("DNS forward to {server} (udp): timed out"),
            }
        }
        for server in &self.upstream {
            match tokio::time::timeout(self.forward_timeout, forward_tcp(packet, *server)).await {
                Ok(Ok(raw)) => return Some(raw),
                Ok(Err(e)) => tracing::debug!("DNS forward to {server} (tcp): {e}"),
                Err(_) => tracing::debug!("DNS forward to {server} (tcp): timed out"),
            }
        }
        None
    }

    /// The reply when neither this server nor a nameserver answered: NXDOMAIN for an
    /// address query (the system resolver did not know the name either), SERVFAIL otherwise.
    /// (Upstream replies NOERROR with no records here.)
    fn unanswered(&self, req: &Message) -> Message {
        let mut reply = reply_to(req);
        let address_query = req.op_code() == OpCode::Query
            && !req.queries().is_empty()
            && req
                .queries()
                .iter()
                .all(|q| matches!(q.query_type(), RecordType::A | RecordType::AAAA));
        reply.set_response_code(if address_query {
            ResponseCode::NXDomain
        } else {
            ResponseCode::ServFail
        });
        reply
    }
}

fn reply_to(req: &Message) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true);
    reply.add_queries(req.queries().iter().cloned());
    reply
}

/// FORMERR with the query's id, when the packet has a whole header to take it from.
fn formerr(packet: &[u8]) -> Option<Vec<u8>> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

/// A UDP reply cut to [`UDP_REPLY_MAX`]: header and question kept, records dropped, TC set.
fn limit(reply: Vec<u8>, transport: Transport) -> Vec<u8> {
    if transport == Transport::Tcp || reply.len() <= UDP_REPLY_MAX {
        return reply;
    }
    let Ok(msg) = Message::from_vec(&reply) else {
        return reply;
    };
    let mut cut = reply_to(&msg);
    cut.set_response_code(msg.response_code())
        .set_authoritative(msg.authoritative())
        .set_recursion_available(msg.recursion_available())
        .set_truncated(true);
    cut.to_vec().unwrap_or(reply)
}

async fn system_lookup(name: &str) -> Option<Vec<IpAddr>> {
    match tokio::net::lookup_host((name, 0)).await {
        Ok(addrs) => {
            let mut out: Vec<IpAddr> = Vec::new();
            for a in addrs {
                if !out.contains(&a.ip()) {
                    out.push(a.ip());
                }
            }
            Some(out)
        }
        Err(e) => {
            tracing::debug!("DNS: system lookup of {name}: {e}");
            None
        }
    }
}

async fn forward_udp(packet: &[u8], server: SocketAddr, id: u16) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(server).await?;
    sock.send(packet).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // A stray datagram with another id is not our answer.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(packet: &[u8], server: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    write_tcp_msg(&mut stream, packet).await?;
    read_tcp_msg(&mut stream)
        .await
        .ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
}

/// The `nameserver` lines of `/etc/resolv.conf` (port 53), or upstream's fallback servers.
fn resolv_conf_nameservers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let found = parse_resolv_conf(&text);
    if found.is_empty() {
        tracing::warn!(
            "no nameserver in /etc/resolv.conf; forwarding DNS to {FALLBACK_NAMESERVERS:?}"
        );
        return FALLBACK_NAMESERVERS
            .iter()
            .map(|ip| SocketAddr::new(IpAddr::V4(*ip), 53))
            .collect();
    }
    found
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then_some(())?;
            // A scoped IPv6 address (fe80::1%eth0) is left out: SocketAddr has no zone names.
            let ip: IpAddr = w.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_lines() {
        let got = parse_resolv_conf(
            "# comment\nnameserver 10.0.0.1\nsearch x\nnameserver ::1\nnameserver fe80::1%eth0\n",
        );
        assert_eq!(
            got,
            vec![
                "10.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn aliases_are_followed_and_cycles_stop() {
        let hosts = [
            ("A.test.", "b.test"),
            ("b.test", "10.0.0.2"),
            ("loop1", "loop2"),
            ("loop2", "loop1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let h = Handler::new(Config {
            hosts,
            ipv6: false,
            upstream: Some(vec![]),
            forward_timeout: Duration::from_millis(10),
        });
        assert_eq!(h.resolve_alias("a.TEST."), "b.test");
        assert_eq!(
            h.host_to_ip["b.test"],
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
        assert!(["loop1", "loop2"].contains(&h.resolve_alias("loop1").as_str()));
    }

    #[test]
    fn formerr_needs_a_query_header() {
        assert_eq!(formerr(&[1, 2, 3]), None);
        let r = formerr(&[0xab, 0xcd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]).unwrap();
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.id(), 0xabcd);
        assert_eq!(m.response_code(), ResponseCode::FormErr);
    }
}
