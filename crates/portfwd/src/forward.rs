//! The forwarding loop: connect to the guest agent's channel, follow its port reports, keep one
//! host listener per forwarded guest port, and tunnel every accepted connection (TCP) or
//! datagram (UDP). Static forwards ([`crate::static_forwards`]: `static: true` rules and unix
//! sockets) listen from the start and for as long as the loop runs; each connection uses the
//! channel's session of the moment. The host's clock goes to the guest agent on each session
//! and every [`CLOCK_INTERVAL`]. Reconnects when the channel ends (guest agent restarted,
//! VM rebooted) and re-applies the snapshot the guest agent sends on every new session.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gamux::{Mux, Role, Target};
use limatype::PortForward;
use tokio::net::{TcpListener, UdpSocket, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::rules::{decide, static_forwards, Decision, GuestPort, StaticForward};

/// Where readable lines about forwarding go (the host agent's events and log):
/// "Forwarding TCP from 127.0.0.1:8080 to 127.0.0.1:8080", as upstream prints them.
pub type Report = Arc<dyn Fn(String) + Send + Sync>;

/// A UDP flow with no datagram either way for this long is forgotten (its guest socket too).
pub const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection accepted while no channel session is up waits for one.
const SESSION_WAIT: Duration = Duration::from_secs(10);

/// The channel's session of the moment (`None` between sessions).
type Current = watch::Receiver<Option<Arc<Mux>>>;

/// What the guest agent has said of the guest, for the host agent's readiness: the
/// protocol version of its snapshot while a session is up (`None` between sessions), and
/// whether it announced the boot scripts done (its `boot` message, protocol 2 on). Reset when
/// the channel ends; the next session says again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestStatus {
    pub agent_version: Option<u64>,
    pub boot_done: bool,
}

impl GuestStatus {
    /// Whether a guest agent is up that will announce the end of the boot scripts.
    pub fn announces_boot(&self) -> bool {
        self.agent_version.is_some_and(|v| v >= 2)
    }
}

/// Forwards guest ports until the task is dropped/aborted. `socket` is the host end of the
/// guest agent channel; `rules` are [`crate::effective_rules`]. Reverse socket rules are
/// left to the caller (they need SSH).
pub async fn run(socket: PathBuf, rules: Vec<PortForward>, report: Report) {
    let (_none, no_messages) = tokio::sync::mpsc::channel(1);
    let (status, _) = watch::channel(GuestStatus::default());
    run_with(socket, rules, report, no_messages, status).await
}

/// [`run`], also passing `host_messages` (control messages such as `{"type": "inotify", ...}`)
/// to the guest agent (those sent while no session is up are dropped) and keeping `status`
/// up to date from the guest agent's messages.
pub async fn run_with(
    socket: PathBuf,
    rules: Vec<PortForward>,
    report: Report,
    host_messages: tokio::sync::mpsc::Receiver<serde_json::Value>,
    status: watch::Sender<GuestStatus>,
) {
    let host_messages = Arc::new(tokio::sync::Mutex::new(host_messages));
    let (current_tx, current) = watch::channel::<Option<Arc<Mux>>>(None);
    let flows = Arc::new(UdpFlows::default());
    let (statics, skipped) = static_forwards(&rules);
    for why in skipped {
        report(format!("Not forwarding: {why}"));
    }
    let mut static_tasks = Vec::new();
    for fwd in statics {
        if let Some(task) = start_static(&fwd, &current, &flows, &report).await {
            static_tasks.push(AbortOnDrop(task));
        }
    }
    loop {
        let stream = match UnixStream::connect(&socket).await {
            Ok(s) => s,
            Err(_) => {
                // qemu creates the socket as it starts; the guest agent may not run yet.
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let mux = Arc::new(Mux::new(stream, Role::Host));
        flows.clear();
        current_tx.send_replace(Some(mux.clone()));
        let _datagrams = AbortOnDrop(tokio::spawn(deliver_datagrams(mux.clone(), flows.clone())));
        let _clock = AbortOnDrop(tokio::spawn(send_clock(mux.clone())));
        let _messages = AbortOnDrop(tokio::spawn(relay_messages(
            mux.clone(),
            host_messages.clone(),
        )));
        let mut active: BTreeMap<GuestPort, Active> = BTreeMap::new();
        loop {
            let msg = tokio::select! {
                m = mux.recv_control() => m,
                e = mux.closed() => Err(e),
            };
            match msg {
                Ok(v) => {
                    status.send_if_modified(|s| {
                        let was = *s;
                        match v.get("type").and_then(|t| t.as_str()) {
                            Some("ports") => {
                                s.agent_version =
                                    Some(v.get("version").and_then(|n| n.as_u64()).unwrap_or(0))
                            }
                            Some("boot") => {
                                s.boot_done |= v.get("done").and_then(|d| d.as_bool()) == Some(true)
                            }
                            _ => {}
                        }
                        *s != was
                    });
                    apply(&v, &rules, &current, &flows, &mut active, &report).await
                }
                Err(e) => {
                    tracing::debug!("guest agent channel ended: {e}");
                    break;
                }
            }
        }
        current_tx.send_replace(None);
        status.send_replace(GuestStatus::default());
        for (g, a) in std::mem::take(&mut active) {
            a.stop(g, &report);
        }
        flows.clear();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How often the host's clock is sent to the guest agent (which steps the guest's clock when
/// it is off by more than a second: after the host slept, the guest lags).
pub const CLOCK_INTERVAL: Duration = Duration::from_secs(10);

async fn send_clock(mux: Arc<Mux>) {
    if mux.ready().await.is_err() {
        return;
    }
    loop {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let msg = serde_json::json!({"type": "time", "unix_ms": unix_ms});
        if mux.send_control(&msg).await.is_err() {
            return;
        }
        tokio::time::sleep(CLOCK_INTERVAL).await;
    }
}

/// Passes the host's messages to this session's guest agent until either ends.
async fn relay_messages(
    mux: Arc<Mux>,
    messages: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<serde_json::Value>>>,
) {
    if mux.ready().await.is_err() {
        return;
    }
    let mut rx = messages.lock().await;
    while let Some(msg) = rx.recv().await {
        if mux.send_control(&msg).await.is_err() {
            return;
        }
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One forwarded guest port: its host address and the task serving there.
struct Active {
    host: SocketAddr,
    guest: SocketAddr,
    task: JoinHandle<()>,
}

impl Active {
    fn stop(self, g: GuestPort, report: &Report) {
        self.task.abort();
        report(format!(
            "Stopping forwarding {} from {} to {}",
            proto_name(g.tcp),
            self.guest,
            self.host
        ));
    }
}

fn proto_name(tcp: bool) -> &'static str {
    if tcp {
        "TCP"
    } else {
        "UDP"
    }
}

/// A port as the guest agent reports it (`{"proto":"tcp","ip":"127.0.0.1","port":8080,...}`);
/// anything else is skipped.
fn guest_port(v: &serde_json::Value) -> Option<GuestPort> {
    let tcp = match v.get("proto")?.as_str()? {
        "tcp" => true,
        "udp" => false,
        _ => return None,
    };
    let ip: IpAddr = v.get("ip")?.as_str()?.parse().ok()?;
    let port = u16::try_from(v.get("port")?.as_u64()?).ok()?;
    Some(GuestPort { tcp, ip, port })
}

async fn apply(
    msg: &serde_json::Value,
    rules: &[PortForward],
    current: &Current,
    flows: &Arc<UdpFlows>,
    active: &mut BTreeMap<GuestPort, Active>,
    report: &Report,
) {
    match msg.get("type").and_then(|t| t.as_str()) {
        Some("ports") => {
            let now: Vec<GuestPort> = msg
                .get("ports")
                .and_then(|p| p.as_array())
                .map(|a| a.iter().filter_map(guest_port).collect())
                .unwrap_or_default();
            let gone: Vec<GuestPort> = active
                .keys()
                .filter(|g| !now.contains(g))
                .copied()
                .collect();
            for g in gone {
                if let Some(a) = active.remove(&g) {
                    a.stop(g, report);
                }
            }
            for g in now {
                add(g, rules, current, flows, active, report).await;
            }
        }
        Some("added") => {
            if let Some(g) = msg.get("port").and_then(guest_port) {
                add(g, rules, current, flows, active, report).await;
            }
        }
        Some("removed") => {
            if let Some(a) = msg
                .get("port")
                .and_then(guest_port)
                .and_then(|g| active.remove(&g).map(|a| (g, a)))
            {
                a.1.stop(a.0, report);
            }
        }
        _ => tracing::debug!("guest agent: {msg}"),
    }
}

async fn add(
    g: GuestPort,
    rules: &[PortForward],
    current: &Current,
    flows: &Arc<UdpFlows>,
    active: &mut BTreeMap<GuestPort, Active>,
    report: &Report,
) {
    if active.contains_key(&g) {
        return;
    }
    let Some(Decision::Forward { host, guest }) = decide(rules, g) else {
        return;
    };
    // Two guest sockets (0.0.0.0 and ::) may map to one host address: forward it once.
    if active
        .iter()
        .any(|(other, a)| other.tcp == g.tcp && a.host == host)
    {
        return;
    }
    let proto = proto_name(g.tcp);
    let task = match listen_port(g.tcp, host, guest, current, flows).await {
        Ok(task) => task,
        Err(e) => {
            report(format!(
                "Not forwarding {proto} {} to {host}: cannot listen there: {e}",
                SocketAddr::new(g.ip, g.port)
            ));
            return;
        }
    };
    report(format!("Forwarding {proto} from {guest} to {host}"));
    active.insert(g, Active { host, guest, task });
}

/// Binds `host` and serves it: a TCP accept loop or a UDP relay.
async fn listen_port(
    tcp: bool,
    host: SocketAddr,
    guest: SocketAddr,
    current: &Current,
    flows: &Arc<UdpFlows>,
) -> std::io::Result<JoinHandle<()>> {
    if tcp {
        let listener = TcpListener::bind(host).await?;
        Ok(tokio::spawn(tcp_accept_loop(
            listener,
            guest,
            current.clone(),
        )))
    } else {
        let socket = Arc::new(UdpSocket::bind(host).await?);
        Ok(tokio::spawn(udp_relay(
            socket,
            guest,
            current.clone(),
            flows.clone(),
        )))
    }
}

/// Sets one static forward up; reports it (or why not).
async fn start_static(
    fwd: &StaticForward,
    current: &Current,
    flows: &Arc<UdpFlows>,
    report: &Report,
) -> Option<JoinHandle<()>> {
    match fwd {
        StaticForward::Port { tcp, host, guest } => {
            let proto = proto_name(*tcp);
            match listen_port(*tcp, *host, *guest, current, flows).await {
                Ok(task) => {
                    report(format!(
                        "Forwarding {proto} from {guest} to {host} (static)"
                    ));
                    Some(task)
                }
                Err(e) => {
                    report(format!(
                        "Not forwarding {proto} {guest} to {host}: cannot listen there: {e}"
                    ));
                    None
                }
            }
        }
        StaticForward::Socket { host, guest } => match listen_unix(host) {
            Ok(listener) => {
                report(format!(
                    "Forwarding {guest} to unix {} (static)",
                    host.display()
                ));
                Some(tokio::spawn(unix_accept_loop(
                    listener,
                    guest.clone(),
                    current.clone(),
                )))
            }
            Err(e) => {
                report(format!(
                    "Not forwarding {guest} to unix {}: cannot listen there: {e}",
                    host.display()
                ));
                None
            }
        },
        StaticForward::Reverse { .. } => None,
    }
}

/// Binds a unix socket at `path`: its directory made (owner-only) if missing, a stale socket
/// from an earlier run replaced, the socket itself owner-only.
fn listen_unix(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The session to open a tunnel on: the current one, or the next within [`SESSION_WAIT`].
async fn session(mut current: Current) -> Option<Arc<Mux>> {
    let wait = current.wait_for(|m| m.as_ref().is_some_and(|m| m.close_reason().is_none()));
    match tokio::time::timeout(SESSION_WAIT, wait).await {
        Ok(Ok(m)) => m.clone(),
        _ => None,
    }
}

async fn tcp_accept_loop(listener: TcpListener, guest: SocketAddr, current: Current) {
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::debug!("accepting on {:?}: {e}", listener.local_addr());
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = conn.set_nodelay(true);
        tokio::spawn(tunnel(conn, Target::Tcp(guest), current.clone()));
    }
}

async fn unix_accept_loop(listener: UnixListener, guest: Target, current: Current) {
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                tracing::debug!("accepting on a unix socket: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(tunnel(conn, guest.clone(), current.clone()));
    }
}

/// Copies one host connection to a new stream to `guest`, both ways with half-close.
async fn tunnel<C>(mut conn: C, guest: Target, current: Current)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(mux) = session(current).await else {
        tracing::debug!("tunnel to {guest}: no guest agent session");
        return;
    };
    match mux.open_target(guest.clone()).await {
        Ok(mut stream) => {
            // One maximal frame per read and write (tokio's default buffer is 8 KiB).
            let buf = gamux::MAX_PAYLOAD;
            let _ =
                tokio::io::copy_bidirectional_with_sizes(&mut conn, &mut stream, buf, buf).await;
        }
        Err(e) => tracing::debug!("tunnel to {guest}: {e}"),
    }
}

/// The UDP flows of the current session: one per (host socket, client address), each with
/// the flow id its Datagram frames carry.
#[derive(Default)]
struct UdpFlows {
    inner: Mutex<FlowTable>,
}

#[derive(Default)]
struct FlowTable {
    by_id: HashMap<u32, Flow>,
    by_client: HashMap<(SocketAddr, SocketAddr), u32>,
    next_id: u32,
}

struct Flow {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    client: SocketAddr,
    last_used: Instant,
}

impl UdpFlows {
    fn table(&self) -> std::sync::MutexGuard<'_, FlowTable> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn clear(&self) {
        let mut t = self.table();
        t.by_id.clear();
        t.by_client.clear();
    }

    /// The flow id for a datagram from `client` on `socket`, made if new.
    fn flow_for(&self, socket: &Arc<UdpSocket>, local: SocketAddr, client: SocketAddr) -> u32 {
        let mut t = self.table();
        if let Some(&id) = t.by_client.get(&(local, client)) {
            if let Some(f) = t.by_id.get_mut(&id) {
                f.last_used = Instant::now();
            }
            return id;
        }
        let id = loop {
            t.next_id = t.next_id.wrapping_add(1);
            if t.next_id != 0 && !t.by_id.contains_key(&t.next_id) {
                break t.next_id;
            }
        };
        t.by_client.insert((local, client), id);
        t.by_id.insert(
            id,
            Flow {
                socket: socket.clone(),
                local,
                client,
                last_used: Instant::now(),
            },
        );
        id
    }

    /// Where a datagram from the guest on flow `id` goes.
    fn reply_to(&self, id: u32) -> Option<(Arc<UdpSocket>, SocketAddr)> {
        let mut t = self.table();
        let f = t.by_id.get_mut(&id)?;
        f.last_used = Instant::now();
        Some((f.socket.clone(), f.client))
    }

    fn expire(&self, idle: Duration) {
        let mut t = self.table();
        let now = Instant::now();
        let old: Vec<u32> = t
            .by_id
            .iter()
            .filter(|(_, f)| now.duration_since(f.last_used) > idle)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            if let Some(f) = t.by_id.remove(&id) {
                t.by_client.remove(&(f.local, f.client));
            }
        }
    }
}

/// Relays datagrams from host clients on `socket` to `guest`, each client its own flow.
async fn udp_relay(
    socket: Arc<UdpSocket>,
    guest: SocketAddr,
    current: Current,
    flows: Arc<UdpFlows>,
) {
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from an earlier send surface here; the socket goes on.
                tracing::debug!("udp {local}: {e}");
                continue;
            }
        };
        // No session: the datagram is lost, as on a network without a route.
        let Some(mux) = current.borrow().clone() else {
            continue;
        };
        let flow = flows.flow_for(&socket, local, client);
        if let Err(e) = mux.send_datagram(flow, Some(guest), &buf[..n]).await {
            tracing::debug!("udp {local} to guest {guest}: {e}");
        }
    }
}

/// Delivers the guest's datagrams to their host clients and expires idle flows, for one
/// session.
async fn deliver_datagrams(mux: Arc<Mux>, flows: Arc<UdpFlows>) {
    let mut sweep = tokio::time::interval(UDP_IDLE_TIMEOUT / 4);
    loop {
        tokio::select! {
            d = mux.recv_datagram() => {
                let Ok(d) = d else { return };
                if let Some((socket, client)) = flows.reply_to(d.flow) {
                    if let Err(e) = socket.send_to(&d.data, client).await {
                        tracing::debug!("udp reply to {client}: {e}");
                    }
                }
            }
            _ = sweep.tick() => flows.expire(UDP_IDLE_TIMEOUT),
        }
    }
}
