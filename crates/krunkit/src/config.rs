//! krunkit's config rules (Lima's facts): macOS 13+ on Apple silicon (the driver exists only
//! for darwin/arm64), the `krunkit` CLI 1.2.1+ on PATH, the host's arch (aarch64, also the
//! default), mount types `virtiofs` (default) or `reverse-sshfs`, raw disks, SSH not over vsock
//! by default, nested virtualization on macOS 15+, no TPM, no Windows guests. Pure functions of
//! the config, the [`HostFacts`] and the machine's [`Probes`]; plus the krunkit command line.

use std::path::{Path, PathBuf};

use driver::DriverError;
use limatype::{filenames, Arch, HostFacts, LimaYaml, Os};

pub use driver::Version;

pub const MIN_MACOS: Version = Version(13, 0, 0);
pub const MIN_MACOS_NESTED: Version = Version(15, 0, 0);
/// Needed for the vsock forwarder.
pub const MIN_KRUNKIT: Version = Version(1, 2, 1);
pub const MOUNT_TYPES: &[&str] = &["virtiofs", "reverse-sshfs"];
pub const IMAGE_FORMATS: &[&str] = &["raw"];
pub const BINARY: &str = "krunkit";

/// What krunkit's rules look up on the machine, besides the host facts (only when the host is
/// this machine); [`Probes::default`] looks up nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probes {
    /// `None`: unknown, version checks skipped.
    pub macos_version: Option<Version>,
    /// `None`: not looked up (e.g. checking for another host).
    pub krunkit_in_path: Option<bool>,
}

pub fn fill(config: &mut LimaYaml) {
    config
        .vm_type
        .get_or_insert_with(|| crate::NAME.to_string());
    config
        .mount_type
        .get_or_insert_with(|| "virtiofs".to_string());
    config.arch.get_or_insert_with(|| "aarch64".to_string());
    // Off by default: known not to work with Fedora 44+ guests (Lima issue 5085).
    config
        .ssh
        .get_or_insert_with(Default::default)
        .over_vsock
        .get_or_insert(false);
}

pub fn accept(config: &LimaYaml, host: &HostFacts, probes: &Probes) -> driver::Result<()> {
    if host.os != Os::Darwin || host.arch != Arch::Aarch64 {
        return Err(DriverError::invalid_config(format!(
            "krunkit needs macOS {} or later on Apple silicon (aarch64); this host is {} on {}",
            MIN_MACOS.0, host.os, host.arch
        )));
    }
    if let Some(v) = probes.macos_version.filter(|v| *v < MIN_MACOS) {
        return Err(DriverError::invalid_config(format!(
            "krunkit needs macOS {} or later; this host runs macOS {v}",
            MIN_MACOS.0
        )));
    }
    let arch = config.arch.as_deref().unwrap_or(host.arch.as_str());
    if arch != host.arch.as_str() {
        return Err(DriverError::invalid_config(format!(
            "krunkit runs only the host's arch ({}); field `arch` is {arch:?}",
            host.arch
        )));
    }
    if probes.krunkit_in_path == Some(false) {
        return Err(DriverError::invalid_config(format!(
            "the `{BINARY}` CLI is not on PATH (install it with `brew tap slp/krun && brew install krunkit`)"
        )));
    }
    if let Some(mt) = config.mount_type.as_deref() {
        if !MOUNT_TYPES.contains(&mt) {
            return Err(DriverError::invalid_config(format!(
                "field `mountType` must be \"virtiofs\" or \"reverse-sshfs\" for krunkit, got {mt:?}"
            )));
        }
    }
    if config.tpm == Some(true) {
        return Err(DriverError::invalid_config(
            "field `tpm` is not supported by krunkit",
        ));
    }
    if config.nested_virtualization == Some(true) {
        if let Some(v) = probes.macos_version.filter(|v| *v < MIN_MACOS_NESTED) {
            return Err(DriverError::invalid_config(format!(
                "field `nestedVirtualization` needs macOS {}; this host runs macOS {v}",
                MIN_MACOS_NESTED.0
            )));
        }
    }
    if config.os.as_deref() == Some("Windows") {
        return Err(DriverError::invalid_config(
            "Windows guests are only supported by vmType qemu",
        ));
    }
    Ok(())
}

/// Checks `krunkit --version` output (`krunkit 1.2.3`) against [`MIN_KRUNKIT`]. An
/// unparsable version passes (as in Lima): only a known-old one is refused.
pub fn check_krunkit_version(output: &str) -> Result<(), KrunkitTooOld> {
    let text = output.trim();
    let text = text.strip_prefix("krunkit ").unwrap_or(text);
    match Version::parse(text) {
        Some(found) if found < MIN_KRUNKIT => Err(KrunkitTooOld { found }),
        _ => Ok(()),
    }
}

/// The installed `krunkit` is older than [`MIN_KRUNKIT`]. (A plain error type: this crate
/// does not depend on thiserror.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KrunkitTooOld {
    pub found: Version,
}

impl std::fmt::Display for KrunkitTooOld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "krunkit {} is older than the required {MIN_KRUNKIT} (needed for the vsock forwarder)",
            self.found
        )
    }
}

impl std::error::Error for KrunkitTooOld {}

/// This host cannot run the config with this krunkit, as for a missing `krunkit` CLI.
impl From<KrunkitTooOld> for DriverError {
    fn from(e: KrunkitTooOld) -> Self {
        DriverError::invalid_config(e.to_string())
    }
}

/// A host directory shared into the guest over virtio-fs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub location: PathBuf,
    pub tag: String,
}

/// What the krunkit command line needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub dir: PathBuf,
    pub cpus: u32,
    pub memory_mib: u64,
    pub shares: Vec<Share>,
    pub ssh_over_vsock: bool,
    pub nested: bool,
    /// `virtio-net` device argument (network set up by the caller).
    pub net_device: Option<String>,
}

/// Guest vsock port of the guest agent.
pub const VSOCK_PORT: u32 = 2222;
pub const SSH_VSOCK_SOCK: &str = "ssh-vsock.sock";

/// krunkit's arguments (without the program name), devices in Lima's order: serial log, the
/// raw boot disk, cidata, the guest agent's vsock, SSH's vsock, shares, network.
pub fn cmdline(spec: &Spec) -> Vec<String> {
    let p = |name: &str| spec.dir.join(name).display().to_string();
    let mut args = vec![
        "--memory".to_string(),
        spec.memory_mib.to_string(),
        "--cpus".into(),
        spec.cpus.to_string(),
        "--device".into(),
        format!("virtio-serial,logFilePath={}", p(filenames::SERIAL_LOG)),
        "--krun-log-level".into(),
        "3".into(),
        "--restful-uri".into(),
        "none://".into(),
        "--device".into(),
        format!("virtio-blk,path={},format=raw", p(filenames::DISK)),
        "--device".into(),
        format!("virtio-blk,path={}", p(filenames::CIDATA_ISO)),
        "--device".into(),
        format!(
            "virtio-vsock,port={VSOCK_PORT},socketURL={},connect",
            p(filenames::GUEST_AGENT_SOCK)
        ),
    ];
    if spec.ssh_over_vsock {
        args.push("--device".into());
        args.push(format!(
            "virtio-vsock,port=22,socketURL={},connect",
            p(SSH_VSOCK_SOCK)
        ));
    }
    for share in &spec.shares {
        args.push("--device".into());
        args.push(format!(
            "virtio-fs,sharedDir={},mountTag={}",
            share.location.display(),
            share.tag
        ));
    }
    if let Some(net) = &spec.net_device {
        args.push("--device".into());
        args.push(net.clone());
    }
    if spec.nested {
        args.push("--nested".into());
    }
    args
}

/// Whether `bin` is an executable file in one of `path`'s directories.
pub fn in_path(bin: &str, path: Option<&std::ffi::OsStr>) -> bool {
    path.map(|p| std::env::split_paths(p).any(|d| is_file(&d.join(bin))))
        .unwrap_or(false)
}

fn is_file(p: &Path) -> bool {
    p.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host as the tests describe it: its facts and what krunkit looks up on it.
    #[derive(Clone)]
    struct Host {
        facts: HostFacts,
        probes: Probes,
    }

    fn mac() -> Host {
        Host {
            facts: HostFacts::pretend(Os::Darwin, Arch::Aarch64),
            probes: Probes {
                macos_version: Some(Version(14, 2, 0)),
                krunkit_in_path: Some(true),
            },
        }
    }

    fn accept(c: &LimaYaml, host: &Host) -> driver::Result<()> {
        super::accept(c, &host.facts, &host.probes)
    }

    fn filled(mut c: LimaYaml) -> LimaYaml {
        fill(&mut c);
        c
    }

    #[test]
    fn fill_defaults_and_keeps_set_fields() {
        let c = filled(LimaYaml::default());
        assert_eq!(c.vm_type.as_deref(), Some("krunkit"));
        assert_eq!(c.mount_type.as_deref(), Some("virtiofs"));
        assert_eq!(c.arch.as_deref(), Some("aarch64"));
        assert_eq!(c.ssh.unwrap().over_vsock, Some(false));
        let c = filled(LimaYaml {
            mount_type: Some("reverse-sshfs".into()),
            ..Default::default()
        });
        assert_eq!(c.mount_type.as_deref(), Some("reverse-sshfs"));
    }

    #[test]
    fn refuses_other_hosts_saying_why() {
        for (os, arch) in [
            (Os::Linux, Arch::X86_64),
            (Os::Darwin, Arch::X86_64),
            (Os::Linux, Arch::Aarch64),
        ] {
            let host = Host {
                facts: HostFacts::pretend(os, arch),
                probes: Probes::default(),
            };
            let e = accept(&filled(LimaYaml::default()), &host)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("this host is {os} on {arch}")), "{e}");
        }
    }

    #[test]
    fn rules() {
        accept(&filled(LimaYaml::default()), &mac()).unwrap();
        let refuse = |c: LimaYaml, host: Host, needle: &str| {
            let e = accept(&filled(c), &host).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} should contain {needle:?}");
        };
        refuse(
            LimaYaml {
                arch: Some("x86_64".into()),
                ..Default::default()
            },
            mac(),
            "host's arch (aarch64)",
        );
        refuse(
            LimaYaml::default(),
            Host {
                probes: Probes {
                    krunkit_in_path: Some(false),
                    ..mac().probes
                },
                ..mac()
            },
            "not on PATH",
        );
        refuse(
            LimaYaml {
                mount_type: Some("9p".into()),
                ..Default::default()
            },
            mac(),
            "for krunkit, got \"9p\"",
        );
        refuse(
            LimaYaml {
                nested_virtualization: Some(true),
                ..Default::default()
            },
            mac(),
            "needs macOS 15",
        );
        accept(
            &filled(LimaYaml {
                nested_virtualization: Some(true),
                ..Default::default()
            }),
            &Host {
                probes: Probes {
                    macos_version: Some(Version(15, 0, 0)),
                    ..mac().probes
                },
                ..mac()
            },
        )
        .unwrap();
        refuse(
            LimaYaml {
                tpm: Some(true),
                ..Default::default()
            },
            mac(),
            "`tpm`",
        );
        refuse(
            LimaYaml::default(),
            Host {
                probes: Probes {
                    macos_version: Some(Version(12, 0, 0)),
                    ..mac().probes
                },
                ..mac()
            },
            "runs macOS 12.0.0",
        );
    }

    #[test]
    fn krunkit_versions() {
        check_krunkit_version("krunkit 1.2.1\n").unwrap();
        check_krunkit_version("1.10.0").unwrap();
        check_krunkit_version("krunkit dev-build").unwrap();
        let e = check_krunkit_version("krunkit 1.1.9").unwrap_err();
        assert_eq!(e.found, Version(1, 1, 9));
        let e = DriverError::from(e);
        assert_eq!(e.kind, driver::ErrorKind::InvalidConfig);
        assert_eq!(
            e.message,
            "krunkit 1.1.9 is older than the required 1.2.1 (needed for the vsock forwarder)"
        );
    }

    #[test]
    fn command_line() {
        let spec = Spec {
            dir: "/home/u/.lima/k".into(),
            cpus: 4,
            memory_mib: 4096,
            shares: vec![Share {
                location: "/Users/u".into(),
                tag: "lima-0123456789abcdef".into(),
            }],
            ssh_over_vsock: true,
            nested: true,
            net_device: Some("virtio-net,type=unixgram,fd=3,mac=52:55:55:12:34:56".into()),
        };
        let args = cmdline(&spec);
        let joined = args.join(" ");
        assert_eq!(
            joined,
            "--memory 4096 --cpus 4 \
             --device virtio-serial,logFilePath=/home/u/.lima/k/serial.log \
             --krun-log-level 3 --restful-uri none:// \
             --device virtio-blk,path=/home/u/.lima/k/disk,format=raw \
             --device virtio-blk,path=/home/u/.lima/k/cidata.iso \
             --device virtio-vsock,port=2222,socketURL=/home/u/.lima/k/ga.sock,connect \
             --device virtio-vsock,port=22,socketURL=/home/u/.lima/k/ssh-vsock.sock,connect \
             --device virtio-fs,sharedDir=/Users/u,mountTag=lima-0123456789abcdef \
             --device virtio-net,type=unixgram,fd=3,mac=52:55:55:12:34:56 \
             --nested"
        );
        let plain = cmdline(&Spec {
            ssh_over_vsock: false,
            nested: false,
            shares: vec![],
            net_device: None,
            ..spec
        });
        assert!(!plain
            .iter()
            .any(|a| a.contains("port=22,") || a == "--nested"));
    }

    #[test]
    fn path_lookup() {
        let dir = std::env::temp_dir().join(format!("krunkit-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("krunkit"), b"").unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), &dir]).unwrap();
        assert!(in_path("krunkit", Some(&path)));
        assert!(!in_path("krunkit-nope", Some(&path)));
        assert!(!in_path("krunkit", None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
