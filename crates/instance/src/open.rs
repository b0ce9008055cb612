//! An instance opened for work: its config loaded once, its driver resolved once (internal or
//! external alike) and bound to it with `configure`. Every driver call of the flow goes through
//! [`Opened`], in the trait's order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use driver::{ConfigContext, DriverError, DynDriver, Filled, Info, InstanceConfig};
use hostagent::phases::{Clock, Phase};
use limatype::filenames;
use registry::Registry;

use crate::error::io;
use crate::{disks, load, InstanceError, Result};

/// An instance with its driver bound.
pub struct Opened {
    pub name: String,
    pub dir: PathBuf,
    /// Filled by the defaults and by the driver's `fill_config`, validated and accepted.
    pub config: Filled,
    pub driver: DynDriver,
    /// The resolved driver's name (`qemu`), as `vmType` names it.
    pub driver_name: String,
    /// `qemu (internal)`, `qemu (external: PATH)`.
    pub driver_description: String,
    /// The driver's Info once bound (MAC address, log files, ...).
    pub info: Info,
    /// The host port the driver forwards to the guest's SSH (0: not chosen, see [`SshPort`]).
    pub ssh_local_port: u16,
}

/// Creates the instance directory (0700) with its `lima.yaml` from `locator`, after the config
/// was loaded, validated and accepted by the driver that will run it; returns it opened, so the
/// caller can go on with the same driver (an external driver is started once).
pub async fn create(reg: &Registry, name: &str, locator: &str) -> Result<Opened> {
    create_edited(reg, name, locator, &|text| Ok(text.to_string())).await
}

/// A change of a config's text before it is validated and stored (`--set`, `--cpus`, ...).
pub type Edit<'a> = &'a (dyn Fn(&str) -> std::result::Result<String, limayq::YqError> + Sync);

/// [`create`] with `edit` applied to the config's text (templates and bases embedded) first;
/// the edited text is what is validated and stored.
pub async fn create_edited(
    reg: &Registry,
    name: &str,
    locator: &str,
    edit: Edit<'_>,
) -> Result<Opened> {
    store::validate_instance_name(name)?;
    let (text, config) = load::load_locator(locator, name)?;
    let edited = edit(&text)?;
    let (text, config) = if edited == text {
        (text, config)
    } else {
        let display = format!("{locator} (with the edit flags applied)");
        let config = load::load_stored_text(&edited, &display, name)?;
        (edited, config)
    };
    let resolved = reg.resolve(&config, &ConfigContext::current()).await?;
    let dir = store::instance_dir(name)?;
    if dir.join(filenames::LIMA_YAML).exists() {
        return Err(InstanceError::Exists(name.to_string()));
    }
    store::ensure_lima_home()?;
    store::ensure_private_dir(&dir)?;
    let lock = store::InstanceLock::try_acquire(&dir, name)?;
    // A directory left by a create that was killed holds only its lock and temp files: take
    // it over. Anything else there is not ours to overwrite.
    if !store::is_leftover_of_create(&dir)? {
        return Err(InstanceError::NotEmpty {
            name: name.to_string(),
            dir,
        });
    }
    store::remove_stale_runtime_files(&dir)?;
    let text = match config.vm_type {
        Some(_) => text,
        None => load::record_vm_type(&text, &resolved.name).unwrap_or(text),
    };
    store::write_private_file(&dir.join(filenames::LIMA_YAML), text.as_bytes())?;
    store::write_private_file(
        &dir.join(filenames::LIMA_VERSION),
        format!("{}\n", limatype::LIMA_COMPAT_VERSION).as_bytes(),
    )?;
    drop(lock);
    bind(resolved, name, dir, 0).await
}

/// The driver's say on a changed config (its `fill_config` and `accept_config`, as upstream's
/// driver `Validate` before an edit is saved); the driver is let go afterwards.
pub(crate) async fn check_with_driver(reg: &Registry, config: &Filled) -> Result<()> {
    reg.resolve(config, &ConfigContext::current()).await?;
    Ok(())
}

/// How [`open`] sets the SSH port the driver forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SshPort {
    /// Not known yet (0): enough for preparing disks.
    Unchosen,
    /// `ssh.localPort`, or a free port on 127.0.0.1 when that is 0: the host agent's choice.
    Choose,
}

/// Opens an existing instance: its `lima.yaml` loaded and filled once, its driver resolved
/// and bound.
pub async fn open(reg: &Registry, name: &str, port: SshPort) -> Result<Opened> {
    let dir = store::instance_dir(name)?;
    if !dir.join(filenames::LIMA_YAML).exists() {
        return Err(InstanceError::NotFound(name.to_string()));
    }
    let config = load::load_instance(&dir, name)?;
    let ssh_local_port = match port {
        SshPort::Unchosen => 0,
        SshPort::Choose => match config.ssh_local_port {
            0 => hostagent::agent::free_local_port()
                .map_err(io("finding a free port on", "127.0.0.1"))?,
            p => p,
        },
    };
    let resolved = reg.resolve(&config, &ConfigContext::current()).await?;
    bind(resolved, name, dir, ssh_local_port).await
}

async fn bind(
    resolved: registry::Resolved,
    name: &str,
    dir: PathBuf,
    ssh_local_port: u16,
) -> Result<Opened> {
    let driver_description = match &resolved.location {
        registry::Location::Internal => format!("{} (internal)", resolved.name),
        registry::Location::External(p) => {
            format!("{} (external: {})", resolved.name, p.display())
        }
    };
    let fail = |call| {
        let driver = driver_description.clone();
        move |error| InstanceError::Driver {
            driver,
            call,
            error,
        }
    };
    // A remote firmware image the start fetched reaches the driver as its cached file.
    let config = match downloader::Downloader::with_default_cache() {
        Ok(dl) => crate::firmware::localized(&dl, resolved.config, &resolved.name),
        Err(_) => resolved.config,
    };
    resolved
        .driver
        .configure(InstanceConfig {
            name: name.to_string(),
            dir: dir.clone(),
            config: config.clone(),
            ssh_local_port,
        })
        .await
        .map_err(fail("configure"))?;
    let info = resolved.driver.info().await.map_err(fail("info"))?;
    Ok(Opened {
        name: name.to_string(),
        dir,
        config,
        driver: resolved.driver,
        driver_name: resolved.name,
        driver_description,
        info,
        ssh_local_port,
    })
}

impl Opened {
    /// Maps a failed driver call to an error naming the driver and the call.
    pub fn call_failed(&self, call: &'static str) -> impl FnOnce(DriverError) -> InstanceError {
        let driver = self.driver_description.clone();
        move |error| InstanceError::Driver {
            driver,
            call,
            error,
        }
    }

    /// The trait's order up to the disks: `validate` → `create` → (image fetched into the
    /// instance directory) → `create_disk`. Fetching and `create_disk` happen once, until the
    /// `diffdisk` exists; then a remote `firmware.images` entry and the nerdctl archive
    /// (`containerd`) into the cache, where the host agent's [`open`] finds them. Each step
    /// done is a phase given to `phase` (`driver validate`, `image`, `disk`, `firmware`,
    /// `nerdctl`).
    pub async fn prepare(&self, phase: &(dyn Fn(Phase) + Sync)) -> Result<()> {
        let mut clock = Clock::start();
        self.driver
            .validate()
            .await
            .map_err(self.call_failed("validate"))?;
        self.driver
            .create()
            .await
            .map_err(self.call_failed("create"))?;
        phase(clock.lap("driver validate"));
        if !self.dir.join(filenames::DIFF_DISK).exists() {
            let (dir, config) = (self.dir.clone(), self.config.clone());
            tokio::task::spawn_blocking(move || disks::fetch_image(&dir, &config))
                .await
                .expect("the image fetch does not panic")?;
            phase(clock.lap("image"));
            self.driver
                .create_disk()
                .await
                .map_err(self.call_failed("create_disk"))?;
            phase(clock.lap("disk"));
        }
        let (dir, config, driver) = (
            self.dir.clone(),
            self.config.clone(),
            self.driver_name.clone(),
        );
        let firmware = tokio::task::spawn_blocking(move || {
            crate::firmware::fetch(
                downloader::Downloader::with_default_cache,
                &dir,
                &config,
                &driver,
            )
        })
        .await
        .expect("the firmware fetch does not panic")?;
        if firmware.is_some() {
            phase(clock.lap("firmware"));
        }
        // The nerdctl archive, after the disks as upstream's Prepare does, here in limactl's
        // process so its progress shows; the host agent then finds it in the cache.
        let config = self.config.clone();
        let archive = tokio::task::spawn_blocking(move || crate::containerd::archive(&config))
            .await
            .expect("the archive fetch does not panic")?;
        if archive.is_some() {
            phase(clock.lap("nerdctl archive"));
        }
        Ok(())
    }

    /// Writes `cidata.iso` for this boot: the authorized keys (Lima's, then `~/.ssh/*.pub`
    /// with `ssh.loadDotSSHPubKeys`), the driver's boot scripts and a fresh instance id (so
    /// cloud-init runs its per-instance steps again).
    pub fn write_seed(
        &self,
        scripts: &BTreeMap<String, Vec<u8>>,
        pubkeys: &[String],
        dns_local_ports: Option<cidata::DnsPorts>,
    ) -> Result<()> {
        let keys: Vec<String> = pubkeys.iter().map(|k| k.trim().to_string()).collect();
        let agent = crate::agentbin::find(self.config.os, self.config.arch)?;
        let nerdctl = crate::containerd::archive(&self.config)?;
        let seed = cidata::build_seed(&cidata::SeedInput {
            instance_name: &self.name,
            instance_id: cidata::fresh_instance_id(),
            config: &self.config,
            ssh_public_keys: &keys,
            boot_scripts: scripts,
            guest_agent: agent.as_deref(),
            nic_mac: (!self.info.mac_address.is_empty()).then(|| self.info.mac_address.clone()),
            host_proxy_env: cidata::net::host_proxy_env(std::env::vars()),
            containerd_archive: nerdctl.as_deref(),
            dns_local_ports,
        })
        .and_then(|seed| seed.write_iso(&self.dir.join(filenames::CIDATA_ISO)));
        seed.map_err(|source| InstanceError::Seed { source })
    }
}

/// The host agent process of instance `name` (`limactl hostagent NAME`, spawned by
/// [`crate::agentproc::spawn`]): keeps the lock handed over by `limactl start`, opens the
/// instance (one driver process for the agent's whole life), and runs it until stopped.
pub async fn run_host_agent(reg: &Registry, name: &str, cloud_init_progress: bool) -> Result<()> {
    store::adopt_inherited_lock();
    let dir = store::instance_dir(name)?;
    let pid_path = dir.join(filenames::HOST_AGENT_PID);
    store::write_pid_file(&pid_path, std::process::id())?;
    let result = agent_main(reg, name, &dir, cloud_init_progress).await;
    // The VM is stopped (or never started): its disks are free again.
    crate::datadisk::unlock_of(&dir);
    let _ = std::fs::remove_file(&pid_path);
    result
}

async fn agent_main(
    reg: &Registry,
    name: &str,
    dir: &Path,
    cloud_init_progress: bool,
) -> Result<()> {
    let log_path = dir.join(filenames::HOST_AGENT_STDOUT_LOG);
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log_path)
        .map_err(io("opening", &log_path))?;
    let hub = hostagent::server::Hub::new(Some(log));
    let inst = match open(reg, name, SshPort::Choose).await {
        Ok(i) => i,
        Err(e) => {
            // `limactl start` follows the events: tell it why, not only our stderr.
            hub.emit(hostagent::events::Status {
                errors: vec![e.to_string()],
                ..Default::default()
            });
            return Err(e);
        }
    };
    // The same account the seed creates in the guest.
    let user = inst.config.user.name.clone();
    let key = sshutil::ensure_user_key_in(&store::config_dir()?)?;
    let ssh_flags = sshutil::SshFlags::from_config(&inst.config);
    let pubkeys = sshutil::authorized_keys(&key, ssh_flags.load_dot_ssh_pub_keys)?;
    let (sshfs_mounts, expected_mounts) = hostagent::sshfs::plan(&inst.config);
    let opts = hostagent::agent::Options {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        ssh_local_port: inst.ssh_local_port,
        ssh_user: user,
        private_key: key.private.clone(),
        link_ssh_agent: link_ssh_agent(&inst.config, &ssh_flags),
        ssh_flags,
        ready_timeout: ready_timeout(),
        driver_description: inst.driver_description.clone(),
        port_forwards: portfwd::effective_rules(
            inst.config.port_forwards.as_deref().unwrap_or_default(),
            GUEST_SSH_PORT,
        ),
        sshfs_mounts,
        expected_mounts,
        inotify_mounts: hostagent::inotify::plan(&inst.config),
        copy_to_host: hostagent::copytohost::plan(
            inst.config.copy_to_host.as_deref().unwrap_or_default(),
        ),
        cloud_init_progress,
        probes: optional_containerd(&inst.config)
            .into_iter()
            .chain(
                inst.config
                    .probes
                    .iter()
                    .flatten()
                    .filter(|p| p.mode.as_deref().unwrap_or("readiness") == "readiness")
                    .filter_map(|p| {
                        let script = p.script.as_deref()?;
                        Some(hostagent::requirements::probe(
                            p.description.as_deref().unwrap_or("user probe"),
                            script,
                            p.hint.as_deref().unwrap_or(""),
                        ))
                    }),
            )
            .collect(),
        vnc_display: inst
            .config
            .video
            .as_ref()
            .filter(|v| v.display.as_deref() == Some("vnc"))
            .map(|v| {
                v.vnc
                    .as_ref()
                    .and_then(|o| o.display.clone())
                    .unwrap_or_else(|| "127.0.0.1:0,to=9".into())
            }),
        dns: host_resolver(name, &inst.config),
    };
    let seed = |scripts: &BTreeMap<String, Vec<u8>>, dns: Option<cidata::DnsPorts>| {
        inst.write_seed(scripts, &pubkeys, dns)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    };
    hostagent::agent::run(opts, inst.driver.as_ref(), &seed, hub).await?;
    Ok(())
}

/// The host agent's DNS server for `hostResolver` (default enabled, as upstream), or `None`
/// when disabled.
fn host_resolver(name: &str, config: &Filled) -> Option<hostdns::Config> {
    let hr = config.host_resolver.clone().unwrap_or_default();
    if !hr.enabled.unwrap_or(true) {
        return None;
    }
    Some(hostdns::Config::for_instance(
        name,
        hr.hosts.unwrap_or_default(),
        hr.ipv6.unwrap_or(false),
    ))
}

/// Upstream's optional requirements for containerd: a Linux guest with `containerd.system` or
/// `containerd.user`, not in plain mode.
fn optional_containerd(config: &limatype::Filled) -> Vec<hostagent::requirements::Requirement> {
    if config.os != limatype::Os::Linux || !crate::containerd::wanted(config) {
        return Vec::new();
    }
    let prefix = config
        .guest_install_prefix
        .as_deref()
        .unwrap_or("/usr/local");
    hostagent::requirements::containerd(prefix)
}

/// Whether the host agent links the forwarded SSH agent in the guest: `ssh.forwardAgent`,
/// ignored with a warning in plain mode, as upstream does.
fn link_ssh_agent(config: &limatype::Filled, flags: &sshutil::SshFlags) -> bool {
    if flags.forward_agent && config.plain.unwrap_or(false) {
        tracing::warn!("Running in plain mode. Ignoring ssh.forwardAgent");
        return false;
    }
    flags.forward_agent
}

/// The guest's sshd port (never forwarded to the host).
const GUEST_SSH_PORT: u16 = 22;

/// How long the guest may take to become ready (`LIMA_READY_TIMEOUT` seconds, default 600).
fn ready_timeout() -> Duration {
    crate::env_seconds("LIMA_READY_TIMEOUT", 600)
}
