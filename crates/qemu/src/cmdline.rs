//! The qemu command line for an instance: a pure function of a [`VmSpec`], so it can be
//! checked per arch without running anything.

use std::path::{Path, PathBuf};

use limatype::{filenames, Arch, Os};

/// The user-mode network Lima uses, so the guest sees the same addresses as under Lima
/// (one definition, shared with the seed's `host.lima.internal`).
pub use limatype::network::{SLIRP_GUEST_IP, SLIRP_NETWORK};

/// How qemu runs guest code: the host's hypervisor (upstream's `Accel`: KVM on Linux, HVF on
/// macOS, WHPX on Windows, NVMM on NetBSD) or TCG emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Hvf,
    Whpx,
    Nvmm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Hvf => "hvf",
            Accel::Whpx => "whpx",
            Accel::Nvmm => "nvmm",
            Accel::Tcg => "tcg",
        }
    }

    fn parse(s: &str) -> Option<Accel> {
        [Accel::Kvm, Accel::Hvf, Accel::Whpx, Accel::Nvmm, Accel::Tcg]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// The host a command line is built for (injected, so other hosts' lines can be checked here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostKind {
    pub os: Os,
    pub arch: Arch,
}

/// Env var that forces the accelerator (`tcg` or `kvm`); `tcg` is needed where `/dev/kvm`
/// exists but guests hang on it.
pub const ACCEL_ENV: &str = "LIMA_QEMU_ACCEL";

/// Kernel, initrd and command line for direct kernel boot.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
}

/// How a host directory reaches the guest (`mountType` 9p or virtiofs; reverse-sshfs mounts
/// have no device).
#[derive(Debug, Clone, PartialEq)]
pub enum MountDevice {
    /// `-virtfs local,...`: qemu serves the directory itself. Only the security model is a
    /// host-side option; `protocolVersion`, `msize` and `cache` are the guest's mount options.
    NineP { security_model: String },
    /// A `vhost-user-fs-pci` device talking to a `virtiofsd` listening on `socket`.
    Virtiofs { socket: PathBuf, queue_size: u32 },
}

/// One entry of `mounts` as qemu sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MountSpec {
    /// The host directory (absolute once the config is filled).
    pub location: PathBuf,
    /// The tag the guest's fstab names (`limadefaults::mount_tag`, as cidata uses it).
    pub tag: String,
    pub writable: bool,
    pub device: MountDevice,
}

/// One of `additionalDisks`: its image (`$LIMA_HOME/_disks/NAME/datadisk`) and format.
#[derive(Debug, Clone, PartialEq)]
pub struct DataDiskSpec {
    pub path: PathBuf,
    /// `qcow2` or `raw`, as `qemu-img info` read it: given to qemu so it never guesses (a
    /// raw image is never probed as another format).
    pub format: String,
}

/// The id of the shared memory backend virtiofs needs (vhost-user maps guest RAM).
pub const VIRTIOFS_MEM_ID: &str = "virtiofs-shm";

/// `audio` from the filled config: `device` (`none`, `default` or a qemu audiodev driver) and
/// `interface` (`hda`, `virtio`, or empty for hda).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AudioSpec {
    pub device: String,
    pub interface: String,
}

/// The qemu audiodev driver `audio.device: default` means on a host (upstream's `audioDevice`).
pub fn default_audio_driver(host_os: Os) -> &'static str {
    match host_os {
        Os::Darwin => "coreaudio",
        Os::Linux => "pa",
        Os::Windows => "dsound",
        Os::FreeBSD => "oss",
    }
}

/// A qemu version (`qemu-system-X --version`), compared part by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion(pub u32, pub u32, pub u32);

impl QemuVersion {
    /// `major[.minor[.patch]]` (missing parts are 0).
    pub fn parse(s: &str) -> Option<QemuVersion> {
        let mut parts = s.trim().split('.');
        let mut next = |required: bool| match parts.next() {
            None if !required => Some(0),
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok(),
            _ => None,
        };
        let v = QemuVersion(next(true)?, next(false)?, next(false)?);
        parts.next().is_none().then_some(v)
    }

    /// The version in `qemu-system-X --version`'s first line (`QEMU emulator version 8.2.2
    /// (Debian ...)`), as upstream's `parseQemuVersion`.
    pub fn from_version_output(output: &str) -> Option<QemuVersion> {
        let first = output.lines().next()?;
        let rest = first.strip_prefix("QEMU emulator version ")?;
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let v = &rest[..end];
        (v.split('.').count() >= 3).then_some(())?;
        QemuVersion::parse(&v.split('.').take(3).collect::<Vec<_>>().join("."))
    }
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Upstream's built-in (hard, soft) minimum qemu versions per host: older than hard is refused,
/// older than soft is warned about.
pub fn builtin_minimum_version(host: HostKind) -> (QemuVersion, QemuVersion) {
    match (host.os, host.arch) {
        (Os::Darwin, Arch::Aarch64) => (QemuVersion(8, 2, 1), QemuVersion(8, 2, 1)),
        (Os::Darwin, _) => (QemuVersion(7, 0, 0), QemuVersion(8, 2, 1)),
        (Os::Windows, _) => (QemuVersion(11, 0, 0), QemuVersion(11, 0, 0)),
        _ => (QemuVersion(4, 0, 0), QemuVersion(6, 2, 0)),
    }
}

/// An installed qemu that is too old for Lima or for the template.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TooOld {
    #[error("QEMU {found} is too old, {required} or later required")]
    Builtin {
        found: QemuVersion,
        required: QemuVersion,
    },
    #[error("QEMU {found} is too old, template requires `{required}` or later")]
    Template {
        found: QemuVersion,
        required: String,
    },
}

/// Upstream's version checks: the built-in hard minimum, then `vmOpts.qemu.minimumVersion`.
/// Returns a warning when older than the built-in soft minimum.
pub fn check_version(
    found: QemuVersion,
    host: HostKind,
    template_minimum: Option<&str>,
) -> Result<Option<String>, TooOld> {
    let (hard, soft) = builtin_minimum_version(host);
    if found < hard {
        return Err(TooOld::Builtin {
            found,
            required: hard,
        });
    }
    if let Some(min) = template_minimum {
        if QemuVersion::parse(min).is_some_and(|m| found < m) {
            return Err(TooOld::Template {
                found,
                required: min.to_string(),
            });
        }
    }
    Ok((found < soft).then(|| format!("QEMU {found} is too old, {soft} or later is recommended")))
}

/// Everything the command line depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    pub name: String,
    /// The host qemu runs on (audio driver, Windows guests' devices).
    pub host: HostKind,
    /// The installed qemu's version, when known (features newer than some qemu).
    pub qemu_version: Option<QemuVersion>,
    /// `video.display` (filled: `none` by default).
    pub display: String,
    /// `video.vnc.display` (filled: `127.0.0.1:0,to=9`), used when `display` is `vnc`.
    pub vnc_display: String,
    pub audio: AudioSpec,
    pub inst_dir: PathBuf,
    /// Lima arch name of the guest.
    pub arch: String,
    pub accel: Accel,
    /// `-cpu` value.
    pub cpu_type: String,
    pub cpus: u32,
    pub memory_mib: u64,
    /// The instance's boot disk (the diffdisk).
    pub disk: PathBuf,
    /// `additionalDisks`, in order: virtio disks after the boot disk, so the guest sees them
    /// as /dev/vdb, /dev/vdc, ... (cidata's `LIMA_CIDATA_DISK_<i>_DEVICE`).
    pub data_disks: Vec<DataDiskSpec>,
    pub cidata_iso: Option<PathBuf>,
    pub direct_boot: Option<DirectBoot>,
    /// UEFI code image (`-drive if=pflash`); `None` for SeaBIOS (`firmware.legacyBIOS`), arches
    /// without UEFI, or an x86_64 direct kernel boot.
    pub firmware: Option<PathBuf>,
    pub ssh_address: String,
    pub ssh_local_port: u16,
    pub mac: String,
    /// Host directories shared with the guest, in `mounts` order.
    pub mounts: Vec<MountSpec>,
}

/// `qemu-system-<arch>`.
pub fn qemu_binary(arch: &str) -> String {
    let qarch = match arch {
        "armv7l" => "arm",
        "ppc64le" => "ppc64",
        other => other,
    };
    format!("qemu-system-{qarch}")
}

/// The accelerator to use: `$LIMA_QEMU_ACCEL` if set, else the host's hypervisor when the guest
/// arch is the host's and the hypervisor is usable (`/dev/kvm` read-write, macOS's
/// `kern.hv_support`), else TCG (upstream's `Accel`).
pub fn choose_accel(
    arch: &str,
    host: HostKind,
    env_value: Option<&str>,
    hypervisor_usable: bool,
) -> Result<Accel, UnknownAccel> {
    if let Some(v) = env_value.map(str::trim).filter(|v| !v.is_empty()) {
        return Accel::parse(v).ok_or_else(|| UnknownAccel {
            value: v.to_string(),
        });
    }
    if arch != host.arch.as_str() || !hypervisor_usable {
        return Ok(Accel::Tcg);
    }
    Ok(match host.os {
        Os::Linux => Accel::Kvm,
        Os::Darwin => Accel::Hvf,
        Os::Windows => Accel::Whpx,
        Os::FreeBSD => Accel::Tcg,
    })
}

/// The `-cpu` when the config names none for the guest arch (upstream's `defaultCPUType`):
/// `host` under a hypervisor when the host CPU can be passed through (`host_cpu`: not on Apple
/// M4, not on Windows), else `max` (`qemu64` for x86_64 on Windows); x86_64 guests on macOS
/// lose AVX-512 and 1GiB pages, which HVF and TCG there cannot give the guest.
pub fn default_cpu_type(arch: &str, host: HostKind, accel: Accel, host_cpu: bool) -> String {
    let mut t = if arch == host.arch.as_str() && accel != Accel::Tcg && host_cpu {
        "host"
    } else if arch == "x86_64" && host.os == Os::Windows && host.arch == Arch::X86_64 {
        "qemu64"
    } else {
        "max"
    }
    .to_string();
    if arch == "x86_64" && host.os == Os::Darwin {
        t.push_str(",-avx512vl,-pdpe1gb");
    }
    t
}

/// `$LIMA_QEMU_ACCEL` names an accelerator this driver does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{ACCEL_ENV}={value:?}: expected one of tcg, kvm, hvf, whpx, nvmm")]
pub struct UnknownAccel {
    pub value: String,
}

/// Whether `/dev/kvm` can be opened for read and write by us.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// A stable, locally administered MAC address for an instance dir (`52:55:55:xx:xx:xx`):
/// Lima's rule (`limadefaults::mac_address`) with the directory as the unique id.
pub fn mac_address(inst_dir: &Path) -> String {
    limadefaults::mac_address("", &inst_dir.to_string_lossy())
}

/// A value inside a qemu `-opt key=value,...` list: commas are doubled.
pub fn opt_value(v: &Path) -> String {
    v.display().to_string().replace(',', ",,")
}

/// `-audiodev` and the sound card (upstream's mapping): `none` (or empty) gives a silent
/// audiodev; `default` is the host's driver; the card is Intel HDA unless `interface` is
/// `virtio` on a qemu that has `virtio-sound-pci` (8.2.0).
pub fn audio_args(spec: &VmSpec) -> Vec<String> {
    let a = &spec.audio;
    if a.device.is_empty() || a.device == "none" {
        return vec!["-audiodev".into(), "none,id=snd0".into()];
    }
    let driver = if a.device == "default" {
        default_audio_driver(spec.host.os)
    } else {
        a.device.as_str()
    };
    let mut out = vec!["-audiodev".to_string(), format!("{driver},id=snd0")];
    let virtio_sound = spec.qemu_version.is_none_or(|v| v >= QemuVersion(8, 2, 0));
    if a.interface == "virtio" && !virtio_sound {
        tracing::warn!("virtio-sound requires QEMU 8.2.0 or newer. Falling back to intel-hda.");
    }
    if a.interface == "virtio" && virtio_sound {
        out.extend(["-device".into(), "virtio-sound-pci,audiodev=snd0".into()]);
    } else {
        out.extend([
            "-device".into(),
            "ich9-intel-hda".into(),
            "-device".into(),
            "hda-output,audiodev=snd0".into(),
        ]);
    }
    out
}

/// The `-display` value for `video.display` (`vnc` becomes `vnc=<video.vnc.display>,password=on`,
/// so nobody connects before the host agent has set a password).
pub fn display_value(display: &str, vnc_display: &str) -> String {
    if display == "vnc" {
        format!("vnc={vnc_display},password=on")
    } else {
        display.to_string()
    }
}

/// `-display` and the graphics devices (upstream's mapping): no display gives `-vga none`;
/// any other gives `virtio-vga` (x86_64, riscv64) or `virtio-gpu` (other arches), a virtio
/// keyboard and a mouse (a tablet for VNC, whose pointer is absolute).
pub fn display_args(spec: &VmSpec) -> Vec<String> {
    let mut out = vec![];
    if !spec.display.is_empty() {
        out.extend([
            "-display".to_string(),
            display_value(&spec.display, &spec.vnc_display),
        ]);
    }
    if spec.display == "none" {
        out.extend(["-vga".into(), "none".into()]);
        return out;
    }
    let gpu = match spec.arch.as_str() {
        "x86_64" | "riscv64" => "virtio-vga",
        _ => "virtio-gpu",
    };
    let input = if spec.display == "vnc" {
        "tablet"
    } else {
        "mouse"
    };
    for d in [
        gpu.to_string(),
        "virtio-keyboard-pci".into(),
        format!("virtio-{input}-pci"),
    ] {
        out.extend(["-device".into(), d]);
    }
    out
}

/// The full argument list (without the binary name).
pub fn build_args(spec: &VmSpec) -> Vec<String> {
    let dir = &spec.inst_dir;
    let path = |f: &str| dir.join(f).display().to_string();
    let mut a: Vec<String> = vec![];
    let mut push = |args: &[&str]| a.extend(args.iter().map(|s| s.to_string()));

    push(&["-name", &format!("lima-{}", spec.name)]);
    push(&["-m", &spec.memory_mib.to_string()]);
    if spec
        .mounts
        .iter()
        .any(|m| matches!(m.device, MountDevice::Virtiofs { .. }))
    {
        // vhost-user needs guest RAM the daemon can map. Upstream uses a file in /dev/shm; a
        // memfd behaves the same without depending on /dev/shm's size (small in containers).
        push(&[
            "-object",
            &format!(
                "memory-backend-memfd,id={VIRTIOFS_MEM_ID},size={}M,share=on",
                spec.memory_mib
            ),
        ]);
        push(&["-numa", &format!("node,memdev={VIRTIOFS_MEM_ID}")]);
    }
    let cpu = if spec.accel == Accel::Tcg && spec.cpu_type.starts_with("host") {
        // "host" needs a hardware accelerator.
        spec.cpu_type.replacen("host", "max", 1)
    } else {
        spec.cpu_type.clone()
    };
    push(&["-cpu", &cpu]);
    match (spec.arch.as_str(), spec.accel) {
        ("x86_64", Accel::Tcg) => {
            push(&["-machine", "q35,vmport=off"]);
            push(&["-accel", "tcg,thread=multi,tb-size=512"]);
            push(&["-global", "ICH9-LPC.disable_s3=1"]);
            push(&["-global", "ICH9-LPC.disable_s4=1"]);
        }
        ("x86_64", accel) => push(&["-machine", &format!("q35,accel={}", accel.as_str())]),
        ("riscv64", accel) => push(&[
            "-machine",
            &format!("virt,acpi=off,accel={}", accel.as_str()),
        ]),
        ("ppc64le", accel) => push(&["-machine", &format!("pseries,accel={}", accel.as_str())]),
        ("s390x", accel) => push(&[
            "-machine",
            &format!("s390-ccw-virtio,accel={}", accel.as_str()),
        ]),
        (_, accel) => push(&["-machine", &format!("virt,accel={}", accel.as_str())]),
    }
    push(&[
        "-smp",
        &format!("{0},sockets=1,cores={0},threads=1", spec.cpus),
    ]);
    if let Some(fw) = &spec.firmware {
        push(&[
            "-drive",
            &format!("if=pflash,format=raw,readonly=on,file={}", fw.display()),
        ]);
    }

    push(&[
        "-drive",
        &format!("file={},if=virtio,discard=on", spec.disk.display()),
    ]);
    for d in &spec.data_disks {
        push(&[
            "-drive",
            &format!(
                "file={},if=virtio,discard=on,format={}",
                opt_value(&d.path),
                d.format
            ),
        ]);
    }
    if let Some(iso) = &spec.cidata_iso {
        // A CD on virtio-scsi: minimal cloud kernels (Debian's) have no AHCI for q35's default
        // CD drive, while virtio-scsi is in every cloud kernel.
        let scsi = if spec.arch == "s390x" {
            "virtio-scsi-ccw"
        } else {
            "virtio-scsi-pci"
        };
        push(&["-device", &format!("{scsi},id=scsi0")]);
        push(&[
            "-drive",
            &format!(
                "file={},if=none,id=cidata,format=raw,media=cdrom,readonly=on",
                iso.display()
            ),
        ]);
        push(&["-device", "scsi-cd,bus=scsi0.0,drive=cidata"]);
    }
    if let Some(db) = &spec.direct_boot {
        push(&["-kernel", &db.kernel.display().to_string()]);
        if let Some(initrd) = &db.initrd {
            push(&["-initrd", &initrd.display().to_string()]);
        }
        if let Some(cmdline) = db.cmdline.as_deref().filter(|c| !c.is_empty()) {
            push(&["-append", cmdline]);
        }
    } else {
        push(&["-boot", "order=c,splash-time=0,menu=on"]);
    }

    let net = if spec.arch == "s390x" {
        "virtio-net-ccw"
    } else {
        "virtio-net-pci"
    };
    push(&[
        "-netdev",
        &format!(
            "user,id=net0,net={SLIRP_NETWORK},dhcpstart={SLIRP_GUEST_IP},hostfwd=tcp:{}:{}-:22",
            spec.ssh_address, spec.ssh_local_port
        ),
    ]);
    push(&["-device", &format!("{net},netdev=net0,mac={}", spec.mac)]);
    // Entropy early in boot keeps sshd key generation from stalling.
    push(&["-device", "virtio-rng-pci"]);
    a.extend(audio_args(spec));
    a.extend(display_args(spec));
    let mut push = |args: &[&str]| a.extend(args.iter().map(|s| s.to_string()));
    push(&["-parallel", "none"]);

    for (i, m) in spec.mounts.iter().enumerate() {
        match &m.device {
            MountDevice::NineP { security_model } => {
                let mut o = format!(
                    "local,mount_tag={},path={},security_model={security_model}",
                    m.tag,
                    opt_value(&m.location)
                );
                if !m.writable {
                    o.push_str(",readonly=on");
                }
                push(&["-virtfs", &o]);
            }
            MountDevice::Virtiofs { socket, queue_size } => {
                // Read-only is not enforced here (vhost-user-fs has no such property); the
                // guest mounts it `ro`, and virtiofsd is started read-only when it can be.
                let chardev = format!("char-virtiofs-{i}");
                push(&[
                    "-chardev",
                    &format!("socket,id={chardev},path={}", opt_value(socket)),
                ]);
                push(&[
                    "-device",
                    &format!(
                        "vhost-user-fs-pci,queue-size={queue_size},chardev={chardev},tag={}",
                        m.tag
                    ),
                ]);
            }
        }
    }

    push(&[
        "-chardev",
        &format!(
            "socket,id=char-serial,path={},server=on,wait=off,logfile={}",
            path(filenames::SERIAL_SOCK),
            path(filenames::SERIAL_LOG)
        ),
    ]);
    push(&["-serial", "chardev:char-serial"]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=char-qmp,path={},server=on,wait=off",
            path(filenames::QMP_SOCK)
        ),
    ]);
    push(&["-qmp", "chardev:char-qmp"]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=qga0,path={},server=on,wait=off",
            path(filenames::GUEST_AGENT_SOCK)
        ),
    ]);
    push(&["-device", "virtio-serial"]);
    push(&[
        "-device",
        &format!(
            "virtserialport,chardev=qga0,name={}",
            filenames::VIRTIO_PORT
        ),
    ]);
    push(&["-pidfile", &path(filenames::QEMU_PID)]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINUX_X86: HostKind = HostKind {
        os: Os::Linux,
        arch: Arch::X86_64,
    };
    const MAC_ARM: HostKind = HostKind {
        os: Os::Darwin,
        arch: Arch::Aarch64,
    };
    const MAC_INTEL: HostKind = HostKind {
        os: Os::Darwin,
        arch: Arch::X86_64,
    };

    /// A spec as `Machine::spec` makes it for (host, guest arch): the accelerator and CPU
    /// from the same rules, UEFI from the firmware search with `firmware` as the only file.
    fn spec_on(host: HostKind, arch: &str, hypervisor: bool, firmware: Option<&str>) -> VmSpec {
        let mut s = spec(arch, Accel::Tcg);
        s.host = host;
        s.accel = choose_accel(arch, host, None, hypervisor).unwrap();
        s.cpu_type = default_cpu_type(arch, host, s.accel, true);
        s.direct_boot = None;
        s.firmware = firmware.map(|fw| {
            let exe = PathBuf::from(format!("/opt/homebrew/bin/{}", qemu_binary(arch)));
            crate::firmware::find(arch, &exe, Path::new("/Users/u"), |p| p == Path::new(fw))
                .unwrap()
        });
        s
    }

    #[test]
    fn macos_arm64_hvf_aarch64_guest_snapshot() {
        let s = spec_on(
            MAC_ARM,
            "aarch64",
            true,
            Some("/opt/homebrew/share/qemu/edk2-aarch64-code.fd"),
        );
        let a = build_args(&s);
        assert_eq!(after(&a, "-machine"), ["virt,accel=hvf"]);
        assert_eq!(after(&a, "-cpu"), ["host"]);
        insta::assert_yaml_snapshot!(a);
    }

    #[test]
    fn macos_arm64_x86_64_guest_tcg_snapshot() {
        let s = spec_on(
            MAC_ARM,
            "x86_64",
            true,
            Some("/opt/homebrew/share/qemu/edk2-x86_64-code.fd"),
        );
        let a = build_args(&s);
        assert_eq!(after(&a, "-cpu"), ["max,-avx512vl,-pdpe1gb"]);
        assert_eq!(after(&a, "-accel"), ["tcg,thread=multi,tb-size=512"]);
        insta::assert_yaml_snapshot!(a);
    }

    #[test]
    fn macos_intel_hvf_x86_64_guest_keeps_host_cpu_without_avx512() {
        let s = spec_on(MAC_INTEL, "x86_64", true, None);
        let a = build_args(&s);
        assert_eq!(after(&a, "-machine"), ["q35,accel=hvf"]);
        assert_eq!(after(&a, "-cpu"), ["host,-avx512vl,-pdpe1gb"]);
        assert!(
            !a.iter().any(|x| x.contains("pflash")),
            "legacy BIOS: no pflash"
        );
    }

    #[test]
    fn linux_riscv64_guest_with_display_and_audio_snapshot() {
        let mut s = spec_on(
            LINUX_X86,
            "riscv64",
            true,
            Some("/usr/share/qemu-efi-riscv64/RISCV_VIRT_CODE.fd"),
        );
        s.display = "vnc".into();
        s.audio = AudioSpec {
            device: "default".into(),
            interface: "".into(),
        };
        let a = build_args(&s);
        assert_eq!(after(&a, "-machine"), ["virt,acpi=off,accel=tcg"]);
        assert_eq!(after(&a, "-display"), ["vnc=127.0.0.1:0,to=9,password=on"]);
        insta::assert_yaml_snapshot!(a);
    }

    #[test]
    fn linux_arm64_kvm_aarch64_guest_snapshot() {
        let host = HostKind {
            os: Os::Linux,
            arch: Arch::Aarch64,
        };
        let s = spec_on(
            host,
            "aarch64",
            true,
            Some("/usr/share/AAVMF/AAVMF_CODE.fd"),
        );
        insta::assert_yaml_snapshot!(build_args(&s));
    }

    #[test]
    fn display_devices_per_arch() {
        let mut s = spec("aarch64", Accel::Kvm);
        s.display = "default".into();
        let a = build_args(&s);
        assert_eq!(after(&a, "-display"), ["default"]);
        assert!(after(&a, "-device").contains(&"virtio-gpu"));
        assert!(after(&a, "-device").contains(&"virtio-mouse-pci"));
        assert!(after(&a, "-vga").is_empty());
        let mut s = spec("x86_64", Accel::Kvm);
        s.display = "vnc".into();
        s.vnc_display = "unix:/i/vnc.sock".into();
        let a = build_args(&s);
        assert_eq!(after(&a, "-display"), ["vnc=unix:/i/vnc.sock,password=on"]);
        assert!(after(&a, "-device").contains(&"virtio-vga"));
        assert!(after(&a, "-device").contains(&"virtio-tablet-pci"));
        let a = build_args(&spec("x86_64", Accel::Kvm));
        assert_eq!(after(&a, "-display"), ["none"]);
        assert_eq!(after(&a, "-vga"), ["none"]);
    }

    #[test]
    fn audio_devices() {
        let mut s = spec("x86_64", Accel::Kvm);
        assert_eq!(after(&build_args(&s), "-audiodev"), ["none,id=snd0"]);
        s.host = MAC_ARM;
        s.audio.device = "default".into();
        let a = build_args(&s);
        assert_eq!(after(&a, "-audiodev"), ["coreaudio,id=snd0"]);
        assert!(after(&a, "-device").contains(&"hda-output,audiodev=snd0"));
        s.audio = AudioSpec {
            device: "pa".into(),
            interface: "virtio".into(),
        };
        let a = build_args(&s);
        assert!(after(&a, "-device").contains(&"virtio-sound-pci,audiodev=snd0"));
        s.qemu_version = Some(QemuVersion(7, 2, 0));
        let a = build_args(&s);
        assert!(
            after(&a, "-device").contains(&"ich9-intel-hda"),
            "old qemu: hda"
        );
    }

    #[test]
    fn versions() {
        let out = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright";
        assert_eq!(
            QemuVersion::from_version_output(out),
            Some(QemuVersion(7, 2, 22))
        );
        assert_eq!(
            QemuVersion::from_version_output("QEMU emulator version 9.1.0\n"),
            Some(QemuVersion(9, 1, 0))
        );
        assert_eq!(QemuVersion::from_version_output("qemu 9"), None);
        assert_eq!(QemuVersion::parse("8.2"), Some(QemuVersion(8, 2, 0)));
        assert_eq!(QemuVersion::parse("8.x"), None);
        assert!(QemuVersion(8, 10, 0) > QemuVersion(8, 9, 9));
        let v = QemuVersion(7, 2, 22);
        assert_eq!(
            check_version(v, LINUX_X86, None),
            Ok(None),
            "7.2 is above Linux's soft minimum"
        );
        assert_eq!(
            check_version(v, LINUX_X86, Some("8.2.1"))
                .unwrap_err()
                .to_string(),
            "QEMU 7.2.22 is too old, template requires `8.2.1` or later"
        );
        assert_eq!(
            check_version(v, MAC_ARM, None).unwrap_err().to_string(),
            "QEMU 7.2.22 is too old, 8.2.1 or later required"
        );
        assert_eq!(
            check_version(v, MAC_INTEL, None).unwrap().as_deref(),
            Some("QEMU 7.2.22 is too old, 8.2.1 or later is recommended")
        );
        check_version(v, LINUX_X86, Some("7.2.22")).unwrap();
    }

    fn spec(arch: &str, accel: Accel) -> VmSpec {
        let dir = PathBuf::from("/home/u/.lima/vm");
        VmSpec {
            name: "vm".into(),
            host: LINUX_X86,
            qemu_version: Some(QemuVersion(8, 2, 2)),
            display: "none".into(),
            vnc_display: "127.0.0.1:0,to=9".into(),
            audio: AudioSpec {
                device: "none".into(),
                interface: "".into(),
            },
            arch: arch.into(),
            accel,
            cpu_type: if arch == "x86_64" {
                "host".into()
            } else {
                "max".into()
            },
            cpus: 2,
            memory_mib: 2048,
            disk: dir.join("diffdisk"),
            data_disks: vec![],
            cidata_iso: Some(dir.join("cidata.iso")),
            direct_boot: Some(DirectBoot {
                kernel: dir.join("kernel"),
                initrd: Some(dir.join("initrd")),
                cmdline: Some("root=/dev/vda console=ttyS0".into()),
            }),
            firmware: None,
            ssh_address: "127.0.0.1".into(),
            ssh_local_port: 40022,
            mac: "52:55:55:12:34:56".into(),
            mounts: vec![],
            inst_dir: dir,
        }
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn x86_64_tcg_snapshot() {
        insta::assert_yaml_snapshot!(build_args(&spec("x86_64", Accel::Tcg)));
    }

    #[test]
    fn aarch64_kvm_with_firmware_snapshot() {
        let mut s = spec("aarch64", Accel::Kvm);
        s.direct_boot = None;
        s.firmware = Some("/usr/share/AAVMF/AAVMF_CODE.fd".into());
        insta::assert_yaml_snapshot!(build_args(&s));
    }

    #[test]
    fn machine_cpu_and_accel_per_arch() {
        let a = build_args(&spec("x86_64", Accel::Kvm));
        assert_eq!(after(&a, "-machine"), ["q35,accel=kvm"]);
        assert_eq!(after(&a, "-cpu"), ["host"]);
        assert!(after(&a, "-accel").is_empty());
        let a = build_args(&spec("x86_64", Accel::Tcg));
        assert_eq!(after(&a, "-machine"), ["q35,vmport=off"]);
        assert_eq!(after(&a, "-accel"), ["tcg,thread=multi,tb-size=512"]);
        assert_eq!(after(&a, "-cpu"), ["max"], "host cpu needs kvm");
        let a = build_args(&spec("aarch64", Accel::Tcg));
        assert_eq!(after(&a, "-machine"), ["virt,accel=tcg"]);
        assert_eq!(qemu_binary("aarch64"), "qemu-system-aarch64");
        assert_eq!(qemu_binary("x86_64"), "qemu-system-x86_64");
    }

    #[test]
    fn ssh_forward_sockets_and_pidfile() {
        let a = build_args(&spec("x86_64", Accel::Tcg));
        let netdev = after(&a, "-netdev")[0];
        assert!(
            netdev.contains("hostfwd=tcp:127.0.0.1:40022-:22"),
            "{netdev}"
        );
        let chardevs = after(&a, "-chardev").join("\n");
        for sock in ["serial.sock", "qmp.sock", "ga.sock", "serial.log"] {
            assert!(
                chardevs.contains(&format!("/home/u/.lima/vm/{sock}")),
                "{sock}"
            );
        }
        assert!(after(&a, "-device")
            .contains(&"virtserialport,chardev=qga0,name=io.lima-vm.guest_agent.0"));
        assert_eq!(after(&a, "-pidfile"), ["/home/u/.lima/vm/qemu.pid"]);
        assert_eq!(after(&a, "-append"), ["root=/dev/vda console=ttyS0"]);
        assert!(
            after(&a, "-boot").is_empty(),
            "direct boot has no -boot order"
        );
    }

    #[test]
    fn accel_choice() {
        let h = LINUX_X86;
        assert_eq!(choose_accel("x86_64", h, Some("tcg"), true), Ok(Accel::Tcg));
        assert_eq!(
            choose_accel("x86_64", h, Some("kvm"), false),
            Ok(Accel::Kvm)
        );
        assert_eq!(choose_accel("x86_64", h, None, true), Ok(Accel::Kvm));
        assert_eq!(choose_accel("x86_64", h, None, false), Ok(Accel::Tcg));
        assert_eq!(choose_accel("s390x", h, None, true), Ok(Accel::Tcg));
        assert_eq!(choose_accel("aarch64", MAC_ARM, None, true), Ok(Accel::Hvf));
        assert_eq!(choose_accel("x86_64", MAC_ARM, None, true), Ok(Accel::Tcg));
        let e = choose_accel("x86_64", h, Some("xen"), true).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"LIMA_QEMU_ACCEL="xen": expected one of tcg, kvm, hvf, whpx, nvmm"#
        );
    }

    #[test]
    fn mac_is_stable_and_local() {
        let m = mac_address(Path::new("/a/b"));
        assert_eq!(m, mac_address(Path::new("/a/b")));
        assert_ne!(m, mac_address(Path::new("/a/c")));
        assert!(m.starts_with("52:55:55:") && m.len() == 17, "{m}");
    }

    fn ninep(location: &str, mount_point: &str, writable: bool) -> MountSpec {
        MountSpec {
            location: location.into(),
            tag: limadefaults::mount_tag(location, mount_point),
            writable,
            device: MountDevice::NineP {
                security_model: "none".into(),
            },
        }
    }

    fn virtiofs(i: usize, location: &str, writable: bool) -> MountSpec {
        MountSpec {
            location: location.into(),
            tag: limadefaults::mount_tag(location, location),
            writable,
            device: MountDevice::Virtiofs {
                socket: format!("/home/u/.lima/vm/virtiofsd-{i}.sock").into(),
                queue_size: 1024,
            },
        }
    }

    #[test]
    fn no_mounts_no_devices() {
        let a = build_args(&spec("x86_64", Accel::Kvm));
        assert!(after(&a, "-virtfs").is_empty());
        assert!(after(&a, "-object").is_empty() && after(&a, "-numa").is_empty());
        assert!(!a.iter().any(|x| x.contains("virtiofs")));
    }

    #[test]
    fn ninep_read_only_and_writable() {
        let mut s = spec("x86_64", Accel::Kvm);
        s.mounts = vec![
            ninep("/home/u", "/home/u", false),
            ninep("/tmp/lima", "/mnt/lima", true),
        ];
        let a = build_args(&s);
        assert_eq!(
            after(&a, "-virtfs"),
            [
                format!(
                    "local,mount_tag={},path=/home/u,security_model=none,readonly=on",
                    limadefaults::mount_tag("/home/u", "/home/u")
                ),
                format!(
                    "local,mount_tag={},path=/tmp/lima,security_model=none",
                    limadefaults::mount_tag("/tmp/lima", "/mnt/lima")
                ),
            ]
        );
        // 9p needs no shared memory backend.
        assert!(after(&a, "-object").is_empty() && after(&a, "-numa").is_empty());
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        let mut s = spec("x86_64", Accel::Kvm);
        s.mounts = vec![ninep("/a,b", "/a,b", true), virtiofs(1, "/c", true)];
        if let MountDevice::Virtiofs { socket, .. } = &mut s.mounts[1].device {
            *socket = "/i,j/virtiofsd-1.sock".into();
        }
        let a = build_args(&s);
        assert!(after(&a, "-virtfs")[0].contains(",path=/a,,b,"));
        assert!(after(&a, "-chardev")
            .contains(&"socket,id=char-virtiofs-1,path=/i,,j/virtiofsd-1.sock"));
    }

    #[test]
    fn ninep_security_model_is_passed_through() {
        let mut s = spec("x86_64", Accel::Kvm);
        let mut m = ninep("/srv", "/srv", true);
        m.device = MountDevice::NineP {
            security_model: "mapped-xattr".into(),
        };
        s.mounts = vec![m];
        let a = build_args(&s);
        assert!(after(&a, "-virtfs")[0].ends_with(",path=/srv,security_model=mapped-xattr"));
    }

    #[test]
    fn virtiofs_memory_backend_once_and_one_device_per_mount() {
        let mut s = spec("x86_64", Accel::Kvm);
        s.mounts = vec![
            virtiofs(0, "/home/u", false),
            virtiofs(1, "/tmp/lima", true),
        ];
        let a = build_args(&s);
        assert_eq!(
            after(&a, "-object"),
            ["memory-backend-memfd,id=virtiofs-shm,size=2048M,share=on"]
        );
        assert_eq!(after(&a, "-numa"), ["node,memdev=virtiofs-shm"]);
        assert_eq!(after(&a, "-m"), ["2048"], "backend size must equal -m");
        let chardevs = after(&a, "-chardev");
        for i in 0..2 {
            let sock = format!("/home/u/.lima/vm/virtiofsd-{i}.sock");
            assert!(
                chardevs.contains(&format!("socket,id=char-virtiofs-{i},path={sock}").as_str()),
                "{chardevs:?}"
            );
        }
        let fs: Vec<&str> = after(&a, "-device")
            .into_iter()
            .filter(|d| d.starts_with("vhost-user-fs-pci"))
            .collect();
        assert_eq!(
            fs,
            [
                format!(
                    "vhost-user-fs-pci,queue-size=1024,chardev=char-virtiofs-0,tag={}",
                    limadefaults::mount_tag("/home/u", "/home/u")
                ),
                format!(
                    "vhost-user-fs-pci,queue-size=1024,chardev=char-virtiofs-1,tag={}",
                    limadefaults::mount_tag("/tmp/lima", "/tmp/lima")
                ),
            ]
        );
        assert!(after(&a, "-virtfs").is_empty());
    }

    #[test]
    fn data_disks_follow_the_boot_disk_in_order() {
        let mut s = spec("x86_64", Accel::Kvm);
        s.data_disks = vec![
            DataDiskSpec {
                path: "/home/u/.lima/_disks/data/datadisk".into(),
                format: "qcow2".into(),
            },
            DataDiskSpec {
                path: "/home/u/.lima/_disks/a,b/datadisk".into(),
                format: "raw".into(),
            },
        ];
        let a = build_args(&s);
        let drives: Vec<&str> = after(&a, "-drive")
            .into_iter()
            .filter(|d| d.contains("if=virtio"))
            .collect();
        assert_eq!(
            drives,
            [
                "file=/home/u/.lima/vm/diffdisk,if=virtio,discard=on",
                "file=/home/u/.lima/_disks/data/datadisk,if=virtio,discard=on,format=qcow2",
                "file=/home/u/.lima/_disks/a,,b/datadisk,if=virtio,discard=on,format=raw",
            ]
        );
        insta::assert_yaml_snapshot!(after(&a, "-drive"));
    }

    #[test]
    fn no_data_disks_no_extra_drives() {
        let a = build_args(&spec("x86_64", Accel::Kvm));
        assert!(!a.iter().any(|x| x.contains("datadisk")));
    }
}
