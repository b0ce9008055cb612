//! `wsl2` — layer 6: the Windows Subsystem for Linux 2 driver. It carries wsl2's real config
//! rules ([`config`]: fill and accept, `wsl.exe` command lines, status parsing) and its
//! [`driver::Info`]; it compiles on every host and refuses, with the reason, any config on a
//! host that is not Windows.
//!
//! Not done yet: driving `wsl.exe`. The lifecycle calls (create, create_disk, start, stop,
//! ...) return `Unsupported` on every host, Windows included, saying so.

pub mod config;

use std::sync::Mutex;

use async_trait::async_trait;
use driver::{
    ConfigContext, Driver, DriverError, ErrorStream, Features, Info, InstanceConfig, LimaYaml,
    Result,
};

pub const NAME: &str = "wsl2";

#[derive(Default)]
pub struct Wsl2Driver {
    instance: Mutex<Option<InstanceConfig>>,
}

impl Wsl2Driver {
    pub fn new() -> Self {
        Self::default()
    }

    fn configured(&self) -> Result<InstanceConfig> {
        self.instance
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| DriverError::failed_precondition("wsl2: configure must be called first"))
    }

    fn not_implemented(&self, call: &str) -> DriverError {
        let why = if cfg!(windows) {
            "this build does not drive wsl.exe yet".to_string()
        } else {
            format!(
                "wsl2 runs only on Windows; this host is {}",
                driver::Os::host()
            )
        };
        DriverError::unsupported(format!("wsl2: cannot {call}: {why}"))
    }
}

pub fn info_for(instance: Option<&InstanceConfig>) -> Info {
    Info {
        name: NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        vm_type: NAME.into(),
        image_formats: config::IMAGE_FORMATS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        // As in Lima: the guest's address is known only once it runs, sshd listens on 22,
        // provisioning runs through wsl.exe instead of cloud-init.
        features: Features {
            dynamic_ssh_address: true,
            static_ssh_port: true,
            skip_socket_forwarding: true,
            no_cloud_init: true,
            ..Default::default()
        },
        instance_dir: instance.map(|i| i.dir.clone()),
        vsock_port: 0,
        virtio_port: String::new(),
        ..Default::default()
    }
}

#[async_trait]
impl Driver for Wsl2Driver {
    async fn info(&self) -> Result<Info> {
        Ok(info_for(self.instance.lock().unwrap().as_ref()))
    }

    async fn configure(&self, instance: InstanceConfig) -> Result<()> {
        *self.instance.lock().unwrap() = Some(instance);
        Ok(())
    }

    async fn fill_config(&self, config: &mut LimaYaml, _ctx: &ConfigContext) -> Result<()> {
        config::fill(config);
        Ok(())
    }

    async fn accept_config(&self, config: &LimaYaml, ctx: &ConfigContext) -> Result<()> {
        config::accept(config, &ctx.host)
    }

    async fn validate(&self) -> Result<()> {
        let inst = self.configured()?;
        self.accept_config(&inst.config, &ConfigContext::current())
            .await?;
        Err(self.not_implemented("run distributions"))
    }

    async fn create(&self) -> Result<()> {
        self.configured()?;
        Err(self.not_implemented("import the distribution"))
    }

    async fn create_disk(&self) -> Result<()> {
        // WSL keeps the disk itself (created on import).
        self.configured()?;
        Ok(())
    }

    async fn start(&self) -> Result<ErrorStream> {
        self.configured()?;
        Err(self.not_implemented("start the distribution"))
    }

    async fn stop(&self) -> Result<()> {
        self.configured()?;
        Err(self.not_implemented("terminate the distribution"))
    }

    async fn delete(&self) -> Result<()> {
        self.configured()?;
        Err(self.not_implemented("unregister the distribution"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driver::{Arch, ErrorKind, HostFacts, Os};

    #[tokio::test]
    async fn refuses_on_linux_and_describes_itself() {
        let d = Wsl2Driver::new();
        let ctx = ConfigContext::for_host(HostFacts::pretend(Os::Linux, Arch::X86_64));
        let mut c = LimaYaml::default();
        d.fill_config(&mut c, &ctx).await.unwrap();
        assert_eq!(c.mount_type.as_deref(), Some("wsl2"));
        let e = d.accept_config(&c, &ctx).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(e.message.contains("this host is Linux"), "{e}");

        let info = d.info().await.unwrap();
        assert_eq!(info.name, "wsl2");
        assert_eq!(info.image_formats, vec!["tar"]);
        assert!(info.features.no_cloud_init && info.features.static_ssh_port);
        assert_eq!(
            d.create().await.unwrap_err().kind,
            ErrorKind::FailedPrecondition
        );
    }
}
