//! The forwarding loop: connect to the guest agent's channel, follow its port reports, keep one
//! host listener per forwarded guest port, and tunnel every accepted connection. Reconnects
//! when the channel ends (guest agent restarted, VM rebooted) and re-applies the snapshot the
//! guest agent sends on every new session.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gamux::{Mux, Proto, Role};
use limatype::PortForward;
use tokio::net::{TcpListener, UnixStream};
use tokio::task::JoinHandle;

use crate::rules::{decide, Decision, GuestPort};

/// Where readable lines about forwarding go (the host agent's events and log):
/// "Forwarding TCP from 127.0.0.1:8080 to 127.0.0.1:8080", as upstream prints them.
pub type Report = Arc<dyn Fn(String) + Send + Sync>;

/// Forwards guest ports until the task is dropped/aborted. `socket` is the host end of the
/// guest agent channel; `rules` are [`crate::effective_rules`].
pub async fn run(socket: PathBuf, rules: Vec<PortForward>, report: Report) {
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
        let mut active: BTreeMap<GuestPort, Active> = BTreeMap::new();
        loop {
            let msg = tokio::select! {
                m = mux.recv_control() => m,
                e = mux.closed() => Err(e),
            };
            match msg {
                Ok(v) => apply(&v, &rules, &mux, &mut active, &report).await,
                Err(e) => {
                    tracing::debug!("guest agent channel ended: {e}");
                    break;
                }
            }
        }
        for (g, a) in std::mem::take(&mut active) {
            a.stop(g, &report);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One forwarded guest port: its host address and the task accepting there.
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
    mux: &Arc<Mux>,
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
                add(g, rules, mux, active, report).await;
            }
        }
        Some("added") => {
            if let Some(g) = msg.get("port").and_then(guest_port) {
                add(g, rules, mux, active, report).await;
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
    mux: &Arc<Mux>,
    active: &mut BTreeMap<GuestPort, Active>,
    report: &Report,
) {
    if active.contains_key(&g) || !g.tcp {
        // UDP forwarding is not done yet.
        return;
    }
    let Some(Decision::Forward { host, guest }) = decide(rules, g) else {
        return;
    };
    // Two guest sockets (0.0.0.0 and ::) may map to one host address: forward it once.
    if active.values().any(|a| a.host == host) {
        return;
    }
    let listener = match TcpListener::bind(host).await {
        Ok(l) => l,
        Err(e) => {
            report(format!(
                "Not forwarding TCP {} to {host}: cannot listen there: {e}",
                SocketAddr::new(g.ip, g.port)
            ));
            return;
        }
    };
    report(format!("Forwarding TCP from {guest} to {host}"));
    let mux = mux.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let mux = mux.clone();
            tokio::spawn(async move {
                match mux.open(Proto::Tcp, guest).await {
                    Ok(mut tunnel) => {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut tunnel).await;
                    }
                    Err(e) => tracing::debug!("tunnel to {guest}: {e}"),
                }
            });
        }
    });
    active.insert(g, Active { host, guest, task });
}
