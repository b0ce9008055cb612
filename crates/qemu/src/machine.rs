//! One qemu instance: checks its config, prepares its disks and kernel, runs and stops qemu.
//! The driver-trait methods delegate here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use limatype::{filenames, Filled, Image, MountType};

use crate::cmdline::{
    self, Accel, AudioSpec, DataDiskSpec, DirectBoot, HostKind, MountDevice, MountSpec,
    QemuVersion, VmSpec,
};
use crate::{firmware, virtiofsd, vm};

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("lima.yaml: {0}")]
    Config(String),
    #[error("lima.yaml: {0}")]
    Accel(#[from] cmdline::UnknownAccel),
    #[error(transparent)]
    TooOld(#[from] cmdline::TooOld),
    #[error(transparent)]
    Firmware(#[from] firmware::FirmwareError),
    #[error(transparent)]
    Vm(#[from] vm::VmError),
    #[error(transparent)]
    Virtiofsd(Box<virtiofsd::VirtiofsdError>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("qemu is not running")]
    NotRunning,
}

impl From<virtiofsd::VirtiofsdError> for MachineError {
    fn from(e: virtiofsd::VirtiofsdError) -> Self {
        MachineError::Virtiofsd(Box::new(e))
    }
}

pub type Result<T, E = MachineError> = std::result::Result<T, E>;

pub struct Machine {
    pub name: String,
    pub dir: PathBuf,
    pub config: Filled,
    pub ssh_address: String,
    pub ssh_local_port: u16,
    running: tokio::sync::Mutex<Option<vm::Running>>,
}

impl Machine {
    pub fn new(name: &str, dir: &Path, config: Filled, ssh_local_port: u16) -> Self {
        Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            config,
            ssh_address: "127.0.0.1".into(),
            ssh_local_port,
            running: tokio::sync::Mutex::new(None),
        }
    }

    pub fn arch(&self) -> String {
        self.config.arch.to_string()
    }

    /// The first image entry for the instance's arch (an entry without `arch` matches any).
    pub fn image(&self) -> Result<Image> {
        let arch = self.arch();
        let images = self.config.images.as_deref().unwrap_or_default();
        images
            .iter()
            .find(|i| i.arch.as_deref().is_none_or(|a| a == arch))
            .cloned()
            .ok_or_else(|| {
                MachineError::Config(format!(
                    "field `images` has no entry for arch {arch:?} ({} entries)",
                    images.len()
                ))
            })
    }

    fn memory_mib(&self) -> Result<u64> {
        Some(self.config.memory.bytes() >> 20)
            .filter(|m| *m > 0)
            .ok_or_else(|| {
                MachineError::Config(format!(
                    "field `memory`: {} is less than 1MiB",
                    self.config.memory
                ))
            })
    }

    fn disk_bytes(&self) -> u64 {
        self.config.disk.bytes()
    }

    /// What qemu needs that this config asks for: an image, sizes, and the qemu binary on
    /// PATH. (The arch is one Lima knows: the config is filled and typed.)
    pub fn validate(&self) -> Result<()> {
        let arch = self.arch();
        self.image()?;
        self.memory_mib()?;
        if self.config.cpus < 1 {
            return Err(MachineError::Config(
                "field `cpus` must be at least 1".into(),
            ));
        }
        let bin = cmdline::qemu_binary(&arch);
        if find_in_path(&bin).is_none() {
            return Err(MachineError::Config(format!(
                "{bin} is not installed (needed for arch {arch:?})"
            )));
        }
        cmdline::choose_accel(
            &arch,
            this_host(),
            std::env::var(cmdline::ACCEL_ENV).ok().as_deref(),
            false,
        )?;
        self.check_qemu_version(&bin)?;
        Ok(())
    }

    /// `vmOpts.qemu.minimumVersion`, as the filled config has it.
    fn minimum_version(&self) -> Option<&str> {
        self.config
            .vm_opts
            .as_ref()
            .and_then(|o| o.qemu.as_ref())
            .and_then(|q| q.minimum_version.as_deref())
    }

    /// Upstream's version checks against `bin --version`: refused when older than the
    /// built-in minimum or the template's `vmOpts.qemu.minimumVersion`; a version that cannot
    /// be read is only warned about, as upstream does.
    pub fn check_qemu_version(&self, bin: &str) -> Result<Option<QemuVersion>> {
        let Some(found) = installed_version(bin) else {
            tracing::warn!("Failed to detect QEMU version ({bin} --version)");
            return Ok(None);
        };
        tracing::debug!("QEMU version {found} detected");
        if let Some(w) = cmdline::check_version(found, this_host(), self.minimum_version())? {
            tracing::warn!("{w}");
        }
        Ok(Some(found))
    }

    /// The UEFI code image for this instance, or `None` for SeaBIOS / no firmware: an image
    /// already in the instance (`qemu-efi-code.fd`), else the first usable `firmware.images`
    /// entry for qemu and this arch (copied there, digest checked), else the host's.
    fn firmware(&self, bin: &str, direct_boot: bool) -> Result<Option<PathBuf>> {
        let arch = self.arch();
        let fw = self.config.firmware.as_ref();
        let legacy = fw.and_then(|f| f.legacy_bios).unwrap_or(false);
        if legacy && !firmware::legacy_bios_supported(&arch) {
            tracing::warn!(
                "field `firmware.legacyBIOS` is not supported for architecture `{arch}`, ignoring"
            );
        }
        // An x86_64 kernel boots directly without UEFI (qemu's own BIOS loads it).
        if !firmware::uses_uefi(&arch, legacy) || (arch == "x86_64" && direct_boot) {
            return Ok(None);
        }
        let in_dir = self.dir.join(filenames::QEMU_EFI_CODE_FD);
        if in_dir.exists() {
            tracing::info!("Using existing firmware ({})", in_dir.display());
            return Ok(Some(in_dir));
        }
        let images = fw.and_then(|f| f.images.as_deref()).unwrap_or_default();
        // The first entry for qemu and this arch (upstream tries the next when a download
        // fails; a local file that cannot be read is an error here).
        if let Some((i, f)) = firmware::own_images(images, &arch).next() {
            let src = firmware::local_path(&f.location).ok_or_else(|| {
                MachineError::Config(format!(
                    "field `firmware.images[{i}].location`: {:?} was not fetched (`limactl start` \
                     fetches a remote image into the cache and hands the driver its path)",
                    f.location
                ))
            })?;
            let bytes = std::fs::read(&src).map_err(|source| MachineError::Io {
                path: src.clone(),
                source,
            })?;
            if let Some(d) = f.digest.as_deref().filter(|d| !d.is_empty()) {
                check_digest(&bytes, d).map_err(|why| {
                    MachineError::Config(format!("field `firmware.images[{i}].digest`: {why}"))
                })?;
            }
            std::fs::write(&in_dir, &bytes).map_err(|source| MachineError::Io {
                path: in_dir.clone(),
                source,
            })?;
            tracing::info!(
                "Using firmware {} (copied from {:?})",
                in_dir.display(),
                f.location
            );
            return Ok(Some(in_dir));
        }
        let exe = find_in_path(bin).unwrap_or_else(|| PathBuf::from(bin));
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let found = firmware::find(&arch, &exe, &home, |p| p.exists())?;
        tracing::info!("Using system firmware ({})", found.display());
        Ok(Some(found))
    }

    /// Makes `diffdisk` on the `basedisk` the host has already downloaded into the instance
    /// directory (with `kernel`, `initrd`, `kernel.cmdline` beside it for direct boot). Does
    /// nothing if `diffdisk` exists.
    pub async fn create_disk_from_basedisk(&self) -> Result<()> {
        if self.dir.join(filenames::DIFF_DISK).exists() {
            return Ok(());
        }
        let base = self.dir.join(filenames::BASE_DISK);
        if !base.exists() {
            return Err(MachineError::Config(format!(
                "{} is missing: the image must be downloaded there before the disks are made",
                base.display()
            )));
        }
        vm::create_diffdisk(&self.dir, self.disk_bytes()).await?;
        Ok(())
    }

    /// The accelerator for this instance (env override first).
    pub fn accel(&self) -> Result<Accel> {
        let host = this_host();
        cmdline::choose_accel(
            &self.arch(),
            host,
            std::env::var(cmdline::ACCEL_ENV).ok().as_deref(),
            hypervisor_usable(host.os),
        )
        .map_err(MachineError::from)
    }

    /// `additionalDisks` as drives: `$LIMA_HOME/_disks/NAME/datadisk` (`$LIMA_HOME` is the
    /// instance directory's parent) with the format qemu-img reads. The instance flow has
    /// locked them to this instance and checked they exist; a disk gone since is named here.
    pub async fn data_disks(&self) -> Result<Vec<DataDiskSpec>> {
        let mut out = vec![];
        for (i, d) in self.config.additional_disks.iter().flatten().enumerate() {
            let path = data_disk_path(&self.dir, &d.name).ok_or_else(|| {
                MachineError::Config(format!(
                    "additionalDisks[{i}]: no $LIMA_HOME above the instance directory {}",
                    self.dir.display()
                ))
            })?;
            if !path.exists() {
                return Err(MachineError::Config(format!(
                    "additionalDisks[{i}]: disk {:?} does not exist ({} is missing); create it \
                     with `limactl disk create {} --size SIZE`",
                    d.name,
                    path.display(),
                    d.name
                )));
            }
            let format = vm::image_format(&path).await?;
            if format != "qcow2" && format != "raw" {
                return Err(vm::VmError::UnsupportedFormat { path, format }.into());
            }
            out.push(DataDiskSpec { path, format });
        }
        Ok(out)
    }

    pub async fn spec(&self) -> Result<VmSpec> {
        let arch = self.arch();
        let host = this_host();
        let accel = self.accel()?;
        let bin = cmdline::qemu_binary(&arch);
        let cpu_type = self
            .config
            .vm_opts
            .as_ref()
            .and_then(|o| o.qemu.as_ref())
            .and_then(|q| q.cpu_type.as_ref())
            .or(self.config.cpu_type.as_ref())
            .and_then(|m| m.get(&arch))
            .filter(|c| !c.is_empty())
            .cloned()
            .unwrap_or_else(|| cmdline::default_cpu_type(&arch, host, accel, host_cpu(host)));
        let kernel = self.dir.join(filenames::KERNEL);
        let direct_boot = kernel.exists().then(|| DirectBoot {
            kernel,
            initrd: Some(self.dir.join(filenames::INITRD)).filter(|p| p.exists()),
            cmdline: std::fs::read_to_string(self.dir.join(filenames::KERNEL_CMDLINE)).ok(),
        });
        let firmware = self.firmware(&bin, direct_boot.is_some())?;
        let cidata = self.dir.join(filenames::CIDATA_ISO);
        let video = self.config.video.clone().unwrap_or_default();
        let audio = self.config.audio.clone().unwrap_or_default();
        Ok(VmSpec {
            name: self.name.clone(),
            host,
            qemu_version: installed_version(&bin),
            display: video.display.unwrap_or_else(|| "none".into()),
            vnc_display: video
                .vnc
                .and_then(|v| v.display)
                .unwrap_or_else(|| crate::config::VNC_DISPLAY.into()),
            audio: AudioSpec {
                device: audio.device.unwrap_or_default(),
                interface: audio.interface.unwrap_or_default(),
            },
            inst_dir: self.dir.clone(),
            arch,
            accel,
            cpu_type,
            cpus: self.config.cpus.max(1),
            memory_mib: self.memory_mib()?,
            disk: self.dir.join(filenames::DIFF_DISK),
            data_disks: self.data_disks().await?,
            cidata_iso: cidata.exists().then_some(cidata),
            direct_boot,
            firmware,
            ssh_address: self.ssh_address.clone(),
            ssh_local_port: self.ssh_local_port,
            mac: cmdline::mac_address(&self.dir),
            mounts: mount_specs(&self.config, &self.dir)?,
        })
    }

    /// Starts qemu (after one virtiofsd per virtiofs mount) and returns once it runs (pid file
    /// and QMP socket are there).
    pub async fn start(&self) -> Result<u32> {
        let spec = self.spec().await?;
        let bin = cmdline::qemu_binary(&spec.arch);
        let args = cmdline::build_args(&spec);
        vm::cleanup(&self.dir);
        // As upstream: a missing host directory is created (qemu's 9p refuses a missing path).
        for m in &spec.mounts {
            std::fs::create_dir_all(&m.location).map_err(|source| MachineError::Io {
                path: m.location.clone(),
                source,
            })?;
        }
        let daemons = virtiofsd::start_all(&spec.mounts, &self.dir).await?;
        let mut running = match vm::spawn(&bin, &args, &self.dir).await {
            Ok(r) => r,
            Err(e) => {
                virtiofsd::stop_all(daemons).await;
                return Err(e.into());
            }
        };
        running.virtiofsd = daemons;
        let pid = running.pid;
        *self.running.lock().await = Some(running);
        Ok(pid)
    }

    /// Waits until qemu exits; returns its exit status text. Used by the host agent to notice
    /// a qemu that died behind its back. Its virtiofsd daemons are stopped then.
    pub async fn wait_exit(&self) -> Result<String> {
        loop {
            {
                let mut guard = self.running.lock().await;
                let Some(r) = guard.as_mut() else {
                    return Err(MachineError::NotRunning);
                };
                if let Ok(Some(st)) = r.child.try_wait() {
                    let s = st.to_string();
                    if let Some(r) = guard.take() {
                        virtiofsd::stop_all(r.virtiofsd).await;
                    }
                    vm::cleanup(&self.dir);
                    return Ok(s);
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Graceful stop: power-down, then quit, then kill; then the virtiofsd daemons.
    pub async fn stop(&self, grace: Duration) -> Result<()> {
        let mut guard = self.running.lock().await;
        let child = guard.as_mut().map(|r| &mut r.child);
        let stopped = vm::stop(&self.dir, child, grace).await;
        if let Some(r) = guard.take() {
            virtiofsd::stop_all(r.virtiofsd).await;
        }
        stopped?;
        Ok(())
    }
}

/// The devices for `mounts` under `mountType` 9p or virtiofs (reverse-sshfs and no mount type:
/// none; the host agent mounts those over SSH). Locations are absolute once the config is
/// filled (`~` expanded by `limadefaults`); the tag is the one cidata's fstab line names.
pub fn mount_specs(config: &Filled, inst_dir: &Path) -> Result<Vec<MountSpec>> {
    let kind = config.mount_type;
    if !matches!(kind, Some(MountType::NineP | MountType::Virtiofs)) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (i, m) in config.mounts.iter().flatten().enumerate() {
        let location = PathBuf::from(&m.location);
        if !location.is_absolute() {
            return Err(MachineError::Config(format!(
                "field `mounts[{i}].location` must be an absolute path once filled, got {:?}",
                m.location
            )));
        }
        let mount_point = m.mount_point.as_deref().unwrap_or(&m.location);
        let device = if kind == Some(MountType::NineP) {
            MountDevice::NineP {
                security_model: m
                    .nine_p
                    .as_ref()
                    .and_then(|p| p.security_model.clone())
                    .unwrap_or_else(|| limadefaults::DEFAULT_9P_SECURITY_MODEL.into()),
            }
        } else {
            let q = m
                .virtiofs
                .as_ref()
                .and_then(|v| v.queue_size)
                .unwrap_or(limadefaults::DEFAULT_VIRTIOFS_QUEUE_SIZE);
            MountDevice::Virtiofs {
                socket: virtiofsd::socket_path(inst_dir, i),
                queue_size: u32::try_from(q).ok().filter(|q| *q > 0).ok_or_else(|| {
                    MachineError::Config(format!(
                        "field `mounts[{i}].virtiofs.queueSize` must be positive, got {q}"
                    ))
                })?,
            }
        };
        out.push(MountSpec {
            tag: limadefaults::mount_tag(&m.location, mount_point),
            location,
            writable: m.writable.unwrap_or(false),
            device,
        });
    }
    Ok(out)
}

/// Where disk `name` of `additionalDisks` keeps its image: `_disks/NAME/datadisk` beside the
/// instance directory (both live directly in `$LIMA_HOME`). None for a directory with no
/// parent.
pub fn data_disk_path(inst_dir: &Path, name: &str) -> Option<PathBuf> {
    let lima_home = inst_dir.parent()?;
    Some(
        lima_home
            .join(filenames::DISKS_DIR)
            .join(name)
            .join(filenames::DATA_DISK),
    )
}

/// This machine as a command line's host.
pub fn this_host() -> HostKind {
    HostKind {
        os: limatype::Os::host(),
        arch: limatype::Arch::host(),
    }
}

/// `sysctl -n NAME` on macOS ("" when it cannot be read).
fn sysctl(name: &str) -> String {
    std::process::Command::new("sysctl")
        .args(["-n", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Whether the host's hypervisor can run guests: `/dev/kvm` on Linux, `kern.hv_support` on
/// macOS, assumed on Windows (WHPX). Upstream warns when it falls back to TCG; so do we.
pub fn hypervisor_usable(os: limatype::Os) -> bool {
    let ok = match os {
        limatype::Os::Linux => cmdline::kvm_usable(),
        limatype::Os::Darwin => sysctl("kern.hv_support") == "1",
        limatype::Os::Windows => true,
        limatype::Os::FreeBSD => false,
    };
    if !ok {
        tracing::warn!(
            "no usable hypervisor on this host; using TCG. Expect very poor performance."
        );
    }
    ok
}

/// Whether `-cpu host` works here (upstream's `hasHostCPU`): not on Apple M4 (SME, which
/// HVF cannot give the guest), not on Windows.
fn host_cpu(host: HostKind) -> bool {
    match host.os {
        limatype::Os::Linux => true,
        limatype::Os::Darwin => {
            !(host.arch == limatype::Arch::Aarch64 && sysctl("hw.optional.arm.FEAT_SME") == "1")
        }
        _ => false,
    }
}

/// The installed `bin`'s version from `bin --version`, if it runs and says one.
pub fn installed_version(bin: &str) -> Option<QemuVersion> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    QemuVersion::from_version_output(&String::from_utf8_lossy(&out.stdout))
}

/// `digest` (`sha256:<hex>` or `sha512:<hex>`, as images' digests) against `bytes`.
fn check_digest(bytes: &[u8], digest: &str) -> std::result::Result<(), String> {
    use sha2::Digest;
    let (algo, want) = digest
        .split_once(':')
        .ok_or_else(|| format!("expected ALGORITHM:HEX, got {digest:?}"))?;
    let got: Vec<u8> = match algo {
        "sha256" => sha2::Sha256::digest(bytes).to_vec(),
        "sha512" => sha2::Sha512::digest(bytes).to_vec(),
        other => return Err(format!("unsupported algorithm {other:?} (sha256, sha512)")),
    };
    let got: String = got.iter().map(|b| format!("{b:02x}")).collect();
    if got.eq_ignore_ascii_case(want) {
        Ok(())
    } else {
        Err(format!("expected {digest}, got {algo}:{got}"))
    }
}

pub fn find_in_path(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use limatype::{Arch, HostFacts, LimaYaml, Os};

    /// `yaml` filled as the instance flow does: limadefaults, then qemu's own fill.
    fn filled(yaml: &str) -> Filled {
        let mut host = HostFacts::pretend(Os::Linux, Arch::X86_64);
        host.home = "/home/alice".into();
        host.user_name = "alice".into();
        host.uid = 1000;
        host.cpus = 2;
        host.memory = limatype::ByteSize(4 << 30);
        host.timezone = "UTC".into();
        let mut y: LimaYaml = serde_yaml::from_str(yaml).unwrap();
        crate::config::fill(&mut y, &host, &crate::config::Probes::default());
        limadefaults::fill_in_memory(&y, &host, "vm").unwrap()
    }

    const MOUNTS: &str = "mounts:\n- location: '~'\n- location: /tmp/lima\n  mountPoint: /mnt/lima\n  writable: true\n";

    #[test]
    fn ninep_mounts_from_the_filled_config() {
        let c = filled(&format!("mountType: 9p\n{MOUNTS}"));
        let m = mount_specs(&c, Path::new("/i")).unwrap();
        assert_eq!(
            m,
            [
                MountSpec {
                    location: "/home/alice".into(),
                    tag: limadefaults::mount_tag("/home/alice", "/home/alice"),
                    writable: false,
                    device: MountDevice::NineP {
                        security_model: "none".into()
                    },
                },
                MountSpec {
                    location: "/tmp/lima".into(),
                    tag: limadefaults::mount_tag("/tmp/lima", "/mnt/lima"),
                    writable: true,
                    device: MountDevice::NineP {
                        security_model: "none".into()
                    },
                },
            ]
        );
    }

    #[test]
    fn virtiofs_mounts_get_a_socket_each() {
        let c = filled(&format!("mountType: virtiofs\n{MOUNTS}"));
        let m = mount_specs(&c, Path::new("/i")).unwrap();
        assert_eq!(m.len(), 2);
        for (i, m) in m.iter().enumerate() {
            assert_eq!(
                m.device,
                MountDevice::Virtiofs {
                    socket: format!("/i/virtiofsd-{i}.sock").into(),
                    queue_size: 1024
                }
            );
        }
        assert_eq!(m[0].location, Path::new("/home/alice"), "~ expanded");
    }

    #[test]
    fn reverse_sshfs_has_no_devices() {
        let c = filled(&format!("mountType: reverse-sshfs\n{MOUNTS}"));
        assert!(mount_specs(&c, Path::new("/i")).unwrap().is_empty());
    }

    #[test]
    fn tags_match_cidata_fstab_rule() {
        // cidata tags a mount with mount_tag(location, mountPoint or location).
        let c = filled("mountType: 9p\nmounts:\n- location: /srv/data\n");
        let m = mount_specs(&c, Path::new("/i")).unwrap();
        assert_eq!(m[0].tag, limadefaults::mount_tag("/srv/data", "/srv/data"));
    }

    #[test]
    fn data_disks_live_beside_the_instance() {
        assert_eq!(
            data_disk_path(Path::new("/h/.lima/vm"), "data"),
            Some(PathBuf::from("/h/.lima/_disks/data/datadisk"))
        );
    }

    /// Each disk of `additionalDisks` in order, with its format read by qemu-img; a missing
    /// one named (needs qemu-img).
    #[tokio::test]
    async fn data_disk_specs_from_the_config() {
        if find_in_path("qemu-img").is_none() {
            eprintln!("SKIPPED: qemu-img is not installed");
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("vm");
        std::fs::create_dir(&dir).unwrap();
        for (name, format) in [("b", "raw"), ("a", "qcow2")] {
            let d = home.path().join("_disks").join(name);
            std::fs::create_dir_all(&d).unwrap();
            let out = std::process::Command::new("qemu-img")
                .args(["create", "-q", "-f", format])
                .arg(d.join("datadisk"))
                .arg("1M")
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        let m = Machine::new("vm", &dir, filled("additionalDisks: [b, {name: a}]\n"), 0);
        let disks = m.data_disks().await.unwrap();
        assert_eq!(
            disks,
            [
                DataDiskSpec {
                    path: home.path().join("_disks/b/datadisk"),
                    format: "raw".into()
                },
                DataDiskSpec {
                    path: home.path().join("_disks/a/datadisk"),
                    format: "qcow2".into()
                },
            ]
        );
        let m = Machine::new("vm", &dir, filled("additionalDisks: [a, gone]\n"), 0);
        let e = m.data_disks().await.unwrap_err().to_string();
        assert!(
            e.contains("additionalDisks[1]") && e.contains("\"gone\""),
            "{e}"
        );
    }

    /// The real qemu on this machine: its version is read, and a template needing a newer
    /// one is refused with upstream's message.
    #[test]
    fn minimum_version_against_installed_qemu() {
        let bin = cmdline::qemu_binary(limatype::Arch::host().as_str());
        let Some(found) = installed_version(&bin) else {
            eprintln!("SKIPPED: {bin} is not installed");
            return;
        };
        let dir = Path::new("/nonexistent");
        let m = Machine::new(
            "vm",
            dir,
            filled("vmOpts:\n  qemu:\n    minimumVersion: 999.0.0\n"),
            0,
        );
        let e = m.check_qemu_version(&bin).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("QEMU {found} is too old, template requires `999.0.0` or later")
        );
        let m = Machine::new(
            "vm",
            dir,
            filled("vmOpts:\n  qemu:\n    minimumVersion: 4.0.0\n"),
            0,
        );
        assert_eq!(m.check_qemu_version(&bin).unwrap(), Some(found));
    }

    #[test]
    fn firmware_digest() {
        check_digest(
            b"abc",
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        )
        .unwrap();
        let e = check_digest(b"abd", "sha256:ba7816bf").unwrap_err();
        assert!(e.contains("expected sha256:ba7816bf"), "{e}");
        assert!(check_digest(b"abc", "md5:00").is_err());
    }
}
