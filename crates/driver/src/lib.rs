//! `driver` — layer 4: the contract between Lima and a VM driver. It owns the [`Driver`]
//! trait, the driver's self-description ([`Info`], [`Features`]), the inputs of its config-time
//! hooks ([`ConfigContext`], with the host as [`limatype::HostFacts`]) and the error type
//! ([`DriverError`]). Uses `limatype`, and `limadefaults` only to detect the running host.
//!
//! A driver is used in the same way whether it is compiled into limactl (an `Arc<dyn Driver>`)
//! or runs as an external `lima-driver-<name>` process (`drivergrpc`'s client implements this
//! trait over gRPC). Call order and concurrency rules are documented on [`Driver`].

mod error;
mod version;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use error::{DriverError, ErrorKind, Result};
pub use limatype::{Arch, Filled, HostFacts, Instance, LimaYaml, Os, Status};
pub use version::{host_macos_version, Version};

/// Errors reported by a running VM after [`Driver::start`] returned. The stream ends when the
/// driver stops watching the VM (it exited, or [`Driver::stop`] was called).
pub type ErrorStream = futures::stream::BoxStream<'static, DriverError>;

/// A shared, type-erased driver: what the registry hands out.
pub type DynDriver = Arc<dyn Driver>;

/// What a driver can do beyond the mandatory calls. All `false` by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    /// The driver can show the VM's display itself ([`Driver::run_gui`]).
    pub can_run_gui: bool,
    /// The SSH address is only known after start ([`Driver::ssh_address`] must be asked then).
    pub dynamic_ssh_address: bool,
    /// The guest's SSH port is fixed (the host agent must not pick one).
    pub static_ssh_port: bool,
    /// The host agent must not forward the guest agent socket (the driver provides it).
    pub skip_socket_forwarding: bool,
    /// The guest boots without a cloud-init seed (the driver provisions it another way).
    pub no_cloud_init: bool,
    /// Rosetta is enabled for the configured instance.
    pub rosetta_enabled: bool,
    /// Rosetta is registered with binfmt_misc for the configured instance.
    pub rosetta_binfmt: bool,
    /// The driver implements the snapshot calls.
    pub snapshots: bool,
}

/// A driver's self-description. Before [`Driver::configure`] the instance-specific fields
/// (`instance_dir`, `vsock_port`, `virtio_port`, Rosetta flags) are empty.
///
/// Build it with `Info { name: .., ..Default::default() }`: fields may be added later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// The driver's name: `qemu` for `lima-driver-qemu`.
    pub name: String,
    /// The driver's own version (its crate version, usually).
    pub version: String,
    /// The `vmType` this driver runs (usually equal to `name`).
    pub vm_type: String,
    /// Disk image formats the driver boots, e.g. `qcow2`, `raw`, `asif`.
    pub image_formats: Vec<String>,
    pub features: Features,
    /// The configured instance's directory, once configured.
    pub instance_dir: Option<PathBuf>,
    /// Guest vsock port of the guest agent, 0 when not over vsock.
    pub vsock_port: u32,
    /// Virtio serial port name of the guest agent, empty when not over virtio-serial.
    pub virtio_port: String,
    /// MAC address of the guest's user-mode NIC once configured (the cloud-init network
    /// config matches it); empty when the driver has no such NIC.
    #[serde(default)]
    pub mac_address: String,
    /// Files in the instance directory that explain a failed start (e.g. `qemu.stderr.log`),
    /// shown by `limactl start` when the VM does not come up.
    #[serde(default)]
    pub log_files: Vec<String>,
}

/// What the config-time hooks ([`Driver::fill_config`], [`Driver::accept_config`]) know besides
/// the config itself. The host is an argument so a config can be checked as if on another
/// host (tests, the conformance kit): a driver looks at the machine itself (binaries,
/// firmware, the macOS version) only when [`HostFacts::is_this_machine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigContext {
    pub host: HostFacts,
    /// The file the config came from, for error messages; `None` for a config built in memory.
    pub config_path: Option<PathBuf>,
}

impl ConfigContext {
    /// A context for the running host (its facts detected now) with no file.
    pub fn current() -> Self {
        Self::for_host(limadefaults::detect_host())
    }

    /// A context for `host` with no file.
    pub fn for_host(host: HostFacts) -> Self {
        ConfigContext {
            host,
            config_path: None,
        }
    }
}

impl Default for ConfigContext {
    fn default() -> Self {
        Self::current()
    }
}

/// The instance a driver is bound to by [`Driver::configure`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceConfig {
    /// Instance name, e.g. `default`.
    pub name: String,
    /// `$LIMA_HOME/<name>`; exists (mode 0700) before `configure` is called.
    pub dir: PathBuf,
    /// The filled lima.yaml (defaults applied, validated, `fill_config` already run): its
    /// defaulted fields are typed, so a driver needs no defaults of its own.
    pub config: Filled,
    /// Host port forwarded to the guest's SSH port; 0 when not chosen yet.
    pub ssh_local_port: u16,
}

/// How the host agent reaches the guest agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GuestAgentConn {
    /// The host agent forwards the guest agent's socket over SSH itself.
    #[default]
    SshForward,
    /// The driver provides a host-side unix socket that reaches the guest agent.
    UnixSocket(PathBuf),
}

/// A VM driver.
///
/// # Call order
/// 1. Config time, no instance bound: [`info`](Driver::info), [`fill_config`](Driver::fill_config),
///    [`accept_config`](Driver::accept_config), [`inspect_status`](Driver::inspect_status).
/// 2. [`configure`](Driver::configure) binds the driver to one instance; every other call
///    needs it first (else [`ErrorKind::FailedPrecondition`]). It may be called again to
///    rebind.
/// 3. Lifecycle: `validate` → `create` → `create_disk` → `start` → ... → `stop`; `delete` at
///    the end. `create` is idempotent: it returns `Ok` on an instance created before.
///
/// # Concurrency
/// Read-only calls (`info`, `fill_config`, `accept_config`, `inspect_status`, `boot_scripts`,
/// `can_run_gui`, `ssh_address`, `list_snapshots`, `guest_agent_conn`, `display_connection`)
/// may run concurrently with each other and with a running `start` stream or `run_gui`.
/// Mutating calls are issued one at a time by the caller.
///
/// # Errors
/// Every call returns a [`DriverError`] whose kind and message reach the caller unchanged
/// through the external-driver protocol. Calls a driver does not implement return
/// [`ErrorKind::Unsupported`] (the defaults below do).
#[async_trait]
pub trait Driver: Send + Sync {
    /// Who the driver is and what it can do. Cheap; no side effects.
    async fn info(&self) -> Result<Info>;

    /// Bind the driver to an instance. No side effects on disk.
    async fn configure(&self, instance: InstanceConfig) -> Result<()>;

    /// Fill driver-specific defaults into a config (e.g. qemu's CPU type, vz's disk image
    /// format). Only fields left unset may be changed.
    async fn fill_config(&self, _config: &mut LimaYaml, _ctx: &ConfigContext) -> Result<()> {
        Ok(())
    }

    /// Whether this driver can run this config on `ctx.host`; the error says why not (host OS
    /// or arch, mount type, image format, firmware...), kind [`ErrorKind::InvalidConfig`].
    async fn accept_config(&self, config: &LimaYaml, ctx: &ConfigContext) -> Result<()>;

    /// Check the configured instance can be started (e.g. required host binaries exist).
    async fn validate(&self) -> Result<()>;

    /// Set up the instance's driver-specific files (not the disks). Idempotent.
    async fn create(&self) -> Result<()>;

    /// Create the instance's disks from the downloaded image.
    async fn create_disk(&self) -> Result<()>;

    /// Start booting. Returns once boot has begun; errors after that arrive on the stream.
    async fn start(&self) -> Result<ErrorStream>;

    /// Stop the VM. Returns once it has stopped.
    async fn stop(&self) -> Result<()>;

    /// Remove what `create` set up outside the instance directory (registrations etc.).
    async fn delete(&self) -> Result<()>;

    /// The instance's status as only the driver can tell it, from the instance directory
    /// alone (no process spawned). `None`: no opinion, the store's answer stands.
    async fn inspect_status(&self, _instance: &Instance) -> Result<Option<Status>> {
        Ok(None)
    }

    /// Extra scripts for the guest's boot, by file name.
    async fn boot_scripts(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        Ok(BTreeMap::new())
    }

    /// Whether [`run_gui`](Driver::run_gui) must be called (the driver shows the display).
    async fn can_run_gui(&self) -> Result<bool> {
        Ok(false)
    }

    /// Show the VM's display; returns when the window closes.
    async fn run_gui(&self) -> Result<()> {
        Err(unsupported_by_default("run_gui"))
    }

    async fn change_display_password(&self, _password: &str) -> Result<()> {
        Err(unsupported_by_default("change_display_password"))
    }

    /// Where to connect a display client (e.g. a VNC address).
    async fn display_connection(&self) -> Result<String> {
        Err(unsupported_by_default("display_connection"))
    }

    async fn create_snapshot(&self, _tag: &str) -> Result<()> {
        Err(unsupported_by_default("create_snapshot"))
    }

    async fn apply_snapshot(&self, _tag: &str) -> Result<()> {
        Err(unsupported_by_default("apply_snapshot"))
    }

    async fn delete_snapshot(&self, _tag: &str) -> Result<()> {
        Err(unsupported_by_default("delete_snapshot"))
    }

    /// A human-readable snapshot list (one snapshot a line).
    async fn list_snapshots(&self) -> Result<String> {
        Err(unsupported_by_default("list_snapshots"))
    }

    /// How the host agent reaches the guest agent.
    async fn guest_agent_conn(&self) -> Result<GuestAgentConn> {
        Ok(GuestAgentConn::SshForward)
    }

    /// The host address SSH connects to (with the instance's SSH local port).
    async fn ssh_address(&self) -> Result<String> {
        Ok("127.0.0.1".to_string())
    }

    /// Anything the driver must do before the host agent's first SSH connection.
    async fn additional_setup_for_ssh(&self) -> Result<()> {
        Ok(())
    }
}

fn unsupported_by_default(call: &str) -> DriverError {
    DriverError::unsupported(format!("{call} is not supported by this driver"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Minimal;

    #[async_trait]
    impl Driver for Minimal {
        async fn info(&self) -> Result<Info> {
            Ok(Info {
                name: "minimal".into(),
                ..Default::default()
            })
        }
        async fn configure(&self, _instance: InstanceConfig) -> Result<()> {
            Ok(())
        }
        async fn accept_config(&self, config: &LimaYaml, ctx: &ConfigContext) -> Result<()> {
            if ctx.host.os != Os::Linux {
                return Err(DriverError::invalid_config(format!(
                    "needs a Linux host, not {}",
                    ctx.host.os
                )));
            }
            match config.vm_type.as_deref() {
                None | Some("minimal") => Ok(()),
                Some(other) => Err(DriverError::invalid_config(format!("vmType {other:?}"))),
            }
        }
        async fn validate(&self) -> Result<()> {
            Ok(())
        }
        async fn create(&self) -> Result<()> {
            Ok(())
        }
        async fn create_disk(&self) -> Result<()> {
            Ok(())
        }
        async fn start(&self) -> Result<ErrorStream> {
            Ok(Box::pin(futures::stream::empty()))
        }
        async fn stop(&self) -> Result<()> {
            Ok(())
        }
        async fn delete(&self) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn usable_as_trait_object_with_defaults() {
        let d: DynDriver = Arc::new(Minimal);
        assert_eq!(d.info().await.unwrap().name, "minimal");
        let err = d.create_snapshot("t").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unsupported);
        assert!(err.message.contains("create_snapshot"), "{err}");
        assert_eq!(
            d.guest_agent_conn().await.unwrap(),
            GuestAgentConn::SshForward
        );
        assert!(!d.can_run_gui().await.unwrap());
    }

    #[tokio::test]
    async fn host_facts_are_injectable() {
        let d = Minimal;
        let cfg = LimaYaml::default();
        let mac = ConfigContext::for_host(HostFacts::pretend(Os::Darwin, Arch::Aarch64));
        let err = d.accept_config(&cfg, &mac).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidConfig);
        assert!(err.message.contains("Darwin"));
        let linux = ConfigContext::for_host(HostFacts::pretend(Os::Linux, Arch::X86_64));
        d.accept_config(&cfg, &linux).await.unwrap();
    }

    #[test]
    fn info_serializes_camel_case() {
        let info = Info {
            name: "qemu".into(),
            vm_type: "qemu".into(),
            features: Features {
                can_run_gui: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.contains("\"vmType\":\"qemu\""), "{json}");
        assert!(json.contains("\"canRunGui\":true"), "{json}");
        let back: Info = serde_json::from_str(&json).unwrap();
        assert_eq!(back, info);
    }
}
