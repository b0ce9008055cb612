//! The host agent's main loop for one instance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use driver::{Driver, DriverError};
use futures::StreamExt;
use limatype::filenames;

use crate::events::Status;
use crate::requirements;
use crate::server::{self, Hub};

/// Writes the cidata seed into the instance dir (kept separate: it needs the user's key and
/// the boot scripts, which the agent gathers).
pub type SeedWriter<'a> =
    &'a (dyn Fn(&BTreeMap<String, Vec<u8>>, u16) -> Result<(), String> + Send + Sync);

pub struct Options {
    pub name: String,
    pub dir: PathBuf,
    pub ssh_local_port: u16,
    pub ssh_user: String,
    pub private_key: PathBuf,
    /// How long the guest may take to satisfy the essential requirements.
    pub ready_timeout: Duration,
    /// How progress messages name the driver, e.g. `qemu (internal)`.
    pub driver_description: String,
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
/// instance) until SIGTERM/SIGINT or until the VM ends; returns an error text when it failed
/// to come up (after having reported it as an event).
pub async fn run(
    opts: Options,
    vm: &dyn Driver,
    write_seed: SeedWriter<'_>,
    hub: Hub,
) -> Result<(), String> {
    let dir = opts.dir.clone();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| e.to_string())?;
    let progress = |hub: &Hub, msg: String| {
        tracing::info!("{msg}");
        hub.emit(Status {
            progress: Some(msg),
            ssh_local_port: opts.ssh_local_port,
            ..Default::default()
        });
    };
    let fail = |hub: &Hub, msg: String| {
        tracing::error!("{msg}");
        hub.emit(Status {
            errors: vec![msg.clone()],
            ssh_local_port: opts.ssh_local_port,
            ..Default::default()
        });
        msg
    };

    let _server =
        server::serve(&dir.join(filenames::HOST_AGENT_SOCK), hub.clone()).map_err(|e| {
            fail(
                &hub,
                format!("cannot serve {}: {e}", filenames::HOST_AGENT_SOCK),
            )
        })?;

    progress(
        &hub,
        format!("Using the {} driver", opts.driver_description),
    );
    vm.validate()
        .await
        .map_err(|e| fail(&hub, format!("driver validate: {e}")))?;
    vm.create()
        .await
        .map_err(|e| fail(&hub, format!("driver create: {e}")))?;
    let scripts = vm
        .boot_scripts()
        .await
        .map_err(|e| fail(&hub, format!("driver boot scripts: {e}")))?;
    write_seed(&scripts, opts.ssh_local_port)
        .map_err(|e| fail(&hub, format!("writing {}: {e}", filenames::CIDATA_ISO)))?;

    let address = vm
        .ssh_address()
        .await
        .unwrap_or_else(|_| "127.0.0.1".to_string());
    let ssh_opts = sshutil::instance_opts(&dir, &opts.private_key, &opts.ssh_user)
        .map_err(|e| fail(&hub, e.to_string()))?;
    let ssh_config =
        sshutil::write_config(&dir, &opts.name, &address, opts.ssh_local_port, &ssh_opts)
            .map_err(|e| fail(&hub, e.to_string()))?;

    progress(&hub, "Starting the VM".to_string());
    let mut vm_errors = vm
        .start()
        .await
        .map_err(|e| fail(&hub, format!("driver start: {e}")))?;
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
        let msg = fail(&hub, format!("driver setup for ssh: {e}"));
        shutdown(vm, &dir, &opts.name, &hub).await;
        return Err(msg);
    }

    let ssh_args = requirements::ssh_args(&ssh_config, &opts.name);
    let reqs = requirements::essential();
    let deadline = Instant::now() + opts.ready_timeout;
    let hub2 = hub.clone();
    let wait = requirements::wait_all(
        &reqs,
        &ssh_args,
        deadline,
        Duration::from_millis(500),
        |m| progress(&hub2, m),
    );
    tokio::pin!(wait);
    let ready: Result<(), String> = tokio::select! {
        r = &mut wait => r,
        why = vm_errors.next() => Err(format!("the VM exited before it was ready: {}", exit_reason(why))),
        _ = sigterm.recv() => Err("interrupted by SIGTERM while starting".into()),
        _ = sigint.recv() => Err("interrupted by SIGINT while starting".into()),
    };
    if let Err(e) = ready {
        let msg = fail(&hub, e);
        shutdown(vm, &dir, &opts.name, &hub).await;
        return Err(msg);
    }
    hub.emit(Status {
        running: true,
        ssh_local_port: opts.ssh_local_port,
        progress: Some("READY".into()),
        ..Default::default()
    });
    tracing::info!("instance is running");

    let reason = tokio::select! {
        why = vm_errors.next() => {
            let msg = format!("the VM exited unexpectedly: {}", exit_reason(why));
            tracing::error!("{msg}");
            hub.emit(Status { errors: vec![msg.clone()], ..Default::default() });
            Some(msg)
        }
        _ = sigterm.recv() => None,
        _ = sigint.recv() => None,
    };
    shutdown(vm, &dir, &opts.name, &hub).await;
    match reason {
        Some(msg) => Err(msg),
        None => Ok(()),
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
    // End the ssh connection sharing, then remove our socket and pid file.
    let cfg = dir.join(filenames::SSH_CONFIG);
    if dir.join(filenames::SSH_SOCK).exists() {
        let _ = tokio::process::Command::new("ssh")
            .args(["-O", "exit"])
            .args(sshutil::args_from_config(&cfg, name))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
    }
    for f in [
        filenames::HOST_AGENT_SOCK,
        filenames::SSH_SOCK,
        filenames::HOST_AGENT_PID,
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    tracing::info!("stopped");
}
