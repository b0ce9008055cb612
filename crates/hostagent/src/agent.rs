//! The host agent's main loop for one instance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use driver::{Driver, DriverError};
use futures::StreamExt;
use limatype::filenames;

use crate::events::Status;
use crate::phases::Clock;
use crate::requirements;
use crate::server::{self, Hub};

/// Writes the cidata seed into the instance dir, given the driver's boot scripts and the
/// ports of the DNS server this agent runs for `hostResolver` (the instance flow owns the
/// seed's other inputs).
pub type SeedWriter<'a> = &'a (dyn Fn(&BTreeMap<String, Vec<u8>>, Option<cidata::DnsPorts>) -> Result<(), BoxError>
         + Send
         + Sync);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the host agent failed; each was also reported as an error event.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot serve {}: {source}", filenames::HOST_AGENT_SOCK)]
    Serve {
        #[source]
        source: std::io::Error,
    },
    #[error("driver {call}: {error}")]
    Driver {
        call: &'static str,
        #[source]
        error: DriverError,
    },
    #[error("writing {}: {source}", filenames::CIDATA_ISO)]
    Seed {
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Ssh(#[from] sshutil::SshError),
    #[error(transparent)]
    Requirement(Box<requirements::Unmet>),
    #[error(transparent)]
    Sshfs(#[from] crate::sshfs::SshfsError),
    #[error("telling the guest that the reverse-sshfs mounts are up: {0}")]
    SshfsAnnounce(#[source] requirements::ScriptError),
    #[error("the VM exited before it was ready: {0}")]
    ExitedEarly(String),
    #[error("the VM exited unexpectedly: {0}")]
    Exited(String),
    #[error("VNC display: {0}")]
    Vnc(#[source] crate::vnc::VncError),
    #[error("cannot start the DNS server for hostResolver: {0}")]
    Dns(#[source] hostdns::DnsError),
    #[error("interrupted by {0} while starting")]
    Interrupted(&'static str),
}

fn driver_call(call: &'static str) -> impl FnOnce(DriverError) -> AgentError {
    move |error| AgentError::Driver { call, error }
}

pub struct Options {
    pub name: String,
    pub dir: PathBuf,
    pub ssh_local_port: u16,
    pub ssh_user: String,
    pub private_key: PathBuf,
    /// `ssh.loadDotSSHPubKeys` and the forwarding switches, for `ssh.config`.
    pub ssh_flags: sshutil::SshFlags,
    /// Link the forwarded SSH agent to `/run/host-services/ssh-auth.sock` in the guest
    /// (`ssh.forwardAgent`, not in plain mode).
    pub link_ssh_agent: bool,
    /// How long the guest may take to satisfy the essential requirements.
    pub ready_timeout: Duration,
    /// How progress messages name the driver, e.g. `qemu (internal)`.
    pub driver_description: String,
    /// The port forwarding rules in effect (`portfwd::effective_rules`).
    pub port_forwards: Vec<limatype::PortForward>,
    /// reverse-sshfs mounts this agent makes (`sshfs::plan`).
    pub sshfs_mounts: Vec<crate::sshfs::SshfsMount>,
    /// Every mount the guest must show before the instance is ready.
    pub expected_mounts: Vec<requirements::ExpectedMount>,
    /// Mounts whose host changes are passed to the guest (`mountInotify`; `inotify::plan`).
    pub inotify_mounts: Vec<crate::inotify::WatchedMount>,
    /// `copyToHost` rules, copied once the guest is ready (`copytohost::plan`).
    pub copy_to_host: Vec<crate::copytohost::CopyRule>,
    /// Send the guest's cloud-init output as events (`limactl start --progress`).
    pub cloud_init_progress: bool,
    /// The optional requirements, in upstream's order: containerd's
    /// (`requirements::containerd`), then the user's readiness probes (`requirements::probe`).
    pub probes: Vec<requirements::Requirement>,
    /// `video.vnc.display` when `video.display` is `vnc` (see [`crate::vnc`]).
    pub vnc_display: Option<String>,
    /// `hostResolver` when enabled: the DNS server's hosts and IPv6 switch
    /// (`hostdns::Config::for_instance`); it runs for the agent's life.
    pub dns: Option<hostdns::Config>,
}

/// Why the VM's error stream says it ended: its error, or (the stream closed without one)
/// that the driver stopped watching the VM.
fn exit_reason(e: Option<DriverError>) -> String {
    match e {
        Some(e) => e.to_string(),
        None => "the driver stopped watching it".to_string(),
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; qemu binds it right after).
pub fn free_local_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Runs the instance through `vm` (internal or external alike, already configured for this
/// instance) until SIGTERM/SIGINT or until the VM ends; an error (after it was reported as an
/// event) when the VM failed to come up or ended on its own.
pub async fn run(
    opts: Options,
    vm: &dyn Driver,
    write_seed: SeedWriter<'_>,
    hub: Hub,
) -> Result<(), AgentError> {
    let dir = opts.dir.clone();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(AgentError::Signals)?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(AgentError::Signals)?;
    let progress = |hub: &Hub, msg: String| {
        tracing::info!("{msg}");
        hub.emit(Status {
            progress: Some(msg),
            ssh_local_port: opts.ssh_local_port,
            ..Default::default()
        });
    };
    let fail = |hub: &Hub, e: AgentError| {
        tracing::error!("{e}");
        hub.emit(Status {
            errors: vec![e.to_string()],
            ssh_local_port: opts.ssh_local_port,
            ..Default::default()
        });
        e
    };

    let _server = server::serve(&dir.join(filenames::HOST_AGENT_SOCK), hub.clone())
        .map_err(|source| fail(&hub, AgentError::Serve { source }))?;

    progress(
        &hub,
        format!("Using the {} driver", opts.driver_description),
    );
    let mut clock = Clock::start();
    vm.validate()
        .await
        .map_err(|e| fail(&hub, driver_call("validate")(e)))?;
    vm.create()
        .await
        .map_err(|e| fail(&hub, driver_call("create")(e)))?;
    let scripts = vm
        .boot_scripts()
        .await
        .map_err(|e| fail(&hub, driver_call("boot scripts")(e)))?;
    hub.phase(clock.lap("driver prepare"));
    // Before the seed, which carries its ports (upstream starts it before the VM too).
    let dns_server = match opts.dns.clone() {
        Some(cfg) => Some(
            hostdns::start(cfg)
                .await
                .map_err(|e| fail(&hub, AgentError::Dns(e)))?,
        ),
        None => None,
    };
    let dns_ports = dns_server.as_ref().map(|s| cidata::DnsPorts {
        udp: s.udp_port,
        tcp: s.tcp_port,
    });
    if let Some(p) = dns_ports {
        tracing::info!(
            "DNS server for hostResolver on 127.0.0.1 udp:{} tcp:{}",
            p.udp,
            p.tcp
        );
    }
    write_seed(&scripts, dns_ports).map_err(|source| fail(&hub, AgentError::Seed { source }))?;
    hub.phase(clock.lap("seed"));

    progress(&hub, "Starting the VM".to_string());
    let serial = dir.join(filenames::SERIAL_LOG);
    let booted_at = Instant::now();
    let mut vm_errors = vm
        .start()
        .await
        .map_err(|e| fail(&hub, driver_call("start")(e)))?;
    hub.phase(clock.lap("driver start"));
    let kernel_watch = AbortOnDrop(tokio::spawn(kernel_up(serial, booted_at, hub.clone())));
    // ssh.config is not needed to boot: written while the guest boots.
    let address = vm
        .ssh_address()
        .await
        .unwrap_or_else(|_| "127.0.0.1".to_string());
    let written = sshutil::instance_opts(&dir, &opts.private_key, &opts.ssh_user, &opts.ssh_flags)
        .and_then(|ssh_opts| {
            sshutil::write_config(&dir, &opts.name, &address, opts.ssh_local_port, &ssh_opts)
        });
    let ssh_config = match written {
        Ok(p) => p,
        Err(e) => {
            let e = fail(&hub, e.into());
            shutdown(vm, &dir, &opts.name, &hub).await;
            return Err(e);
        }
    };
    hub.phase(clock.lap("ssh.config"));
    // Guest ports reach the host through the guest agent's channel, as soon as it answers;
    // host file changes under mounts go the other way on it.
    let mut _inotify_watcher = None;
    // What the guest agent says of the boot (readiness by event); `None` without a channel.
    let mut guest_status = None;
    let _forwarder = match vm.guest_agent_conn().await {
        Ok(driver::GuestAgentConn::UnixSocket(sock)) => {
            let (status_tx, status_rx) =
                tokio::sync::watch::channel(portfwd::GuestStatus::default());
            guest_status = Some(status_rx);
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            if !opts.inotify_mounts.is_empty() {
                match crate::inotify::watch(opts.inotify_mounts.clone(), tx) {
                    Ok(w) => _inotify_watcher = Some(w),
                    Err(e) => tracing::warn!("mountInotify: cannot watch the mounts: {e}"),
                }
            }
            Some(AbortOnDrop(tokio::spawn(portfwd::run_with(
                sock,
                opts.port_forwards.clone(),
                forward_report(&hub),
                rx,
                status_tx,
            ))))
        }
        Ok(driver::GuestAgentConn::SshForward) => {
            tracing::warn!(
                "port forwarding over SSH is not implemented; guest ports are not forwarded \
                 (nor mountInotify events)"
            );
            None
        }
        Err(e) => {
            tracing::warn!("driver guest_agent_conn: {e}; guest ports are not forwarded");
            None
        }
    };
    progress(
        &hub,
        format!(
            "SSH will be at {address}:{} (`ssh -F {} lima-{}`)",
            opts.ssh_local_port,
            ssh_config.display(),
            opts.name
        ),
    );

    if let Err(e) = vm.additional_setup_for_ssh().await {
        let e = fail(&hub, driver_call("setup for ssh")(e));
        shutdown(vm, &dir, &opts.name, &hub).await;
        return Err(e);
    }
    if let Some(display) = opts.vnc_display.as_deref() {
        match crate::vnc::setup(vm, &dir, display).await {
            Ok(info) => progress(
                &hub,
                format!("VNC server running at {} <{}>", info.display, info.url),
            ),
            Err(e) => {
                let e = fail(&hub, AgentError::Vnc(e));
                shutdown(vm, &dir, &opts.name, &hub).await;
                return Err(e);
            }
        }
    }

    hub.phase(clock.lap("host setup"));

    let ssh_args = requirements::ssh_args(&ssh_config, &opts.name);
    let _cloud_init = opts.cloud_init_progress.then(|| {
        AbortOnDrop(tokio::spawn(crate::cloudinit::follow(
            ssh_args.clone(),
            hub.clone(),
        )))
    });
    let hub2 = hub.clone();
    let wait = wait_ready(
        &opts,
        &ssh_args,
        guest_status,
        |m| progress(&hub2, m),
        |p| hub2.phase(p),
    );
    tokio::pin!(wait);
    let ready: Result<Ready, AgentError> = tokio::select! {
        r = &mut wait => r,
        why = vm_errors.next() => Err(AgentError::ExitedEarly(exit_reason(why))),
        _ = sigterm.recv() => Err(AgentError::Interrupted("SIGTERM")),
        _ = sigint.recv() => Err(AgentError::Interrupted("SIGINT")),
    };
    drop(kernel_watch);
    let Ready {
        sshfs: sshfs_mounts,
        degraded: unmet_probes,
    } = match ready {
        Ok(r) => r,
        Err(e) => {
            let e = fail(&hub, e);
            shutdown(vm, &dir, &opts.name, &hub).await;
            return Err(e);
        }
    };
    // A reverse-sshfs mount whose ssh ends is gone in the guest: say so.
    let _sshfs: Vec<AbortOnDrop> = sshfs_mounts
        .into_iter()
        .map(|mut running| {
            let report = forward_report(&hub);
            AbortOnDrop(tokio::spawn(async move {
                let why = running.ended().await;
                report(format!(
                    "WARNING: the reverse-sshfs mount of {} at {} ended ({why})",
                    running.mount.location, running.mount.mount_point
                ));
            }))
        })
        .collect();
    // As upstream, after the final requirements. A failed copy is a warning here (upstream
    // reports the instance degraded): the instance itself is usable.
    let mut clock = Clock::start();
    for rule in &opts.copy_to_host {
        if let Err(e) = crate::copytohost::copy(Path::new("ssh"), &ssh_args, rule).await {
            forward_report(&hub)(format!("WARNING: {e}"));
        }
    }
    if !opts.copy_to_host.is_empty() {
        hub.phase(clock.lap("copyToHost"));
    }
    // As upstream: unmet optional requirements leave the VM running, degraded.
    for e in &unmet_probes {
        tracing::error!("{e}");
    }
    hub.emit(Status {
        running: true,
        degraded: !unmet_probes.is_empty(),
        errors: unmet_probes,
        ssh_local_port: opts.ssh_local_port,
        progress: Some("READY".into()),
        ..Default::default()
    });
    tracing::info!("instance is running");
    // Reverse socket forwards need SSH, which works from here on.
    let _reverse: Vec<AbortOnDrop> = portfwd::static_forwards(&opts.port_forwards)
        .0
        .into_iter()
        .filter_map(|f| match f {
            portfwd::StaticForward::Reverse { host, guest } => Some(AbortOnDrop(tokio::spawn(
                crate::reverse::run(ssh_args.clone(), host, guest, forward_report(&hub)),
            ))),
            _ => None,
        })
        .collect();

    let reason = tokio::select! {
        why = vm_errors.next() => {
            let e = AgentError::Exited(exit_reason(why));
            tracing::error!("{e}");
            hub.emit(Status { errors: vec![e.to_string()], ..Default::default() });
            Some(e)
        }
        _ = sigterm.recv() => None,
        _ = sigint.recv() => None,
    };
    crate::copytohost::delete_on_stop(&opts.copy_to_host);
    shutdown(vm, &dir, &opts.name, &hub).await;
    match reason {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What [`wait_ready`] leaves running, and what failed without stopping the instance.
struct Ready {
    sshfs: Vec<crate::sshfs::Running>,
    /// The unmet optional requirements and a failed agent link (the instance runs, degraded,
    /// as upstream's).
    degraded: Vec<String>,
}

/// Waits for the guest in upstream's order: the essential requirements (SSH, and what sshfs
/// needs), then the SSH agent link (`ssh.forwardAgent`), then the reverse-sshfs mounts (the
/// boot script waits for them before provisioning), then the optional ones (containerd's, then
/// the user's readiness probes: each unmet one is reported, the instance runs degraded; an
/// unmet fatal one skips the rest), then the final ones (boot scripts done, every mount
/// present; the first by the guest agent's event when it runs, [`requirements::wait_boot_done`]).
/// Each group has `ready_timeout` from its own start (upstream gives each
/// requirement its own retries).
/// Each requirement met (the optional ones together, and the mounts) is a phase, named by its
/// description, given to `phase`.
async fn wait_ready(
    opts: &Options,
    ssh_args: &[String],
    guest: Option<tokio::sync::watch::Receiver<portfwd::GuestStatus>>,
    mut progress: impl FnMut(String),
    phase: impl Fn(crate::phases::Phase),
) -> Result<Ready, AgentError> {
    let deadline = Instant::now() + opts.ready_timeout;
    let unmet = |e| AgentError::Requirement(Box::new(e));
    let mut essential = vec![requirements::ssh()];
    if !opts.sshfs_mounts.is_empty() {
        essential.extend(crate::sshfs::requirements());
    }
    let poll = Duration::from_millis(500);
    wait_timed(
        "essential",
        &essential,
        ssh_args,
        deadline,
        poll,
        &mut progress,
        &phase,
    )
    .await
    .map_err(unmet)?;
    let mut clock = Clock::start();
    let mut degraded = Vec::new();
    if opts.link_ssh_agent {
        progress(format!(
            "Linking the ssh auth socket to the static location {}",
            requirements::SSH_AUTH_SOCK_LINK
        ));
        let script = requirements::link_ssh_agent_script();
        if let Err(e) = requirements::run_script(ssh_args, &script, Duration::from_secs(30)).await {
            degraded.push(format!(
                "linking the ssh auth socket to {}: {e}",
                requirements::SSH_AUTH_SOCK_LINK
            ));
        }
    }
    for m in &opts.sshfs_mounts {
        progress(format!(
            "Mounting {} on {} (reverse-sshfs)",
            m.location, m.mount_point
        ));
    }
    // All at once: each costs an SSH session start, seconds of guest CPU under emulation.
    let running = futures::future::try_join_all(
        opts.sshfs_mounts
            .iter()
            .map(|m| crate::sshfs::mount(ssh_args, m)),
    )
    .await?;
    if !running.is_empty() {
        crate::sshfs::announce_ready(ssh_args)
            .await
            .map_err(AgentError::SshfsAnnounce)?;
        phase(clock.lap("reverse-sshfs"));
    }
    let mut optional = Clock::start();
    let optional_count = opts.probes.len();
    degraded.extend(
        requirements::wait_optional(
            &opts.probes,
            ssh_args,
            opts.ready_timeout,
            poll,
            &mut progress,
        )
        .await,
    );
    if optional_count > 0 {
        phase(optional.lap("optional requirements"));
    }
    let deadline = Instant::now() + opts.ready_timeout;
    let count = if opts.expected_mounts.is_empty() {
        1
    } else {
        2
    };
    let boot_done = requirements::boot_done();
    let boot_script = boot_done.script.clone();
    let mut clock = Clock::start();
    requirements::wait_boot_done(
        requirements::Numbered {
            kind: "final",
            index: 1,
            count,
        },
        guest,
        || requirements::run_script(ssh_args, &boot_script, Duration::from_secs(30)),
        deadline,
        poll,
        &mut progress,
    )
    .await
    .map_err(unmet)?;
    phase(clock.lap(&boot_done.description));
    if !opts.expected_mounts.is_empty() {
        let at = requirements::Numbered {
            kind: "final",
            index: 2,
            count,
        };
        let mounts = requirements::mounts(&opts.expected_mounts);
        requirements::wait_one(at, &mounts, ssh_args, deadline, poll, &mut progress)
            .await
            .map_err(unmet)?;
        phase(clock.lap(&mounts.description));
    }
    Ok(Ready {
        sshfs: running,
        degraded,
    })
}

/// [`requirements::wait_all`], each requirement met reported as a phase named by its
/// description (`ssh` is "SSH up", `boot scripts must have finished` the provisioning).
async fn wait_timed(
    kind: &'static str,
    reqs: &[requirements::Requirement],
    ssh_args: &[String],
    deadline: Instant,
    poll: Duration,
    mut progress: impl FnMut(String),
    phase: &impl Fn(crate::phases::Phase),
) -> Result<(), requirements::Unmet> {
    for (i, r) in reqs.iter().enumerate() {
        let at = requirements::Numbered {
            kind,
            index: i + 1,
            count: reqs.len(),
        };
        let mut clock = Clock::start();
        requirements::wait_one(at, r, ssh_args, deadline, poll, &mut progress).await?;
        phase(clock.lap(&r.description));
    }
    Ok(())
}

/// "kernel up": the first time the serial console shows the kernel's banner (`Linux
/// version`), timed from just before the driver's start. Drivers without a `serial.log`
/// (or a guest that never prints it) report no such phase. qemu truncates the file when it
/// starts (its chardev `logfile` without `logappend`), so an old boot's banner does not
/// count. Polled until seen or until the caller drops the task (at READY).
async fn kernel_up(serial: PathBuf, since: Instant, hub: server::Hub) {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    const BANNER: &[u8] = b"Linux version";
    let mut offset = 0u64;
    let mut seen: Vec<u8> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(mut f) = tokio::fs::File::open(&serial).await else {
            continue;
        };
        let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        if len < offset {
            offset = 0;
            seen.clear();
        }
        if f.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
            continue;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).await.is_err() {
            continue;
        }
        offset += buf.len() as u64;
        // Keep a short tail so a banner split across reads is still found.
        seen.extend_from_slice(&buf);
        if seen.windows(BANNER.len()).any(|w| w == BANNER) {
            hub.phase(crate::phases::Phase::new("kernel up", since.elapsed()));
            return;
        }
        let keep = seen.len().saturating_sub(BANNER.len());
        seen.drain(..keep);
    }
}

/// Where forwarding lines go: `ha.stderr.log` (as upstream prints them) and the event stream.
fn forward_report(hub: &Hub) -> portfwd::Report {
    let events = hub.clone();
    std::sync::Arc::new(move |line: String| {
        tracing::info!("{line}");
        events.note(line);
    })
}

/// A task that ends with the scope that holds it (the forwarder ends with the agent's run).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn shutdown(vm: &dyn Driver, dir: &Path, name: &str, hub: &Hub) {
    hub.emit(Status {
        exiting: true,
        progress: Some("Stopping the VM".into()),
        ..Default::default()
    });
    if let Err(e) = vm.stop().await {
        tracing::warn!("driver stop: {e}");
    }
    crate::vnc::remove_files(dir);
    // End the ssh connection sharing, then remove our socket and pid file.
    let (d, n) = (dir.to_path_buf(), name.to_string());
    let _ = tokio::task::spawn_blocking(move || sshutil::stop_master(&d, &n)).await;
    for f in [
        filenames::HOST_AGENT_SOCK,
        filenames::SSH_SOCK,
        filenames::HOST_AGENT_PID,
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    tracing::info!("stopped");
}
