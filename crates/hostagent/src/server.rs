//! `ha.sock`: a unix socket (owner-only) where each client gets the current status as one
//! JSON line, then every later event, one per line, until the host agent exits.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::broadcast;

use crate::events::{Event, Status};

/// Current status and a feed of events, shared by the host agent and the socket server.
#[derive(Clone)]
pub struct Hub {
    current: Arc<Mutex<Event>>,
    tx: broadcast::Sender<Event>,
    log: Option<Arc<Mutex<std::fs::File>>>,
}

impl Hub {
    /// `log`: where events are appended as JSON lines (`ha.stdout.log`).
    pub fn new(log: Option<std::fs::File>) -> Self {
        let (tx, _) = broadcast::channel(256);
        Self {
            current: Arc::new(Mutex::new(Event::now(Status::default()))),
            tx,
            log: log.map(|f| Arc::new(Mutex::new(f))),
        }
    }

    pub fn emit(&self, status: Status) {
        use std::io::Write;
        let ev = Event::now(status);
        if let Some(log) = &self.log {
            let mut f = log.lock().unwrap();
            let _ = f.write_all(ev.to_line().as_bytes());
            let _ = f.flush();
        }
        *self.current.lock().unwrap() = ev.clone();
        let _ = self.tx.send(ev);
    }

    /// An event that tells something (a port forwarded) without changing the state: the
    /// current status (running, ssh port, ...) with `note` as its progress text.
    pub fn note(&self, note: String) {
        let mut status = self.current().status;
        status.progress = Some(note);
        status.errors.clear();
        status.cloud_init_progress = None;
        status.phase = None;
        self.emit(status);
    }

    /// A phase-ended event: the current status (running stays running) with only the phase
    /// as news.
    pub fn phase(&self, phase: crate::phases::Phase) {
        tracing::info!("{}", phase.line());
        let mut status = self.current().status;
        status.progress = None;
        status.errors.clear();
        status.cloud_init_progress = None;
        status.phase = Some(phase);
        self.emit(status);
    }

    /// A cloud-init progress event: the current status (running stays running) with only
    /// `progress` as news.
    pub fn cloud_init(&self, progress: crate::events::CloudInitProgress) {
        let mut status = self.current().status;
        status.progress = None;
        status.errors.clear();
        status.phase = None;
        status.cloud_init_progress = Some(progress);
        self.emit(status);
    }

    pub fn current(&self) -> Event {
        self.current.lock().unwrap().clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// Binds `path` (replacing a stale socket), makes it 0600 and serves clients until dropped.
pub fn serve(path: &Path, hub: Hub) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut rx = hub.subscribe();
            let first = hub.current();
            tokio::spawn(async move {
                if conn.write_all(first.to_line().as_bytes()).await.is_err() {
                    return;
                }
                while let Ok(ev) = rx.recv().await {
                    if conn.write_all(ev.to_line().as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    }))
}

/// Client side: the status a host agent reports now (first line on its socket).
pub async fn query(path: &Path) -> std::io::Result<Event> {
    use tokio::io::AsyncBufReadExt;
    let conn = tokio::net::UnixStream::connect(path).await?;
    let mut lines = tokio::io::BufReader::new(conn).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(3), lines.next_line())
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no status in 3s"))??
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"))?;
    Event::parse(&line).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_keeps_the_state() {
        let hub = Hub::new(None);
        hub.emit(Status {
            running: true,
            ssh_local_port: 2222,
            progress: Some("READY".into()),
            ..Default::default()
        });
        hub.note("Forwarding TCP from 127.0.0.1:80 to 127.0.0.1:8080".into());
        let now = hub.current().status;
        assert!(now.running);
        assert_eq!(now.ssh_local_port, 2222);
        assert_eq!(
            now.progress.as_deref(),
            Some("Forwarding TCP from 127.0.0.1:80 to 127.0.0.1:8080")
        );
    }
    use tokio::io::AsyncBufReadExt;

    #[tokio::test]
    async fn clients_get_status_then_events() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ha.sock");
        let log_path = dir.path().join("ha.stdout.log");
        let hub = Hub::new(Some(std::fs::File::create(&log_path).unwrap()));
        hub.emit(Status {
            progress: Some("booting".into()),
            ..Default::default()
        });
        let _server = serve(&sock, hub.clone()).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "socket mode {mode:o}");

        let ev = query(&sock).await.unwrap();
        assert_eq!(ev.status.progress.as_deref(), Some("booting"));

        let conn = tokio::net::UnixStream::connect(&sock).await.unwrap();
        let mut lines = tokio::io::BufReader::new(conn).lines();
        lines.next_line().await.unwrap().unwrap(); // current status
        hub.emit(Status {
            running: true,
            ssh_local_port: 1234,
            ..Default::default()
        });
        let next = Event::parse(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(next.status.running);
        let logged = crate::events::read_events(&log_path);
        assert_eq!(logged.len(), 2);
        assert!(logged[1].status.running);
    }
}
