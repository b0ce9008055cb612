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
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tonic::codegen::http;

use crate::convert::*;
use crate::pb;
use crate::pb::driver_client::DriverClient;
use crate::server::{PROTOCOL_ENV, READY_MARKER, SOCKET_ENV};
use crate::{ProtocolVersion, PROTOCOL_VERSION};

/// The environment variable setting the deadline of quick calls ([`SpawnOptions::call_timeout`]):
/// seconds (`10`) or a duration (`500ms`, `30s`, `2m`, `1h`); `0` means none.
pub const CALL_TIMEOUT_ENV: &str = "LIMA_DRIVER_CALL_TIMEOUT";
/// The environment variable setting the deadline of long calls
/// ([`SpawnOptions::long_call_timeout`]), same syntax as [`CALL_TIMEOUT_ENV`].
pub const LONG_CALL_TIMEOUT_ENV: &str = "LIMA_DRIVER_LONG_CALL_TIMEOUT";

/// Default deadline of a quick call (info, config, status, addresses...).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline of a long call (validate, create, create_disk, start, stop, delete,
/// snapshots, additional_setup_for_ssh).
pub const DEFAULT_LONG_CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// How long to wait for a starting driver, and for each of its calls. A call that misses its
/// deadline fails with kind `Timeout` and the driver process (with its group) is killed: a
/// driver that stopped answering cannot be trusted with the next call.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// From process start to the ready line, and again for connect + handshake.
    pub ready_timeout: Duration,
    /// Deadline of each quick call: `info`, `fill_config`, `accept_config`,
    /// `inspect_status`, `configure`, `boot_scripts`, `ssh_address`, `can_run_gui`,
    /// `guest_agent_conn`, `list_snapshots`, `display_connection`,
    /// `change_display_password`. `None`: no deadline.
    pub call_timeout: Option<Duration>,
    /// Deadline of each long call: `validate`, `create`, `create_disk`, `start` (until boot has
    /// begun; its error stream then lives as long as the VM), `stop`, `delete`, the snapshot
    /// calls, `additional_setup_for_ssh`. `run_gui` has none (it returns when the window
    /// closes). `None`: no deadline.
    pub long_call_timeout: Option<Duration>,
}

impl Default for SpawnOptions {
    /// 5 s to start; call deadlines from [`CALL_TIMEOUT_ENV`] and [`LONG_CALL_TIMEOUT_ENV`],
    /// else 10 s and 10 min.
    fn default() -> Self {
        Self::from_env_with(|k| std::env::var(k).ok())
    }
}

impl SpawnOptions {
    /// [`SpawnOptions::default`] with the environment read through `var`. A value that does
    /// not parse is reported (warning) and the default used.
    pub fn from_env_with(var: impl Fn(&str) -> Option<String>) -> Self {
        let read = |key: &str, default: Duration| match var(key) {
            None => Some(default),
            Some(v) if v.trim().is_empty() => Some(default),
            Some(v) => match parse_timeout(&v) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(target: "lima_driver", "{key}: {e}; using {}", fmt_duration(default));
                    Some(default)
                }
            },
        };
        SpawnOptions {
            ready_timeout: Duration::from_secs(5),
            call_timeout: read(CALL_TIMEOUT_ENV, DEFAULT_CALL_TIMEOUT),
            long_call_timeout: read(LONG_CALL_TIMEOUT_ENV, DEFAULT_LONG_CALL_TIMEOUT),
        }
    }
}

/// A timeout value that is not seconds or a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timeout {text:?} is not a number of seconds or a duration such as 500ms, 30s, 2m, 1h")]
pub struct ParseTimeoutError {
    pub text: String,
}

/// `10` (seconds), `1.5`, `500ms`, `30s`, `2m`, `1h`; `0` (any unit) means no deadline.
pub fn parse_timeout(text: &str) -> std::result::Result<Option<Duration>, ParseTimeoutError> {
    let bad = || ParseTimeoutError {
        text: text.to_string(),
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(bad());
    }
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

/// `500ms`, `10s`, `1.5s`, `10m`, `2h`: as the timeout variables are written.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Which deadline a call has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    Quick,
    Long,
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
        "driver {path}: is not a Lima driver: its ready line is longer than {limit} bytes \
         (that much output on stdout without a newline)"
    )]
    ReadyLineTooLong { path: PathBuf, limit: usize },
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
    call_timeout: Option<Duration>,
    long_call_timeout: Option<Duration>,
    _process: ProcessGuard,
    _socket_dir: tempfile::TempDir,
    /// Last: off the process-wide list once the process is killed and the directory gone.
    _registration: Option<crate::cleanup::Registration>,
}

/// Ends the driver's process group when dropped, synchronously, so that no process survives
/// even when the async runtime is shutting down and the watcher task never runs again.
struct ProcessGuard {
    pid: Option<u32>,
    exit: watch::Receiver<Option<String>>,
    kill: Option<oneshot::Sender<()>>,
}

/// SIGKILL the group of a driver that has not been reaped yet (only the watcher reaps, so until
/// then the pid and its group are still ours).
fn kill_unreaped(pid: Option<u32>, exit: &watch::Receiver<Option<String>>) {
    if let (Some(pid), None) = (pid, exit.borrow().as_ref()) {
        // SAFETY: plain syscall on the group the driver leads (process_group(0)).
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        kill_unreaped(self.pid, &self.exit);
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
        let registration =
            pid.map(|pid| crate::cleanup::register(pid, socket_dir.path().to_path_buf()));
        let early_stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_stderr(name.clone(), stderr, early_stderr.clone()));
        }
        let mut stdout = LineReader::new(
            child.stdout.take().expect("stdout is piped"),
            MAX_READY_LINE,
        );

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
        stdout.cap = MAX_LOG_LINE;
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
            call_timeout: opts.call_timeout,
            long_call_timeout: opts.long_call_timeout,
            _process: process,
            _socket_dir: socket_dir,
            _registration: registration,
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

    fn limit(&self, deadline: Deadline) -> Option<Duration> {
        match deadline {
            Deadline::Quick => self.call_timeout,
            Deadline::Long => self.long_call_timeout,
        }
    }

    /// Runs `fut` (a call on the driver) within its deadline. On expiry the driver's process
    /// group is killed (its state is unknown, and it would answer no later call either) and
    /// the error, kind `Timeout`, names the driver, the call and the deadline.
    async fn within<F: std::future::Future>(
        &self,
        call: &str,
        deadline: Deadline,
        fut: F,
    ) -> Result<F::Output> {
        let Some(limit) = self.limit(deadline) else {
            return Ok(fut.await);
        };
        match tokio::time::timeout(limit, fut).await {
            Ok(out) => Ok(out),
            Err(_) => {
                kill_unreaped(self.pid, &self.exit);
                let var = match deadline {
                    Deadline::Quick => CALL_TIMEOUT_ENV,
                    Deadline::Long => LONG_CALL_TIMEOUT_ENV,
                };
                Err(DriverError::timeout(format!(
                    "driver {} ({}): {call} timed out: no answer within {}; the driver \
                     process was killed (set {var} to wait longer)",
                    self.name,
                    self.path.display(),
                    fmt_duration(limit)
                )))
            }
        }
    }

    /// A unary call within its deadline.
    async fn call<T, F>(&self, call: &str, deadline: Deadline, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let r = self.within(call, deadline, fut).await?;
        self.unary(call, r).await
    }

    fn config_request(&self, config: &LimaYaml, ctx: &ConfigContext) -> Result<pb::ConfigRequest> {
        Ok(pb::ConfigRequest {
            config_json: to_json("lima.yaml", config)?,
            host: Some(host_to_pb(&ctx.host)),
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
    stdout: &mut LineReader<tokio::process::ChildStdout>,
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
    let read = tokio::time::timeout(timeout, stdout.next(true)).await;
    match read {
        Err(_) => Err(SpawnError::NotReady {
            path: path.to_path_buf(),
            timeout,
        }),
        Ok(Err(e)) => Err(SpawnError::Garbage {
            path: path.to_path_buf(),
            line: format!("unreadable output ({e})"),
        }),
        Ok(Ok(ReadLine::TooLong)) => Err(SpawnError::ReadyLineTooLong {
            path: path.to_path_buf(),
            limit: MAX_READY_LINE,
        }),
        Ok(Ok(ReadLine::Eof)) => {
            // stdout closed: the process is exiting (or closed it on purpose, equally useless).
            let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(exited_early(match status {
                Ok(Ok(s)) => describe_exit(s),
                _ => "closed its stdout".to_string(),
            }))
        }
        Ok(Ok(ReadLine::Line)) => {
            let line = String::from_utf8_lossy(&stdout.line);
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

/// Keep at most this many early stderr lines for error messages...
const EARLY_STDERR_LINES: usize = 10;
/// ... and at most this many characters of each.
const EARLY_STDERR_CHARS: usize = 300;

/// Longest ready line accepted (a real one is under 100 bytes): more output than this on
/// stdout without a newline, and the file is not a driver.
pub const MAX_READY_LINE: usize = 4096;
/// Longest driver output line logged; the rest of the line is dropped, and the logged part
/// ends with `… [truncated N bytes]`.
pub const MAX_LOG_LINE: usize = 8192;
/// Driver output lines logged per second and stream; the others are dropped and counted in a
/// warning once the second is over.
pub const MAX_LOG_LINES_PER_SEC: u32 = 100;
/// Bytes read from a driver's stdout or stderr at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What [`LineReader::next`] found.
#[derive(Debug, PartialEq, Eq)]
enum ReadLine {
    /// A line (ended by a newline or by end of file) is in `line`, at most `cap` bytes of it,
    /// with `cut` more bytes dropped.
    Line,
    Eof,
    /// The line grew past `cap` bytes, when asked to give up on that.
    TooLong,
}

/// Lines of a driver's output in bounded memory whatever it prints: reads fixed chunks and
/// keeps at most `cap` bytes of a line. Cancel-safe: the state lives here, not in the future.
struct LineReader<R> {
    inner: BufReader<R>,
    cap: usize,
    line: Vec<u8>,
    cut: usize,
    /// The current line has bytes (so end of file ends a line rather than the stream).
    started: bool,
    /// `line` holds a finished line, to be cleared by the next call.
    finished: bool,
    /// The last byte of the line so far (kept or cut) is a `\r`.
    last_cr: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R, cap: usize) -> Self {
        LineReader {
            inner: BufReader::with_capacity(READ_CHUNK, inner),
            cap,
            line: Vec::new(),
            cut: 0,
            started: false,
            finished: false,
            last_cr: false,
        }
    }

    async fn next(&mut self, give_up_over_cap: bool) -> std::io::Result<ReadLine> {
        if self.finished {
            self.line.clear();
            self.cut = 0;
            self.started = false;
            self.finished = false;
            self.last_cr = false;
        }
        loop {
            let avail = self.inner.fill_buf().await?;
            if avail.is_empty() {
                if self.started {
                    self.finished = true;
                    return Ok(ReadLine::Line);
                }
                return Ok(ReadLine::Eof);
            }
            self.started = true;
            let (len, used, ends) = match find_newline(avail) {
                Some(i) => (i, i + 1, true),
                None => (avail.len(), avail.len(), false),
            };
            let keep = self.cap.saturating_sub(self.line.len()).min(len);
            if keep < len && give_up_over_cap {
                return Ok(ReadLine::TooLong);
            }
            self.line.extend_from_slice(&avail[..keep]);
            self.cut += len - keep;
            if len > 0 {
                self.last_cr = avail[len - 1] == b'\r';
            }
            self.inner.consume(used);
            if ends {
                // `\r\n` ends a line too; the `\r` is the line's last byte, cut or kept.
                if self.last_cr {
                    if self.cut > 0 {
                        self.cut -= 1;
                    } else {
                        self.line.pop();
                    }
                }
                self.finished = true;
                return Ok(ReadLine::Line);
            }
        }
    }

    /// The finished line as text, and, when it was cut, with a note of how much was.
    fn text(&self) -> String {
        let mut bytes = &self.line[..];
        let mut cut = self.cut;
        if cut > 0 {
            // Do not end on half a UTF-8 character.
            if let Err(e) = std::str::from_utf8(bytes) {
                if e.error_len().is_none() {
                    cut += bytes.len() - e.valid_up_to();
                    bytes = &bytes[..e.valid_up_to()];
                }
            }
        }
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        if cut > 0 {
            text.push_str(&format!("… [truncated {cut} bytes]"));
        }
        text
    }
}

/// The first `\n` in `bytes`: libc's `memchr`, fast even in unoptimized builds, where a byte
/// loop over a 200 MB flood takes seconds.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    // SAFETY: reads `bytes.len()` bytes from the start of a live slice.
    let p = unsafe { libc::memchr(bytes.as_ptr().cast(), b'\n' as libc::c_int, bytes.len()) };
    (!p.is_null()).then(|| p as usize - bytes.as_ptr() as usize)
}

/// At most [`MAX_LOG_LINES_PER_SEC`] lines a second of one stream go to the log; the others
/// are counted and reported once the second is over.
struct LogLimit {
    window: tokio::time::Instant,
    in_window: u32,
    dropped: u64,
}

impl LogLimit {
    fn new() -> Self {
        LogLimit {
            window: tokio::time::Instant::now(),
            in_window: 0,
            dropped: 0,
        }
    }

    /// Whether the next line may be logged.
    fn admit(&mut self, name: &str, stream: &str) -> bool {
        self.roll(name, stream);
        if self.in_window < MAX_LOG_LINES_PER_SEC {
            self.in_window += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// When the note about dropped lines is due (none dropped: `None`).
    fn note_due(&self) -> Option<tokio::time::Instant> {
        (self.dropped > 0).then(|| self.window + Duration::from_secs(1))
    }

    /// Starts a new second if the current one is over, reporting what it dropped.
    fn roll(&mut self, name: &str, stream: &str) {
        let now = tokio::time::Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.note(name, stream);
            self.window = now;
            self.in_window = 0;
        }
    }

    fn note(&mut self, name: &str, stream: &str) {
        if self.dropped > 0 {
            tracing::warn!(target: "lima_driver", driver = %name, stream,
                "{} log lines dropped (more than {MAX_LOG_LINES_PER_SEC} a second)", self.dropped);
            self.dropped = 0;
        }
    }
}

/// Each line of `reader` to `log`, within the rate limit, until end of file.
async fn forward_lines<R: AsyncRead + Unpin>(
    name: &str,
    stream: &str,
    mut reader: LineReader<R>,
    mut log: impl FnMut(String, bool),
) {
    let mut limit = LogLimit::new();
    loop {
        let read = match limit.note_due() {
            Some(at) => tokio::select! {
                r = reader.next(false) => r,
                () = tokio::time::sleep_until(at) => {
                    limit.roll(name, stream);
                    continue;
                }
            },
            None => reader.next(false).await,
        };
        if !matches!(read, Ok(ReadLine::Line)) {
            break;
        }
        let admitted = limit.admit(name, stream);
        log(reader.text(), admitted);
    }
    limit.note(name, stream);
}

async fn forward_stderr(
    name: String,
    stderr: tokio::process::ChildStderr,
    early: Arc<Mutex<Vec<String>>>,
) {
    let reader = LineReader::new(stderr, MAX_LOG_LINE);
    forward_lines(&name, "stderr", reader, |line, admitted| {
        if let Ok(mut early) = early.lock() {
            if early.len() < EARLY_STDERR_LINES {
                let mut short: String = line.chars().take(EARLY_STDERR_CHARS).collect();
                if short.len() < line.len() {
                    short.push('…');
                }
                early.push(short);
            }
        }
        if admitted {
            log_driver_line(&name, &line);
        }
    })
    .await;
}

async fn drain_stdout(name: String, stdout: LineReader<tokio::process::ChildStdout>) {
    forward_lines(&name, "stdout", stdout, |line, admitted| {
        if admitted {
            tracing::debug!(target: "lima_driver", driver = %name, stream = "stdout", "{line}");
        }
    })
    .await;
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
        self.call(
            "info",
            Deadline::Quick,
            self.client().get_info(pb::Empty {}),
        )
        .await
        .map(info_from_pb)
    }

    async fn configure(&self, instance: InstanceConfig) -> Result<()> {
        let req = pb::ConfigureRequest {
            instance_name: instance.name,
            instance_dir: instance.dir.to_string_lossy().into_owned(),
            config_json: to_json("instance config", &instance.config)?,
            ssh_local_port: u32::from(instance.ssh_local_port),
        };
        self.call("configure", Deadline::Quick, self.client().configure(req))
            .await
            .map(drop)
    }

    async fn fill_config(&self, config: &mut LimaYaml, ctx: &ConfigContext) -> Result<()> {
        let req = self.config_request(config, ctx)?;
        let resp = self
            .call(
                "fill_config",
                Deadline::Quick,
                self.client().fill_config(req),
            )
            .await?;
        *config = from_json("filled lima.yaml", &resp.config_json)?;
        Ok(())
    }

    async fn accept_config(&self, config: &LimaYaml, ctx: &ConfigContext) -> Result<()> {
        let req = self.config_request(config, ctx)?;
        self.call(
            "accept_config",
            Deadline::Quick,
            self.client().accept_config(req),
        )
        .await
        .map(drop)
    }

    async fn validate(&self) -> Result<()> {
        self.call(
            "validate",
            Deadline::Long,
            self.client().validate(pb::Empty {}),
        )
        .await
        .map(drop)
    }

    async fn create(&self) -> Result<()> {
        self.call("create", Deadline::Long, self.client().create(pb::Empty {}))
            .await
            .map(drop)
    }

    async fn create_disk(&self) -> Result<()> {
        self.call(
            "create_disk",
            Deadline::Long,
            self.client().create_disk(pb::Empty {}),
        )
        .await
        .map(drop)
    }

    async fn start(&self) -> Result<ErrorStream> {
        // The deadline covers the call up to `started` (boot has begun); the error stream
        // after it lives as long as the VM.
        let begun = self
            .within("start", Deadline::Long, async {
                let mut stream = self.client().start(pb::Empty {}).await?.into_inner();
                let first = stream.message().await?;
                Ok::<_, tonic::Status>((stream, first))
            })
            .await?;
        let stream = match begun {
            Ok((
                stream,
                Some(pb::StartEvent {
                    event: Some(pb::start_event::Event::Started(_)),
                }),
            )) => stream,
            Ok((_, other)) => {
                return Err(DriverError::internal(format!(
                    "driver {} ({}): start: expected `started` first, got {other:?}",
                    self.name,
                    self.path.display()
                )))
            }
            Err(status) => return Err(self.call_error("start", status).await),
        };
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
        self.call("stop", Deadline::Long, self.client().stop(pb::Empty {}))
            .await
            .map(drop)
    }

    async fn delete(&self) -> Result<()> {
        self.call("delete", Deadline::Long, self.client().delete(pb::Empty {}))
            .await
            .map(drop)
    }

    async fn inspect_status(&self, instance: &Instance) -> Result<Option<Status>> {
        let req = pb::InspectStatusRequest {
            instance_json: to_json("instance", instance)?,
        };
        let resp = self
            .call(
                "inspect_status",
                Deadline::Quick,
                self.client().inspect_status(req),
            )
            .await?;
        match resp.status {
            None => Ok(None),
            Some(s) => status_from_str(&s).map(Some).ok_or_else(|| {
                DriverError::internal(format!("driver {}: unknown status {s:?}", self.name))
            }),
        }
    }

    async fn boot_scripts(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        Ok(self
            .call(
                "boot_scripts",
                Deadline::Quick,
                self.client().boot_scripts(pb::Empty {}),
            )
            .await?
            .scripts
            .into_iter()
            .collect())
    }

    async fn can_run_gui(&self) -> Result<bool> {
        Ok(self
            .call(
                "can_run_gui",
                Deadline::Quick,
                self.client().can_run_gui(pb::Empty {}),
            )
            .await?
            .value)
    }

    async fn run_gui(&self) -> Result<()> {
        // No deadline: it returns when the GUI window closes.
        let r = self.client().run_gui(pb::Empty {}).await;
        self.unary("run_gui", r).await.map(drop)
    }

    async fn change_display_password(&self, password: &str) -> Result<()> {
        let req = pb::PasswordRequest {
            password: password.to_string(),
        };
        self.call(
            "change_display_password",
            Deadline::Quick,
            self.client().change_display_password(req),
        )
        .await
        .map(drop)
    }

    async fn display_connection(&self) -> Result<String> {
        Ok(self
            .call(
                "display_connection",
                Deadline::Quick,
                self.client().display_connection(pb::Empty {}),
            )
            .await?
            .value)
    }

    async fn create_snapshot(&self, tag: &str) -> Result<()> {
        self.call(
            "create_snapshot",
            Deadline::Long,
            self.client().create_snapshot(snapshot(tag)),
        )
        .await
        .map(drop)
    }

    async fn apply_snapshot(&self, tag: &str) -> Result<()> {
        self.call(
            "apply_snapshot",
            Deadline::Long,
            self.client().apply_snapshot(snapshot(tag)),
        )
        .await
        .map(drop)
    }

    async fn delete_snapshot(&self, tag: &str) -> Result<()> {
        self.call(
            "delete_snapshot",
            Deadline::Long,
            self.client().delete_snapshot(snapshot(tag)),
        )
        .await
        .map(drop)
    }

    async fn list_snapshots(&self) -> Result<String> {
        Ok(self
            .call(
                "list_snapshots",
                Deadline::Quick,
                self.client().list_snapshots(pb::Empty {}),
            )
            .await?
            .value)
    }

    async fn guest_agent_conn(&self) -> Result<GuestAgentConn> {
        use pb::guest_agent_conn_response::Conn;
        match self
            .call(
                "guest_agent_conn",
                Deadline::Quick,
                self.client().guest_agent_conn(pb::Empty {}),
            )
            .await?
            .conn
        {
            Some(Conn::UnixSocket(p)) => Ok(GuestAgentConn::UnixSocket(PathBuf::from(p))),
            Some(Conn::SshForward(_)) | None => Ok(GuestAgentConn::SshForward),
        }
    }

    async fn ssh_address(&self) -> Result<String> {
        Ok(self
            .call(
                "ssh_address",
                Deadline::Quick,
                self.client().ssh_address(pb::Empty {}),
            )
            .await?
            .value)
    }

    async fn additional_setup_for_ssh(&self) -> Result<()> {
        self.call(
            "additional_setup_for_ssh",
            Deadline::Long,
            self.client().additional_setup_for_ssh(pb::Empty {}),
        )
        .await
        .map(drop)
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

    #[test]
    fn timeouts_parse_as_seconds_or_durations() {
        let s = |n| Some(Duration::from_secs(n));
        assert_eq!(parse_timeout("10"), Ok(s(10)));
        assert_eq!(parse_timeout(" 30s "), Ok(s(30)));
        assert_eq!(parse_timeout("2m"), Ok(s(120)));
        assert_eq!(parse_timeout("1h"), Ok(s(3600)));
        assert_eq!(parse_timeout("500ms"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(parse_timeout("1.5"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(parse_timeout("0"), Ok(None));
        assert_eq!(parse_timeout("0s"), Ok(None));
        for bad in ["", "s", "ten", "10 years", "-1", "1e3", "1..2"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timeouts_come_from_the_environment() {
        let opts = SpawnOptions::from_env_with(|_| None);
        assert_eq!(opts.call_timeout, Some(DEFAULT_CALL_TIMEOUT));
        assert_eq!(opts.long_call_timeout, Some(DEFAULT_LONG_CALL_TIMEOUT));
        let opts = SpawnOptions::from_env_with(|k| match k {
            CALL_TIMEOUT_ENV => Some("3s".into()),
            LONG_CALL_TIMEOUT_ENV => Some("0".into()),
            _ => None,
        });
        assert_eq!(opts.call_timeout, Some(Duration::from_secs(3)));
        assert_eq!(opts.long_call_timeout, None);
        // Garbage falls back to the default (with a warning).
        let opts = SpawnOptions::from_env_with(|_| Some("soon".into()));
        assert_eq!(opts.call_timeout, Some(DEFAULT_CALL_TIMEOUT));
    }

    #[tokio::test]
    async fn lines_are_read_in_bounded_memory_and_cut_with_a_note() {
        let input = "short\r\nééééé\nno newline at the end".as_bytes();
        let mut r = LineReader::new(input, 5);
        assert_eq!(r.next(false).await.unwrap(), ReadLine::Line);
        assert_eq!(r.text(), "short");
        assert_eq!(r.next(false).await.unwrap(), ReadLine::Line);
        // Five bytes kept would end in half an `é`: four are, and six are reported cut.
        assert_eq!(r.text(), "éé… [truncated 6 bytes]");
        assert_eq!(r.next(false).await.unwrap(), ReadLine::Line);
        assert_eq!(r.text(), "no ne… [truncated 16 bytes]");
        assert_eq!(r.next(false).await.unwrap(), ReadLine::Eof);

        let mut r = LineReader::new(&b"toolong\r\n"[..], 4);
        assert_eq!(r.next(false).await.unwrap(), ReadLine::Line);
        assert_eq!(r.text(), "tool… [truncated 3 bytes]");

        let mut r = LineReader::new(&b"0123456789\n"[..], 4);
        assert_eq!(r.next(true).await.unwrap(), ReadLine::TooLong);
        let mut r = LineReader::new(&b"0123\n"[..], 4);
        assert_eq!(r.next(true).await.unwrap(), ReadLine::Line);
        assert_eq!(r.text(), "0123");
    }

    #[test]
    fn durations_print_as_they_are_written() {
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_duration(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_duration(Duration::from_secs(600)), "10m");
        assert_eq!(fmt_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    }
}
