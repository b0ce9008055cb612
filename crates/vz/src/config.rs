//! vz's config rules (Lima's facts): macOS 13+ host, the host's own arch only, mount types
//! `virtiofs` (default) or `reverse-sshfs`, disk image `raw` (default) or `asif` (macOS 26+),
//! Rosetta only on Apple silicon, no TPM, no Windows guests, no custom firmware.
//! Pure functions of the config, the [`HostFacts`] and the macOS version ([`Probes`]), so
//! every rule is tested on any host.

use driver::DriverError;
use limatype::{Arch, HostFacts, LimaYaml, Os};

pub use driver::Version;

pub const MIN_MACOS: Version = Version(13, 0, 0);
pub const MIN_MACOS_ASIF: Version = Version(26, 0, 0);
/// Intel Macs older than this cannot boot Linux 6.12+ under vz (Lima issue 3334).
pub const MIN_MACOS_INTEL_NEW_KERNELS: Version = Version(15, 5, 0);

pub const MOUNT_TYPES: &[&str] = &["virtiofs", "reverse-sshfs"];
pub const IMAGE_FORMATS: &[&str] = &["raw", "asif"];

/// What vz's rules look up on the machine, besides the host facts (only when the host is
/// this machine).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probes {
    /// `None` when not known (not macOS, not this machine, or unreadable): version checks are
    /// then skipped.
    pub macos_version: Option<Version>,
}

fn guest_os(config: &LimaYaml) -> &str {
    config.os.as_deref().unwrap_or("Linux")
}

/// Fills vz's defaults into unset fields.
pub fn fill(config: &mut LimaYaml, probes: &Probes) {
    config
        .vm_type
        .get_or_insert_with(|| crate::NAME.to_string());
    config
        .mount_type
        .get_or_insert_with(|| "virtiofs".to_string());
    let over_vsock = guest_os(config) == "Linux";
    config
        .ssh
        .get_or_insert_with(Default::default)
        .over_vsock
        .get_or_insert(over_vsock);

    let top_level_rosetta = config.rosetta.clone();
    let is_macos_guest = guest_os(config) == "Darwin";
    let vz = config
        .vm_opts
        .get_or_insert_with(Default::default)
        .vz
        .get_or_insert_with(Default::default);
    // The deprecated top-level `rosetta` moves to `vmOpts.vz.rosetta` when that is unset.
    let rosetta = vz.rosetta.get_or_insert_with(Default::default);
    if rosetta.enabled.is_none() && rosetta.binfmt.is_none() {
        if let Some(top) = top_level_rosetta {
            *rosetta = top;
        }
    }
    rosetta.enabled.get_or_insert(false);
    rosetta.binfmt.get_or_insert(false);
    vz.disk_image_format.get_or_insert_with(|| {
        let asif = is_macos_guest && probes.macos_version.is_some_and(|v| v >= MIN_MACOS_ASIF);
        if asif { "asif" } else { "raw" }.to_string()
    });
}

/// Whether vz can run `config` on `host`; the error says why not.
pub fn accept(config: &LimaYaml, host: &HostFacts, probes: &Probes) -> driver::Result<()> {
    if host.os != Os::Darwin {
        return Err(DriverError::invalid_config(format!(
            "vz needs macOS {} or later (Virtualization.framework); this host is {}",
            major(MIN_MACOS),
            host.os
        )));
    }
    if let Some(v) = probes.macos_version {
        if v < MIN_MACOS {
            return Err(DriverError::invalid_config(format!(
                "vz needs macOS {} or later; this host runs macOS {v}",
                major(MIN_MACOS)
            )));
        }
        if host.arch == Arch::X86_64 && v < MIN_MACOS_INTEL_NEW_KERNELS {
            tracing::warn!(
                "vz on an Intel Mac needs macOS {MIN_MACOS_INTEL_NEW_KERNELS} or later to boot Linux 6.12+; this host runs {v} (use vmType qemu if the VM does not boot)"
            );
        }
    }
    let arch = config.arch.as_deref().unwrap_or(host.arch.as_str());
    if arch != host.arch.as_str() {
        return Err(DriverError::invalid_config(format!(
            "vz runs only the host's arch ({}); field `arch` is {arch:?} (use vmType qemu)",
            host.arch
        )));
    }
    if guest_os(config) == "Windows" {
        return Err(DriverError::invalid_config(
            "Windows guests are only supported by vmType qemu",
        ));
    }
    if let Some(mt) = config.mount_type.as_deref() {
        if !MOUNT_TYPES.contains(&mt) {
            return Err(DriverError::invalid_config(format!(
                "field `mountType` must be \"virtiofs\" or \"reverse-sshfs\" for vz, got {mt:?}"
            )));
        }
        if config
            .mount_types_unsupported
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|u| u == mt)
        {
            return Err(DriverError::invalid_config(format!(
                "field `mountType` {mt:?} is listed in `mountTypesUnsupported`"
            )));
        }
    }
    if config.tpm == Some(true) {
        return Err(DriverError::invalid_config(
            "field `tpm` is not supported by vz",
        ));
    }
    let firmware_images = config
        .firmware
        .as_ref()
        .and_then(|f| f.images.as_deref())
        .unwrap_or_default();
    if firmware_images.iter().any(|f| {
        matches!(f.vm_type.as_deref(), None | Some("") | Some(crate::NAME))
            && f.arch.as_deref().is_none_or(|a| a == arch)
    }) {
        return Err(DriverError::invalid_config(
            "field `firmware.images` is not supported by vz",
        ));
    }
    let vz = config.vm_opts.as_ref().and_then(|o| o.vz.as_ref());
    if let Some(format) = vz.and_then(|v| v.disk_image_format.as_deref()) {
        match format {
            "raw" => {}
            "asif" => {
                if let Some(v) = probes.macos_version.filter(|v| *v < MIN_MACOS_ASIF) {
                    return Err(DriverError::invalid_config(format!(
                        "field `vmOpts.vz.diskImageFormat` \"asif\" needs macOS {}; this host runs macOS {v}",
                        major(MIN_MACOS_ASIF)
                    )));
                }
            }
            other => {
                return Err(DriverError::invalid_config(format!(
                    "field `vmOpts.vz.diskImageFormat` must be \"raw\" or \"asif\", got {other:?}"
                )))
            }
        }
    }
    if rosetta_requested(config) && host.arch != Arch::Aarch64 {
        // Lima ignores it there too; say so rather than fail.
        tracing::warn!("vz: Rosetta needs an Apple silicon host; ignoring `vmOpts.vz.rosetta`");
    }
    Ok(())
}

fn major(v: Version) -> u32 {
    v.0
}

fn rosetta_requested(config: &LimaYaml) -> bool {
    config
        .vm_opts
        .as_ref()
        .and_then(|o| o.vz.as_ref())
        .and_then(|v| v.rosetta.as_ref())
        .or(config.rosetta.as_ref())
        .and_then(|r| r.enabled)
        .unwrap_or(false)
}

/// Rosetta flags as the driver reports them: only on an Apple silicon host.
pub fn rosetta_flags(config: &LimaYaml, host: &HostFacts) -> (bool, bool) {
    if host.arch != Arch::Aarch64 || host.os != Os::Darwin {
        return (false, false);
    }
    let r = config
        .vm_opts
        .as_ref()
        .and_then(|o| o.vz.as_ref())
        .and_then(|v| v.rosetta.as_ref())
        .or(config.rosetta.as_ref());
    let enabled = r.and_then(|r| r.enabled).unwrap_or(false);
    (
        enabled,
        enabled && r.and_then(|r| r.binfmt).unwrap_or(false),
    )
}

/// vz shows the display itself when `video.display` is `vz` or `default`.
pub fn can_run_gui(config: &LimaYaml) -> bool {
    matches!(
        config.video.as_ref().and_then(|v| v.display.as_deref()),
        Some("vz") | Some("default")
    )
}

pub use driver::host_macos_version;

#[cfg(test)]
mod tests {
    use super::*;
    use limatype::{FileWithVmType, Firmware, Rosetta, Ssh, VmOpts, VzOpts};

    /// A host as the tests describe it: its facts and what vz looks up on it.
    #[derive(Clone)]
    struct Host {
        facts: HostFacts,
        probes: Probes,
    }

    fn mac(arch: Arch, v: (u32, u32)) -> Host {
        Host {
            facts: HostFacts::pretend(Os::Darwin, arch),
            probes: Probes {
                macos_version: Some(Version(v.0, v.1, 0)),
            },
        }
    }

    fn filled(mut c: LimaYaml, host: &Host) -> LimaYaml {
        fill(&mut c, &host.probes);
        c
    }

    fn accept(c: &LimaYaml, host: &Host) -> driver::Result<()> {
        super::accept(c, &host.facts, &host.probes)
    }

    fn vz_opts(c: &LimaYaml) -> &VzOpts {
        c.vm_opts.as_ref().unwrap().vz.as_ref().unwrap()
    }

    #[test]
    fn versions() {
        assert_eq!(Version::parse("13.4.1"), Some(Version(13, 4, 1)));
        assert_eq!(Version::parse("26"), Some(Version(26, 0, 0)));
        assert_eq!(Version::parse("14.x"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert!(Version(15, 5, 0) > Version(15, 4, 9));
    }

    #[test]
    fn fill_defaults() {
        let host = mac(Arch::Aarch64, (14, 0));
        let c = filled(LimaYaml::default(), &host);
        assert_eq!(c.vm_type.as_deref(), Some("vz"));
        assert_eq!(c.mount_type.as_deref(), Some("virtiofs"));
        assert_eq!(c.ssh.as_ref().unwrap().over_vsock, Some(true));
        let vz = vz_opts(&c);
        assert_eq!(vz.disk_image_format.as_deref(), Some("raw"));
        let r = vz.rosetta.as_ref().unwrap();
        assert_eq!((r.enabled, r.binfmt), (Some(false), Some(false)));
    }

    #[test]
    fn fill_keeps_what_is_set() {
        let host = mac(Arch::Aarch64, (14, 0));
        let c = LimaYaml {
            mount_type: Some("reverse-sshfs".into()),
            ssh: Some(Ssh {
                over_vsock: Some(false),
                ..Default::default()
            }),
            vm_opts: Some(VmOpts {
                vz: Some(VzOpts {
                    disk_image_format: Some("asif".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = filled(c, &host);
        assert_eq!(c.mount_type.as_deref(), Some("reverse-sshfs"));
        assert_eq!(c.ssh.as_ref().unwrap().over_vsock, Some(false));
        assert_eq!(vz_opts(&c).disk_image_format.as_deref(), Some("asif"));
    }

    #[test]
    fn macos_guest_on_macos_26_defaults_to_asif() {
        let c = LimaYaml {
            os: Some("Darwin".into()),
            ..Default::default()
        };
        let new = filled(c.clone(), &mac(Arch::Aarch64, (26, 0)));
        assert_eq!(vz_opts(&new).disk_image_format.as_deref(), Some("asif"));
        assert_eq!(new.ssh.as_ref().unwrap().over_vsock, Some(false));
        let old = filled(c, &mac(Arch::Aarch64, (15, 0)));
        assert_eq!(vz_opts(&old).disk_image_format.as_deref(), Some("raw"));
    }

    #[test]
    fn top_level_rosetta_migrates() {
        let c = LimaYaml {
            rosetta: Some(Rosetta {
                enabled: Some(true),
                binfmt: Some(true),
            }),
            ..Default::default()
        };
        let host = mac(Arch::Aarch64, (14, 0));
        let c = filled(c, &host);
        let r = vz_opts(&c).rosetta.as_ref().unwrap();
        assert_eq!((r.enabled, r.binfmt), (Some(true), Some(true)));
        assert_eq!(rosetta_flags(&c, &host.facts), (true, true));
        assert_eq!(
            rosetta_flags(&c, &mac(Arch::X86_64, (14, 0)).facts),
            (false, false)
        );
    }

    #[test]
    fn refuses_other_hosts_saying_why() {
        let linux = Host {
            facts: HostFacts::pretend(Os::Linux, Arch::X86_64),
            probes: Probes::default(),
        };
        let e = accept(&filled(LimaYaml::default(), &linux), &linux)
            .unwrap_err()
            .to_string();
        assert!(e.contains("vz needs macOS 13 or later"), "{e}");
        assert!(e.contains("this host is Linux"), "{e}");

        let old = mac(Arch::Aarch64, (12, 6));
        let e = accept(&LimaYaml::default(), &old).unwrap_err().to_string();
        assert!(e.contains("this host runs macOS 12.6.0"), "{e}");
    }

    #[test]
    fn accepts_a_filled_default_config_on_a_mac() {
        let host = mac(Arch::Aarch64, (14, 0));
        accept(&filled(LimaYaml::default(), &host), &host).unwrap();
        // Unknown macOS version: checks that need it are skipped.
        let unknown = Host {
            probes: Probes::default(),
            ..host
        };
        accept(&filled(LimaYaml::default(), &unknown), &unknown).unwrap();
    }

    #[test]
    fn rules() {
        let host = mac(Arch::Aarch64, (14, 0));
        let refuse = |c: LimaYaml, needle: &str| {
            let e = accept(&filled(c, &host), &host).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} should contain {needle:?}");
        };
        refuse(
            LimaYaml {
                arch: Some("x86_64".into()),
                ..Default::default()
            },
            "only the host's arch (aarch64)",
        );
        refuse(
            LimaYaml {
                mount_type: Some("9p".into()),
                ..Default::default()
            },
            "field `mountType` must be \"virtiofs\" or \"reverse-sshfs\" for vz, got \"9p\"",
        );
        refuse(
            LimaYaml {
                mount_types_unsupported: Some(vec!["virtiofs".into()]),
                ..Default::default()
            },
            "mountTypesUnsupported",
        );
        refuse(
            LimaYaml {
                tpm: Some(true),
                ..Default::default()
            },
            "`tpm`",
        );
        refuse(
            LimaYaml {
                os: Some("Windows".into()),
                ..Default::default()
            },
            "vmType qemu",
        );
        refuse(
            LimaYaml {
                firmware: Some(Firmware {
                    images: Some(vec![FileWithVmType {
                        location: "/x.fd".into(),
                        arch: Some("aarch64".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "`firmware.images`",
        );
        let fmt = |f: &str| LimaYaml {
            vm_opts: Some(VmOpts {
                vz: Some(VzOpts {
                    disk_image_format: Some(f.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        refuse(fmt("qcow2"), "must be \"raw\" or \"asif\", got \"qcow2\"");
        refuse(fmt("asif"), "needs macOS 26");
        accept(&fmt("asif"), &mac(Arch::Aarch64, (26, 1))).unwrap();

        // Firmware meant for another driver is fine.
        let other_fw = LimaYaml {
            firmware: Some(Firmware {
                images: Some(vec![FileWithVmType {
                    location: "/x.fd".into(),
                    vm_type: Some("qemu".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        accept(&filled(other_fw, &host), &host).unwrap();
    }

    #[test]
    fn gui_follows_video_display() {
        let mut c = LimaYaml::default();
        assert!(!can_run_gui(&c));
        c.video = Some(limatype::Video {
            display: Some("vz".into()),
            ..Default::default()
        });
        assert!(can_run_gui(&c));
    }
}
