//! The driver side: a gRPC service wrapping any [`driver::Driver`], and [`serve`], the whole
//! `main` of an external driver.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use driver::{ConfigContext, DriverError, DynDriver, GuestAgentConn, InstanceConfig};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::convert::*;
use crate::pb;
use crate::{ProtocolVersion, PROTOCOL_VERSION};

/// Env var naming the socket the driver must listen on.
pub const SOCKET_ENV: &str = "LIMA_DRIVER_SOCKET";
/// Env var with the client's protocol version, `MAJOR.MINOR`.
pub const PROTOCOL_ENV: &str = "LIMA_DRIVER_PROTOCOL";
/// First word of the one line a driver prints on stdout once its socket accepts connections.
pub const READY_MARKER: &str = "LIMA_DRIVER_READY";

/// The ready line for a socket path: `LIMA_DRIVER_READY 1.0 unix:/path`.
pub fn ready_line(version: ProtocolVersion, socket: &Path) -> String {
    format!("{READY_MARKER} {version} unix:{}", socket.display())
}

/// Errors of [`serve`] (the driver's `main` turns them into a message and exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "this is a Lima VM driver: limactl starts it (it needs ${SOCKET_ENV}); \
         put it in $LIMA_DRIVERS_PATH or beside limactl in libexec/lima/"
    )]
    NotStartedByLima,
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot announce readiness on stdout: {0}")]
    Announce(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// The gRPC service over one driver. Public so tests and benchmarks can host a driver without
/// a child process.
pub struct DriverService {
    driver: DynDriver,
}

impl DriverService {
    pub fn new(driver: DynDriver) -> Self {
        DriverService { driver }
    }

    /// The tonic service, ready for `Server::add_service`.
    pub fn into_server(self) -> pb::driver_server::DriverServer<DriverService> {
        pb::driver_server::DriverServer::new(self)
    }
}

/// Everything an external driver's `main` does: read the socket path from the environment,
/// listen there (mode 0600), print the ready line, log to stderr, serve until limactl closes
/// our stdin (it exited) or the process is killed.
///
/// ```no_run
/// # struct MyDriver; impl MyDriver { fn new() -> std::sync::Arc<dyn driver::Driver> { todo!() } }
/// fn main() -> std::process::ExitCode {
///     drivergrpc::serve_main(MyDriver::new())
/// }
/// ```
pub fn serve(driver: DynDriver) -> Result<(), ServeError> {
    let socket = std::env::var_os(SOCKET_ENV)
        .map(PathBuf::from)
        .ok_or(ServeError::NotStartedByLima)?;
    init_stderr_logging();
    // One thread: a call is served where it is read, without cross-thread wakeups. Drivers
    // may still `spawn_blocking` (not `block_in_place`, which needs a multi-thread runtime).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let listener = listen(&socket)?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", ready_line(PROTOCOL_VERSION, &socket))
                .and_then(|()| out.flush())
                .map_err(ServeError::Announce)?;
        }
        // limactl holds the write end of our stdin; EOF means it is gone, and so must we be.
        let parent_gone = async {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            loop {
                match tokio::io::AsyncReadExt::read(&mut stdin, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            tracing::debug!("stdin closed: limactl is gone, exiting");
        };
        serve_connections(
            listener,
            DriverService::new(driver).into_server(),
            parent_gone,
        )
        .await;
        let _ = std::fs::remove_file(&socket);
        Ok(())
    })
}

/// Each connection served by `hyper` straight into the generated service, until `stop`: no
/// router and no per-request layers of tonic's `Server` (none of which a driver uses).
async fn serve_connections(
    listener: tokio::net::UnixListener,
    service: pb::driver_server::DriverServer<DriverService>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or the like: wait a moment instead of spinning.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => return,
        };
        let service = hyper_util::service::TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let served =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            if let Err(e) = served {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

/// [`serve`] for a `main` returning `ExitCode`: prints the error on stderr, exit status 1.
pub fn serve_main(driver: DynDriver) -> std::process::ExitCode {
    match serve(driver) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ERROR {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Bind a unix socket only the user can use.
pub fn listen(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| ServeError::Listen {
        path: path.to_path_buf(),
        source,
    };
    let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Log records go to stderr, one a line starting with the level, which limactl parses.
fn init_stderr_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIMA_DRIVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_env_filter(filter)
        .try_init();
}

type GrpcResult<T> = Result<Response<T>, Status>;

fn reply<T, U>(r: Result<T, DriverError>, f: impl FnOnce(T) -> U) -> GrpcResult<U> {
    r.map(|v| Response::new(f(v))).map_err(error_to_status)
}

fn empty(r: Result<(), DriverError>) -> GrpcResult<pb::Empty> {
    reply(r, |()| pb::Empty {})
}

fn config_context(req: &pb::ConfigRequest) -> Result<ConfigContext, Status> {
    Ok(ConfigContext {
        host: host_from_pb(req.host.as_ref()).map_err(error_to_status)?,
        config_path: (!req.config_path.is_empty()).then(|| PathBuf::from(&req.config_path)),
    })
}

type StartStream = Pin<Box<dyn Stream<Item = Result<pb::StartEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::driver_server::Driver for DriverService {
    async fn handshake(
        &self,
        req: Request<pb::HandshakeRequest>,
    ) -> GrpcResult<pb::HandshakeResponse> {
        let client_major = req.into_inner().client_protocol_major;
        if client_major != PROTOCOL_VERSION.major {
            return Err(error_to_status(DriverError::failed_precondition(format!(
                "this driver speaks protocol {PROTOCOL_VERSION}, the client major version {client_major}"
            ))));
        }
        let info = self.driver.info().await.map_err(error_to_status)?;
        Ok(Response::new(pb::HandshakeResponse {
            protocol_major: PROTOCOL_VERSION.major,
            protocol_minor: PROTOCOL_VERSION.minor,
            features: feature_names(&info.features),
            driver_name: info.name,
            driver_version: info.version,
        }))
    }

    async fn get_info(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::Info> {
        reply(self.driver.info().await, info_to_pb)
    }

    async fn configure(&self, req: Request<pb::ConfigureRequest>) -> GrpcResult<pb::Empty> {
        let req = req.into_inner();
        let config = from_json("instance config", &req.config_json).map_err(error_to_status)?;
        let ssh_local_port = u16::try_from(req.ssh_local_port).map_err(|_| {
            error_to_status(DriverError::invalid_config(format!(
                "ssh local port {} is out of range",
                req.ssh_local_port
            )))
        })?;
        empty(
            self.driver
                .configure(InstanceConfig {
                    name: req.instance_name,
                    dir: PathBuf::from(req.instance_dir),
                    config,
                    ssh_local_port,
                })
                .await,
        )
    }

    async fn fill_config(&self, req: Request<pb::ConfigRequest>) -> GrpcResult<pb::ConfigResponse> {
        let req = req.into_inner();
        let ctx = config_context(&req)?;
        let mut config = from_json("lima.yaml", &req.config_json).map_err(error_to_status)?;
        self.driver
            .fill_config(&mut config, &ctx)
            .await
            .map_err(error_to_status)?;
        let config_json = to_json("lima.yaml", &config).map_err(error_to_status)?;
        Ok(Response::new(pb::ConfigResponse { config_json }))
    }

    async fn accept_config(&self, req: Request<pb::ConfigRequest>) -> GrpcResult<pb::Empty> {
        let req = req.into_inner();
        let ctx = config_context(&req)?;
        let config = from_json("lima.yaml", &req.config_json).map_err(error_to_status)?;
        empty(self.driver.accept_config(&config, &ctx).await)
    }

    async fn inspect_status(
        &self,
        req: Request<pb::InspectStatusRequest>,
    ) -> GrpcResult<pb::InspectStatusResponse> {
        let instance =
            from_json("instance", &req.into_inner().instance_json).map_err(error_to_status)?;
        reply(self.driver.inspect_status(&instance).await, |s| {
            pb::InspectStatusResponse {
                status: s.map(|s| status_to_str(s).to_string()),
            }
        })
    }

    async fn validate(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::Empty> {
        empty(self.driver.validate().await)
    }

    async fn create(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::Empty> {
        empty(self.driver.create().await)
    }

    async fn create_disk(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::Empty> {
        empty(self.driver.create_disk().await)
    }

    type StartStream = StartStream;

    async fn start(&self, _req: Request<pb::Empty>) -> GrpcResult<Self::StartStream> {
        let errors = self.driver.start().await.map_err(error_to_status)?;
        let started = pb::StartEvent {
            event: Some(pb::start_event::Event::Started(pb::start_event::Started {})),
        };
        let later = errors.map(|e| {
            Ok(pb::StartEvent {
                event: Some(pb::start_event::Event::Error(error_to_pb(e))),
            })
        });
        let stream: StartStream =
            Box::pin(futures::stream::once(async { Ok(started) }).chain(later));
        Ok(Response::new(stream))
    }

    async fn stop(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::Empty> {
        empty(self.driver.stop().await)
    }

    async fn delete(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::Empty> {
        empty(self.driver.delete().await)
    }

    async fn boot_scripts(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::BootScriptsResponse> {
        reply(self.driver.boot_scripts().await, |scripts| {
            pb::BootScriptsResponse {
                scripts: scripts.into_iter().collect(),
            }
        })
    }

    async fn can_run_gui(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::BoolValue> {
        reply(self.driver.can_run_gui().await, |value| pb::BoolValue {
            value,
        })
    }

    async fn run_gui(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::Empty> {
        empty(self.driver.run_gui().await)
    }

    async fn change_display_password(
        &self,
        req: Request<pb::PasswordRequest>,
    ) -> GrpcResult<pb::Empty> {
        empty(
            self.driver
                .change_display_password(&req.into_inner().password)
                .await,
        )
    }

    async fn display_connection(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::StringValue> {
        reply(self.driver.display_connection().await, |value| {
            pb::StringValue { value }
        })
    }

    async fn create_snapshot(&self, req: Request<pb::SnapshotRequest>) -> GrpcResult<pb::Empty> {
        empty(self.driver.create_snapshot(&req.into_inner().tag).await)
    }

    async fn apply_snapshot(&self, req: Request<pb::SnapshotRequest>) -> GrpcResult<pb::Empty> {
        empty(self.driver.apply_snapshot(&req.into_inner().tag).await)
    }

    async fn delete_snapshot(&self, req: Request<pb::SnapshotRequest>) -> GrpcResult<pb::Empty> {
        empty(self.driver.delete_snapshot(&req.into_inner().tag).await)
    }

    async fn list_snapshots(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::StringValue> {
        reply(self.driver.list_snapshots().await, |value| {
            pb::StringValue { value }
        })
    }

    async fn guest_agent_conn(
        &self,
        _req: Request<pb::Empty>,
    ) -> GrpcResult<pb::GuestAgentConnResponse> {
        use pb::guest_agent_conn_response::Conn;
        reply(self.driver.guest_agent_conn().await, |c| {
            pb::GuestAgentConnResponse {
                conn: Some(match c {
                    GuestAgentConn::SshForward => Conn::SshForward(pb::Empty {}),
                    GuestAgentConn::UnixSocket(p) => {
                        Conn::UnixSocket(p.to_string_lossy().into_owned())
                    }
                }),
            }
        })
    }

    async fn ssh_address(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::StringValue> {
        reply(self.driver.ssh_address().await, |value| pb::StringValue {
            value,
        })
    }

    async fn additional_setup_for_ssh(&self, _req: Request<pb::Empty>) -> GrpcResult<pb::Empty> {
        empty(self.driver.additional_setup_for_ssh().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::driver_server::Driver as _;

    struct Nameless;

    #[async_trait::async_trait]
    impl driver::Driver for Nameless {
        async fn info(&self) -> driver::Result<driver::Info> {
            Ok(driver::Info {
                name: "nameless".into(),
                ..Default::default()
            })
        }
        async fn configure(&self, _: InstanceConfig) -> driver::Result<()> {
            Ok(())
        }
        async fn accept_config(
            &self,
            _: &driver::LimaYaml,
            _: &ConfigContext,
        ) -> driver::Result<()> {
            Ok(())
        }
        async fn validate(&self) -> driver::Result<()> {
            Ok(())
        }
        async fn create(&self) -> driver::Result<()> {
            Ok(())
        }
        async fn create_disk(&self) -> driver::Result<()> {
            Ok(())
        }
        async fn start(&self) -> driver::Result<driver::ErrorStream> {
            Err(DriverError::unsupported("no VM"))
        }
        async fn stop(&self) -> driver::Result<()> {
            Ok(())
        }
        async fn delete(&self) -> driver::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn handshake_refuses_another_major_and_answers_ours() {
        let svc = DriverService::new(std::sync::Arc::new(Nameless));
        let err = svc
            .handshake(Request::new(pb::HandshakeRequest {
                client_protocol_major: PROTOCOL_VERSION.major + 1,
                client_protocol_minor: 0,
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(
            err.message().contains(&PROTOCOL_VERSION.to_string()),
            "{}",
            err.message()
        );
        let ok = svc
            .handshake(Request::new(pb::HandshakeRequest {
                client_protocol_major: PROTOCOL_VERSION.major,
                client_protocol_minor: PROTOCOL_VERSION.minor + 3,
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ok.driver_name, "nameless");
        assert_eq!(
            (ok.protocol_major, ok.protocol_minor),
            (PROTOCOL_VERSION.major, PROTOCOL_VERSION.minor)
        );
    }

    #[test]
    fn ready_line_format() {
        assert_eq!(
            ready_line(
                ProtocolVersion { major: 1, minor: 2 },
                Path::new("/tmp/d/driver.sock")
            ),
            "LIMA_DRIVER_READY 1.2 unix:/tmp/d/driver.sock"
        );
    }
}
