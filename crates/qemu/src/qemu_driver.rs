//! [`QemuDriver`]: the `driver::Driver` contract for qemu, delegating to [`Machine`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use driver::{
    ConfigContext, Driver, DriverError, ErrorStream, Features, GuestAgentConn, Info,
    InstanceConfig, LimaYaml, Result,
};
use futures::StreamExt;
use limatype::filenames;

use crate::machine::{self, Machine, MachineError};
use crate::{config, snapshot, vm};

/// How long `stop` waits for the guest to power off before quitting qemu.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// The qemu driver: one per instance (`configure` binds it).
#[derive(Default)]
pub struct QemuDriver {
    machine: Mutex<Option<Arc<Machine>>>,
}

impl QemuDriver {
    pub fn new() -> Self {
        Self::default()
    }

    fn machine(&self) -> Result<Arc<Machine>> {
        self.machine
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| DriverError::failed_precondition("qemu: configure must be called first"))
    }
}

impl QemuDriver {
    async fn snapshot(&self, op: snapshot::Op, tag: &str) -> Result<()> {
        snapshot::run(&self.machine()?.dir, op, tag)
            .await
            .map_err(snapshot_error)
    }
}

fn snapshot_error(e: snapshot::SnapshotError) -> DriverError {
    match e {
        snapshot::SnapshotError::BadTag(_) => DriverError::invalid_config(e.to_string()),
        _ => DriverError::internal(e.to_string()),
    }
}

/// What `accept` may look up for `ctx`: binaries and firmware only when its host is this
/// machine.
pub fn probes_of(ctx: &ConfigContext) -> config::Probes {
    let here = ctx.host.is_this_machine();
    config::Probes {
        qemu_found: here.then_some(|bin: &str| machine::find_in_path(bin).is_some()),
        firmware_found: here.then_some(|arch: &str| {
            let bin = crate::cmdline::qemu_binary(arch);
            let exe = machine::find_in_path(&bin).unwrap_or_else(|| bin.into());
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            crate::firmware::find(arch, &exe, &home, |p| p.exists()).is_ok()
        }),
        virtiofsd_found: here.then_some(|| {
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            crate::virtiofsd::find(home.as_deref(), std::env::var_os("PATH").as_deref()).is_ok()
        }),
    }
}

/// A machine error as a driver error, with a kind a caller can act on.
pub fn to_driver_error(e: MachineError) -> DriverError {
    let msg = e.to_string();
    match e {
        MachineError::Config(_)
        | MachineError::Accel(_)
        | MachineError::TooOld(_)
        | MachineError::Firmware(_) => DriverError::invalid_config(msg),
        MachineError::Vm(vm::VmError::UnsupportedFormat { .. }) => DriverError::invalid_config(msg),
        MachineError::Vm(vm::VmError::Spawn { .. }) => DriverError::unavailable(msg),
        MachineError::NotRunning => DriverError::failed_precondition(msg),
        MachineError::Virtiofsd(e) => match *e {
            crate::virtiofsd::VirtiofsdError::NotFound { .. } => DriverError::invalid_config(msg),
            _ => DriverError::internal(msg),
        },
        MachineError::Vm(_) | MachineError::Io { .. } => DriverError::internal(msg),
    }
}

pub fn info_for(dir: Option<PathBuf>) -> Info {
    Info {
        mac_address: dir
            .as_deref()
            .map(crate::cmdline::mac_address)
            .unwrap_or_default(),
        log_files: vec![vm::QEMU_LOG.to_string()],
        name: crate::NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        vm_type: crate::NAME.into(),
        image_formats: config::IMAGE_FORMATS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        features: Features {
            snapshots: true,
            ..Features::default()
        },
        instance_dir: dir,
        vsock_port: 0,
        // The command line always has the guest agent's virtio-serial port.
        virtio_port: filenames::VIRTIO_PORT.to_string(),
    }
}

#[async_trait]
impl Driver for QemuDriver {
    async fn info(&self) -> Result<Info> {
        let dir = self.machine.lock().unwrap().as_ref().map(|m| m.dir.clone());
        Ok(info_for(dir))
    }

    async fn configure(&self, instance: InstanceConfig) -> Result<()> {
        let m = Machine::new(
            &instance.name,
            &instance.dir,
            instance.config,
            instance.ssh_local_port,
        );
        *self.machine.lock().unwrap() = Some(Arc::new(m));
        Ok(())
    }

    async fn fill_config(&self, config: &mut LimaYaml, ctx: &ConfigContext) -> Result<()> {
        config::fill(config, &ctx.host, &probes_of(ctx));
        Ok(())
    }

    async fn accept_config(&self, config: &LimaYaml, ctx: &ConfigContext) -> Result<()> {
        config::accept(config, &ctx.host, &probes_of(ctx))
    }

    async fn validate(&self) -> Result<()> {
        let m = self.machine()?;
        let ctx = ConfigContext::current();
        config::accept(&m.config, &ctx.host, &probes_of(&ctx))?;
        m.validate().map_err(to_driver_error)
    }

    async fn create(&self) -> Result<()> {
        // qemu keeps nothing outside the instance directory.
        self.machine()?;
        Ok(())
    }

    async fn create_disk(&self) -> Result<()> {
        self.machine()?
            .create_disk_from_basedisk()
            .await
            .map_err(to_driver_error)
    }

    async fn start(&self) -> Result<ErrorStream> {
        let m = self.machine()?;
        m.start().await.map_err(to_driver_error)?;
        // One item if qemu ends by itself; none when `stop` ended it.
        let errors = futures::stream::once(async move {
            match m.wait_exit().await {
                Ok(status) => Some(DriverError::unavailable(format!(
                    "qemu exited ({status}); last lines of {}:\n{}",
                    vm::QEMU_LOG,
                    vm::tail_lines(&m.dir.join(vm::QEMU_LOG), 20)
                ))),
                Err(_) => None,
            }
        })
        .filter_map(futures::future::ready);
        Ok(Box::pin(errors))
    }

    async fn stop(&self) -> Result<()> {
        self.machine()?
            .stop(STOP_GRACE)
            .await
            .map_err(to_driver_error)
    }

    async fn delete(&self) -> Result<()> {
        self.machine()?;
        Ok(())
    }

    async fn create_snapshot(&self, tag: &str) -> Result<()> {
        self.snapshot(snapshot::Op::Create, tag).await
    }

    async fn apply_snapshot(&self, tag: &str) -> Result<()> {
        self.snapshot(snapshot::Op::Apply, tag).await
    }

    async fn delete_snapshot(&self, tag: &str) -> Result<()> {
        self.snapshot(snapshot::Op::Delete, tag).await
    }

    async fn list_snapshots(&self) -> Result<String> {
        snapshot::list(&self.machine()?.dir)
            .await
            .map_err(snapshot_error)
    }

    async fn guest_agent_conn(&self) -> Result<GuestAgentConn> {
        Ok(GuestAgentConn::UnixSocket(
            self.machine()?.dir.join(filenames::GUEST_AGENT_SOCK),
        ))
    }

    async fn change_display_password(&self, password: &str) -> Result<()> {
        let sock = self.machine()?.dir.join(filenames::QMP_SOCK);
        crate::qmp::change_vnc_password(&sock, password)
            .await
            .map_err(|e| DriverError::internal(e.to_string()))
    }

    async fn display_connection(&self) -> Result<String> {
        let sock = self.machine()?.dir.join(filenames::QMP_SOCK);
        crate::qmp::vnc_service(&sock)
            .await
            .map_err(|e| DriverError::internal(e.to_string()))
    }

    async fn ssh_address(&self) -> Result<String> {
        Ok(self.machine()?.ssh_address.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `config` with this host's defaults filled, as the instance flow hands it over.
    fn filled(config: LimaYaml) -> driver::Filled {
        limadefaults::fill_in_memory(&config, &limadefaults::detect_host(), "t").unwrap()
    }
    use driver::{Arch, ErrorKind, HostFacts, Os};

    #[tokio::test]
    async fn call_order_and_info() {
        let d = QemuDriver::new();
        assert_eq!(
            d.start().await.err().unwrap().kind,
            ErrorKind::FailedPrecondition
        );
        let info = d.info().await.unwrap();
        assert_eq!(info.name, "qemu");
        assert!(info.image_formats.contains(&"qcow2".to_string()));
        assert_eq!(info.instance_dir, None);

        let tmp = tempfile::tempdir().unwrap();
        d.configure(InstanceConfig {
            name: "t".into(),
            dir: tmp.path().to_path_buf(),
            config: filled(LimaYaml::default()),
            ssh_local_port: 60022,
        })
        .await
        .unwrap();
        assert_eq!(
            d.info().await.unwrap().instance_dir.as_deref(),
            Some(tmp.path())
        );
        assert_eq!(
            d.guest_agent_conn().await.unwrap(),
            GuestAgentConn::UnixSocket(tmp.path().join("ga.sock"))
        );
        // No basedisk yet: a clear error naming the file.
        let e = d.create_disk().await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(e.message.contains("basedisk is missing"), "{e}");
    }

    /// create_disk makes the qcow2 overlay on a host-downloaded basedisk (needs qemu-img).
    #[tokio::test]
    async fn create_disk_from_downloaded_basedisk() {
        if machine::find_in_path("qemu-img").is_none() {
            eprintln!("SKIPPED: qemu-img is not installed");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join(filenames::BASE_DISK);
        let out = tokio::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&base)
            .arg("1M")
            .output()
            .await
            .unwrap();
        assert!(out.status.success());
        let d = QemuDriver::new();
        d.configure(InstanceConfig {
            name: "t".into(),
            dir: tmp.path().to_path_buf(),
            config: filled(LimaYaml {
                disk: Some("2MiB".into()),
                ..Default::default()
            }),
            ssh_local_port: 0,
        })
        .await
        .unwrap();
        d.create_disk().await.unwrap();
        let diff = tmp.path().join(filenames::DIFF_DISK);
        assert_eq!(vm::image_format(&diff).await.unwrap(), "qcow2");
        assert_eq!(vm::virtual_size(&diff).await.unwrap(), 2 << 20);
        // Idempotent.
        d.create_disk().await.unwrap();
    }

    #[tokio::test]
    async fn fill_then_accept_with_injected_host() {
        let d = QemuDriver::new();
        let ctx = ConfigContext::for_host(HostFacts::pretend(Os::Windows, Arch::X86_64));
        let mut c = LimaYaml::default();
        d.fill_config(&mut c, &ctx).await.unwrap();
        assert_eq!(c.mount_type.as_deref(), Some("reverse-sshfs"));
        d.accept_config(&c, &ctx).await.unwrap();
        c.mount_type = Some("virtiofs".into());
        let e = d.accept_config(&c, &ctx).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
    }

    #[test]
    fn error_kinds() {
        let k = |e| to_driver_error(e).kind;
        assert_eq!(
            k(MachineError::Config("x".into())),
            ErrorKind::InvalidConfig
        );
        assert_eq!(k(MachineError::NotRunning), ErrorKind::FailedPrecondition);
        assert_eq!(
            k(MachineError::Vm(vm::VmError::Spawn {
                program: "qemu".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound)
            })),
            ErrorKind::Unavailable
        );
    }
}
