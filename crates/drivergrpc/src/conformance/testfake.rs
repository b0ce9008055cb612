//! `testfake`: a TEST FIXTURE driver with deterministic behaviour and no VM. It exists to test
//! the protocol and the conformance kit (as the `lima-driver-testfake` binary and in-process),
//! and as the benchmark's subject. Never registered in limactl.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use driver::{
    ConfigContext, Driver, DriverError, ErrorStream, Features, GuestAgentConn, Info, Instance,
    InstanceConfig, LimaYaml, Result, Status,
};

pub const NAME: &str = "testfake";
/// `change_display_password` with this password never returns (to test a call in flight when
/// the driver dies).
pub const HANG_PASSWORD: &str = "hang";
/// `create_snapshot` with this tag never returns, configured or not (to test the deadline of
/// a long call).
pub const HANG_SNAPSHOT_TAG: &str = "hang";
/// The errors the start stream reports, in order, before it ends.
pub const START_STREAM_ERRORS: [&str; 2] = [
    "testfake: guest kernel panic (simulated)",
    "testfake: serial console closed (simulated)",
];

#[derive(Default)]
struct State {
    instance: Option<InstanceConfig>,
    running: bool,
    snapshots: BTreeSet<String>,
}

#[derive(Default)]
pub struct TestFake {
    state: Mutex<State>,
}

impl TestFake {
    pub fn new() -> Self {
        Self::default()
    }

    fn instance(&self) -> Result<InstanceConfig> {
        self.lock().instance.clone().ok_or_else(|| {
            DriverError::failed_precondition("testfake: configure must be called first")
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn id_file(dir: &std::path::Path) -> PathBuf {
        dir.join("testfake-id")
    }
}

fn io_err(what: &str, e: std::io::Error) -> DriverError {
    DriverError::internal(format!("testfake: {what}: {e}"))
}

#[async_trait]
impl Driver for TestFake {
    async fn info(&self) -> Result<Info> {
        let st = self.lock();
        Ok(Info {
            name: NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            vm_type: NAME.into(),
            image_formats: vec!["raw".into(), "qcow2".into()],
            features: Features {
                snapshots: true,
                no_cloud_init: true,
                ..Default::default()
            },
            instance_dir: st.instance.as_ref().map(|i| i.dir.clone()),
            vsock_port: 0,
            virtio_port: String::new(),
            ..Default::default()
        })
    }

    async fn configure(&self, instance: InstanceConfig) -> Result<()> {
        if instance.name.is_empty() {
            return Err(DriverError::invalid_config(
                "testfake: instance name is empty",
            ));
        }
        self.lock().instance = Some(instance);
        Ok(())
    }

    async fn fill_config(&self, config: &mut LimaYaml, ctx: &ConfigContext) -> Result<()> {
        config.vm_type.get_or_insert_with(|| NAME.to_string());
        config.cpus.get_or_insert(2);
        config.arch.get_or_insert_with(|| ctx.host.arch.to_string());
        Ok(())
    }

    async fn accept_config(&self, config: &LimaYaml, ctx: &ConfigContext) -> Result<()> {
        let file = ctx
            .config_path
            .as_ref()
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        if ctx.host.os != driver::Os::Linux {
            return Err(DriverError::invalid_config(format!(
                "{file}testfake runs on Linux hosts only, not {}",
                ctx.host.os
            )));
        }
        if let Some(vm_type) = config.vm_type.as_deref().filter(|t| *t != NAME) {
            return Err(DriverError::invalid_config(format!(
                "{file}vmType: testfake cannot run vmType {vm_type:?}"
            )));
        }
        if let Some(arch) = config
            .arch
            .as_deref()
            .filter(|a| *a != ctx.host.arch.as_str())
        {
            return Err(DriverError::invalid_config(format!(
                "{file}arch: testfake cannot run a {arch} guest on a {} host",
                ctx.host.arch
            )));
        }
        if let Some(mt) = config
            .mount_type
            .as_deref()
            .filter(|m| !["reverse-sshfs", "9p"].contains(m))
        {
            return Err(DriverError::invalid_config(format!(
                // Two lines and non-ASCII on purpose: messages must cross the wire unchanged.
                "{file}mountType: testfake does not support {mt:?}\n  hint: use \"reverse-sshfs\" or \"9p\" — both work here"
            )));
        }
        Ok(())
    }

    async fn inspect_status(&self, instance: &Instance) -> Result<Option<Status>> {
        let broken = std::path::Path::new(&instance.dir).join("testfake.broken");
        Ok(broken.exists().then_some(Status::Broken))
    }

    async fn validate(&self) -> Result<()> {
        let inst = self.instance()?;
        match inst.config.cpus {
            n if n > 8 => Err(DriverError::invalid_config(format!(
                "cpus: testfake runs at most 8 CPUs, not {n}"
            ))),
            _ => Ok(()),
        }
    }

    async fn create(&self) -> Result<()> {
        let inst = self.instance()?;
        let id = Self::id_file(&inst.dir);
        if !id.exists() {
            std::fs::write(&id, format!("{}\n", inst.name))
                .map_err(|e| io_err("writing testfake-id", e))?;
        }
        Ok(())
    }

    async fn create_disk(&self) -> Result<()> {
        let inst = self.instance()?;
        if !Self::id_file(&inst.dir).exists() {
            return Err(DriverError::failed_precondition(
                "testfake: create must run before create_disk",
            ));
        }
        let disk = inst.dir.join(limatype::filenames::DIFF_DISK);
        if !disk.exists() {
            std::fs::write(&disk, b"").map_err(|e| io_err("writing the disk", e))?;
        }
        Ok(())
    }

    async fn start(&self) -> Result<ErrorStream> {
        let inst = self.instance()?;
        if !inst.dir.join(limatype::filenames::DIFF_DISK).exists() {
            return Err(DriverError::failed_precondition(
                "testfake: no disk, run create_disk first",
            ));
        }
        let mut st = self.lock();
        if st.running {
            return Err(DriverError::failed_precondition(
                "testfake: already running",
            ));
        }
        st.running = true;
        let errors: Vec<DriverError> = vec![
            DriverError::internal(START_STREAM_ERRORS[0]),
            DriverError::unavailable(START_STREAM_ERRORS[1]),
        ];
        Ok(Box::pin(futures::stream::iter(errors)))
    }

    async fn stop(&self) -> Result<()> {
        self.instance()?;
        let mut st = self.lock();
        if !st.running {
            return Err(DriverError::failed_precondition("testfake: not running"));
        }
        st.running = false;
        Ok(())
    }

    async fn delete(&self) -> Result<()> {
        let inst = self.instance()?;
        match std::fs::remove_file(Self::id_file(&inst.dir)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DriverError::not_found(
                format!("testfake: instance {:?} was not created", inst.name),
            )),
            Err(e) => Err(io_err("removing testfake-id", e)),
        }
    }

    async fn boot_scripts(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        self.instance()?;
        Ok(BTreeMap::from([(
            "05-testfake.sh".to_string(),
            b"#!/bin/sh\necho testfake boot\n".to_vec(),
        )]))
    }

    async fn change_display_password(&self, password: &str) -> Result<()> {
        if password == HANG_PASSWORD {
            futures::future::pending::<()>().await;
        }
        Err(DriverError::unsupported("testfake has no display"))
    }

    async fn display_connection(&self) -> Result<String> {
        Err(DriverError::unsupported("testfake has no display"))
    }

    async fn create_snapshot(&self, tag: &str) -> Result<()> {
        if tag == HANG_SNAPSHOT_TAG {
            futures::future::pending::<()>().await;
        }
        self.instance()?;
        if tag.is_empty() {
            return Err(DriverError::invalid_config(
                "testfake: snapshot tag is empty",
            ));
        }
        if !self.lock().snapshots.insert(tag.to_string()) {
            return Err(DriverError::already_exists(format!(
                "testfake: snapshot {tag:?} exists"
            )));
        }
        Ok(())
    }

    async fn apply_snapshot(&self, tag: &str) -> Result<()> {
        self.instance()?;
        if !self.lock().snapshots.contains(tag) {
            return Err(DriverError::not_found(format!(
                "testfake: no snapshot {tag:?}"
            )));
        }
        Ok(())
    }

    async fn delete_snapshot(&self, tag: &str) -> Result<()> {
        self.instance()?;
        if !self.lock().snapshots.remove(tag) {
            return Err(DriverError::not_found(format!(
                "testfake: no snapshot {tag:?}"
            )));
        }
        Ok(())
    }

    async fn list_snapshots(&self) -> Result<String> {
        self.instance()?;
        Ok(self
            .lock()
            .snapshots
            .iter()
            .map(|t| format!("{t}\n"))
            .collect())
    }

    async fn guest_agent_conn(&self) -> Result<GuestAgentConn> {
        let inst = self.instance()?;
        Ok(GuestAgentConn::UnixSocket(
            inst.dir.join(limatype::filenames::GUEST_AGENT_SOCK),
        ))
    }

    async fn ssh_address(&self) -> Result<String> {
        self.instance()?;
        Ok("127.0.0.1".into())
    }
}
