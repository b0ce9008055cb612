//! The limactl side: [`ExternalDriver`] starts a `lima-driver-<name>` executable, checks it is
//! a working driver of our protocol major version, and implements [`driver::Driver`] over it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use driver::{
    ConfigContext, DriverError, ErrorStream, GuestAgentConn, Info, Instance, InstanceConfig,
    LimaYaml, Result, Status,
};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tonic::codegen::http;

use crate::convert::*;
use crate::pb;
use crate::pb::driver_client::DriverClient;
use crate::server::{PROTOCOL_ENV, READY_MARKER, SOCKET_ENV};
use crate::{ProtocolVersion, PROTOCOL_VERSION};

/// How long to wait for a starting driver.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// From process start to the ready line, and again for connect + handshake.
    pub ready_timeout: Duration,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            ready_timeout: Duration::from_secs(5),
        }
    }
}

/// What a driver said in the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub protocol: ProtocolVersion,
    pub driver_name: String,
    pub driver_version: String,
    /// Capability flags that are set, by camelCase name (`canRunGui`, `snapshots`, ...).
    pub features: Vec<String>,
}

/// Why an executable could not be used as a driver. Every variant names the executable.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("driver {path}: cannot run it: {source}")]
    Exec {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("driver {path}: exited ({status}) before it was ready{stderr}")]
    ExitedEarly {
        path: PathBuf,
        status: String,
        /// The first stderr lines, prefixed with ": " (empty when it printed none).
        stderr: String,
    },
    #[error("driver {path}: not ready within {timeout:?} (no `{READY_MARKER}` line on stdout)")]
    NotReady { path: PathBuf, timeout: Duration },
    #[error("driver {path}: is not a Lima driver: printed {line:?} instead of the `{READY_MARKER}` line")]
    Garbage { path: PathBuf, line: String },
    #[error(
        "driver {path}: speaks protocol {theirs}, but this limactl speaks {ours} \
         (major versions must match; rebuild or update the driver)"
    )]
    ProtocolMismatch {
        path: PathBuf,
        theirs: ProtocolVersion,
        ours: ProtocolVersion,
    },
    #[error("driver {path}: is named {expected:?} by its file name but says it is {actual:?}")]
    NameMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("driver {path}: {what}: {message}")]
    Connect {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
}

impl From<SpawnError> for DriverError {
    fn from(e: SpawnError) -> Self {
        DriverError::unavailable(e.to_string())
    }
}

/// The driver name a file name stands for: `lima-driver-qemu` (or `lima-driver-qemu.exe`)
/// -> `qemu`. `None` for a file not named like a driver.
pub fn driver_name_from_path(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let file = file.strip_suffix(".exe").unwrap_or(file);
    let name = file.strip_prefix("lima-driver-")?;
    (!name.is_empty()).then(|| name.to_string())
}

/// A running external driver process, used as a [`driver::Driver`]. Killed (with whatever it
/// started) when dropped. Create it inside a tokio runtime: it runs tasks that reap the process
/// and forward its output to `tracing` (target `lima_driver`, field `driver`).
pub struct ExternalDriver {
    path: PathBuf,
    name: String,
    handshake: Handshake,
    client: DriverClient<Connection>,
    pid: Option<u32>,
    exit: watch::Receiver<Option<String>>,
    _process: ProcessGuard,
    _socket_dir: tempfile::TempDir,
}

/// Ends the driver's process group when dropped, synchronously, so that no process survives
/// even when the async runtime is shutting down and the watcher task never runs again.
struct ProcessGuard {
    pid: Option<u32>,
    exit: watch::Receiver<Option<String>>,
    kill: Option<oneshot::Sender<()>>,
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        // Not reaped yet (only the watcher reaps), so the pid and its group are still ours.
        if let (Some(pid), None) = (self.pid, self.exit.borrow().as_ref()) {
            // SAFETY: plain syscall on the group the driver leads (process_group(0)).
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

/// Handshake only: start the driver, ask who it is, stop it. For `limactl info`.
pub async fn probe(path: &Path, opts: &SpawnOptions) -> std::result::Result<Handshake, SpawnError> {
    let d = ExternalDriver::spawn_with(path, opts).await?;
    Ok(d.handshake().clone())
}

impl ExternalDriver {
    /// Start `path` with default [`SpawnOptions`].
    pub async fn spawn(path: impl AsRef<Path>) -> std::result::Result<Self, SpawnError> {
        Self::spawn_with(path.as_ref(), &SpawnOptions::default()).await
    }

    pub async fn spawn_with(
        path: &Path,
        opts: &SpawnOptions,
    ) -> std::result::Result<Self, SpawnError> {
        let path = path.to_path_buf();
        let name = driver_name_from_path(&path).unwrap_or_else(|| path.display().to_string());
        let socket_dir = tempfile::Builder::new()
            .prefix("lima-driver-")
            .tempdir()
            .map_err(|e| SpawnError::Connect {
                path: path.clone(),
                what: "cannot create the socket directory",
                message: e.to_string(),
            })?;
        {
            // Only the user may reach the socket (tempfile's default mode follows the umask).
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(socket_dir.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(|e| SpawnError::Connect {
                    path: path.clone(),
                    what: "cannot restrict the socket directory",
                    message: e.to_string(),
                })?;
        }
        let socket = socket_dir.path().join("driver.sock");

        let mut child = Command::new(&path)
            .env(SOCKET_ENV, &socket)
            .env(PROTOCOL_ENV, PROTOCOL_VERSION.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so that killing it also ends what it started (a VM).
            .process_group(0)
            .spawn()
            .map_err(|source| SpawnError::Exec {
                path: path.clone(),
                source,
            })?;
        let pid = child.id();
        let early_stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_stderr(name.clone(), stderr, early_stderr.clone()));
        }
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));

        let ready = wait_ready(
            &mut child,
            &mut stdout,
            &path,
            opts.ready_timeout,
            &early_stderr,
        )
        .await;
        if let Err(e) = ready {
            kill_group(&mut child);
            return Err(e);
        }
        tokio::spawn(drain_stdout(name.clone(), stdout));

        let (exit_tx, exit) = watch::channel(None);
        let (kill_tx, kill_rx) = oneshot::channel();
        let stdin = child.stdin.take();
        tokio::spawn(watch_child(child, stdin, exit_tx, kill_rx));
        // From here on, any early return ends the process.
        let process = ProcessGuard {
            pid,
            exit: exit.clone(),
            kill: Some(kill_tx),
        };

        let fail = |what: &'static str, message: String| SpawnError::Connect {
            path: path.clone(),
            what,
            message,
        };
        let mut client = tokio::time::timeout(opts.ready_timeout, connect(&socket))
            .await
            .map_err(|_| fail("cannot connect to its socket", "timed out".into()))?
            .map_err(|e| fail("cannot connect to its socket", e))?;
        let hs = tokio::time::timeout(
            opts.ready_timeout,
            client.handshake(pb::HandshakeRequest {
                client_protocol_major: PROTOCOL_VERSION.major,
                client_protocol_minor: PROTOCOL_VERSION.minor,
            }),
        )
        .await
        .map_err(|_| fail("handshake", "timed out".into()))?
        .map_err(|e| fail("handshake", e.message().to_string()))?
        .into_inner();
        let theirs = ProtocolVersion {
            major: hs.protocol_major,
            minor: hs.protocol_minor,
        };
        if theirs.major != PROTOCOL_VERSION.major {
            return Err(SpawnError::ProtocolMismatch {
                path,
                theirs,
                ours: PROTOCOL_VERSION,
            });
        }
        if driver_name_from_path(&path).is_some_and(|n| n != hs.driver_name) {
            return Err(SpawnError::NameMismatch {
                path,
                expected: name,
                actual: hs.driver_name,
            });
        }
        let handshake = Handshake {
            protocol: theirs,
            driver_name: hs.driver_name,
            driver_version: hs.driver_version,
            features: hs.features,
        };
        Ok(ExternalDriver {
            path,
            name: handshake.driver_name.clone(),
            handshake,
            client,
            pid,
            exit,
            _process: process,
            _socket_dir: socket_dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// The driver process id (for tests and diagnostics).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// How the process ended, once it has (`exit status: 0`, `signal: 9 (SIGKILL)`).
    pub fn exit_status(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    fn client(&self) -> DriverClient<Connection> {
        self.client.clone()
    }

    /// A failed call as the caller's error: the driver's own error when it sent one, else
    /// (transport failure) `unavailable`, saying whether the process died.
    async fn call_error(&self, call: &str, status: tonic::Status) -> DriverError {
        if let Some(e) = status_to_driver_error(&status) {
            return e;
        }
        if status.code() == tonic::Code::Unimplemented {
            // The driver's server has no such RPC: it speaks an older protocol minor.
            return DriverError::unsupported(format!(
                "driver {} ({}) does not implement {call} (protocol {})",
                self.name,
                self.path.display(),
                self.handshake.protocol
            ));
        }
        // The connection often breaks a moment before the exit is reaped.
        let mut exit = self.exit.clone();
        let exited =
            tokio::time::timeout(Duration::from_millis(500), exit.wait_for(|e| e.is_some()))
                .await
                .ok()
                .and_then(|r| r.ok().and_then(|e| e.clone()));
        match exited {
            Some(how) => DriverError::unavailable(format!(
                "driver {} ({}) exited ({how}) during {call}",
                self.name,
                self.path.display()
            )),
            None => DriverError::unavailable(format!(
                "driver {} ({}): {call} failed: {}",
                self.name,
                self.path.display(),
                status.message()
            )),
        }
    }

    async fn unary<T>(
        &self,
        call: &str,
        result: std::result::Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T> {
        match result {
            Ok(r) => Ok(r.into_inner()),
            Err(status) => Err(self.call_error(call, status).await),
        }
    }

    fn config_request(&self, config: &LimaYaml, ctx: &ConfigContext) -> Result<pb::ConfigRequest> {
        Ok(pb::ConfigRequest {
            config_json: to_json("lima.yaml", config)?,
            host: Some(pb::HostInfo {
                os: ctx.host.os.clone(),
                arch: ctx.host.arch.clone(),
            }),
            config_path: ctx
                .config_path
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
    }
}

/// The one HTTP/2 connection to the driver's socket, used directly: tonic's `Channel` puts a
/// buffer task in front of every call (one more task hop each way).
#[derive(Clone)]
struct Connection(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower::Service<http::Request<tonic::body::Body>> for Connection {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = futures::future::BoxFuture<'static, hyper::Result<Self::Response>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<hyper::Result<()>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

async fn connect(socket: &Path) -> std::result::Result<DriverClient<Connection>, String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    // Drives the connection until the client is dropped or the driver goes away (a call in
    // flight then fails, and `call_error` says why).
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(target: "lima_driver", "driver connection ended: {e}");
        }
    });
    Ok(DriverClient::with_origin(
        Connection(send),
        http::Uri::from_static("http://lima-driver.invalid"),
    ))
}

async fn wait_ready(
    child: &mut Child,
    stdout: &mut BufReader<tokio::process::ChildStdout>,
    path: &Path,
    timeout: Duration,
    early_stderr: &Mutex<Vec<String>>,
) -> std::result::Result<(), SpawnError> {
    let exited_early = |status: String| {
        // Give the stderr forwarder a moment to collect the last words.
        let lines = early_stderr.lock().map(|l| l.clone()).unwrap_or_default();
        SpawnError::ExitedEarly {
            path: path.to_path_buf(),
            status,
            stderr: if lines.is_empty() {
                String::new()
            } else {
                format!(": {}", lines.join(" | "))
            },
        }
    };
    let mut line = String::new();
    let read = tokio::time::timeout(timeout, stdout.read_line(&mut line)).await;
    match read {
        Err(_) => Err(SpawnError::NotReady {
            path: path.to_path_buf(),
            timeout,
        }),
        Ok(Err(e)) => Err(SpawnError::Garbage {
            path: path.to_path_buf(),
            line: format!("unreadable output ({e})"),
        }),
        Ok(Ok(0)) => {
            // stdout closed: the process is exiting (or closed it on purpose, equally useless).
            let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(exited_early(match status {
                Ok(Ok(s)) => describe_exit(s),
                _ => "closed its stdout".to_string(),
            }))
        }
        Ok(Ok(_)) => {
            let line = line.trim_end();
            let Some(rest) = line.strip_prefix(READY_MARKER) else {
                let mut shown: String = line.chars().take(120).collect();
                if shown.len() < line.len() {
                    shown.push('…');
                }
                return Err(SpawnError::Garbage {
                    path: path.to_path_buf(),
                    line: shown,
                });
            };
            let version = rest.split_whitespace().next().unwrap_or("");
            let theirs: ProtocolVersion = version.parse().map_err(|_| SpawnError::Garbage {
                path: path.to_path_buf(),
                line: line.to_string(),
            })?;
            if theirs.major != PROTOCOL_VERSION.major {
                return Err(SpawnError::ProtocolMismatch {
                    path: path.to_path_buf(),
                    theirs,
                    ours: PROTOCOL_VERSION,
                });
            }
            Ok(())
        }
    }
}

/// SIGKILL the driver's process group (the driver and whatever it started), or the driver
/// alone if it already left its group.
fn kill_group(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain syscall; the group id is the child's pid (process_group(0)).
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
    let _ = child.start_kill();
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Owns the child: reaps it when it exits, kills it when the [`ExternalDriver`] is dropped.
/// Holding its stdin open is what keeps the driver alive (it exits on EOF).
async fn watch_child(
    mut child: Child,
    stdin: Option<tokio::process::ChildStdin>,
    exit_tx: watch::Sender<Option<String>>,
    mut kill_rx: oneshot::Receiver<()>,
) {
    let pid = child.id();
    let mut killed = false;
    let status = tokio::select! {
        status = child.wait() => status,
        _ = &mut kill_rx => {
            killed = true;
            kill_group(&mut child);
            child.wait().await
        }
    };
    drop(stdin);
    let how = match status {
        Ok(s) => describe_exit(s),
        Err(e) => format!("unknown: {e}"),
    };
    let _ = exit_tx.send(Some(how));
    if !killed {
        // The driver died on its own; what it started may live on in its group. End it when
        // the client goes away (sent or dropped sender).
        let _ = kill_rx.await;
        if let Some(pid) = pid {
            // SAFETY: plain syscall on the group the driver led.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
    }
}

/// Keep at most this many early stderr lines for error messages.
const EARLY_STDERR_LINES: usize = 10;

async fn forward_stderr(
    name: String,
    stderr: tokio::process::ChildStderr,
    early: Arc<Mutex<Vec<String>>>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(mut early) = early.lock() {
            if early.len() < EARLY_STDERR_LINES {
                early.push(line.clone());
            }
        }
        log_driver_line(&name, &line);
    }
}

async fn drain_stdout(name: String, stdout: BufReader<tokio::process::ChildStdout>) {
    let mut lines = stdout.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "lima_driver", driver = %name, stream = "stdout", "{line}");
    }
}

/// One stderr line of a driver, at the level it starts with (info when none).
fn log_driver_line(name: &str, line: &str) {
    let trimmed = line.trim_start();
    let (level, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
    let rest = rest.trim_start();
    match level {
        "ERROR" => tracing::error!(target: "lima_driver", driver = %name, "{rest}"),
        "WARN" => tracing::warn!(target: "lima_driver", driver = %name, "{rest}"),
        "INFO" => tracing::info!(target: "lima_driver", driver = %name, "{rest}"),
        "DEBUG" => tracing::debug!(target: "lima_driver", driver = %name, "{rest}"),
        "TRACE" => tracing::trace!(target: "lima_driver", driver = %name, "{rest}"),
        _ => tracing::info!(target: "lima_driver", driver = %name, "{line}"),
    }
}

#[async_trait]
impl driver::Driver for ExternalDriver {
    async fn info(&self) -> Result<Info> {
        let r = self.client().get_info(pb::Empty {}).await;
        self.unary("info", r).await.map(info_from_pb)
    }

    async fn configure(&self, instance: InstanceConfig) -> Result<()> {
        let req = pb::ConfigureRequest {
            instance_name: instance.name,
            instance_dir: instance.dir.to_string_lossy().into_owned(),
            config_json: to_json("instance config", &instance.config)?,
            ssh_local_port: u32::from(instance.ssh_local_port),
        };
        let r = self.client().configure(req).await;
        self.unary("configure", r).await.map(drop)
    }

    async fn fill_config(&self, config: &mut LimaYaml, ctx: &ConfigContext) -> Result<()> {
        let req = self.config_request(config, ctx)?;
        let r = self.client().fill_config(req).await;
        let resp = self.unary("fill_config", r).await?;
        *config = from_json("filled lima.yaml", &resp.config_json)?;
        Ok(())
    }

    async fn accept_config(&self, config: &LimaYaml, ctx: &ConfigContext) -> Result<()> {
        let req = self.config_request(config, ctx)?;
        let r = self.client().accept_config(req).await;
        self.unary("accept_config", r).await.map(drop)
    }

    async fn validate(&self) -> Result<()> {
        let r = self.client().validate(pb::Empty {}).await;
        self.unary("validate", r).await.map(drop)
    }

    async fn create(&self) -> Result<()> {
        let r = self.client().create(pb::Empty {}).await;
        self.unary("create", r).await.map(drop)
    }

    async fn create_disk(&self) -> Result<()> {
        let r = self.client().create_disk(pb::Empty {}).await;
        self.unary("create_disk", r).await.map(drop)
    }

    async fn start(&self) -> Result<ErrorStream> {
        let r = self.client().start(pb::Empty {}).await;
        let mut stream = self.unary("start", r).await?;
        match stream.message().await {
            Ok(Some(pb::StartEvent {
                event: Some(pb::start_event::Event::Started(_)),
            })) => {}
            Ok(other) => {
                return Err(DriverError::internal(format!(
                    "driver {} ({}): start: expected `started` first, got {other:?}",
                    self.name,
                    self.path.display()
                )))
            }
            Err(status) => return Err(self.call_error("start", status).await),
        }
        let name = self.name.clone();
        let path = self.path.clone();
        let exit = self.exit.clone();
        let errors = futures::stream::unfold(Some(stream), move |state| {
            let (name, path, mut exit) = (name.clone(), path.clone(), exit.clone());
            async move {
                let mut stream = state?;
                loop {
                    match stream.message().await {
                        Ok(Some(pb::StartEvent {
                            event: Some(pb::start_event::Event::Error(e)),
                        })) => return Some((error_from_pb(e), Some(stream))),
                        // Unknown future event kinds are skipped.
                        Ok(Some(_)) => continue,
                        Ok(None) => return None,
                        Err(status) => {
                            let err = status_to_driver_error(&status).unwrap_or_else(|| {
                                let how = exit.borrow_and_update().clone();
                                DriverError::unavailable(format!(
                                    "driver {name} ({}): lost while watching the VM{}",
                                    path.display(),
                                    how.map(|h| format!(" (process {h})")).unwrap_or_default()
                                ))
                            });
                            return Some((err, None));
                        }
                    }
                }
            }
        });
        Ok(errors.boxed())
    }

    async fn stop(&self) -> Result<()> {
        let r = self.client().stop(pb::Empty {}).await;
        self.unary("stop", r).await.map(drop)
    }

    async fn delete(&self) -> Result<()> {
        let r = self.client().delete(pb::Empty {}).await;
        self.unary("delete", r).await.map(drop)
    }

    async fn inspect_status(&self, instance: &Instance) -> Result<Option<Status>> {
        let req = pb::InspectStatusRequest {
            instance_json: to_json("instance", instance)?,
        };
        let r = self.client().inspect_status(req).await;
        let resp = self.unary("inspect_status", r).await?;
        match resp.status {
            None => Ok(None),
            Some(s) => status_from_str(&s).map(Some).ok_or_else(|| {
                DriverError::internal(format!("driver {}: unknown status {s:?}", self.name))
            }),
        }
    }

    async fn boot_scripts(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let r = self.client().boot_scripts(pb::Empty {}).await;
        Ok(self
            .unary("boot_scripts", r)
            .await?
            .scripts
            .into_iter()
            .collect())
    }

    async fn can_run_gui(&self) -> Result<bool> {
        let r = self.client().can_run_gui(pb::Empty {}).await;
        Ok(self.unary("can_run_gui", r).await?.value)
    }

    async fn run_gui(&self) -> Result<()> {
        let r = self.client().run_gui(pb::Empty {}).await;
        self.unary("run_gui", r).await.map(drop)
    }

    async fn change_display_password(&self, password: &str) -> Result<()> {
        let req = pb::PasswordRequest {
            password: password.to_string(),
        };
        let r = self.client().change_display_password(req).await;
        self.unary("change_display_password", r).await.map(drop)
    }

    async fn display_connection(&self) -> Result<String> {
        let r = self.client().display_connection(pb::Empty {}).await;
        Ok(self.unary("display_connection", r).await?.value)
    }

    async fn create_snapshot(&self, tag: &str) -> Result<()> {
        let r = self.client().create_snapshot(snapshot(tag)).await;
        self.unary("create_snapshot", r).await.map(drop)
    }

    async fn apply_snapshot(&self, tag: &str) -> Result<()> {
        let r = self.client().apply_snapshot(snapshot(tag)).await;
        self.unary("apply_snapshot", r).await.map(drop)
    }

    async fn delete_snapshot(&self, tag: &str) -> Result<()> {
        let r = self.client().delete_snapshot(snapshot(tag)).await;
        self.unary("delete_snapshot", r).await.map(drop)
    }

    async fn list_snapshots(&self) -> Result<String> {
        let r = self.client().list_snapshots(pb::Empty {}).await;
        Ok(self.unary("list_snapshots", r).await?.value)
    }

    async fn guest_agent_conn(&self) -> Result<GuestAgentConn> {
        use pb::guest_agent_conn_response::Conn;
        let r = self.client().guest_agent_conn(pb::Empty {}).await;
        match self.unary("guest_agent_conn", r).await?.conn {
            Some(Conn::UnixSocket(p)) => Ok(GuestAgentConn::UnixSocket(PathBuf::from(p))),
            Some(Conn::SshForward(_)) | None => Ok(GuestAgentConn::SshForward),
        }
    }

    async fn ssh_address(&self) -> Result<String> {
        let r = self.client().ssh_address(pb::Empty {}).await;
        Ok(self.unary("ssh_address", r).await?.value)
    }

    async fn additional_setup_for_ssh(&self) -> Result<()> {
        let r = self.client().additional_setup_for_ssh(pb::Empty {}).await;
        self.unary("additional_setup_for_ssh", r).await.map(drop)
    }
}

fn snapshot(tag: &str) -> pb::SnapshotRequest {
    pb::SnapshotRequest {
        tag: tag.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_from_file_names() {
        assert_eq!(
            driver_name_from_path(Path::new("/x/lima-driver-qemu")).as_deref(),
            Some("qemu")
        );
        assert_eq!(
            driver_name_from_path(Path::new("lima-driver-vz.exe")).as_deref(),
            Some("vz")
        );
        assert_eq!(driver_name_from_path(Path::new("/x/lima-driver-")), None);
        assert_eq!(driver_name_from_path(Path::new("/x/qemu")), None);
    }
}
