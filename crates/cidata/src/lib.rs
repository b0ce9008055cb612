//! `cidata` — layer 7.0: the cloud-init NoCloud seed of an instance (`cidata.iso`, volume label
//! `cidata`): `user-data`, `meta-data`, `network-config`, `lima.env`, `param.env`, our `boot.sh`
//! with the driver's boot scripts under `boot/`, provisioning steps (`provision.<mode>/<index>`
//! for `dependency`, `data`, `yq`, `system`, `user`, as upstream) and the guest agent
//! (`lima-guestagent`, which `boot.sh` installs and runs as the systemd service
//! `lima-guestagent.service`: `lima-guestagent daemon`, `Restart=always`).
//! The ISO is written by our own small ISO9660 + Joliet writer ([`iso`]); no host tool needed.

pub mod iso;
pub mod net;
mod userdata;

pub use userdata::fstab_escape;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use limatype::network::{SLIRP_DNS, SLIRP_GATEWAY};
use limatype::{Filled, FilledUser};

pub use iso::{Content, IsoBuilder, IsoError};

/// The ISO volume label cloud-init's NoCloud datasource looks for.
pub const VOLUME_ID: &str = "cidata";
/// The nerdctl-full archive's name in the seed (upstream's; ISO9660 wants short names).
pub const CONTAINERD_ARCHIVE: &str = "nerdctl-full.tgz";
/// The file the boot script creates last; the host agent waits for it.
pub const BOOT_DONE_FILE: &str = "/run/lima-boot-done";
/// Where cloud-init puts the runner that mounts the seed and starts `boot.sh` on every boot.
pub const RUNNER_PATH: &str = "/var/lib/cloud/scripts/per-boot/00-lima.boot.sh";

const BOOT_SH: &str = include_str!("../scripts/boot.sh");
pub(crate) const RUNNER_SH: &str = include_str!("../scripts/runner.sh");

#[derive(Debug, thiserror::Error)]
pub enum CidataError {
    #[error("guest agent binary {file:?} not found in {dir} (looked for {path})")]
    GuestAgentMissing {
        file: String,
        dir: String,
        path: PathBuf,
    },
    #[error("reading CA certificate file {path} (caCerts.files): {source}")]
    CaCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: {reason}")]
    Config { field: String, reason: String },
    #[error("boot script name {name:?}: {reason}")]
    BootScriptName { name: String, reason: &'static str },
    #[error(transparent)]
    Iso(#[from] IsoError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the seed is made from.
#[derive(Debug, Clone)]
pub struct SeedInput<'a> {
    /// The instance name; the guest's hostname is `lima-<name>`.
    pub instance_name: &'a str,
    /// Changes on every start, so cloud-init re-runs its per-instance modules (see
    /// [`fresh_instance_id`]).
    pub instance_id: String,
    /// The filled lima.yaml (defaults applied): the guest user and the rest come from it.
    pub config: &'a Filled,
    /// Lines of `authorized_keys` for the user.
    pub ssh_public_keys: &'a [String],
    /// The driver's boot scripts (file name -> content), placed under `boot/`.
    pub boot_scripts: &'a BTreeMap<String, Vec<u8>>,
    /// The guest agent binary for the guest's arch, if there is one.
    pub guest_agent: Option<&'a Path>,
    /// MAC address of the user-mode (slirp) NIC; when known, network-config matches it.
    pub nic_mac: Option<String>,
    /// The host's proxy variables (`net::host_proxy_env` of limactl's environment), passed
    /// to the guest with `propagateProxyEnv`.
    pub host_proxy_env: BTreeMap<String, String>,
    /// The nerdctl-full archive (a local file) when `containerd.system` or `containerd.user`
    /// is on; carried as [`CONTAINERD_ARCHIVE`] for boot.sh to install.
    pub containerd_archive: Option<&'a Path>,
    /// The host agent's DNS server for `hostResolver` (its 127.0.0.1 ports), when it runs:
    /// the boot script points the guest's DNS at it. `None` when `hostResolver.enabled` is
    /// false.
    pub dns_local_ports: Option<DnsPorts>,
}

/// The UDP and TCP ports of the host agent's DNS server on the host's 127.0.0.1 (upstream's
/// `UDPDNSLocalPort`/`TCPDNSLocalPort`), which the guest reaches as 192.168.5.2:PORT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsPorts {
    pub udp: u16,
    pub tcp: u16,
}

/// The DNS ports the guest is told about (upstream's `templateArgs`): none when lima.yaml's
/// `dns` names the guest's nameservers itself or under vz (whose NAT has its own resolver).
fn guest_dns_ports(input: &SeedInput<'_>) -> Option<DnsPorts> {
    let cfg = input.config;
    if !cfg.dns.as_deref().unwrap_or_default().is_empty() || cfg.vm_type.as_deref() == Some("vz") {
        return None;
    }
    input.dns_local_ports
}

/// The files of a seed, by path inside the ISO.
#[derive(Debug)]
pub struct Seed {
    files: BTreeMap<String, Content>,
}

/// An instance id that differs on every start, as cloud-init needs to notice a new boot.
pub fn fresh_instance_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("iid-{secs}")
}

/// The 9p/virtiofs tag of a mount (defined in `limadefaults`, shared with the qemu driver).
pub use limadefaults::mount_tag;

/// The guest's device name of `additionalDisks[index]`: virtio disks after the boot disk
/// (`vda`), named as Linux names them: `vdb` ... `vdz`, then `vdaa`, `vdab`, ...
pub fn disk_device(index: usize) -> String {
    // Bijective base 26 of the position among virtio disks (the boot disk is 0).
    let mut n = index + 1;
    let mut letters = vec![];
    loop {
        letters.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    letters.reverse();
    format!("vd{}", String::from_utf8_lossy(&letters))
}

fn check_env_value(field: &str, key: &str, value: &str) -> Result<(), CidataError> {
    let key_ok = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !key_ok {
        return Err(CidataError::Config {
            field: format!("{field}.{key}"),
            reason: "the name must be letters, digits and `_`, not starting with a digit".into(),
        });
    }
    if value.contains('\n') {
        return Err(CidataError::Config {
            field: format!("{field}.{key}"),
            reason: "the value must be a single line".into(),
        });
    }
    Ok(())
}

/// Builds every file of the seed.
pub fn build_seed(input: &SeedInput<'_>) -> Result<Seed, CidataError> {
    let cfg = input.config;
    let user = &cfg.user;
    let mut files: BTreeMap<String, Content> = BTreeMap::new();
    let text = |s: String| Content::Bytes(s.into_bytes());

    let params = cfg.param.clone().unwrap_or_default();
    for (k, v) in &params {
        check_env_value("param", k, v)?;
    }
    let env = net::guest_env(
        &cfg.env.clone().unwrap_or_default(),
        &input.host_proxy_env,
        cfg.propagate_proxy_env.unwrap_or(true),
        SLIRP_GATEWAY,
        net::is_loopback_host,
    );
    for (k, v) in &env {
        check_env_value("env", k, v)?;
    }

    let mut env_lines = lima_env(input, user)?;
    let mut boot_cmds = Vec::new();
    for (i, p) in cfg.provision.iter().flatten().enumerate() {
        let mode = p.mode.as_deref().unwrap_or("system");
        let field = format!("provision[{i}]");
        let script = || {
            p.script.clone().ok_or_else(|| CidataError::Config {
                field: format!("{field}.script"),
                reason: format!("mode {mode:?} needs a script (a `file:` must be resolved first)"),
            })
        };
        let name = format!("{i:08}");
        match mode {
            "system" => {
                files.insert(format!("provision.system/{name}"), text(script()?));
            }
            "user" => {
                files.insert(format!("provision.user/{name}"), text(script()?));
            }
            "boot" => boot_cmds.push(script()?),
            "data" => {
                let path = p.path.clone().ok_or_else(|| CidataError::Config {
                    field: format!("{field}.path"),
                    reason: "mode \"data\" needs a path".into(),
                })?;
                let content = p.content.clone().unwrap_or_default();
                files.insert(format!("provision.data/{name}"), text(content));
                let owner = owner_group(p.owner.as_deref());
                let prefix = format!("LIMA_CIDATA_DATAFILE_{name}");
                env_lines.push(format!(
                    "{prefix}_OVERWRITE={}",
                    p.overwrite.unwrap_or(true)
                ));
                env_lines.push(format!("{prefix}_OWNER={owner}"));
                env_lines.push(format!("{prefix}_PATH={path}"));
                env_lines.push(format!(
                    "{prefix}_PERMISSIONS={}",
                    p.permissions.clone().unwrap_or_else(|| "644".into())
                ));
            }
            // Run by boot.sh before the boot scripts, as upstream's 30-install-packages.sh
            // runs them before its package installation.
            "dependency" => {
                files.insert(format!("provision.dependency/{name}"), text(script()?));
            }
            "yq" => {
                let (entry, env) = yq_step(p, &field, &name)?;
                files.insert(format!("provision.yq/{name}"), text(entry));
                env_lines.extend(env);
            }
            // Run on the host by `limactl start` once the instance is running.
            "ansible" => {}
            other => {
                return Err(CidataError::Config {
                    field: format!("{field}.mode"),
                    reason: format!("mode {other:?} is not supported by this implementation yet"),
                })
            }
        }
    }

    let mut ca_certs = Vec::new();
    if let Some(ca) = &cfg.ca_certs {
        for f in ca.files.iter().flatten() {
            let path = PathBuf::from(f);
            let pem = std::fs::read_to_string(&path)
                .map_err(|source| CidataError::CaCert { path, source })?;
            ca_certs.push(pem);
        }
        ca_certs.extend(ca.certs.iter().flatten().cloned());
    }

    let hostname = format!("lima-{}", input.instance_name);
    let user_data = userdata::user_data(&userdata::UserDataArgs {
        hostname: &hostname,
        user,
        config: cfg,
        ssh_public_keys: input.ssh_public_keys,
        params: &params,
        boot_cmds: &boot_cmds,
        ca_certs: &ca_certs,
    })?;
    files.insert("user-data".into(), text(user_data));
    files.insert(
        "meta-data".into(),
        text(format!(
            "instance-id: {}\nlocal-hostname: {hostname}\n",
            input.instance_id
        )),
    );
    files.insert(
        "network-config".into(),
        text(userdata::network_config(
            input.nic_mac.as_deref(),
            cfg.dns.as_deref().unwrap_or_default(),
        )?),
    );
    files.insert("lima.env".into(), text(lines(&env_lines)));
    files.insert(
        "param.env".into(),
        text(lines(
            &params
                .iter()
                .map(|(k, v)| format!("PARAM_{k}={v}"))
                .collect::<Vec<_>>(),
        )),
    );
    files.insert(
        "etc_environment".into(),
        text(lines(
            &env.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )),
    );
    let hosts = cfg
        .host_resolver
        .as_ref()
        .and_then(|h| h.hosts.clone())
        .unwrap_or_default();
    for (name, value) in &hosts {
        if name.is_empty()
            || name.contains(char::is_whitespace)
            || value.contains(char::is_whitespace)
        {
            return Err(CidataError::Config {
                field: format!("hostResolver.hosts.{name}"),
                reason: format!("{value:?}: names and values must be single words"),
            });
        }
    }
    // With the DNS server the guest asks it for `hostResolver.hosts`, as upstream does (so a
    // lookup sees the hosts map as it is now, aliases followed on the host); without it they
    // go into /etc/hosts. `host.lima.internal` is in /etc/hosts either way (upstream's
    // 06-etc-hosts.sh).
    let etc_hosts_entries = if guest_dns_ports(input).is_some() {
        BTreeMap::new()
    } else {
        hosts
    };
    files.insert(
        "etc_hosts".into(),
        text(lines(&net::etc_hosts(
            &etc_hosts_entries,
            SLIRP_GATEWAY,
            net::lookup_host,
        ))),
    );
    files.insert("boot.sh".into(), text(BOOT_SH.to_string()));

    for (name, bytes) in input.boot_scripts {
        let bad = |reason| CidataError::BootScriptName {
            name: name.clone(),
            reason,
        };
        if name.contains('/') || name.starts_with('.') {
            return Err(bad("must be a plain file name"));
        }
        if !name.ends_with(".sh") {
            return Err(bad("must end in `.sh` (boot.sh runs boot/*.sh)"));
        }
        files.insert(format!("boot/{name}"), Content::Bytes(bytes.clone()));
    }

    if let Some(agent) = input.guest_agent {
        if !agent.is_file() {
            return Err(CidataError::GuestAgentMissing {
                file: agent
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                dir: agent
                    .parent()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
                path: agent.to_path_buf(),
            });
        }
        files.insert("lima-guestagent".into(), Content::File(agent.to_path_buf()));
    }
    if let Some(archive) = containerd_archive(input)? {
        files.insert(
            CONTAINERD_ARCHIVE.into(),
            Content::File(archive.to_path_buf()),
        );
    }
    Ok(Seed { files })
}

/// A `yq` step: its expression (the seed entry) and its `LIMA_CIDATA_YQ_PROVISION_<name>_*`
/// variables (upstream's names). A format the guest agent cannot write is refused here,
/// before anything boots.
fn yq_step(
    p: &limatype::Provision,
    field: &str,
    name: &str,
) -> Result<(String, Vec<String>), CidataError> {
    let missing = |key: &str| CidataError::Config {
        field: format!("{field}.{key}"),
        reason: "mode \"yq\" needs it".into(),
    };
    let expression = p.expression.clone().ok_or_else(|| missing("expression"))?;
    let path = p.path.clone().ok_or_else(|| missing("path"))?;
    let format = p.format.clone().unwrap_or_else(|| "auto".into());
    limayq::provision::file_format(&format, &path).map_err(|e| CidataError::Config {
        field: format!("{field}.format"),
        reason: e.to_string(),
    })?;
    let owner = owner_group(p.owner.as_deref());
    let prefix = format!("LIMA_CIDATA_YQ_PROVISION_{name}");
    let env = vec![
        format!("{prefix}_FORMAT={format}"),
        format!("{prefix}_OWNER={owner}"),
        format!("{prefix}_PATH={path}"),
        format!(
            "{prefix}_PERMISSIONS={}",
            p.permissions.clone().unwrap_or_else(|| "644".into())
        ),
    ];
    Ok((expression, env))
}

/// `owner` as `user:group` for `install -o -g`: a bare user name gets the group of that name.
fn owner_group(owner: Option<&str>) -> String {
    match owner {
        Some(o) if o.contains(':') => o.to_string(),
        Some(o) => format!("{o}:{o}"),
        None => "root:root".to_string(),
    }
}

/// The archive to carry: only when containerd is wanted (not in plain mode), and then it
/// must be there.
fn containerd_archive<'a>(input: &SeedInput<'a>) -> Result<Option<&'a Path>, CidataError> {
    let cfg = input.config;
    let c = cfg.containerd.clone().unwrap_or_default();
    let wanted =
        !cfg.plain.unwrap_or(false) && (c.system.unwrap_or(false) || c.user.unwrap_or(false));
    match input.containerd_archive {
        Some(a) if wanted && !a.is_file() => Err(CidataError::Config {
            field: "containerd.archives".into(),
            reason: format!("the nerdctl archive {} is not a file", a.display()),
        }),
        Some(a) if wanted => Ok(Some(a)),
        None if wanted => Err(CidataError::Config {
            field: "containerd.archives".into(),
            reason: "containerd is enabled but no nerdctl archive was fetched".into(),
        }),
        _ => Ok(None),
    }
}

fn lines(v: &[String]) -> String {
    v.iter().map(|l| format!("{l}\n")).collect()
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        ""
    }
}

/// `lima.env`: the variables boot scripts read (names as in Lima, for script compatibility).
fn lima_env(input: &SeedInput<'_>, user: &FilledUser) -> Result<Vec<String>, CidataError> {
    let cfg = input.config;
    let mounts = cfg.mounts.clone().unwrap_or_default();
    let mut v = vec![
        format!("LIMA_CIDATA_IID={}", input.instance_id),
        format!("LIMA_CIDATA_NAME={}", input.instance_name),
        format!("LIMA_CIDATA_USER={}", user.name),
        format!("LIMA_CIDATA_UID={}", user.uid),
        format!("LIMA_CIDATA_COMMENT={}", user.comment.replace('\n', " ")),
        format!("LIMA_CIDATA_HOME={}", user.home),
        format!("LIMA_CIDATA_SHELL={}", user.shell),
        format!("LIMA_CIDATA_MOUNTS={}", mounts.len()),
    ];
    for (i, m) in mounts.iter().enumerate() {
        v.push(format!(
            "LIMA_CIDATA_MOUNTS_{i}_MOUNTPOINT={}",
            m.mount_point.as_deref().unwrap_or(&m.location)
        ));
    }
    v.push(format!(
        "LIMA_CIDATA_MOUNTTYPE={}",
        cfg.mount_type
            .map(limatype::MountType::as_str)
            .unwrap_or("")
    ));
    let disks = cfg.additional_disks.clone().unwrap_or_default();
    v.push(format!("LIMA_CIDATA_DISKS={}", disks.len()));
    for (i, d) in disks.iter().enumerate() {
        v.push(format!("LIMA_CIDATA_DISK_{i}_NAME={}", d.name));
        v.push(format!("LIMA_CIDATA_DISK_{i}_DEVICE={}", disk_device(i)));
        v.push(format!(
            "LIMA_CIDATA_DISK_{i}_FORMAT={}",
            d.format.unwrap_or(true)
        ));
        v.push(format!(
            "LIMA_CIDATA_DISK_{i}_FSTYPE={}",
            d.fs_type.as_deref().unwrap_or("")
        ));
        v.push(format!(
            "LIMA_CIDATA_DISK_{i}_FSARGS={}",
            d.fs_args.clone().unwrap_or_default().join(" ")
        ));
    }
    v.push(format!(
        "LIMA_CIDATA_GUEST_INSTALL_PREFIX={}",
        cfg.guest_install_prefix.as_deref().unwrap_or("/usr/local")
    ));
    let containerd = cfg.containerd.clone().unwrap_or_default();
    v.push(format!(
        "LIMA_CIDATA_UPGRADE_PACKAGES={}",
        flag(cfg.upgrade_packages.unwrap_or(false))
    ));
    v.push(format!(
        "LIMA_CIDATA_CONTAINERD_USER={}",
        flag(containerd.user.unwrap_or(false))
    ));
    v.push(format!(
        "LIMA_CIDATA_CONTAINERD_SYSTEM={}",
        flag(containerd.system.unwrap_or(false))
    ));
    if containerd.system.unwrap_or(false) || containerd.user.unwrap_or(false) {
        v.push(format!(
            "LIMA_CIDATA_CONTAINERD_ARCHIVE={CONTAINERD_ARCHIVE}"
        ));
    }
    let skip_deps = cfg.provision.iter().flatten().any(|p| {
        p.mode.as_deref() == Some("dependency")
            && p.skip_default_dependency_resolution == Some(true)
    });
    v.push(format!(
        "LIMA_CIDATA_SKIP_DEFAULT_DEPENDENCY_RESOLUTION={}",
        flag(skip_deps)
    ));
    v.push(format!(
        "LIMA_CIDATA_VMTYPE={}",
        cfg.vm_type.as_deref().unwrap_or("")
    ));
    v.push(format!(
        "LIMA_CIDATA_VIRTIO_PORT={}",
        limatype::filenames::VIRTIO_PORT
    ));
    v.push(format!("LIMA_CIDATA_SLIRP_GATEWAY={SLIRP_GATEWAY}"));
    v.push(format!("LIMA_CIDATA_SLIRP_DNS={SLIRP_DNS}"));
    let dns = guest_dns_ports(input).unwrap_or(DnsPorts { udp: 0, tcp: 0 });
    v.push(format!("LIMA_CIDATA_UDP_DNS_LOCAL_PORT={}", dns.udp));
    v.push(format!("LIMA_CIDATA_TCP_DNS_LOCAL_PORT={}", dns.tcp));
    v.push(format!(
        "LIMA_CIDATA_PLAIN={}",
        flag(cfg.plain.unwrap_or(false))
    ));
    v.push(format!(
        "LIMA_CIDATA_PASSWORDLESS_SUDO={}",
        flag(user.passwordless_sudo)
    ));
    for l in &v {
        if l.contains('\n') {
            return Err(CidataError::Config {
                field: l.split('=').next().unwrap_or_default().to_string(),
                reason: "values must be single lines".into(),
            });
        }
    }
    Ok(v)
}

impl Seed {
    /// Paths inside the ISO, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The text of a generated file (None for missing or binary content).
    pub fn text(&self, path: &str) -> Option<&str> {
        match self.files.get(path)? {
            Content::Bytes(b) => std::str::from_utf8(b).ok(),
            Content::File(_) => None,
        }
    }

    /// The ISO image as a builder (for writing elsewhere).
    pub fn iso(&self) -> Result<IsoBuilder, CidataError> {
        let mut b = IsoBuilder::new(VOLUME_ID);
        for (path, content) in &self.files {
            b.add(path, content.clone())?;
        }
        Ok(b)
    }

    /// Writes the ISO to `path` atomically (temporary file in the same directory, then
    /// rename), readable by the owner only.
    pub fn write_iso(&self, path: &Path) -> Result<(), CidataError> {
        let iso = self.iso()?;
        let err = |source| CidataError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cidata.iso".into());
        let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        let result = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(err)?;
            let mut w = std::io::BufWriter::new(f);
            iso.write_to(&mut w)?;
            let f = w.into_inner().map_err(|e| err(e.into_error()))?;
            f.sync_all().map_err(err)?;
            std::fs::rename(&tmp, path).map_err(err)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Writes the seed's files into a directory instead (for debugging, like Lima's cidata dir).
pub fn write_dir(seed: &Seed, dir: &Path) -> Result<(), CidataError> {
    for (path, content) in &seed.files {
        let dest = dir.join(path);
        let err = |source| CidataError::Write {
            path: dest.clone(),
            source,
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        match content {
            Content::Bytes(b) => {
                let mut f = std::fs::File::create(&dest).map_err(err)?;
                f.write_all(b).map_err(err)?;
            }
            Content::File(src) => {
                std::fs::copy(src, &dest).map_err(err)?;
            }
        }
    }
    Ok(())
}
