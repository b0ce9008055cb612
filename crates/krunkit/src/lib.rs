//! `krunkit` — layer 6: the krunkit (libkrun) driver for macOS on Apple silicon. It carries
//! krunkit's real config rules and command line ([`config`]) and its [`driver::Info`]; it
//! compiles on every host and refuses, with the reason, any config on a host that is not
//! macOS 13+ on aarch64.
//!
//! Not done yet: running krunkit (and the user-mode network it needs). The lifecycle calls
//! return `Unsupported` on every host, saying so.

pub mod config;

use std::sync::Mutex;

use async_trait::async_trait;
use driver::{
    ConfigContext, Driver, DriverError, ErrorStream, Features, Info, InstanceConfig, LimaYaml,
    Result,
};

pub const NAME: &str = "krunkit";

#[derive(Default)]
pub struct KrunkitDriver {
    instance: Mutex<Option<InstanceConfig>>,
}

impl KrunkitDriver {
    pub fn new() -> Self {
        Self::default()
    }

    fn configured(&self) -> Result<InstanceConfig> {
        self.instance.lock().unwrap().clone().ok_or_else(|| {
            DriverError::failed_precondition("krunkit: configure must be called first")
        })
    }

    fn not_implemented(&self, call: &str) -> DriverError {
        let why = if cfg!(all(target_os = "macos", target_arch = "aarch64")) {
            "this build does not run krunkit yet".to_string()
        } else {
            format!(
                "krunkit runs only on macOS on Apple silicon; this host is {} on {}",
                driver::Os::host(),
                driver::Arch::host()
            )
        };
        DriverError::unsupported(format!("krunkit: cannot {call}: {why}"))
    }
}

/// What krunkit looks up for `ctx`: the macOS version and the `krunkit` CLI, only when its
/// host is this machine.
pub fn probes_of(ctx: &ConfigContext) -> config::Probes {
    let here = ctx.host.is_this_machine();
    config::Probes {
        macos_version: here.then(driver::host_macos_version).flatten(),
        krunkit_in_path: (here && ctx.host.os == driver::Os::Darwin)
            .then(|| config::in_path(config::BINARY, std::env::var_os("PATH").as_deref())),
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
        features: Features::default(),
        instance_dir: instance.map(|i| i.dir.clone()),
        vsock_port: config::VSOCK_PORT,
        virtio_port: String::new(),
        ..Default::default()
    }
}

#[async_trait]
impl Driver for KrunkitDriver {
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
        config::accept(config, &ctx.host, &probes_of(ctx))
    }

    async fn validate(&self) -> Result<()> {
        let inst = self.configured()?;
        self.accept_config(&inst.config, &ConfigContext::current())
            .await?;
        Err(self.not_implemented("start VMs"))
    }

    async fn create(&self) -> Result<()> {
        // Nothing to set up besides the disks.
        self.configured()?;
        Ok(())
    }

    async fn create_disk(&self) -> Result<()> {
        self.configured()?;
        Err(self.not_implemented("create the raw disk"))
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
        self.configured()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driver::{Arch, ErrorKind, HostFacts, Os};

    #[tokio::test]
    async fn refuses_on_linux_and_describes_itself() {
        let d = KrunkitDriver::new();
        let ctx = ConfigContext::for_host(HostFacts::pretend(Os::Linux, Arch::X86_64));
        let mut c = LimaYaml::default();
        d.fill_config(&mut c, &ctx).await.unwrap();
        let e = d.accept_config(&c, &ctx).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(e.message.contains("this host is Linux on x86_64"), "{e}");
        let info = d.info().await.unwrap();
        assert_eq!((info.name.as_str(), info.vsock_port), ("krunkit", 2222));
        assert_eq!(info.image_formats, vec!["raw"]);
    }
}
