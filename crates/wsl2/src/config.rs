//! wsl2's config rules (Lima's facts): a Windows host, the host's arch, mount type `wsl2`
//! (the default and the only one), images that are root filesystem tar archives (not disk
//! images), no TPM, no Windows guests. Pure functions of the config and the [`HostFacts`].

use driver::DriverError;
use limatype::{HostFacts, LimaYaml, Os};

pub const MOUNT_TYPE: &str = "wsl2";
pub const IMAGE_FORMATS: &[&str] = &["tar"];

pub fn fill(config: &mut LimaYaml) {
    config
        .vm_type
        .get_or_insert_with(|| crate::NAME.to_string());
    config
        .mount_type
        .get_or_insert_with(|| MOUNT_TYPE.to_string());
}

/// Compression suffixes WSL's import (through Lima's downloader) understands.
const COMPRESSIONS: &[&str] = &[".gz", ".xz", ".bz2", ".zstd", ".zst"];

fn strip_compression(name: &str) -> &str {
    COMPRESSIONS
        .iter()
        .find_map(|c| name.strip_suffix(c))
        .unwrap_or(name)
}

/// What an image location looks like, by its name.
#[derive(Debug, PartialEq, Eq)]
pub enum ImageKind {
    TarRootfs,
    DiskImage,
    Squashfs,
    Unknown,
}

pub fn image_kind(location: &str) -> ImageKind {
    let name = location.to_ascii_lowercase();
    let tar_short = [".tar", ".tgz", ".txz", ".tbz2", ".tzst"];
    if tar_short.iter().any(|s| name.ends_with(s)) || strip_compression(&name).ends_with(".tar") {
        return ImageKind::TarRootfs;
    }
    let base = strip_compression(&name);
    if [".qcow2", ".raw", ".img", ".iso", ".ipsw"]
        .iter()
        .any(|s| base.ends_with(s))
    {
        ImageKind::DiskImage
    } else if base.ends_with(".squashfs") {
        ImageKind::Squashfs
    } else {
        ImageKind::Unknown
    }
}

pub fn accept(config: &LimaYaml, host: &HostFacts) -> driver::Result<()> {
    if host.os != Os::Windows {
        return Err(DriverError::invalid_config(format!(
            "wsl2 needs Windows 10 or 11 with WSL 2; this host is {}",
            host.os
        )));
    }
    let arch = config.arch.as_deref().unwrap_or(host.arch.as_str());
    if arch != host.arch.as_str() {
        return Err(DriverError::invalid_config(format!(
            "wsl2 runs only the host's arch ({}); field `arch` is {arch:?}",
            host.arch
        )));
    }
    if let Some(mt) = config.mount_type.as_deref() {
        if mt != MOUNT_TYPE {
            return Err(DriverError::invalid_config(format!(
                "field `mountType` must be \"{MOUNT_TYPE}\" for wsl2, got {mt:?}"
            )));
        }
    }
    if config.os.as_deref() == Some("Windows") {
        return Err(DriverError::invalid_config(
            "Windows guests are only supported by vmType qemu",
        ));
    }
    if config.tpm == Some(true) {
        return Err(DriverError::invalid_config(
            "field `tpm` is not supported by wsl2",
        ));
    }
    let images = config.images.as_deref().unwrap_or_default();
    for (i, image) in images.iter().enumerate() {
        if image.arch.as_deref().is_some_and(|a| a != arch) {
            continue;
        }
        let loc = &image.location;
        match image_kind(loc) {
            ImageKind::TarRootfs => {}
            ImageKind::DiskImage => {
                return Err(DriverError::invalid_config(format!(
                    "field `images[{i}]`: {loc:?} is a VM disk image; wsl2 imports only root filesystem tar archives (.tar, .tar.gz, .tar.xz, ...)"
                )))
            }
            ImageKind::Squashfs => {
                return Err(DriverError::invalid_config(format!(
                    "field `images[{i}]`: {loc:?} is a SquashFS image; wsl2 cannot import it, convert it to a tar archive"
                )))
            }
            ImageKind::Unknown => {
                return Err(DriverError::invalid_config(format!(
                    "field `images[{i}]`: {loc:?} is not a tar archive; wsl2 needs a root filesystem tar archive (.tar, .tar.gz, .tar.xz, ...)"
                )))
            }
        }
    }
    Ok(())
}

/// The WSL distribution name of an instance.
pub fn distro_name(instance: &str) -> String {
    format!("lima-{instance}")
}

/// `wsl.exe` arguments to import the instance's root filesystem as a new distribution.
pub fn import_args(instance: &str, instance_dir: &str, rootfs_tar: &str) -> Vec<String> {
    vec![
        "--import".into(),
        distro_name(instance),
        instance_dir.into(),
        rootfs_tar.into(),
        "--version".into(),
        "2".into(),
    ]
}

pub fn terminate_args(instance: &str) -> Vec<String> {
    vec!["--terminate".into(), distro_name(instance)]
}

pub fn unregister_args(instance: &str) -> Vec<String> {
    vec!["--unregister".into(), distro_name(instance)]
}

/// The state column for `lima-<instance>` in `wsl.exe --list --verbose` output (already
/// decoded from UTF-16): `Some("Running")`, `Some("Stopped")`, ...; `None` when the
/// distribution is not registered. Headers are localized, so only rows are matched.
pub fn parse_list_verbose(output: &str, instance: &str) -> Option<String> {
    let distro = distro_name(instance);
    output.lines().find_map(|line| {
        let mut cols = line.split_whitespace().peekable();
        if cols.peek() == Some(&"*") {
            cols.next();
        }
        (cols.next()? == distro).then(|| cols.next().map(str::to_string))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use limatype::{Arch, Image};

    fn windows() -> HostFacts {
        HostFacts::pretend(Os::Windows, Arch::X86_64)
    }

    fn with_image(loc: &str) -> LimaYaml {
        let mut c = LimaYaml {
            images: Some(vec![Image {
                location: loc.into(),
                arch: Some("x86_64".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        fill(&mut c);
        c
    }

    #[test]
    fn fill_sets_mount_type() {
        let mut c = LimaYaml::default();
        fill(&mut c);
        assert_eq!(c.mount_type.as_deref(), Some("wsl2"));
        assert_eq!(c.vm_type.as_deref(), Some("wsl2"));
    }

    #[test]
    fn image_kinds() {
        for tar in [
            "a.tar",
            "a.tar.gz",
            "A.TAR.XZ",
            "a.tgz",
            "a.tar.zst",
            "a.tar.zstd",
            "a.tbz2",
        ] {
            assert_eq!(image_kind(tar), ImageKind::TarRootfs, "{tar}");
        }
        assert_eq!(image_kind("x.qcow2"), ImageKind::DiskImage);
        assert_eq!(image_kind("x.img.xz"), ImageKind::DiskImage);
        assert_eq!(image_kind("x.squashfs.gz"), ImageKind::Squashfs);
        assert_eq!(image_kind("x.zip"), ImageKind::Unknown);
    }

    #[test]
    fn refuses_non_windows_hosts() {
        let linux = HostFacts::pretend(Os::Linux, Arch::X86_64);
        let e = accept(&with_image("r.tar.gz"), &linux)
            .unwrap_err()
            .to_string();
        assert!(e.contains("this host is Linux"), "{e}");
    }

    #[test]
    fn accepts_tar_images_refuses_disk_images() {
        accept(&with_image("https://x/rootfs.tar.gz"), &windows()).unwrap();
        let e = accept(&with_image("https://x/disk.qcow2"), &windows())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`images[0]`"), "{e}");
        assert!(e.contains("VM disk image"), "{e}");
        let e = accept(&with_image("x.squashfs"), &windows())
            .unwrap_err()
            .to_string();
        assert!(e.contains("SquashFS"), "{e}");
        // Entries for another arch are not this instance's business.
        let mut c = with_image("disk.qcow2");
        c.images.as_mut().unwrap()[0].arch = Some("aarch64".into());
        accept(&c, &windows()).unwrap();
    }

    #[test]
    fn rules() {
        let refuse = |mut c: LimaYaml, needle: &str| {
            fill(&mut c);
            let e = accept(&c, &windows()).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} should contain {needle:?}");
        };
        refuse(
            LimaYaml {
                mount_type: Some("9p".into()),
                ..Default::default()
            },
            "field `mountType` must be \"wsl2\" for wsl2, got \"9p\"",
        );
        refuse(
            LimaYaml {
                arch: Some("aarch64".into()),
                ..Default::default()
            },
            "host's arch (x86_64)",
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
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            import_args("default", r"C:\Users\u\.lima\default", r"C:\x\basedisk"),
            [
                "--import",
                "lima-default",
                r"C:\Users\u\.lima\default",
                r"C:\x\basedisk",
                "--version",
                "2"
            ]
        );
        assert_eq!(terminate_args("a"), ["--terminate", "lima-a"]);
        assert_eq!(unregister_args("a"), ["--unregister", "lima-a"]);
    }

    #[test]
    fn list_verbose() {
        let out = "  NAME            STATE           VERSION\r\n* Ubuntu          Stopped         2\r\n  lima-default    Running         2\r\n  lima-other      Stopped         2\r\n";
        assert_eq!(
            parse_list_verbose(out, "default").as_deref(),
            Some("Running")
        );
        assert_eq!(parse_list_verbose(out, "other").as_deref(), Some("Stopped"));
        assert_eq!(parse_list_verbose(out, "Ubuntu"), None);
        assert_eq!(parse_list_verbose(out, "missing"), None);
        let default_star = "* lima-x Running 2\n";
        assert_eq!(
            parse_list_verbose(default_star, "x").as_deref(),
            Some("Running")
        );
    }
}
