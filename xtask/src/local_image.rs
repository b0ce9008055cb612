//! `cargo xtask local-image`: builds a small Debian 12 guest from Debian's packages alone into
//! `_output/images/debian-12-local/`: an ext4 root filesystem (no partition table) as qcow2, the
//! kernel and initrd for direct kernel boot, and a `lima.yaml` pointing at them with digests.
//!
//! Every step is skipped when its output already exists; a finished image whose files still
//! match the digests in its `lima.yaml` is reused as is. Needs root (debootstrap, chroot).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};

#[derive(clap::Args)]
pub struct Args {
    /// Rebuild everything, even when a finished image exists.
    #[arg(long)]
    pub force: bool,
    /// Debian mirror to bootstrap from (default: the host's configured bookworm source).
    #[arg(long)]
    pub mirror: Option<String>,
    /// Size of the root filesystem image (mkfs.ext4 size; the guest grows it on first boot).
    #[arg(long, default_value = "2G")]
    pub fs_size: String,
}

const SUITE: &str = "bookworm";
/// Bump when the guest configuration below changes, so finished images get rebuilt.
const RECIPE_VERSION: u32 = 8;
const NAME: &str = "debian-12-local";
/// The root filesystem's label; fstab mounts by it, the kernel is told `root=/dev/vda`.
pub const ROOT_LABEL: &str = "debian-root";
pub const KERNEL_CMDLINE: &str = "root=/dev/vda rw console=ttyS0";

/// Packages on top of minbase: init, ssh, cloud-init (python3-cffi-backend is missing from its
/// dependency closure under debootstrap, and cloud-init fails to configure without it), the
/// kernel, networking by systemd-networkd/resolved, and resize2fs for growing the root.
/// The generic kernel, not the cloud one: only it has the 9p modules (its initrd is kept
/// small, see `configure`). sshfs for reverse-sshfs mounts; sfdisk (fdisk) and growpart
/// (cloud-guest-utils) for additional disks. iperf3 is the guest-side server of
/// `cargo xtask bench portfwd`. rsync for `limactl copy --backend=rsync` and `shell --sync`.
/// iptables for hostResolver: boot.sh DNATs the guest's DNS to the host agent's DNS server.
const INCLUDE: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "systemd-resolved",
    "udev",
    "dbus",
    "openssh-server",
    "cloud-init",
    "python3-cffi-backend",
    "sudo",
    "iproute2",
    "netbase",
    "ca-certificates",
    "e2fsprogs",
    "procps",
    "linux-image-amd64",
    "sshfs",
    "fdisk",
    "cloud-guest-utils",
    "iperf3",
    "rsync",
    "iptables",
];

/// Host tools the build runs, with the Debian package providing each.
const TOOLS: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("chroot", "coreutils"),
    ("mkfs.ext4", "e2fsprogs"),
    ("qemu-img", "qemu-utils"),
];

pub fn image_dir() -> PathBuf {
    crate::project_root().join("_output/images").join(NAME)
}

/// The files of a finished image.
struct Outputs {
    dir: PathBuf,
    rootfs: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
    raw: PathBuf,
    qcow2: PathBuf,
    yaml: PathBuf,
}

impl Outputs {
    fn new(dir: PathBuf) -> Self {
        Self {
            rootfs: dir.join("rootfs"),
            kernel: dir.join("kernel"),
            initrd: dir.join("initrd"),
            raw: dir.join("disk.raw"),
            qcow2: dir.join(format!("{NAME}.qcow2")),
            yaml: dir.join("lima.yaml"),
            dir,
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let out = Outputs::new(image_dir());
    let built = !args.force && recipe_matches(&out);
    if built && finished_image_is_intact(&out) {
        eprintln!("==> local-image: {} is up to date", out.yaml.display());
        return Ok(());
    }
    if built
        && !out.yaml.exists()
        && [&out.qcow2, &out.kernel, &out.initrd]
            .iter()
            .all(|f| f.is_file())
    {
        // Only the yaml is missing: the disk, kernel and initrd of this recipe are all there.
        write_lima_yaml(&out)?;
        eprintln!("==> local-image: wrote {}", out.yaml.display());
        return Ok(());
    }
    check_host()?;
    let started = Instant::now();
    if args.force && out.dir.exists() {
        fs::remove_dir_all(&out.dir).with_context(|| format!("removing {}", out.dir.display()))?;
    }
    fs::create_dir_all(&out.dir).with_context(|| format!("creating {}", out.dir.display()))?;
    // Derived files are rebuilt from the rootfs; a stale yaml must not outlive them.
    let _ = fs::remove_file(&out.yaml);
    let _ = fs::remove_file(out.dir.join(".recipe"));

    bootstrap(&out, &args)?;
    configure(&out.rootfs)?;
    extract_boot_files(&out)?;
    make_disk(&out, &args.fs_size)?;
    fs::write(out.dir.join(".recipe"), recipe())?;
    write_lima_yaml(&out)?;
    eprintln!(
        "==> local-image: {} ready in {:.1?}",
        out.yaml.display(),
        started.elapsed()
    );
    Ok(())
}

/// What a finished image was built from: the package list and the configuration's version.
fn recipe() -> String {
    format!("{RECIPE_VERSION} {}\n", INCLUDE.join(","))
}

fn recipe_matches(out: &Outputs) -> bool {
    fs::read_to_string(out.dir.join(".recipe")).is_ok_and(|r| r == recipe())
}

/// True when lima.yaml exists, parses, and every file it names is present with its digest.
fn finished_image_is_intact(out: &Outputs) -> bool {
    let Ok(text) = fs::read_to_string(&out.yaml) else {
        return false;
    };
    let Ok(yaml) = limatype::LimaYaml::from_yaml(&text) else {
        return false;
    };
    let Some(image) = yaml.images.as_ref().and_then(|i| i.first()) else {
        return false;
    };
    let mut files = vec![(image.location.clone(), image.digest.clone())];
    if let Some(k) = &image.kernel {
        files.push((k.location.clone(), k.digest.clone()));
    }
    if let Some(i) = &image.initrd {
        files.push((i.location.clone(), i.digest.clone()));
    }
    files.len() == 3
        && files.iter().all(|(location, digest)| {
            digest.is_some() && sha256_digest(Path::new(location)).ok().as_ref() == digest.as_ref()
        })
}

fn check_host() -> Result<()> {
    let uid = duct::cmd!("id", "-u").read().context("running id -u")?;
    ensure!(
        uid.trim() == "0",
        "cargo xtask local-image must run as root (debootstrap and chroot need it)"
    );
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(tool, _)| find_tool(tool).is_none())
        .map(|(tool, pkg)| format!("{tool} (apt-get install {pkg})"))
        .collect();
    if !missing.is_empty() {
        bail!("missing host tools: {}", missing.join(", "));
    }
    Ok(())
}

/// Looks a tool up on PATH plus the sbin directories (often missing from a user's PATH).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn tool(name: &str) -> Result<PathBuf> {
    find_tool(name).with_context(|| format!("{name} not found"))
}

/// The host's apt source for Debian bookworm (deb822 `.sources` or one-line `.list`).
pub fn host_debian_mirror() -> Result<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let found = match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => mirror_from_deb822(&text),
            _ if file.ends_with("sources.list") || file.extension() == Some("list".as_ref()) => {
                mirror_from_one_line(&text)
            }
            _ => None,
        };
        if let Some(uri) = found {
            return Ok(uri);
        }
    }
    bail!(
        "no apt source for Debian {SUITE} in /etc/apt/sources.list or /etc/apt/sources.list.d; \
         pass --mirror URL"
    )
}

fn mirror_from_deb822(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = field("Enabled").is_none_or(|e| e != "no");
        let has_suite = field("Suites").is_some_and(|s| s.split_whitespace().any(|s| s == SUITE));
        if is_deb && enabled && has_suite {
            if let Some(uri) =
                field("URIs").and_then(|u| u.split_whitespace().next().map(String::from))
            {
                return Some(uri);
            }
        }
    }
    None
}

fn mirror_from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
        if words.next()? != "deb" {
            return None;
        }
        let uri = words.next()?;
        (words.next()? == SUITE).then(|| uri.to_string())
    })
}

/// Step 1: debootstrap into `rootfs` (a marker file records that it finished).
fn bootstrap(out: &Outputs, args: &Args) -> Result<()> {
    // The marker holds the package list, so a changed list bootstraps afresh.
    let done = out.dir.join(".rootfs-bootstrapped");
    let packages = INCLUDE.join(",");
    if fs::read_to_string(&done).is_ok_and(|p| p == packages) && out.rootfs.is_dir() {
        eprintln!("==> local-image: rootfs already bootstrapped");
        return Ok(());
    }
    let mirror = match &args.mirror {
        Some(m) => m.clone(),
        None => host_debian_mirror()?,
    };
    if out.rootfs.exists() {
        fs::remove_dir_all(&out.rootfs)
            .with_context(|| format!("removing partial {}", out.rootfs.display()))?;
    }
    eprintln!("==> local-image: debootstrap {SUITE} from {mirror}");
    let include = format!("--include={}", INCLUDE.join(","));
    duct::cmd!(
        tool("debootstrap")?,
        "--variant=minbase",
        "--components=main",
        include,
        SUITE,
        &out.rootfs,
        &mirror
    )
    .env("DEBIAN_FRONTEND", "noninteractive")
    .run()
    .context("debootstrap failed")?;
    fs::write(&done, packages)?;
    Ok(())
}

fn chroot(rootfs: &Path, args: &[&str]) -> Result<String> {
    duct::cmd(
        tool("chroot")?,
        std::iter::once(rootfs.as_os_str()).chain(args.iter().map(|a| a.as_ref())),
    )
    .env("DEBIAN_FRONTEND", "noninteractive")
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .stderr_to_stdout()
    .read()
    .with_context(|| format!("chroot {}: {}", rootfs.display(), args.join(" ")))
}

fn write(rootfs: &Path, path: &str, contents: &str) -> Result<()> {
    let file = rootfs.join(path.trim_start_matches('/'));
    if let Some(parent) = file.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&file, contents).with_context(|| format!("writing {}", file.display()))
}

/// Removes a file or symlink inside the rootfs, ignoring "not there".
fn remove(rootfs: &Path, path: &str) -> Result<()> {
    let file = rootfs.join(path.trim_start_matches('/'));
    match fs::remove_file(&file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", file.display()))
        }
        _ => Ok(()),
    }
}

/// Empties a directory inside the rootfs, keeping the directory.
fn empty_dir(rootfs: &Path, path: &str) -> Result<()> {
    let dir = rootfs.join(path.trim_start_matches('/'));
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries {
        let p = entry?.path();
        if p.is_dir() && !p.is_symlink() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        }
        .with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// Step 1 (continued): the guest's configuration. Idempotent, so it simply runs every time the
/// disk is rebuilt.
fn configure(rootfs: &Path) -> Result<()> {
    eprintln!("==> local-image: configuring the rootfs");
    write(
        rootfs,
        "/etc/fstab",
        &format!("LABEL={ROOT_LABEL} / ext4 defaults,errors=remount-ro 0 1\n"),
    )?;
    write(rootfs, "/etc/hostname", &format!("{NAME}\n"))?;
    write(
        rootfs,
        "/etc/hosts",
        &format!(
            "127.0.0.1 localhost\n127.0.1.1 {NAME}\n::1 localhost ip6-localhost ip6-loopback\n"
        ),
    )?;
    // Only the seed ISO counts; no network metadata probing (which would wait for timeouts).
    // No locale step: minbase has no `locales` (update-locale), and C.UTF-8 is built in.
    // Host keys: ed25519 and ecdsa only; RSA keygen takes ~15 s under TCG, and DSA is obsolete.
    // grub-dpkg and printing keys to the console cost seconds and do nothing useful here.
    write(
        rootfs,
        "/etc/cloud/cloud.cfg.d/90-local-image.cfg",
        "datasource_list: [NoCloud, None]\n\
         disable_root: true\n\
         resize_rootfs: true\n\
         locale: false\n\
         ssh_genkeytypes: [ed25519, ecdsa]\n\
         ssh:\n  emit_keys_to_console: false\n\
         grub_dpkg:\n  enabled: false\n",
    )?;
    // DHCP on any virtio NIC even without a cloud-init network-config (which, when given,
    // writes its own 10-cloud-init-*.network that sorts first and wins).
    write(
        rootfs,
        "/etc/systemd/network/80-local-image-dhcp.network",
        "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n",
    )?;
    // Resolve through systemd-resolved, which learns the DNS server from DHCP.
    remove(rootfs, "/etc/resolv.conf")?;
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        rootfs.join("etc/resolv.conf"),
    )
    .context("linking /etc/resolv.conf")?;
    chroot(
        rootfs,
        &[
            "systemctl",
            "enable",
            "systemd-networkd.service",
            "systemd-resolved.service",
            "ssh.service",
            "serial-getty@ttyS0.service",
        ],
    )?;
    // Units that would download or scrub in the background of a short-lived VM.
    for unit in [
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_all.timer",
        "e2scrub_reap.service",
    ] {
        let _ = chroot(rootfs, &["systemctl", "disable", unit]);
    }
    // No passwords: root is locked (login only by the user cloud-init creates, with a key).
    chroot(rootfs, &["passwd", "--lock", "root"])?;
    // Per-instance identity is made on first boot: machine-id (empty file = first boot) and
    // the ssh host keys (cloud-init generates them before sshd starts).
    write(rootfs, "/etc/machine-id", "")?;
    remove(rootfs, "/var/lib/dbus/machine-id")?;
    for entry in fs::read_dir(rootfs.join("etc/ssh"))? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ssh_host_"))
        {
            fs::remove_file(&path)?;
        }
    }
    // The generic kernel's default initrd holds most storage drivers (twice the cloud one's
    // size, and slower to unpack under emulation): only what the root disk needs.
    write(
        rootfs,
        "/etc/initramfs-tools/conf.d/lima-local-image.conf",
        "MODULES=list\n",
    )?;
    write(
        rootfs,
        "/etc/initramfs-tools/modules",
        "virtio_pci\nvirtio_blk\nvirtio_scsi\next4\n",
    )?;
    chroot(rootfs, &["update-initramfs", "-u", "-k", "all"])?;
    // Drivers udev would load for q35's and the host CPU's devices that a VM without a
    // display, SATA disk, Wi-Fi or nested VMs never uses; each costs boot time under TCG.
    // Not evdev: systemd-logind reads the ACPI power button through it, and without it the
    // guest ignores qemu's `system_powerdown` (`limactl stop` then waits out its grace).
    let unused = [
        "kvm",
        "kvm_amd",
        "kvm_intel",
        "ccp",
        "cfg80211",
        "rfkill",
        "iTCO_wdt",
        "iTCO_vendor_support",
        "intel_pmc_bxt",
        "ahci",
        "libahci",
        "pcspkr",
        "i2c_i801",
        "lpc_ich",
        "drm",
        "bochs",
        "powernow_k8",
        "psmouse",
        "serio_raw",
        "efi_pstore",
        "sha512_ssse3",
        "aesni_intel",
        "ghash_clmulni_intel",
        "crc32_pclmul",
        "crct10dif_pclmul",
    ];
    let blacklist: String = unused.iter().map(|m| format!("blacklist {m}\n")).collect();
    write(rootfs, "/etc/modprobe.d/lima-local-image.conf", &blacklist)?;
    // Shrink: package caches and lists, logs from the build.
    chroot(rootfs, &["apt-get", "clean"])?;
    empty_dir(rootfs, "/var/lib/apt/lists")?;
    empty_dir(rootfs, "/var/cache/apt")?;
    empty_dir(rootfs, "/var/log/apt")?;
    empty_dir(rootfs, "/var/lib/cloud")?;
    empty_dir(rootfs, "/tmp")?;
    remove(rootfs, "/var/log/bootstrap.log")?;
    remove(rootfs, "/var/log/dpkg.log")?;
    Ok(())
}

/// The single kernel version installed in the rootfs's /boot.
fn installed_kernel_version(rootfs: &Path) -> Result<String> {
    let mut versions: Vec<String> = fs::read_dir(rootfs.join("boot"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(String::from)
        })
        .collect();
    versions.sort();
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no /boot/vmlinuz-* in {}", rootfs.display()),
        many => bail!("several kernels in {}/boot: {many:?}", rootfs.display()),
    }
}

/// Step 2: kernel and initrd out of the rootfs, after checking that the root disk's drivers
/// (virtio PCI, virtio block, ext4) are built in or in the initrd.
fn extract_boot_files(out: &Outputs) -> Result<()> {
    let version = installed_kernel_version(&out.rootfs)?;
    let boot = out.rootfs.join("boot");
    let config = fs::read_to_string(boot.join(format!("config-{version}")))
        .with_context(|| format!("reading the kernel config of {version}"))?;
    let initrd_name = format!("initrd.img-{version}");
    let listing = chroot(
        &out.rootfs,
        &["lsinitramfs", &format!("/boot/{initrd_name}")],
    )?;
    for (option, module) in [
        ("CONFIG_VIRTIO_PCI", "virtio_pci.ko"),
        ("CONFIG_VIRTIO_BLK", "virtio_blk.ko"),
        ("CONFIG_EXT4_FS", "ext4.ko"),
    ] {
        let built_in = config.lines().any(|l| l == format!("{option}=y"));
        let in_initrd = listing
            .lines()
            .any(|l| l.ends_with(module) || l.contains(&format!("/{module}")));
        ensure!(
            built_in || in_initrd,
            "kernel {version}: {option} is not built in and {module} is not in {initrd_name}"
        );
    }
    for (from, to) in [
        (boot.join(format!("vmlinuz-{version}")), &out.kernel),
        (boot.join(&initrd_name), &out.initrd),
    ] {
        fs::copy(&from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    eprintln!("==> local-image: kernel and initrd {version}");
    Ok(())
}

/// Step 3: the rootfs as an ext4 filesystem (made without mounting) converted to qcow2.
fn make_disk(out: &Outputs, fs_size: &str) -> Result<()> {
    let _ = fs::remove_file(&out.raw);
    eprintln!("==> local-image: mkfs.ext4 -d rootfs ({fs_size})");
    duct::cmd!(
        tool("mkfs.ext4")?,
        "-q",
        "-F",
        "-L",
        ROOT_LABEL,
        "-d",
        &out.rootfs,
        &out.raw,
        fs_size
    )
    .run()
    .context("mkfs.ext4 failed")?;
    let tmp = out.qcow2.with_extension("qcow2.tmp");
    eprintln!("==> local-image: qemu-img convert -O qcow2 -c");
    duct::cmd!(
        tool("qemu-img")?,
        "convert",
        "-O",
        "qcow2",
        "-c",
        &out.raw,
        &tmp
    )
    .run()
    .context("qemu-img convert failed")?;
    fs::rename(&tmp, &out.qcow2)?;
    fs::remove_file(&out.raw)?;
    Ok(())
}

/// Step 4: lima.yaml for a plain, fast boot of this image.
fn write_lima_yaml(out: &Outputs) -> Result<()> {
    let located = |p: &Path| -> Result<(String, String)> {
        let abs = fs::canonicalize(p).with_context(|| format!("resolving {}", p.display()))?;
        let location = abs
            .to_str()
            .map(String::from)
            .with_context(|| format!("{} is not UTF-8", abs.display()))?;
        Ok((location, sha256_digest(&abs)?))
    };
    let text = lima_yaml(
        located(&out.qcow2)?,
        located(&out.kernel)?,
        located(&out.initrd)?,
    );
    limatype::LimaYaml::from_yaml(&text).context("the generated lima.yaml does not parse")?;
    let tmp = out.yaml.with_extension("yaml.tmp");
    fs::write(&tmp, &text)?;
    fs::rename(&tmp, &out.yaml)?;
    Ok(())
}

/// lima.yaml text for a plain, fast boot: direct kernel boot, 2 CPUs, 2 GiB, no mounts, no
/// containerd. Each file is (absolute location, digest).
fn lima_yaml(disk: (String, String), kernel: (String, String), initrd: (String, String)) -> String {
    use limatype::{Containerd, File, Image, Kernel, LimaYaml};
    let arch = Some("x86_64".to_string());
    let yaml = LimaYaml {
        vm_type: Some("qemu".into()),
        arch: arch.clone(),
        images: Some(vec![Image {
            location: disk.0,
            arch: arch.clone(),
            digest: Some(disk.1),
            kernel: Some(Kernel {
                location: kernel.0,
                arch: None,
                digest: Some(kernel.1),
                cmdline: Some(KERNEL_CMDLINE.into()),
            }),
            initrd: Some(File {
                location: initrd.0,
                arch: None,
                digest: Some(initrd.1),
            }),
            ..Image::default()
        }]),
        cpus: Some(2),
        memory: Some("2GiB".into()),
        disk: Some("10GiB".into()),
        mounts: Some(vec![]),
        containerd: Some(Containerd {
            system: Some(false),
            user: Some(false),
            archives: None,
        }),
        ..LimaYaml::default()
    };
    let body = yaml.to_yaml();
    let newline = if body.ends_with('\n') { "" } else { "\n" };
    format!("# Built by `cargo xtask local-image` from Debian {SUITE} packages.\n{body}{newline}")
}

/// `sha256:<hex>` of a file, as lima.yaml spells digests.
fn sha256_digest(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bookworm_in_deb822_skipping_security_and_disabled() {
        let text = "Types: deb\nURIs: http://example.org/debian-security\nSuites: bookworm-security\n\
                    Components: main\n\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n\
                    Enabled: no\n\nTypes: deb deb-src\nURIs: http://mirror.example/debian\n\
                    Suites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_from_deb822(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn finds_bookworm_in_one_line_sources() {
        let text = "# comment\ndeb http://x/debian-security bookworm-security main\n\
                    deb [arch=amd64] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_from_one_line(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_from_one_line("deb http://x/debian bullseye main\n"),
            None
        );
    }

    #[test]
    fn lima_yaml_round_trips_with_direct_kernel_boot() {
        let f = |name: &str| (format!("/img/{name}"), format!("sha256:{name}"));
        let text = lima_yaml(f("disk.qcow2"), f("kernel"), f("initrd"));
        let yaml = limatype::LimaYaml::from_yaml(&text).unwrap();
        let image = &yaml.images.as_ref().unwrap()[0];
        assert_eq!(image.location, "/img/disk.qcow2");
        assert_eq!(image.digest.as_deref(), Some("sha256:disk.qcow2"));
        let kernel = image.kernel.as_ref().unwrap();
        assert_eq!(kernel.location, "/img/kernel");
        assert_eq!(kernel.cmdline.as_deref(), Some(KERNEL_CMDLINE));
        assert_eq!(
            image.initrd.as_ref().unwrap().digest.as_deref(),
            Some("sha256:initrd")
        );
        assert_eq!(yaml.mounts, Some(vec![]));
        assert_eq!(yaml.containerd.as_ref().unwrap().system, Some(false));
        assert_eq!(yaml.cpus, Some(2));
    }

    #[test]
    fn digest_is_sha256_of_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "abc").unwrap();
        assert_eq!(
            sha256_digest(&file).unwrap(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
