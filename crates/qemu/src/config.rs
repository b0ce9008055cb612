//! qemu's config rules (Lima's facts): mount types per host OS (Linux: reverse-sshfs, 9p,
//! virtiofs; macOS and other Unix: reverse-sshfs, 9p; Windows: reverse-sshfs), `9p` as the
//! default mount type unless unsupported, `virtiofs.queueSize` 1024 for virtiofs, the deprecated top-level `cpuType` moved to
//! `vmOpts.qemu.cpuType`, CPU types for emulated arches, a VNC display, a semver
//! `vmOpts.qemu.minimumVersion`, and (on this host) the qemu binary and UEFI firmware;
//! fields upstream's qemu acts on but this one does not are refused (see docs/fields.md). Pure
//! functions of the config, the [`HostFacts`] and the machine's [`Probes`].

use driver::DriverError;
use limatype::{HostFacts, LimaYaml, Os};

/// What `accept` may look up on the machine, besides the host facts. Looked up only when the
/// host is this machine (`HostFacts::is_this_machine`); [`Probes::default`] looks up nothing.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    /// Whether `qemu-system-<arch>` is on PATH, per guest arch; `None`: not looked up.
    pub qemu_found: Option<fn(&str) -> bool>,
    /// Whether UEFI firmware for a guest arch exists; `None`: not looked up.
    pub firmware_found: Option<fn(&str) -> bool>,
    /// Whether a `virtiofsd` is installed; `None`: not looked up.
    pub virtiofsd_found: Option<fn() -> bool>,
}

pub const VNC_DISPLAY: &str = "127.0.0.1:0,to=9";
pub const IMAGE_FORMATS: &[&str] = &["qcow2", "raw", "vmdk", "vhdx"];

/// Mount types qemu supports on a host OS.
pub fn mount_types(host_os: Os) -> &'static [&'static str] {
    match host_os {
        Os::Linux => &["reverse-sshfs", "9p", "virtiofs"],
        Os::Windows => &["reverse-sshfs"],
        Os::Darwin | Os::FreeBSD => &["reverse-sshfs", "9p"],
    }
}

/// The CPU type qemu's fill sets for `arch`, or `None` when it must be chosen at start (the
/// host's own arch: `host` under KVM/HVF, `max` under TCG, and the accelerator is only known
/// then).
pub fn default_cpu_type(arch: &str, host: &HostFacts) -> Option<String> {
    if arch == host.arch.as_str() {
        return None;
    }
    let base = if arch == "x86_64" && host.os == Os::Windows {
        // qemu for Windows is unstable with `max` here (Lima keeps qemu64).
        "qemu64"
    } else {
        "max"
    };
    let mut t = base.to_string();
    if arch == "x86_64" && host.os == Os::Darwin {
        // As upstream: AVX-512 and 1GiB pages cannot be given to the guest there.
        t.push_str(",-avx512vl,-pdpe1gb");
    }
    Some(t)
}

fn unsupported_mounts(config: &LimaYaml, host: &HostFacts) -> Vec<String> {
    let mut u: Vec<String> = config.mount_types_unsupported.clone().unwrap_or_default();
    if host.os == Os::Windows {
        u.push("9p".into());
    }
    u
}

/// The mount type when lima.yaml names none. Upstream's qemu default is 9p; on a Linux host
/// with a `virtiofsd` this driver picks virtiofs instead: `cargo xtask bench mounts` measured
/// it faster at the metadata job (see docs/mounts.md), and guest kernels without 9p (Debian's
/// cloud kernel) have virtiofs.
pub fn default_mount_type(config: &LimaYaml, host: &HostFacts, probes: &Probes) -> &'static str {
    let unsupported = unsupported_mounts(config, host);
    let supported = |t: &str| !unsupported.iter().any(|u| u == t);
    let virtiofsd = probes.virtiofsd_found.is_some_and(|found| found());
    if host.os == Os::Linux && virtiofsd && supported("virtiofs") {
        "virtiofs"
    } else if supported("9p") {
        "9p"
    } else {
        "reverse-sshfs"
    }
}

pub fn fill(config: &mut LimaYaml, host: &HostFacts, probes: &Probes) {
    config
        .vm_type
        .get_or_insert_with(|| crate::NAME.to_string());
    let arch = config.arch.clone().unwrap_or_else(|| host.arch.to_string());
    if config
        .mount_type
        .as_deref()
        .is_none_or(|m| m.is_empty() || m == "default")
    {
        config.mount_type = Some(default_mount_type(config, host, probes).to_string());
    }
    if config.mount_type.as_deref() == Some("virtiofs") {
        for m in config.mounts.iter_mut().flatten() {
            m.virtiofs
                .get_or_insert_with(Default::default)
                .queue_size
                .get_or_insert(limadefaults::DEFAULT_VIRTIOFS_QUEUE_SIZE);
        }
    }
    let video = config.video.get_or_insert_with(Default::default);
    let vnc = video.vnc.get_or_insert_with(Default::default);
    if vnc.display.as_deref().is_none_or(str::is_empty) {
        vnc.display = Some(VNC_DISPLAY.to_string());
    }

    // The deprecated top-level `cpuType` moves into `vmOpts.qemu.cpuType`; on a conflict the
    // `vmOpts.qemu` value wins.
    let top_level = config.cpu_type.take().unwrap_or_default();
    let qemu = config
        .vm_opts
        .get_or_insert_with(Default::default)
        .qemu
        .get_or_insert_with(Default::default);
    let cpu = qemu.cpu_type.get_or_insert_with(Default::default);
    for (a, t) in top_level {
        if t.is_empty() {
            continue;
        }
        match cpu.get(&a) {
            Some(existing) if !existing.is_empty() && *existing != t => tracing::warn!(
                "cpuType for {a:?}: top-level {t:?} conflicts with vmOpts.qemu.cpuType {existing:?}; using the latter"
            ),
            _ => {
                cpu.insert(a, t);
            }
        }
    }
    if cpu.get(&arch).is_none_or(|t| t.is_empty()) {
        if let Some(t) = default_cpu_type(&arch, host) {
            cpu.insert(arch, t);
        }
    }
    if cpu.is_empty() {
        qemu.cpu_type = None;
    }
}

/// A `major[.minor[.patch]]` version with numeric parts (what `minimumVersion` must be).
fn is_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `video.vnc.display` when `video.display` is `vnc`: `HOST:N` or `unix:PATH`, then qemu's
/// options (`,to=9`), as the host agent reads it.
fn check_video(config: &LimaYaml) -> driver::Result<()> {
    let Some(video) = config.video.as_ref() else {
        return Ok(());
    };
    if video.display.as_deref() != Some("vnc") {
        return Ok(());
    }
    let display = video
        .vnc
        .as_ref()
        .and_then(|v| v.display.as_deref())
        .unwrap_or(VNC_DISPLAY);
    let addr = display.split(',').next().unwrap_or_default();
    let ok = match addr.strip_prefix("unix:") {
        Some(path) => !path.is_empty(),
        None => addr
            .rsplit_once(':')
            .is_some_and(|(_, n)| !n.is_empty() && n.parse::<u16>().is_ok()),
    };
    if ok {
        Ok(())
    } else {
        Err(DriverError::invalid_config(format!(
            "field `video.vnc.display` must be HOST:DISPLAY[,OPTIONS] or unix:PATH[,OPTIONS], got {display:?}"
        )))
    }
}

/// Fields upstream's qemu driver acts on that this one does not (yet): refused, naming the
/// field and what is missing, so a config never silently runs without them. Fields upstream's
/// qemu ignores too only earn a warning.
fn refuse_unimplemented(config: &LimaYaml) -> driver::Result<()> {
    // Every refusal at once (upstream joins its errors), on one line: the registry lists
    // each driver's refusal as one line.
    let mut refused: Vec<String> = Vec::new();
    if let Some(os) = config.os.as_deref().filter(|os| *os != "Linux") {
        refused.push(format!(
            "field `os` is {os:?}: this qemu driver boots Linux guests only (no boot scripts for other guest OSes)"
        ));
    }
    for (i, nw) in config.networks.iter().flatten().enumerate() {
        if let Some(name) = nw.lima.as_deref().filter(|n| !n.is_empty()) {
            refused.push(format!(
                "field `networks[{i}].lima` ({name:?}) is not supported by this qemu driver: \
                 no usernet daemon (`user-v2`) or socket_vmnet network is implemented; \
                 the guest has qemu's user-mode network only"
            ));
        }
        if let Some(sock) = nw.socket.as_deref().filter(|s| !s.is_empty()) {
            refused.push(format!(
                "field `networks[{i}].socket` ({sock:?}) is not supported by this qemu driver: \
                 connecting a NIC to a socket_vmnet socket is not implemented"
            ));
        }
        if nw.vz_nat == Some(true) {
            // Upstream's qemu warns and ignores it too.
            tracing::warn!("vmType qemu: ignoring networks[{i}]: vzNAT is for vmType vz");
        }
    }
    if config.tpm == Some(true) {
        refused.push(
            "field `tpm` is not supported by this qemu driver: TPM emulation through swtpm is not implemented".into(),
        );
    }
    let windows_iso = config
        .os_opts
        .as_ref()
        .and_then(|o| o.windows.as_ref())
        .and_then(|w| w.virtio_win.as_ref())
        .is_some_and(|v| !v.is_empty());
    if windows_iso {
        refused.push(
            "field `osOpts.Windows.virtioWin` is not supported by this qemu driver: Windows guests are not implemented".into(),
        );
    }
    if config.rosetta.as_ref().and_then(|r| r.enabled) == Some(true) {
        refused.push(
            "field `rosetta.enabled` needs vmType vz on an Apple silicon Mac; qemu cannot run Rosetta".into(),
        );
    }
    if config.nested_virtualization == Some(true) {
        // Upstream's qemu passes nothing either: with `cpuType: host` nesting follows the
        // host's kvm module.
        tracing::warn!(
            "vmType qemu: ignoring field `nestedVirtualization`; nesting follows the host's kvm module (`nested=1`) with cpuType \"host\""
        );
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(DriverError::invalid_config(refused.join("; ")))
    }
}

pub fn accept(config: &LimaYaml, host: &HostFacts, probes: &Probes) -> driver::Result<()> {
    let arch = config.arch.as_deref().unwrap_or(host.arch.as_str());
    if !limatype::ARCH_TYPES.contains(&arch) {
        return Err(DriverError::invalid_config(format!(
            "field `arch` must be one of {}, got {arch:?}",
            limatype::ARCH_TYPES.join(", ")
        )));
    }
    if let Some(mt) = config.mount_type.as_deref() {
        if unsupported_mounts(config, host).iter().any(|u| u == mt) {
            return Err(DriverError::invalid_config(format!(
                "mount type {mt:?} is unsupported here (`mountTypesUnsupported`{})",
                if host.os == Os::Windows {
                    ", or qemu on Windows"
                } else {
                    ""
                }
            )));
        }
        let allowed = mount_types(host.os);
        if !allowed.contains(&mt) {
            return Err(DriverError::invalid_config(format!(
                "field `mountType` must be one of {} for qemu on {}, got {mt:?}",
                allowed.join(", "),
                host.os
            )));
        }
    }
    refuse_unimplemented(config)?;
    let qemu = config.vm_opts.as_ref().and_then(|o| o.qemu.as_ref());
    if let Some(v) = qemu.and_then(|q| q.minimum_version.as_deref()) {
        if !is_version(v) {
            return Err(DriverError::invalid_config(format!(
                "field `vmOpts.qemu.minimumVersion` must be a version like \"8.2.1\", got {v:?}"
            )));
        }
    }
    if let Some(found) = probes.qemu_found {
        let bin = crate::cmdline::qemu_binary(arch);
        if !found(&bin) {
            return Err(DriverError::invalid_config(format!(
                "{bin} is not installed (needed by qemu for arch {arch:?})"
            )));
        }
    }
    check_video(config)?;
    let firmware = config.firmware.as_ref();
    let legacy_bios = firmware.and_then(|f| f.legacy_bios).unwrap_or(false);
    if legacy_bios && !crate::firmware::legacy_bios_supported(arch) {
        tracing::warn!(
            "field `firmware.legacyBIOS` is not supported for architecture `{arch}`, ignoring"
        );
    }
    let images = firmware
        .and_then(|f| f.images.as_deref())
        .unwrap_or_default();
    let mut own_images = crate::firmware::own_images(images, arch).peekable();
    let has_own_image = own_images.peek().is_some();
    for (i, f) in own_images {
        // Remote ones are fetched by the instance flow and reach the driver as a local path.
        if crate::firmware::local_path(&f.location).is_none()
            && !crate::firmware::is_remote(&f.location)
        {
            return Err(DriverError::invalid_config(format!(
                "field `firmware.images[{i}].location`: an absolute path, file://, http:// or \
                 https:// URL is needed, got {:?}",
                f.location
            )));
        }
    }
    // x86_64 may boot a kernel directly without UEFI; that is known only at start.
    if arch != "x86_64" && !has_own_image && crate::firmware::uses_uefi(arch, legacy_bios) {
        if let Some(found) = probes.firmware_found {
            if !found(arch) {
                return Err(DriverError::invalid_config(format!(
                    "no UEFI firmware for {arch} found on this host (e.g. install qemu-efi-aarch64, \
                     or copy edk2-{arch}-code.fd to $HOME/.local/share/qemu/)"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use limatype::{Arch, CpuType, QemuOpts, VmOpts};

    fn linux() -> HostFacts {
        HostFacts::pretend(Os::Linux, Arch::X86_64)
    }

    #[test]
    fn default_mount_type_is_virtiofs_where_virtiofsd_is_else_upstreams_9p() {
        let with = Probes {
            virtiofsd_found: Some(|| true),
            ..Default::default()
        };
        let without = Probes {
            virtiofsd_found: Some(|| false),
            ..Default::default()
        };
        let y = LimaYaml::default();
        assert_eq!(default_mount_type(&y, &linux(), &with), "virtiofs");
        assert_eq!(default_mount_type(&y, &linux(), &without), "9p");
        assert_eq!(default_mount_type(&y, &linux(), &Probes::default()), "9p");
        assert_eq!(default_mount_type(&y, &on(Os::Darwin), &with), "9p");
        assert_eq!(
            default_mount_type(&y, &on(Os::Windows), &with),
            "reverse-sshfs"
        );
        let no_virtiofs = LimaYaml {
            mount_types_unsupported: Some(vec!["virtiofs".into()]),
            ..Default::default()
        };
        assert_eq!(default_mount_type(&no_virtiofs, &linux(), &with), "9p");
        let mut named = LimaYaml {
            mount_type: Some("reverse-sshfs".into()),
            ..Default::default()
        };
        fill(&mut named, &linux(), &with);
        assert_eq!(named.mount_type.as_deref(), Some("reverse-sshfs"));
    }

    fn on(os: Os) -> HostFacts {
        HostFacts { os, ..linux() }
    }

    /// `accept` without looking anything up on the machine.
    fn accept(config: &LimaYaml, host: &HostFacts) -> driver::Result<()> {
        super::accept(config, host, &Probes::default())
    }

    fn filled(mut c: LimaYaml, host: &HostFacts) -> LimaYaml {
        fill(&mut c, host, &Probes::default());
        c
    }

    fn cpu(c: &LimaYaml) -> Option<&CpuType> {
        c.vm_opts.as_ref()?.qemu.as_ref()?.cpu_type.as_ref()
    }

    #[test]
    fn fill_defaults_on_linux() {
        let c = filled(LimaYaml::default(), &linux());
        assert_eq!(c.vm_type.as_deref(), Some("qemu"));
        assert_eq!(c.mount_type.as_deref(), Some("9p"));
        assert_eq!(
            c.video.unwrap().vnc.unwrap().display.as_deref(),
            Some(VNC_DISPLAY)
        );
        // The native arch's CPU type is left to start time (depends on the accelerator).
        assert_eq!(cpu(&filled(LimaYaml::default(), &linux())), None);
    }

    #[test]
    fn fill_cpu_types() {
        let c = filled(
            LimaYaml {
                arch: Some("aarch64".into()),
                ..Default::default()
            },
            &linux(),
        );
        assert_eq!(cpu(&c).unwrap()["aarch64"], "max");
        let mac = HostFacts::pretend(Os::Darwin, Arch::Aarch64);
        let c = filled(
            LimaYaml {
                arch: Some("x86_64".into()),
                ..Default::default()
            },
            &mac,
        );
        assert_eq!(cpu(&c).unwrap()["x86_64"], "max,-avx512vl,-pdpe1gb");
        let win_arm = HostFacts::pretend(Os::Windows, Arch::Aarch64);
        assert_eq!(
            default_cpu_type("x86_64", &win_arm).as_deref(),
            Some("qemu64")
        );
    }

    #[test]
    fn top_level_cpu_type_moves_to_vm_opts() {
        let c = LimaYaml {
            cpu_type: Some(CpuType::from([
                ("x86_64".to_string(), "Haswell".to_string()),
                ("aarch64".to_string(), "cortex-a72".to_string()),
            ])),
            vm_opts: Some(VmOpts {
                qemu: Some(QemuOpts {
                    cpu_type: Some(CpuType::from([(
                        "aarch64".to_string(),
                        "neoverse-n1".to_string(),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = filled(c, &linux());
        assert_eq!(c.cpu_type, None);
        let t = cpu(&c).unwrap();
        assert_eq!(t["x86_64"], "Haswell");
        assert_eq!(t["aarch64"], "neoverse-n1", "vmOpts.qemu wins");
    }

    #[test]
    fn mount_type_defaults() {
        let win = on(Os::Windows);
        assert_eq!(
            filled(LimaYaml::default(), &win).mount_type.as_deref(),
            Some("reverse-sshfs")
        );
        let c = LimaYaml {
            mount_types_unsupported: Some(vec!["9p".into()]),
            ..Default::default()
        };
        assert_eq!(
            filled(c, &linux()).mount_type.as_deref(),
            Some("reverse-sshfs")
        );
        let c = LimaYaml {
            mount_type: Some("virtiofs".into()),
            ..Default::default()
        };
        assert_eq!(filled(c, &linux()).mount_type.as_deref(), Some("virtiofs"));
    }

    #[test]
    fn virtiofs_queue_size_default() {
        let queue = |c: &LimaYaml| -> Vec<Option<i64>> {
            c.mounts
                .iter()
                .flatten()
                .map(|m| m.virtiofs.as_ref().and_then(|v| v.queue_size))
                .collect()
        };
        let mounts = vec![
            limatype::Mount {
                location: "/a".into(),
                ..Default::default()
            },
            limatype::Mount {
                location: "/b".into(),
                virtiofs: Some(limatype::Virtiofs {
                    queue_size: Some(256),
                }),
                ..Default::default()
            },
        ];
        let c = LimaYaml {
            mount_type: Some("virtiofs".into()),
            mounts: Some(mounts.clone()),
            ..Default::default()
        };
        assert_eq!(queue(&filled(c, &linux())), [Some(1024), Some(256)]);
        let c = LimaYaml {
            mounts: Some(mounts),
            ..Default::default()
        };
        assert_eq!(
            queue(&filled(c, &linux())),
            [None, Some(256)],
            "only filled for virtiofs, as upstream"
        );
    }

    #[test]
    fn accepts_defaults() {
        for os in [Os::Linux, Os::Darwin, Os::Windows, Os::FreeBSD] {
            let host = on(os);
            accept(&filled(LimaYaml::default(), &host), &host).unwrap();
        }
    }

    #[test]
    fn mount_types_per_host() {
        let with = |m: &str| LimaYaml {
            mount_type: Some(m.into()),
            ..Default::default()
        };
        accept(&with("virtiofs"), &linux()).unwrap();
        let mac = on(Os::Darwin);
        let e = accept(&with("virtiofs"), &mac).unwrap_err().to_string();
        assert!(
            e.contains("must be one of reverse-sshfs, 9p for qemu on Darwin, got \"virtiofs\""),
            "{e}"
        );
        let win = on(Os::Windows);
        let e = accept(&with("9p"), &win).unwrap_err().to_string();
        assert!(e.contains("qemu on Windows"), "{e}");
        let e = accept(&with("wsl2"), &linux()).unwrap_err().to_string();
        assert!(e.contains("got \"wsl2\""), "{e}");
        let mut c = with("9p");
        c.mount_types_unsupported = Some(vec!["9p".into()]);
        let e = accept(&c, &linux()).unwrap_err().to_string();
        assert!(e.contains("mountTypesUnsupported"), "{e}");
    }

    #[test]
    fn host_binaries_and_firmware() {
        let no_qemu = Probes {
            qemu_found: Some(|_| false),
            ..Default::default()
        };
        let e = super::accept(&LimaYaml::default(), &linux(), &no_qemu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("qemu-system-x86_64 is not installed"), "{e}");
        let only_x86 = Probes {
            qemu_found: Some(|b| b == "qemu-system-x86_64"),
            firmware_found: Some(|_| false),
            virtiofsd_found: None,
        };
        super::accept(&LimaYaml::default(), &linux(), &only_x86).unwrap();
        let arm = LimaYaml {
            arch: Some("aarch64".into()),
            ..Default::default()
        };
        let e = super::accept(&arm, &linux(), &only_x86)
            .unwrap_err()
            .to_string();
        assert!(e.contains("qemu-system-aarch64 is not installed"), "{e}");
        let no_fw = Probes {
            qemu_found: Some(|_| true),
            ..only_x86
        };
        let e = super::accept(&arm, &linux(), &no_fw)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no UEFI firmware for aarch64"), "{e}");
    }

    #[test]
    fn unimplemented_fields_are_refused_naming_the_field() {
        let refused = |yaml: &str, field: &str| {
            let c = LimaYaml::from_yaml(yaml).unwrap();
            let e = accept(&c, &linux()).unwrap_err();
            assert_eq!(e.kind, driver::ErrorKind::InvalidConfig, "{yaml}");
            let e = e.to_string();
            assert!(e.contains(&format!("field `{field}`")), "{yaml}: {e}");
        };
        refused("networks: [{lima: user-v2}]", "networks[0].lima");
        refused(
            "networks: [{vzNAT: true}, {socket: /var/run/vmnet.sock}]",
            "networks[1].socket",
        );
        refused("tpm: true", "tpm");
        refused("os: FreeBSD", "os");
        refused(
            "osOpts: {Windows: {virtioWin: [{location: /w.iso}]}}",
            "osOpts.Windows.virtioWin",
        );
        refused("rosetta: {enabled: true}", "rosetta.enabled");
        // All of them, not just the first.
        let both = LimaYaml::from_yaml("tpm: true\nnetworks: [{lima: shared}]").unwrap();
        let e = accept(&both, &linux()).unwrap_err().to_string();
        assert!(
            e.contains("`networks[0].lima`") && e.contains("`tpm`"),
            "{e}"
        );
        // Upstream's qemu ignores these (with a warning here): still accepted.
        for ok in [
            "networks: [{vzNAT: true}]",
            "nestedVirtualization: true",
            "tpm: false",
            "rosetta: {enabled: false}",
            "os: Linux",
            "vmOpts: {vz: {rosetta: {enabled: true}}}",
        ] {
            accept(&LimaYaml::from_yaml(ok).unwrap(), &linux()).unwrap();
        }
    }

    #[test]
    fn arch_and_minimum_version() {
        let e = accept(
            &LimaYaml {
                arch: Some("mips".into()),
                ..Default::default()
            },
            &linux(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("field `arch`") && e.contains("\"mips\""), "{e}");
        let min = |v: &str| LimaYaml {
            vm_opts: Some(VmOpts {
                qemu: Some(QemuOpts {
                    minimum_version: Some(v.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        accept(&min("8.2.1"), &linux()).unwrap();
        let e = accept(&min("eight"), &linux()).unwrap_err().to_string();
        assert!(e.contains("vmOpts.qemu.minimumVersion"), "{e}");
    }

    #[test]
    fn video_and_firmware_images() {
        let vnc = |d: &str| LimaYaml {
            video: Some(limatype::Video {
                display: Some("vnc".into()),
                vnc: Some(limatype::VncOptions {
                    display: Some(d.into()),
                }),
            }),
            ..Default::default()
        };
        accept(&vnc("127.0.0.1:0,to=9"), &linux()).unwrap();
        accept(&vnc("unix:/tmp/vnc.sock"), &linux()).unwrap();
        let e = accept(&vnc("localhost"), &linux()).unwrap_err().to_string();
        assert!(
            e.contains("video.vnc.display") && e.contains("\"localhost\""),
            "{e}"
        );
        let fw = |location: &str, vm_type: Option<&str>| LimaYaml {
            firmware: Some(limatype::Firmware {
                legacy_bios: None,
                images: Some(vec![limatype::FileWithVmType {
                    location: location.into(),
                    arch: Some("x86_64".into()),
                    digest: None,
                    vm_type: vm_type.map(Into::into),
                }]),
            }),
            ..Default::default()
        };
        accept(&fw("/srv/OVMF_CODE.fd", None), &linux()).unwrap();
        accept(&fw("https://example.com/OVMF_CODE.fd", None), &linux()).unwrap();
        let e = accept(&fw("OVMF_CODE.fd", None), &linux())
            .unwrap_err()
            .to_string();
        assert!(e.contains("firmware.images[0].location"), "{e}");
        let e = accept(&fw("ftp://example.com/OVMF_CODE.fd", None), &linux())
            .unwrap_err()
            .to_string();
        assert!(e.contains("firmware.images[0].location"), "{e}");
        // Another driver's entry is not ours to judge.
        accept(&fw("https://example.com/x.fd", Some("vz")), &linux()).unwrap();
        // aarch64 with its own image needs no host firmware.
        let mut arm = fw("/srv/edk2-aarch64-code.fd", None);
        arm.arch = Some("aarch64".into());
        arm.firmware.as_mut().unwrap().images.as_mut().unwrap()[0].arch = Some("aarch64".into());
        let no_fw = Probes {
            qemu_found: Some(|_| true),
            firmware_found: Some(|_| false),
            virtiofsd_found: None,
        };
        super::accept(&arm, &linux(), &no_fw).unwrap();
    }
}
