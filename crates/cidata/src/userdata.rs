//! `user-data` (#cloud-config) and `network-config`, built as typed values and written as JSON
//! (valid YAML): cloud-init's YAML 1.1 parser would read unquoted `yes`, `on`, `2001-01-01` or a
//! MAC address such as `52:55:55:12:34:56` (a base-60 integer there) as non-strings, and
//! serde_yaml does not quote those.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{mount_tag, CidataError, RUNNER_PATH, RUNNER_SH};
use limatype::FilledUser;
use limatype::LimaYaml;

pub(crate) struct UserDataArgs<'a> {
    pub hostname: &'a str,
    pub user: &'a FilledUser,
    pub config: &'a LimaYaml,
    pub ssh_public_keys: &'a [String],
    pub params: &'a BTreeMap<String, String>,
    pub boot_cmds: &'a [String],
    pub ca_certs: &'a [String],
}

#[derive(Serialize)]
struct CloudConfig<'a> {
    hostname: &'a str,
    preserve_hostname: bool,
    /// Maps the hostname in /etc/hosts, so `sudo` can resolve it.
    manage_etc_hosts: &'static str,
    growpart: Growpart,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_update: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_upgrade: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_reboot_if_required: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mounts: Vec<[String; 6]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<&'a str>,
    users: Vec<CloudUser<'a>>,
    write_files: Vec<WriteFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manage_resolv_conf: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolv_conf: Option<ResolvConf<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_certs: Option<CaCerts<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bootcmd: Vec<String>,
}

#[derive(Serialize)]
struct Growpart {
    mode: &'static str,
    devices: [&'static str; 1],
}

#[derive(Serialize)]
struct CloudUser<'a> {
    name: &'a str,
    uid: i64,
    #[serde(skip_serializing_if = "str::is_empty")]
    gecos: &'a str,
    homedir: &'a str,
    shell: &'a str,
    sudo: &'static str,
    lock_passwd: bool,
    ssh_authorized_keys: &'a [String],
}

#[derive(Serialize)]
struct WriteFile {
    path: &'static str,
    owner: &'static str,
    permissions: &'static str,
    content: &'static str,
}

#[derive(Serialize)]
struct ResolvConf<'a> {
    nameservers: &'a [String],
}

#[derive(Serialize)]
struct CaCerts<'a> {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    remove_defaults: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    trusted: &'a [String],
}

fn fstab_mounts(config: &LimaYaml) -> Result<Vec<[String; 6]>, CidataError> {
    let mount_type = config.mount_type.as_deref().unwrap_or("");
    if mount_type != "9p" && mount_type != "virtiofs" {
        // reverse-sshfs mounts are made by the host agent over SSH.
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (i, m) in config.mounts.iter().flatten().enumerate() {
        let point = m.mount_point.clone().unwrap_or_else(|| m.location.clone());
        let mut opts = if m.writable.unwrap_or(false) {
            "rw".to_string()
        } else {
            "ro".to_string()
        };
        if mount_type == "9p" {
            let p = m.nine_p.clone().unwrap_or_default();
            let msize_text = p.msize.unwrap_or_else(|| "128KiB".into());
            let msize =
                msize_text
                    .parse::<limatype::ByteSize>()
                    .map_err(|_| CidataError::Config {
                        field: format!("mounts[{i}].9p.msize"),
                        reason: format!("{msize_text:?} is not a size such as 128KiB"),
                    })?;
            let msize = msize.bytes();
            opts.push_str(&format!(
                ",trans=virtio,version={},msize={msize},cache={}",
                p.protocol_version.as_deref().unwrap_or("9p2000.L"),
                p.cache
                    .as_deref()
                    .unwrap_or(if m.writable.unwrap_or(false) {
                        "mmap"
                    } else {
                        "fscache"
                    }),
            ));
        }
        // A missing device must not stop the boot.
        opts.push_str(",nofail");
        out.push([
            mount_tag(&m.location, &point),
            fstab_escape(&point),
            mount_type.to_string(),
            opts,
            "0".into(),
            "0".into(),
        ]);
    }
    Ok(out)
}

/// A path as an fstab field (and as `/proc/mounts` shows it): blanks and backslashes
/// octal-escaped (cloud-init writes the fields as given, and mount(8) reads `\040` back).
pub fn fstab_escape(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            ' ' => s.push_str("\\040"),
            '\t' => s.push_str("\\011"),
            '\n' => s.push_str("\\012"),
            '\\' => s.push_str("\\134"),
            c => s.push(c),
        }
    }
    s
}

/// A `boot` provision script as a bootcmd entry; the seed is not mounted that early, so the
/// params are embedded.
fn boot_cmd(params: &BTreeMap<String, String>, script: &str) -> String {
    let mut s = String::from(
        "while read -r line; do [ -n \"$line\" ] && export \"$line\"; done <<'LIMA_PARAMS_EOF'\n",
    );
    for (k, v) in params {
        s.push_str(&format!("PARAM_{k}={v}\n"));
    }
    s.push_str("LIMA_PARAMS_EOF\n");
    s.push_str(script);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

pub(crate) fn user_data(a: &UserDataArgs<'_>) -> Result<String, CidataError> {
    let cfg = a.config;
    let upgrade = cfg.upgrade_packages.unwrap_or(false).then_some(true);
    let dns = cfg.dns.as_deref().unwrap_or_default();
    let remove_defaults = cfg
        .ca_certs
        .as_ref()
        .and_then(|c| c.remove_defaults)
        .unwrap_or(false);
    let cc = CloudConfig {
        hostname: a.hostname,
        preserve_hostname: false,
        manage_etc_hosts: "localhost",
        growpart: Growpart {
            mode: "auto",
            devices: ["/"],
        },
        package_update: upgrade,
        package_upgrade: upgrade,
        package_reboot_if_required: upgrade,
        mounts: fstab_mounts(cfg)?,
        timezone: cfg.timezone.as_deref().filter(|t| !t.is_empty()),
        users: vec![CloudUser {
            name: &a.user.name,
            uid: i64::from(a.user.uid),
            gecos: &a.user.comment,
            homedir: &a.user.home,
            shell: &a.user.shell,
            sudo: if a.user.passwordless_sudo {
                "ALL=(ALL) NOPASSWD:ALL"
            } else {
                "ALL=(ALL) ALL"
            },
            lock_passwd: a.user.passwordless_sudo,
            ssh_authorized_keys: a.ssh_public_keys,
        }],
        write_files: vec![WriteFile {
            path: RUNNER_PATH,
            owner: "root:root",
            permissions: "0755",
            content: RUNNER_SH,
        }],
        manage_resolv_conf: (!dns.is_empty()).then_some(true),
        resolv_conf: (!dns.is_empty()).then_some(ResolvConf { nameservers: dns }),
        ca_certs: (remove_defaults || !a.ca_certs.is_empty()).then_some(CaCerts {
            remove_defaults,
            trusted: a.ca_certs,
        }),
        bootcmd: a.boot_cmds.iter().map(|s| boot_cmd(a.params, s)).collect(),
    };
    Ok(format!("#cloud-config\n{}\n", to_json("user-data", &cc)?))
}

#[derive(Serialize)]
struct NetworkConfig<'a> {
    version: u8,
    ethernets: BTreeMap<&'static str, Ethernet<'a>>,
}

#[derive(Serialize)]
struct Ethernet<'a> {
    #[serde(rename = "match")]
    match_: BTreeMap<&'static str, String>,
    #[serde(rename = "set-name", skip_serializing_if = "Option::is_none")]
    set_name: Option<&'static str>,
    dhcp4: bool,
    #[serde(rename = "dhcp-identifier")]
    dhcp_identifier: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Nameservers<'a>>,
}

#[derive(Serialize)]
struct Nameservers<'a> {
    addresses: &'a [String],
}

/// DHCP on the user-mode NIC: matched by MAC when known (works with every cloud-init
/// renderer), else by the name glob `e*` (covers `en*` and `eth*`; needs a netplan-style
/// renderer).
pub(crate) fn network_config(mac: Option<&str>, dns: &[String]) -> Result<String, CidataError> {
    let mut match_ = BTreeMap::new();
    let (key, set_name) = match mac {
        Some(mac) => {
            match_.insert("macaddress", mac.to_ascii_lowercase());
            ("eth0", Some("eth0"))
        }
        None => {
            match_.insert("name", "e*".to_string());
            ("lima0", None)
        }
    };
    let nc = NetworkConfig {
        version: 2,
        ethernets: BTreeMap::from([(
            key,
            Ethernet {
                match_,
                set_name,
                dhcp4: true,
                dhcp_identifier: "mac",
                nameservers: (!dns.is_empty()).then_some(Nameservers { addresses: dns }),
            },
        )]),
    };
    Ok(format!("{}\n", to_json("network-config", &nc)?))
}

fn to_json(file: &str, value: &impl Serialize) -> Result<String, CidataError> {
    serde_json::to_string_pretty(value).map_err(|e| CidataError::Config {
        field: file.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mount_type: &str) -> LimaYaml {
        serde_yaml::from_str(&format!(
            "mountType: {mount_type}\nmounts:\n\
             - {{location: /home/alice, mountPoint: /home/alice, writable: false, 9p: {{protocolVersion: 9p2000.L, msize: 128KiB, cache: fscache}}}}\n\
             - {{location: /tmp/lima, mountPoint: /mnt/lima, writable: true, 9p: {{protocolVersion: 9p2000.L, msize: 256KiB, cache: mmap}}}}\n"
        ))
        .unwrap()
    }

    /// Upstream's lines (pkg/cidata/cidata.go): `ro`/`rw`, for 9p
    /// `trans=virtio,version=..,msize=<bytes>,cache=..`, then `nofail`; the tag is
    /// `mount_tag(location, mountPoint)`, as the qemu driver's devices use it.
    #[test]
    fn fstab_fields_escape_blanks() {
        let mut c = config("virtiofs");
        c.mounts.as_mut().unwrap()[1].mount_point = Some("/mnt/my dir\\x".into());
        let m = fstab_mounts(&c).unwrap();
        assert_eq!(m[1][1], "/mnt/my\\040dir\\134x");
        assert_eq!(m[1][0], mount_tag("/tmp/lima", "/mnt/my dir\\x"));
    }

    #[test]
    fn ninep_fstab_lines() {
        let m = fstab_mounts(&config("9p")).unwrap();
        assert_eq!(
            m,
            [
                [
                    mount_tag("/home/alice", "/home/alice"),
                    "/home/alice".into(),
                    "9p".into(),
                    "ro,trans=virtio,version=9p2000.L,msize=131072,cache=fscache,nofail".into(),
                    "0".into(),
                    "0".into()
                ],
                [
                    mount_tag("/tmp/lima", "/mnt/lima"),
                    "/mnt/lima".into(),
                    "9p".into(),
                    "rw,trans=virtio,version=9p2000.L,msize=262144,cache=mmap,nofail".into(),
                    "0".into(),
                    "0".into()
                ],
            ]
        );
    }

    #[test]
    fn virtiofs_fstab_lines() {
        let m = fstab_mounts(&config("virtiofs")).unwrap();
        let opts: Vec<(&str, &str, &str)> = m
            .iter()
            .map(|l| (l[1].as_str(), l[2].as_str(), l[3].as_str()))
            .collect();
        assert_eq!(
            opts,
            [
                ("/home/alice", "virtiofs", "ro,nofail"),
                ("/mnt/lima", "virtiofs", "rw,nofail")
            ]
        );
        assert_eq!(m[1][0], mount_tag("/tmp/lima", "/mnt/lima"));
    }

    #[test]
    fn reverse_sshfs_has_no_fstab_lines() {
        assert!(fstab_mounts(&config("reverse-sshfs")).unwrap().is_empty());
    }

    #[test]
    fn bad_msize_names_the_field() {
        let mut c = config("9p");
        c.mounts.as_mut().unwrap()[1].nine_p.as_mut().unwrap().msize = Some("lots".into());
        let e = fstab_mounts(&c).unwrap_err().to_string();
        assert!(e.starts_with("mounts[1].9p.msize:"), "{e}");
    }
}
