//! `vz` — layer 6: the macOS Virtualization.framework driver. It carries vz's real config
//! rules ([`config`]: fill and accept) and its [`driver::Info`]; it compiles on every host and
//! refuses, with the reason, any config on a host that is not macOS 13+.
//!
//! Not done yet: running VMs. This crate has no Virtualization.framework bindings, so the
//! lifecycle calls (create, create_disk, start, stop, ...) return `Unsupported` on every host,
//! macOS included, saying so.

pub mod config;

use std::sync::Mutex;

use async_trait::async_trait;
use driver::{
    ConfigContext, Driver, DriverError, ErrorStream, Features, Info, InstanceConfig, LimaYaml,
    Result,
};

pub const NAME: &str = "vz";
/// Guest vsock port of the guest agent (as in Lima).
pub const VSOCK_PORT: u32 = 2222;

/// The vz driver: one per instance (`configure` binds it).
#[derive(Default)]
pub struct VzDriver {
    instance: Mutex<Option<InstanceConfig>>,
}

impl VzDriver {
    pub fn new() -> Self {
        Self::default()
    }

    fn configured(&self) -> Result<InstanceConfig> {
        self.instance
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| DriverError::failed_precondition("vz: configure must be called first"))
    }

    fn not_implemented(&self, call: &str) -> DriverError {
        let why = if cfg!(target_os = "macos") {
            "this build has no Virtualization.framework support yet".to_string()
        } else {
            format!("vz runs only on macOS; this host is {}", driver::Os::host())
        };
        DriverError::unsupported(format!("vz: cannot {call}: {why}"))
    }
}

/// What vz looks up for `ctx`: the macOS version, only when its host is this machine.
pub fn probes_of(ctx: &ConfigContext) -> config::Probes {
    config::Probes {
        macos_version: ctx
            .host
            .is_this_machine()
            .then(config::host_macos_version)
            .flatten(),
    }
}

/// vz's self-description for a (possibly unconfigured) instance config.
pub fn info_for(config: Option<&InstanceConfig>) -> Info {
    // Only OS and arch matter here: no need to detect every fact of the host.
    let host = driver::HostFacts::pretend(driver::Os::host(), driver::Arch::host());
    let (rosetta_enabled, rosetta_binfmt) = config
        .map(|i| config::rosetta_flags(&i.config, &host))
        .unwrap_or_default();
    Info {
        name: NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        vm_type: NAME.into(),
        image_formats: config::IMAGE_FORMATS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        features: Features {
            can_run_gui: config.is_some_and(|i| config::can_run_gui(&i.config)),
            rosetta_enabled,
            rosetta_binfmt,
            ..Default::default()
        },
        instance_dir: config.map(|i| i.dir.clone()),
        vsock_port: VSOCK_PORT,
        virtio_port: String::new(),
        ..Default::default()
    }
}

#[async_trait]
impl Driver for VzDriver {
    async fn info(&self) -> Result<Info> {
        Ok(info_for(self.instance.lock().unwrap().as_ref()))
    }

    async fn configure(&self, instance: InstanceConfig) -> Result<()> {
        *self.instance.lock().unwrap() = Some(instance);
        Ok(())
    }

    async fn fill_config(&self, config: &mut LimaYaml, ctx: &ConfigContext) -> Result<()> {
        config::fill(config, &probes_of(ctx));
        Ok(())
    }

    async fn accept_config(&self, config: &LimaYaml, ctx: &ConfigContext) -> Result<()> {
        config::accept(config, &ctx.host, &probes_of(ctx))
    }

    async fn validate(&self) -> Result<()> {
        let inst = self.configured()?;
        self.accept_config(&inst.config, &ConfigContext::current())
            .await?;
        Err(self.not_implemented("start VMs"))
    }

    async fn create(&self) -> Result<()> {
        self.configured()?;
        Err(self.not_implemented("create the machine identifier"))
    }

    async fn create_disk(&self) -> Result<()> {
        self.configured()?;
        Err(self.not_implemented("create disks"))
    }

    async fn start(&self) -> Result<ErrorStream> {
        self.configured()?;
        Err(self.not_implemented("start VMs"))
    }

    async fn stop(&self) -> Result<()> {
        self.configured()?;
        Err(self.not_implemented("stop VMs"))
    }

    async fn delete(&self) -> Result<()> {
        // Nothing lives outside the instance directory.
        self.configured()?;
        Ok(())
    }

    async fn can_run_gui(&self) -> Result<bool> {
        Ok(config::can_run_gui(&self.configured()?.config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driver::{Arch, ErrorKind, HostFacts, Os};

    fn linux() -> ConfigContext {
        ConfigContext::for_host(HostFacts::pretend(Os::Linux, Arch::X86_64))
    }

    #[tokio::test]
    async fn refuses_on_linux_with_the_reason() {
        let d = VzDriver::new();
        let mut c = LimaYaml::default();
        d.fill_config(&mut c, &linux()).await.unwrap();
        let e = d.accept_config(&c, &linux()).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(e.message.contains("this host is Linux"), "{e}");
    }

    #[tokio::test]
    async fn info_and_call_order() {
        let d = VzDriver::new();
        let info = d.info().await.unwrap();
        assert_eq!(info.name, "vz");
        assert_eq!(info.image_formats, vec!["raw", "asif"]);
        assert_eq!(info.vsock_port, 2222);
        assert_eq!(info.instance_dir, None);
        assert_eq!(
            d.start().await.err().unwrap().kind,
            ErrorKind::FailedPrecondition
        );
        let dir = std::env::temp_dir();
        d.configure(InstanceConfig {
            name: "x".into(),
            dir: dir.clone(),
            config: limadefaults::fill_in_memory(
                &LimaYaml {
                    video: Some(limatype::Video {
                        display: Some("default".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                &driver::HostFacts::pretend(driver::Os::Darwin, driver::Arch::Aarch64),
                "x",
            )
            .unwrap(),
            ssh_local_port: 0,
        })
        .await
        .unwrap();
        let info = d.info().await.unwrap();
        assert_eq!(info.instance_dir, Some(dir));
        assert!(info.features.can_run_gui);
        assert!(d.can_run_gui().await.unwrap());
        let e = d.start().await.err().unwrap();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert!(e.message.starts_with("vz: cannot start VMs: "), "{e}");
    }
}
