//! The lima.yaml schema, field for field as in Lima's reference template.

use serde::{Deserialize, Deserializer, Serialize};
use serde_with::skip_serializing_none;
use std::collections::BTreeMap;

pub type VmType = String;
/// An `os` as written in a config: Lima's spelling of a [`crate::Os`], kept as text so that a
/// bad value is reported by validation with its field and line.
pub type OsName = String;
/// An `arch` as written in a config: Lima's spelling of a [`crate::Arch`], kept as text (see
/// [`OsName`]).
pub type ArchName = String;
pub type MountType = String;
/// `cpuType` per arch, e.g. `x86_64: "qemu64"`.
pub type CpuType = BTreeMap<ArchName, String>;

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimaYaml {
    #[serde(
        default,
        deserialize_with = "de_base",
        skip_serializing_if = "Option::is_none"
    )]
    pub base: Option<Vec<LocatorWithDigest>>,
    pub minimum_lima_version: Option<String>,
    pub vm_type: Option<VmType>,
    pub vm_opts: Option<VmOpts>,
    pub os: Option<OsName>,
    pub arch: Option<ArchName>,
    pub images: Option<Vec<Image>>,
    /// Deprecated: `vmOpts.qemu.cpuType`.
    pub cpu_type: Option<CpuType>,
    pub cpus: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_scalar")]
    pub memory: Option<String>,
    #[serde(default, deserialize_with = "de_opt_scalar")]
    pub disk: Option<String>,
    pub additional_disks: Option<Vec<Disk>>,
    pub mounts: Option<Vec<Mount>>,
    pub mount_types_unsupported: Option<Vec<String>>,
    pub mount_type: Option<MountType>,
    pub mount_inotify: Option<bool>,
    pub ssh: Option<Ssh>,
    pub firmware: Option<Firmware>,
    pub audio: Option<Audio>,
    pub video: Option<Video>,
    pub provision: Option<Vec<Provision>>,
    pub upgrade_packages: Option<bool>,
    pub containerd: Option<Containerd>,
    pub guest_install_prefix: Option<String>,
    pub probes: Option<Vec<Probe>>,
    pub port_forwards: Option<Vec<PortForward>>,
    pub copy_to_host: Option<Vec<CopyToHost>>,
    pub message: Option<String>,
    pub networks: Option<Vec<Network>>,
    #[serde(default, deserialize_with = "de_opt_scalar_map")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "de_opt_scalar_map")]
    pub param: Option<BTreeMap<String, String>>,
    pub dns: Option<Vec<String>>,
    pub host_resolver: Option<HostResolver>,
    pub propagate_proxy_env: Option<bool>,
    pub ca_certs: Option<CaCertificates>,
    /// Deprecated: `vmOpts.vz.rosetta`.
    pub rosetta: Option<Rosetta>,
    pub plain: Option<bool>,
    pub timezone: Option<String>,
    pub nested_virtualization: Option<bool>,
    pub user: Option<User>,
    pub tpm: Option<bool>,
    pub os_opts: Option<OsOpts>,
}

/// `base:` entry, or a `file:` of a provision script / probe: a bare string or `{url, digest}`.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocatorWithDigest {
    pub url: String,
    pub digest: Option<String>,
}

impl<'de> Deserialize<'de> for LocatorWithDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            url: String,
            digest: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Url(String),
            Full(Full),
        }
        match Either::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a locator string or a mapping with `url` (and optional `digest`)",
            )
        })? {
            Either::Url(url) => Ok(Self { url, digest: None }),
            Either::Full(f) => Ok(Self {
                url: f.url,
                digest: f.digest,
            }),
        }
    }
}

fn de_base<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<LocatorWithDigest>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<LocatorWithDigest>),
    }
    Ok(
        match Option::<Either>::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a locator string or a list of locators")
        })? {
            None => None,
            Some(Either::One(url)) => Some(vec![LocatorWithDigest { url, digest: None }]),
            Some(Either::Many(v)) => Some(v),
        },
    )
}

/// A YAML scalar of any type kept as text (`memory: 4` and `memory: "4GiB"`), as Go's YAML
/// decoding into a string field does. A visitor rather than an untagged enum, so errors keep
/// serde_yaml's line and column.
struct ScalarText<const NULL_IS_EMPTY: bool>(String);

impl<'de, const NULL_IS_EMPTY: bool> Deserialize<'de> for ScalarText<NULL_IS_EMPTY> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<const N: bool>;
        impl<const N: bool> serde::de::Visitor<'_> for Visit<N> {
            type Value = ScalarText<N>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(ScalarText(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                if N {
                    Ok(ScalarText(String::new()))
                } else {
                    Err(E::invalid_type(serde::de::Unexpected::Unit, &self))
                }
            }
        }
        d.deserialize_any(Visit::<NULL_IS_EMPTY>)
    }
}

/// An optional scalar field: `null` (or absent) is "not set".
fn de_opt_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<ScalarText<false>>::deserialize(d)?.map(|s| s.0))
}

/// `env` / `param`: values may be any scalar; a `null` value (`KEY:` with nothing after it)
/// is the empty string, as in Lima, while a `null` map is "not set".
fn de_opt_scalar_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    Ok(
        Option::<BTreeMap<String, ScalarText<true>>>::deserialize(d)?
            .map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect()),
    )
}

/// Per-driver options. `qemu` and `vz` are typed; other drivers' sections are kept as YAML so
/// an external driver can read its own.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmOpts {
    pub qemu: Option<QemuOpts>,
    pub vz: Option<VzOpts>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QemuOpts {
    pub minimum_version: Option<String>,
    pub cpu_type: Option<CpuType>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VzOpts {
    pub rosetta: Option<Rosetta>,
    /// `raw` or `asif`.
    pub disk_image_format: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rosetta {
    pub enabled: Option<bool>,
    pub binfmt: Option<bool>,
}

/// Per-guest-OS options; `Windows` is typed, others kept as YAML.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OsOpts {
    #[serde(rename = "Windows")]
    pub windows: Option<WindowsOpts>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowsOpts {
    pub virtio_win: Option<Vec<File>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    pub name: Option<String>,
    pub comment: Option<String>,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub uid: Option<i64>,
    pub passwordless_sudo: Option<bool>,
}

/// A file to fetch: disk image, kernel, initrd, firmware, archive.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct File {
    pub location: String,
    pub arch: Option<ArchName>,
    pub digest: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileWithVmType {
    pub location: String,
    pub arch: Option<ArchName>,
    pub digest: Option<String>,
    pub vm_type: Option<VmType>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Kernel {
    pub location: String,
    pub arch: Option<ArchName>,
    pub digest: Option<String>,
    pub cmdline: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    pub location: String,
    pub arch: Option<ArchName>,
    pub digest: Option<String>,
    pub kernel: Option<Kernel>,
    pub initrd: Option<File>,
    pub variant: Option<String>,
    pub arch_variant: Option<String>,
}

impl Image {
    pub fn file(&self) -> File {
        File {
            location: self.location.clone(),
            arch: self.arch.clone(),
            digest: self.digest.clone(),
        }
    }
}

/// An additional disk: a bare name or a mapping.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    pub name: String,
    pub format: Option<bool>,
    pub fs_type: Option<String>,
    pub fs_args: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for Disk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Full {
            name: String,
            format: Option<bool>,
            fs_type: Option<String>,
            fs_args: Option<Vec<String>>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Name(String),
            Full(Full),
        }
        match Either::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a disk name or a mapping with `name`, `format`, `fsType`, `fsArgs`",
            )
        })? {
            Either::Name(name) => Ok(Disk {
                name,
                ..Default::default()
            }),
            Either::Full(f) => Ok(Disk {
                name: f.name,
                format: f.format,
                fs_type: f.fs_type,
                fs_args: f.fs_args,
            }),
        }
    }
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    pub location: String,
    pub mount_point: Option<String>,
    pub writable: Option<bool>,
    pub sshfs: Option<Sshfs>,
    #[serde(rename = "9p")]
    pub nine_p: Option<NineP>,
    pub virtiofs: Option<Virtiofs>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sshfs {
    pub cache: Option<bool>,
    pub follow_symlinks: Option<bool>,
    /// `builtin` or `openssh-sftp-server`.
    pub sftp_driver: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NineP {
    pub security_model: Option<String>,
    pub protocol_version: Option<String>,
    #[serde(default, deserialize_with = "de_opt_scalar")]
    pub msize: Option<String>,
    pub cache: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Virtiofs {
    pub queue_size: Option<i64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ssh {
    pub local_port: Option<i64>,
    /// Also load `~/.ssh/*.pub` besides `$LIMA_HOME/_config/user.pub`.
    #[serde(rename = "loadDotSSHPubKeys")]
    pub load_dot_ssh_pub_keys: Option<bool>,
    pub forward_agent: Option<bool>,
    #[serde(rename = "forwardX11")]
    pub forward_x11: Option<bool>,
    #[serde(rename = "forwardX11Trusted")]
    pub forward_x11_trusted: Option<bool>,
    pub over_vsock: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Firmware {
    /// Disables UEFI (ignored on aarch64).
    #[serde(rename = "legacyBIOS")]
    pub legacy_bios: Option<bool>,
    pub images: Option<Vec<FileWithVmType>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Audio {
    pub device: Option<String>,
    pub interface: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Video {
    pub display: Option<String>,
    pub vnc: Option<VncOptions>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VncOptions {
    pub display: Option<String>,
}

/// A provisioning step. `mode` is one of [`crate::PROVISION_MODES`]; the data fields
/// (`content`, `overwrite`, `owner`, `path`, `permissions`) belong to `data` (and `yq`).
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provision {
    pub mode: Option<String>,
    pub skip_default_dependency_resolution: Option<bool>,
    pub script: Option<String>,
    pub file: Option<LocatorWithDigest>,
    /// Deprecated (ansible mode).
    pub playbook: Option<String>,
    pub content: Option<String>,
    pub overwrite: Option<bool>,
    pub owner: Option<String>,
    pub path: Option<String>,
    #[serde(default, deserialize_with = "de_opt_scalar")]
    pub permissions: Option<String>,
    pub expression: Option<String>,
    pub format: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Containerd {
    pub system: Option<bool>,
    pub user: Option<bool>,
    pub archives: Option<Vec<File>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    pub mode: Option<String>,
    pub description: Option<String>,
    pub script: Option<String>,
    pub file: Option<LocatorWithDigest>,
    pub hint: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortForward {
    #[serde(rename = "guestIPMustBeZero")]
    pub guest_ip_must_be_zero: Option<bool>,
    #[serde(rename = "guestIP")]
    pub guest_ip: Option<String>,
    pub guest_port: Option<i64>,
    pub guest_port_range: Option<[i64; 2]>,
    pub guest_socket: Option<String>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
    pub host_port: Option<i64>,
    pub host_port_range: Option<[i64; 2]>,
    pub host_socket: Option<String>,
    pub proto: Option<String>,
    pub reverse: Option<bool>,
    pub ignore: Option<bool>,
    #[serde(rename = "static")]
    pub static_: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CopyToHost {
    pub guest: Option<String>,
    pub host: Option<String>,
    pub skip_if_missing: Option<bool>,
    pub delete_on_stop: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    /// A network from `_config/networks.yaml`; exclusive with `socket`.
    pub lima: Option<String>,
    /// A QEMU-compatible socket path.
    pub socket: Option<String>,
    #[serde(rename = "vzNAT")]
    pub vz_nat: Option<bool>,
    pub mac_address: Option<String>,
    pub interface: Option<String>,
    pub metric: Option<i64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostResolver {
    pub enabled: Option<bool>,
    pub ipv6: Option<bool>,
    pub hosts: Option<BTreeMap<String, String>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaCertificates {
    pub remove_defaults: Option<bool>,
    pub files: Option<Vec<String>>,
    pub certs: Option<Vec<String>>,
}

/// Whether a parsed YAML document uses a merge key (`<<`) anywhere.
pub fn has_merge_key(value: &serde_yaml::Value) -> bool {
    use serde_yaml::Value;
    match value {
        Value::Mapping(m) => m
            .iter()
            .any(|(k, v)| k.as_str() == Some("<<") || has_merge_key(v)),
        Value::Sequence(s) => s.iter().any(has_merge_key),
        Value::Tagged(t) => has_merge_key(&t.value),
        _ => false,
    }
}

impl LimaYaml {
    /// Parses a lima.yaml document. Unknown keys and wrong types are errors naming the field
    /// and its line (serde_yaml's location).
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        // A UTF-8 byte order mark is no content (Lima's YAML library skips it too).
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        // YAML merge keys (`<<: *anchor`) are resolved by Lima's YAML library, but serde_yaml's
        // struct deserializer sees `<<` as a field: resolve them on a generic value first.
        // Errors on that path have no line numbers, so it is taken only when needed.
        if text.contains("<<") {
            if let Ok(mut value) = serde_yaml::from_str::<serde_yaml::Value>(text) {
                if has_merge_key(&value) {
                    value.apply_merge()?;
                    return serde_yaml::from_value(value);
                }
            }
        }
        serde_yaml::from_str(text)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("LimaYaml always serializes")
    }
}
