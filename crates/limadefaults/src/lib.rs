//! `limadefaults` — layer 2: Lima's default values and their precedence.
//!
//! [`fill`] combines three layers the way upstream Lima's `FillDefault` does:
//! `$LIMA_HOME/_config/default.yaml` (d) under the instance config (y) under
//! `$LIMA_HOME/_config/override.yaml` (o), then fills what is still unset with built-in
//! defaults computed from [`HostFacts`] (the running host's: [`detect_host`]).
//!
//! - Scalars: o, else y, else d, else the built-in default.
//! - Maps (`env`, `param`, `hostResolver.hosts`, `vmOpts`, `osOpts`): merged d, then y, then o.
//! - Lists (`images`, `provision`, `probes`, `portForwards`, `copyToHost`, `additionalDisks`,
//!   `firmware.images`, `containerd.archives`, `mountTypesUnsupported`): o, then y, then d, so
//!   the first matching rule has the highest priority.
//! - `mounts` and `networks`: d, y, o, entries with the same mount point / interface combined.
//! - `dns`: the highest-priority non-empty list; `caCerts` files/certs: unique d, y, o.
//!
//! Driver-specific defaults (`vmType`, `mountType`, `ssh.overVsock`, CPU types, rosetta) are
//! left unset: the driver registry and the drivers fill them. Only the simple
//! `{{.Var}}`/`{{.Param.X}}` forms of Go templates in paths and scripts are expanded.

mod host;
pub mod tmpl;

use std::collections::BTreeMap;
use std::path::Path;

use limatype::{
    Audio, CaCertificates, Containerd, File, Firmware, HostFacts, HostResolver, LimaYaml, Mount,
    Network, NineP, PortForward, Ssh, Sshfs, User, Video, Virtiofs,
};
use sha2::{Digest, Sha256};

pub use host::detect_host;
pub use tmpl::expand as expand_template;

/// The `memory` default: min(4 GiB, half the host memory).
pub fn default_memory_bytes(host: &HostFacts) -> u64 {
    default_memory_bytes_for(host.memory.bytes())
}

/// The `memory` default for a host with `host_memory` bytes: min(4 GiB, half of it).
pub fn default_memory_bytes_for(host_memory: u64) -> u64 {
    (4u64 << 30).min(host_memory / 2)
}

/// The `memory` default on the running host, as written in a config (`4GiB`), for code
/// handed a config that was not filled.
pub fn default_memory_here() -> String {
    limatype::ByteSize(default_memory_bytes_for(host::total_memory())).to_string()
}

/// The `cpus` default: min(4, host CPUs).
pub fn default_cpus(host: &HostFacts) -> i64 {
    default_cpus_for(host.cpus)
}

/// The `cpus` default for a host with `host_cpus` CPUs: min(4, host CPUs), at least 1.
pub fn default_cpus_for(host_cpus: u32) -> i64 {
    i64::from(host_cpus.clamp(1, 4))
}

/// The `cpus` default on the running host, for code handed a config that was not filled
/// (without gathering every [`HostFacts`]).
pub fn default_cpus_here() -> i64 {
    default_cpus_for(host::host_cpus())
}

pub const DEFAULT_DISK: &str = "100GiB";
pub const DEFAULT_GUEST_INSTALL_PREFIX: &str = "/usr/local";
pub const DEFAULT_9P_SECURITY_MODEL: &str = "none";
pub const DEFAULT_9P_PROTOCOL_VERSION: &str = "9p2000.L";
pub const DEFAULT_9P_MSIZE: &str = "128KiB";
pub const DEFAULT_9P_CACHE_RO: &str = "fscache";
pub const DEFAULT_9P_CACHE_RW: &str = "mmap";
/// `mounts[].virtiofs.queueSize` under qemu (filled by the qemu driver, as upstream does).
pub const DEFAULT_VIRTIOFS_QUEUE_SIZE: i64 = 1024;
/// Lima's fallback user name when the host's is not a valid Linux name (or is `admin`).
pub const FALLBACK_USER: &str = "lima";

/// The nerdctl-full archives Lima installs when `containerd.archives` is empty.
pub fn default_containerd_archives() -> Vec<File> {
    let url = |arch: &str| {
        format!("https://github.com/containerd/nerdctl/releases/download/v2.3.5/nerdctl-full-2.3.5-linux-{arch}.tar.gz")
    };
    vec![
        File {
            location: url("amd64"),
            arch: Some("x86_64".into()),
            digest: Some(
                "sha256:b697295c623639734aaab737523c808fd3cc8d3046039fd94fff1744e4c317aa".into(),
            ),
        },
        File {
            location: url("arm64"),
            arch: Some("aarch64".into()),
            digest: Some(
                "sha256:6e4b687f1d138e750a3c8372abc0f81d3d7490b6359c48c0562fc7dfe98859b2".into(),
            ),
        },
    ]
}

/// Lima's MAC address for a network interface: `52:55:55` plus 3 bytes of
/// sha256(machine id + unique id).
pub fn mac_address(machine_id: &str, unique_id: &str) -> String {
    let sum = Sha256::digest(format!("{machine_id}{unique_id}").as_bytes());
    format!("52:55:55:{:02x}:{:02x}:{:02x}", sum[0], sum[1], sum[2])
}

/// The 9p/virtiofs tag of a mount (Lima's `limayaml.MountTag`): `lima-` plus 8 bytes of
/// sha256(`location:mountPoint`) in hex, stable for the pair, so the same location may be
/// mounted at two points. The qemu driver's devices and cidata's fstab lines both use it.
pub fn mount_tag(location: &str, mount_point: &str) -> String {
    let sum = Sha256::digest(format!("{location}:{mount_point}").as_bytes());
    let hex: String = sum[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("lima-{hex}")
}

/// The guest hostname of an instance (`lima-NAME`, dots and underscores as dashes).
pub fn hostname(instance_name: &str) -> String {
    format!("lima-{}", instance_name.replace(['.', '_'], "-"))
}

fn valid_linux_user(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The guest user name Lima derives from the host user. Unlike Lima, a host `root` also gets
/// the fallback: cloud-init would otherwise rewrite the guest's own root account.
pub fn guest_user_name(host: &HostFacts) -> String {
    if !valid_linux_user(&host.user_name) || matches!(host.user_name.as_str(), "admin" | "root") {
        FALLBACK_USER.into()
    } else {
        host.user_name.clone()
    }
}

/// Resolves `os`: unset, "" and "default" mean Linux.
pub fn resolve_os(os: Option<&str>) -> String {
    match os {
        None | Some("") | Some("default") => "Linux".into(),
        Some(s) => s.into(),
    }
}

/// Resolves `arch`: unset, "" and "default" mean the host's.
pub fn resolve_arch(arch: Option<&str>, host: &HostFacts) -> String {
    match arch {
        None | Some("") | Some("default") => host.arch.to_string(),
        Some(s) => s.into(),
    }
}

/// Whether `limatype::LIMA_COMPAT_VERSION` is at least `major.minor`.
fn compat_at_least(major: u64, minor: u64) -> bool {
    let mut parts = limatype::LIMA_COMPAT_VERSION
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

/// A config (y) between `_config/default.yaml` (d) and `_config/override.yaml` (o).
#[derive(Clone, Copy)]
struct Layers<'a> {
    y: &'a LimaYaml,
    d: &'a LimaYaml,
    o: &'a LimaYaml,
}

/// First `Some` of o, y, d.
fn layered<T>(
    y: &LimaYaml,
    d: &LimaYaml,
    o: &LimaYaml,
    get: impl Fn(&LimaYaml) -> Option<T>,
) -> Option<T> {
    get(o).or_else(|| get(y)).or_else(|| get(d))
}

fn concat<T: Clone>(lists: [Option<&Vec<T>>; 3]) -> Vec<T> {
    lists.into_iter().flatten().flatten().cloned().collect()
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn merged_map<V: Clone>(maps: [Option<&BTreeMap<String, V>>; 3]) -> BTreeMap<String, V> {
    let mut out = BTreeMap::new();
    for m in maps.into_iter().flatten() {
        out.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

struct Templates<'a> {
    host: &'a HostFacts,
    name: &'a str,
    dir: String,
    user: (String, String, String),
    param: BTreeMap<String, String>,
}

impl<'a> Templates<'a> {
    /// The expansions for an instance; expands `user.home` (which may use `{{.User}}`).
    fn new(
        host: &'a HostFacts,
        name: &'a str,
        inst_dir: &Path,
        user: &mut User,
        param: BTreeMap<String, String>,
    ) -> Self {
        let home = user.home.clone().unwrap_or_default();
        let mut t = Templates {
            host,
            name,
            dir: inst_dir.display().to_string(),
            user: (
                user.uid.unwrap_or_default().to_string(),
                user.name.clone().unwrap_or_default(),
                home.clone(),
            ),
            param,
        };
        let home = t.guest(&home);
        t.user.2 = home.clone();
        user.home = Some(home);
        t
    }

    fn param(&self, var: &str) -> Option<String> {
        self.param.get(var.strip_prefix("Param.")?).cloned()
    }

    /// Guest-side variables: the guest user.
    fn guest(&self, s: &str) -> String {
        tmpl::expand(s, &|var| match var {
            "Name" => Some(self.name.to_string()),
            "Hostname" => Some(hostname(self.name)),
            "UID" => Some(self.user.0.clone()),
            "User" => Some(self.user.1.clone()),
            "Home" => Some(self.user.2.clone()),
            _ => self.param(var),
        })
    }

    /// Host-side variables: the host user and the instance directory.
    fn host(&self, s: &str) -> String {
        tmpl::expand(s, &|var| match var {
            "Dir" => Some(self.dir.clone()),
            "Name" | "Instance" => Some(self.name.to_string()),
            "UID" => Some(self.host.uid.to_string()),
            "User" => Some(self.host.user_name.clone()),
            "Home" => Some(self.host.home.clone()),
            "GlobalTempDir" => Some("/tmp".into()),
            "TempDir" => Some(self.host.temp_dir.clone()),
            "LimaHome" => Some(self.host.lima_home.display().to_string()),
            _ => self.param(var),
        })
    }
}

/// [`fill`] without `_config` layers, as a typed [`Filled`](limatype::Filled): for a config
/// made in memory (tests, the driver conformance kit). The loader (`limaload`) is the way for
/// a lima.yaml: it adds the `_config` layers and validation.
pub fn fill_in_memory(
    config: &LimaYaml,
    host: &HostFacts,
    instance_name: &str,
) -> Result<limatype::Filled, limatype::NotFilled> {
    limatype::Filled::try_from(fill(config, None, None, host, instance_name))
}

/// Fills `config` (y) with `defaults` (d, `_config/default.yaml`) below it, `overrides`
/// (o, `_config/override.yaml`) above it, and built-in defaults for what stays unset.
/// `instance_name` names the instance (its directory is `host.lima_home/instance_name`).
/// `base` must already be resolved (see `limaload`); it is dropped from the result.
pub fn fill(
    config: &LimaYaml,
    defaults: Option<&LimaYaml>,
    overrides: Option<&LimaYaml>,
    host: &HostFacts,
    instance_name: &str,
) -> LimaYaml {
    let empty = LimaYaml::default();
    let l = Layers {
        y: config,
        d: defaults.unwrap_or(&empty),
        o: overrides.unwrap_or(&empty),
    };
    let Layers { y, d, o } = l;
    let inst_dir = host.lima_home.join(instance_name);
    let file_path = inst_dir.join(limatype::filenames::LIMA_YAML);
    let mut out = LimaYaml {
        base: None,
        minimum_lima_version: y.minimum_lima_version.clone(),
        message: y.message.clone(),
        cpu_type: y.cpu_type.clone(),
        rosetta: y.rosetta.clone(),
        ..Default::default()
    };

    let os = resolve_os(layered(y, d, o, |c| c.os.clone()).as_deref());
    let arch = resolve_arch(layered(y, d, o, |c| c.arch.clone()).as_deref(), host);
    out.os = Some(os.clone());
    out.arch = Some(arch.clone());
    out.vm_type = layered(y, d, o, |c| c.vm_type.clone());

    // The user first: everything after may expand {{.User}} and {{.Home}}.
    let mut user = fill_user(l, host, &os);
    let param = merged_map([d.param.as_ref(), y.param.as_ref(), o.param.as_ref()]);
    let t = Templates::new(host, instance_name, &inst_dir, &mut user, param.clone());
    out.user = Some(user);

    fill_images(&mut out, l, &arch);
    fill_resources(&mut out, l, host);
    fill_devices(&mut out, l, &arch);
    out.timezone =
        Some(layered(y, d, o, |c| c.timezone.clone()).unwrap_or_else(|| host.timezone.clone()));
    fill_ssh(&mut out, l);
    fill_host_resolver(&mut out, l);
    fill_provision(&mut out, l, &t, &os);
    fill_containerd(&mut out, l, &os, &arch);
    fill_probes(&mut out, l, &t);
    fill_port_forwards(&mut out, l, &t, &inst_dir);
    fill_copy_to_host(&mut out, l, &t);
    out.propagate_proxy_env = Some(layered(y, d, o, |c| c.propagate_proxy_env).unwrap_or(true));
    out.networks = non_empty(fill_networks(
        [
            d.networks.as_ref(),
            y.networks.as_ref(),
            o.networks.as_ref(),
        ],
        &host.machine_id,
        &file_path.display().to_string(),
    ));
    fill_mount_fields(&mut out, l, &t);
    fill_dns_env_and_opts(&mut out, l, param);
    fill_ca_certs(&mut out, l);
    out.nested_virtualization =
        Some(layered(y, d, o, |c| c.nested_virtualization).unwrap_or(false));
    out.plain = Some(layered(y, d, o, |c| c.plain).unwrap_or(false));
    out.tpm = Some(layered(y, d, o, |c| c.tpm).unwrap_or(false));
    if out.plain == Some(true) {
        apply_plain(&mut out);
    }
    out
}

/// `user`, its `home` still unexpanded (see [`Templates::new`]).
fn fill_user(l: Layers, host: &HostFacts, os: &str) -> User {
    let Layers { y, d, o } = l;
    let user_field =
        |get: fn(&User) -> Option<String>| layered(y, d, o, |c| c.user.as_ref().and_then(get));
    let name = user_field(|u| u.name.clone()).unwrap_or_else(|| guest_user_name(host));
    let comment = user_field(|u| u.comment.clone()).unwrap_or_else(|| host.user_comment.clone());
    let home = user_field(|u| u.home.clone()).unwrap_or_else(|| {
        if os == "Darwin" {
            "/Users/{{.User}}.guest".into()
        } else if compat_at_least(2, 1) {
            "/home/{{.User}}.guest".into()
        } else {
            // Lima before 2.1 used `.linux`.
            "/home/{{.User}}.linux".into()
        }
    });
    let shell = user_field(|u| u.shell.clone()).unwrap_or_else(|| {
        match os {
            "FreeBSD" => "/bin/sh",
            "Darwin" => "/bin/zsh",
            "Windows" => "cmd.exe",
            _ => "/bin/bash",
        }
        .into()
    });
    // uid 0 belongs to the guest's root: a root host user maps to the fallback uid too.
    let uid = layered(y, d, o, |c| c.user.as_ref().and_then(|u| u.uid)).unwrap_or_else(|| {
        if host.uid == 0 {
            1000
        } else {
            i64::from(host.uid)
        }
    });
    let passwordless_sudo = layered(y, d, o, |c| {
        c.user.as_ref().and_then(|u| u.passwordless_sudo)
    })
    .unwrap_or(os != "Darwin");
    User {
        name: Some(name),
        comment: Some(comment),
        home: Some(home),
        shell: Some(shell),
        uid: Some(uid),
        passwordless_sudo: Some(passwordless_sudo),
    }
}

/// `images`: o, y, d; each entry (and its kernel/initrd) gets the arch.
fn fill_images(out: &mut LimaYaml, l: Layers, arch: &str) {
    let Layers { y, d, o } = l;
    let mut images = concat([o.images.as_ref(), y.images.as_ref(), d.images.as_ref()]);
    for img in &mut images {
        let a = img.arch.get_or_insert_with(|| arch.to_string()).clone();
        if let Some(k) = &mut img.kernel {
            k.arch.get_or_insert_with(|| a.clone());
        }
        if let Some(i) = &mut img.initrd {
            i.arch.get_or_insert_with(|| a.clone());
        }
    }
    out.images = non_empty(images);
}

/// `cpus`, `memory`, `disk` and `additionalDisks`.
fn fill_resources(out: &mut LimaYaml, l: Layers, host: &HostFacts) {
    let Layers { y, d, o } = l;
    out.cpus = Some(
        layered(y, d, o, |c| c.cpus)
            .filter(|c| *c != 0)
            .unwrap_or_else(|| default_cpus(host)),
    );
    out.memory = Some(
        layered(y, d, o, |c| c.memory.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| limatype::ByteSize(default_memory_bytes(host)).to_string()),
    );
    out.disk = Some(
        layered(y, d, o, |c| c.disk.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| DEFAULT_DISK.into()),
    );
    out.additional_disks = non_empty(concat([
        o.additional_disks.as_ref(),
        y.additional_disks.as_ref(),
        d.additional_disks.as_ref(),
    ]));
}

/// `audio`, `video` and `firmware`.
fn fill_devices(out: &mut LimaYaml, l: Layers, arch: &str) {
    let Layers { y, d, o } = l;
    out.audio = Some(Audio {
        device: Some(
            layered(y, d, o, |c| c.audio.as_ref().and_then(|a| a.device.clone()))
                .unwrap_or_default(),
        ),
        interface: Some(
            layered(y, d, o, |c| {
                c.audio.as_ref().and_then(|a| a.interface.clone())
            })
            .unwrap_or_default(),
        ),
    });
    let vnc_display = layered(y, d, o, |c| c.video.as_ref()?.vnc.as_ref()?.display.clone());
    out.video = Some(Video {
        display: Some(
            layered(y, d, o, |c| {
                c.video.as_ref().and_then(|v| v.display.clone())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".into()),
        ),
        vnc: vnc_display.map(|display| limatype::VncOptions {
            display: Some(display),
        }),
    });

    fn fw(c: &LimaYaml) -> Option<&Vec<limatype::FileWithVmType>> {
        c.firmware.as_ref().and_then(|f| f.images.as_ref())
    }
    let mut fw_images = concat([fw(o), fw(y), fw(d)]);
    for f in &mut fw_images {
        f.arch.get_or_insert_with(|| arch.to_string());
    }
    out.firmware = Some(Firmware {
        legacy_bios: Some(
            layered(y, d, o, |c| c.firmware.as_ref().and_then(|f| f.legacy_bios)).unwrap_or(false),
        ),
        images: non_empty(fw_images),
    });
}

/// `ssh` (`overVsock` is the driver's).
fn fill_ssh(out: &mut LimaYaml, l: Layers) {
    let Layers { y, d, o } = l;
    let ssh = |get: fn(&Ssh) -> Option<bool>| layered(y, d, o, |c| c.ssh.as_ref().and_then(get));
    out.ssh = Some(Ssh {
        local_port: Some(
            layered(y, d, o, |c| c.ssh.as_ref().and_then(|s| s.local_port)).unwrap_or(0),
        ),
        load_dot_ssh_pub_keys: Some(ssh(|s| s.load_dot_ssh_pub_keys).unwrap_or(false)),
        forward_agent: Some(ssh(|s| s.forward_agent).unwrap_or(false)),
        forward_x11: Some(ssh(|s| s.forward_x11).unwrap_or(false)),
        forward_x11_trusted: Some(ssh(|s| s.forward_x11_trusted).unwrap_or(false)),
        // Driver-dependent default.
        over_vsock: ssh(|s| s.over_vsock),
    });
}

/// `hostResolver`: `hosts` merged d, y, o.
fn fill_host_resolver(out: &mut LimaYaml, l: Layers) {
    let Layers { y, d, o } = l;
    fn hr(c: &LimaYaml) -> Option<&BTreeMap<String, String>> {
        c.host_resolver.as_ref().and_then(|h| h.hosts.as_ref())
    }
    let hosts = merged_map([hr(d), hr(y), hr(o)]);
    let hrb = |get: fn(&HostResolver) -> Option<bool>| {
        layered(y, d, o, |c| c.host_resolver.as_ref().and_then(get))
    };
    out.host_resolver = Some(HostResolver {
        enabled: Some(hrb(|h| h.enabled).unwrap_or(true)),
        ipv6: Some(hrb(|h| h.ipv6).unwrap_or(false)),
        hosts: (!hosts.is_empty()).then_some(hosts),
    });
}

/// `provision` (templates expanded for the guest user), `guestInstallPrefix`, `upgradePackages`.
fn fill_provision(out: &mut LimaYaml, l: Layers, t: &Templates, os: &str) {
    let Layers { y, d, o } = l;
    let mut provision = concat([
        o.provision.as_ref(),
        y.provision.as_ref(),
        d.provision.as_ref(),
    ]);
    for p in &mut provision {
        let mode = p.mode.get_or_insert_with(|| "system".into()).clone();
        if mode == "dependency" && p.skip_default_dependency_resolution.is_none() {
            p.skip_default_dependency_resolution = Some(false);
        }
        if mode == "data" {
            p.content = Some(p.content.as_deref().map(|c| t.guest(c)).unwrap_or_default());
            p.overwrite.get_or_insert(true);
        }
        if mode == "yq" {
            p.expression = p.expression.as_deref().map(|e| t.guest(e));
            p.format.get_or_insert_with(|| "auto".into());
        }
        if mode == "data" || mode == "yq" {
            p.owner = Some(match &p.owner {
                Some(owner) => t.guest(owner),
                None if os == "Darwin" || os == "FreeBSD" => "root:wheel".into(),
                None => "root:root".into(),
            });
            p.path = p.path.as_deref().map(|x| t.guest(x));
            p.permissions.get_or_insert_with(|| "644".into());
        }
        p.script = Some(p.script.as_deref().map(|s| t.guest(s)).unwrap_or_default());
    }
    out.provision = non_empty(provision);

    out.guest_install_prefix = Some(
        layered(y, d, o, |c| c.guest_install_prefix.clone())
            .unwrap_or_else(|| DEFAULT_GUEST_INSTALL_PREFIX.into()),
    );
    out.upgrade_packages = Some(layered(y, d, o, |c| c.upgrade_packages).unwrap_or(false));
}

/// `containerd`: user containerd by default on Linux x86_64/aarch64.
fn fill_containerd(out: &mut LimaYaml, l: Layers, os: &str, arch: &str) {
    let Layers { y, d, o } = l;
    let cd = |get: fn(&Containerd) -> Option<bool>| {
        layered(y, d, o, |c| c.containerd.as_ref().and_then(get))
    };
    fn ca(c: &LimaYaml) -> Option<&Vec<File>> {
        c.containerd.as_ref().and_then(|x| x.archives.as_ref())
    }
    let mut archives = concat([ca(o), ca(y), ca(d)]);
    if archives.is_empty() {
        archives = default_containerd_archives();
    }
    for a in &mut archives {
        a.arch.get_or_insert_with(|| arch.to_string());
    }
    out.containerd = Some(Containerd {
        system: Some(cd(|c| c.system).unwrap_or(false)),
        user: Some(
            cd(|c| c.user).unwrap_or(os == "Linux" && (arch == "x86_64" || arch == "aarch64")),
        ),
        archives: Some(archives),
    });
}

/// `probes`: readiness by default, numbered descriptions.
fn fill_probes(out: &mut LimaYaml, l: Layers, t: &Templates) {
    let Layers { y, d, o } = l;
    let mut probes = concat([o.probes.as_ref(), y.probes.as_ref(), d.probes.as_ref()]);
    let n = probes.len();
    for (i, p) in probes.iter_mut().enumerate() {
        p.mode.get_or_insert_with(|| "readiness".into());
        if p.description.as_deref().unwrap_or_default().is_empty() {
            p.description = Some(format!("user probe {}/{n}", i + 1));
        }
        p.script = Some(t.guest(p.script.as_deref().unwrap_or_default()));
    }
    out.probes = non_empty(probes);
}

/// `portForwards`, each rule through [`fill_port_forward`].
fn fill_port_forwards(out: &mut LimaYaml, l: Layers, t: &Templates, inst_dir: &Path) {
    let Layers { y, d, o } = l;
    let mut forwards = concat([
        o.port_forwards.as_ref(),
        y.port_forwards.as_ref(),
        d.port_forwards.as_ref(),
    ]);
    for rule in &mut forwards {
        fill_port_forward(rule, t, inst_dir);
    }
    out.port_forwards = non_empty(forwards);
}

/// `copyToHost`: guest paths expanded for the guest, host paths for the host.
fn fill_copy_to_host(out: &mut LimaYaml, l: Layers, t: &Templates) {
    let Layers { y, d, o } = l;
    let mut copies = concat([
        o.copy_to_host.as_ref(),
        y.copy_to_host.as_ref(),
        d.copy_to_host.as_ref(),
    ]);
    for c in &mut copies {
        c.guest = c.guest.as_deref().map(|g| t.guest(g));
        c.host = c.host.as_deref().map(|h| t.host(h));
    }
    out.copy_to_host = non_empty(copies);
}

/// `mounts`, `mountType`, `mountTypesUnsupported`, `mountInotify`.
fn fill_mount_fields(out: &mut LimaYaml, l: Layers, t: &Templates) {
    let Layers { y, d, o } = l;
    out.mount_types_unsupported = non_empty(concat([
        o.mount_types_unsupported.as_ref(),
        y.mount_types_unsupported.as_ref(),
        d.mount_types_unsupported.as_ref(),
    ]));
    out.mount_type = layered(y, d, o, |c| c.mount_type.clone());
    out.mount_inotify = Some(layered(y, d, o, |c| c.mount_inotify).unwrap_or(false));
    out.mounts = non_empty(fill_mounts(
        [d.mounts.as_ref(), y.mounts.as_ref(), o.mounts.as_ref()],
        t,
    ));
}

/// `dns`, `env`, `param`, `vmOpts` and `osOpts`.
fn fill_dns_env_and_opts(out: &mut LimaYaml, l: Layers, param: BTreeMap<String, String>) {
    let Layers { y, d, o } = l;
    out.dns = [o.dns.as_ref(), y.dns.as_ref(), d.dns.as_ref()]
        .into_iter()
        .flatten()
        .find(|l| !l.is_empty())
        .cloned();

    let env = merged_map([d.env.as_ref(), y.env.as_ref(), o.env.as_ref()]);
    out.env = (!env.is_empty()).then_some(env);
    out.param = (!param.is_empty()).then_some(param);

    // vmOpts / osOpts: per driver / per OS section, the highest-priority section wins whole.
    let vm_opts = merge_vm_opts([d.vm_opts.as_ref(), y.vm_opts.as_ref(), o.vm_opts.as_ref()]);
    out.vm_opts = (vm_opts != limatype::VmOpts::default()).then_some(vm_opts);
    let os_opts = merge_os_opts([d.os_opts.as_ref(), y.os_opts.as_ref(), o.os_opts.as_ref()]);
    out.os_opts = (os_opts != limatype::OsOpts::default()).then_some(os_opts);
}

/// `caCerts`: files and certs unique over d, y, o.
fn fill_ca_certs(out: &mut LimaYaml, l: Layers) {
    let Layers { y, d, o } = l;
    fn cc(c: &LimaYaml, get: fn(&CaCertificates) -> Option<&Vec<String>>) -> Option<&Vec<String>> {
        c.ca_certs.as_ref().and_then(get)
    }
    let unique = |lists: [Option<&Vec<String>>; 3]| {
        let mut seen = std::collections::BTreeSet::new();
        concat(lists)
            .into_iter()
            .filter(|s| seen.insert(s.clone()))
            .collect::<Vec<_>>()
    };
    out.ca_certs = Some(CaCertificates {
        remove_defaults: Some(
            layered(y, d, o, |c| {
                c.ca_certs.as_ref().and_then(|x| x.remove_defaults)
            })
            .unwrap_or(false),
        ),
        files: non_empty(unique([
            cc(d, |x| x.files.as_ref()),
            cc(y, |x| x.files.as_ref()),
            cc(o, |x| x.files.as_ref()),
        ])),
        certs: non_empty(unique([
            cc(d, |x| x.certs.as_ref()),
            cc(y, |x| x.certs.as_ref()),
            cc(o, |x| x.certs.as_ref()),
        ])),
    });
}

/// Plain mode: no mounts, no containerd, no automatic port forwards, no timezone.
fn apply_plain(out: &mut LimaYaml) {
    if out.plain == Some(true) {
        out.port_forwards = out
            .port_forwards
            .take()
            .map(|v| v.into_iter().filter(|r| r.static_ == Some(true)).collect())
            .and_then(non_empty);
        out.mounts = None;
        if let Some(c) = &mut out.containerd {
            c.system = Some(false);
            c.user = Some(false);
        }
        out.timezone = Some(String::new());
    }
}

fn fill_port_forward(rule: &mut PortForward, t: &Templates, inst_dir: &Path) {
    rule.proto.get_or_insert_with(|| "any".into());
    if rule.guest_ip.is_none() {
        rule.guest_ip = Some(if rule.guest_ip_must_be_zero == Some(true) {
            "0.0.0.0".into()
        } else {
            "127.0.0.1".into()
        });
    }
    if rule.guest_ip_must_be_zero.is_none() {
        rule.guest_ip_must_be_zero = Some(rule.guest_ip.as_deref() == Some("0.0.0.0"));
    }
    rule.host_ip.get_or_insert_with(|| "127.0.0.1".into());
    let guest_range = match rule.guest_port_range {
        Some(r) if r != [0, 0] => r,
        _ => match rule.guest_port.filter(|p| *p != 0) {
            Some(p) => [p, p],
            None => [1, 65535],
        },
    };
    rule.guest_port_range = Some(guest_range);
    if let Some(s) = rule.guest_socket.as_deref().filter(|s| !s.is_empty()) {
        rule.guest_socket = Some(t.guest(s));
    }
    if let Some(s) = rule.host_socket.as_deref().filter(|s| !s.is_empty()) {
        let s = t.host(s);
        rule.host_socket = Some(if s.starts_with('/') {
            s
        } else {
            inst_dir.join("sock").join(s).display().to_string()
        });
    } else if rule.host_port_range.is_none_or(|r| r == [0, 0]) {
        rule.host_port_range = Some(match rule.host_port.filter(|p| *p != 0) {
            Some(p) => [p, p],
            None => guest_range,
        });
    }
}

fn fill_networks(
    lists: [Option<&Vec<Network>>; 3],
    machine_id: &str,
    file_path: &str,
) -> Vec<Network> {
    let mut networks: Vec<Network> = Vec::new();
    let mut by_interface: BTreeMap<String, usize> = BTreeMap::new();
    for nw in lists.into_iter().flatten().flatten() {
        let iface = nw.interface.clone().unwrap_or_default();
        if let Some(&i) = by_interface.get(&iface) {
            let dst = &mut networks[i];
            if nw.socket.as_deref().is_some_and(|s| !s.is_empty()) {
                dst.socket = nw.socket.clone();
                dst.lima = None;
            }
            if nw.lima.as_deref().is_some_and(|s| !s.is_empty()) {
                dst.lima = nw.lima.clone();
                dst.socket = None;
            }
            if nw.mac_address.as_deref().is_some_and(|s| !s.is_empty()) {
                dst.mac_address = nw.mac_address.clone();
            }
            if nw.metric.is_some() {
                dst.metric = nw.metric;
            }
        } else {
            if !iface.is_empty() {
                by_interface.insert(iface, networks.len());
            }
            networks.push(nw.clone());
        }
    }
    for (i, nw) in networks.iter_mut().enumerate() {
        if nw.mac_address.as_deref().unwrap_or_default().is_empty() {
            nw.mac_address = Some(mac_address(machine_id, &format!("{file_path}#{i}")));
        }
        if nw.interface.as_deref().unwrap_or_default().is_empty() {
            nw.interface = Some(format!("lima{i}"));
        }
        nw.metric.get_or_insert(100);
    }
    networks
}

fn fill_mounts(lists: [Option<&Vec<Mount>>; 3], t: &Templates) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    let mut by_mount_point: BTreeMap<String, usize> = BTreeMap::new();
    for m in lists.into_iter().flatten().flatten() {
        let mut m = m.clone();
        m.location = clean_path(&t.host(&m.location));
        if m.location == "~" {
            m.location = t.host.home.clone();
        } else if let Some(rest) = m.location.strip_prefix("~/") {
            m.location = format!("{}/{rest}", t.host.home.trim_end_matches('/'));
        }
        m.mount_point = Some(match &m.mount_point {
            None => m.location.clone(),
            Some(mp) => t.guest(mp),
        });
        let key = m.mount_point.clone().unwrap_or_default();
        if let Some(&i) = by_mount_point.get(&key) {
            let dst = &mut mounts[i];
            let (src_sshfs, dst_sshfs) = (
                m.sshfs.clone().unwrap_or_default(),
                dst.sshfs.get_or_insert_with(Sshfs::default),
            );
            overlay(&mut dst_sshfs.cache, &src_sshfs.cache);
            overlay(&mut dst_sshfs.follow_symlinks, &src_sshfs.follow_symlinks);
            overlay(&mut dst_sshfs.sftp_driver, &src_sshfs.sftp_driver);
            let (src_9p, dst_9p) = (
                m.nine_p.clone().unwrap_or_default(),
                dst.nine_p.get_or_insert_with(NineP::default),
            );
            overlay(&mut dst_9p.security_model, &src_9p.security_model);
            overlay(&mut dst_9p.protocol_version, &src_9p.protocol_version);
            overlay(&mut dst_9p.msize, &src_9p.msize);
            overlay(&mut dst_9p.cache, &src_9p.cache);
            let src_vfs = m.virtiofs.clone().unwrap_or_default();
            overlay(
                &mut dst
                    .virtiofs
                    .get_or_insert_with(Virtiofs::default)
                    .queue_size,
                &src_vfs.queue_size,
            );
            overlay(&mut dst.writable, &m.writable);
        } else {
            by_mount_point.insert(key, mounts.len());
            mounts.push(m);
        }
    }
    for m in &mut mounts {
        let sshfs = m.sshfs.get_or_insert_with(Sshfs::default);
        sshfs.cache.get_or_insert(true);
        sshfs.follow_symlinks.get_or_insert(false);
        sshfs.sftp_driver.get_or_insert_with(String::new);
        let writable = *m.writable.get_or_insert(false);
        let p9 = m.nine_p.get_or_insert_with(NineP::default);
        p9.security_model
            .get_or_insert_with(|| DEFAULT_9P_SECURITY_MODEL.into());
        p9.protocol_version
            .get_or_insert_with(|| DEFAULT_9P_PROTOCOL_VERSION.into());
        p9.msize.get_or_insert_with(|| DEFAULT_9P_MSIZE.into());
        p9.cache.get_or_insert_with(|| {
            if writable {
                DEFAULT_9P_CACHE_RW
            } else {
                DEFAULT_9P_CACHE_RO
            }
            .into()
        });
    }
    mounts
}

fn overlay<T: Clone>(dst: &mut Option<T>, src: &Option<T>) {
    if src.is_some() {
        dst.clone_from(src);
    }
}

fn merge_vm_opts(layers: [Option<&limatype::VmOpts>; 3]) -> limatype::VmOpts {
    let mut out = limatype::VmOpts::default();
    for l in layers.into_iter().flatten() {
        overlay(&mut out.qemu, &l.qemu);
        overlay(&mut out.vz, &l.vz);
        out.other
            .extend(l.other.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

fn merge_os_opts(layers: [Option<&limatype::OsOpts>; 3]) -> limatype::OsOpts {
    let mut out = limatype::OsOpts::default();
    for l in layers.into_iter().flatten() {
        overlay(&mut out.windows, &l.windows);
        out.other
            .extend(l.other.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

#[cfg(test)]
mod tests;
