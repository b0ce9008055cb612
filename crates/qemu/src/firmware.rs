//! UEFI firmware for qemu guests: which arches need it, upstream's search order for the
//! host's edk2 code image (`$HOME/.local`, beside the qemu binary as Homebrew installs it, the
//! Windows installer, then distro paths), and `firmware.images` (a user-given image copied into
//! the instance as `qemu-efi-code.fd`). The search takes an `exists` function, so other hosts'
//! layouts are checked without touching this machine's filesystem.

use std::path::{Path, PathBuf};

use limatype::FileWithVmType;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirmwareError {
    #[error("unexpected architecture: `{0}`")]
    UnexpectedArch(String),
    #[error(
        "could not find firmware for `x86_64` (hint: try setting `firmware.legacyBIOS` to `true`)"
    )]
    NotFoundX86,
    #[error("could not find firmware for `{arch}` (hint: try copying the `edk-{qemu_arch}-code.fd` firmware to $HOME/.local/share/qemu/)")]
    NotFound { arch: String, qemu_arch: String },
}

/// Whether the guest boots through a `-drive if=pflash` UEFI image: not ppc64le and s390x,
/// and not with `firmware.legacyBIOS` (x86_64 and armv7l only; upstream ignores it elsewhere
/// with a warning).
pub fn uses_uefi(arch: &str, legacy_bios: bool) -> bool {
    let no_uefi_arch = matches!(arch, "ppc64le" | "s390x");
    let seabios = legacy_bios && legacy_bios_supported(arch);
    !(no_uefi_arch || seabios)
}

/// The arches where `firmware.legacyBIOS` means something.
pub fn legacy_bios_supported(arch: &str) -> bool {
    matches!(arch, "x86_64" | "armv7l")
}

/// The arch in edk2's file names (`edk2-<arch>-code.fd`).
fn edk2_arch(arch: &str) -> &str {
    match arch {
        "riscv64" => "riscv",
        "armv7l" => "arm",
        other => other,
    }
}

/// Where upstream looks for the UEFI code image, in order (`getFirmware`).
pub fn candidates(arch: &str, qemu_exe: &Path, home: &Path) -> Result<Vec<PathBuf>, FirmwareError> {
    if !matches!(arch, "x86_64" | "aarch64" | "armv7l" | "riscv64") {
        return Err(FirmwareError::UnexpectedArch(arch.to_string()));
    }
    let bin_dir = qemu_exe.parent().unwrap_or(Path::new("/"));
    let local_dir = bin_dir.parent().unwrap_or(Path::new("/"));
    let rel = format!("share/qemu/edk2-{}-code.fd", edk2_arch(arch));
    let rel_win = format!("share/edk2-{}-code.fd", edk2_arch(arch));
    let mut out = vec![
        home.join(".local").join(&rel),
        local_dir.join(&rel),
        bin_dir.join(&rel_win),
    ];
    let distro: &[&str] = match arch {
        "x86_64" => &[
            "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
            "/usr/share/OVMF/OVMF_CODE.fd",
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/edk2/ovmf/OVMF_CODE.fd",
            "/usr/share/qemu/ovmf-x86_64.bin",
            "/usr/share/qemu/ovmf-x86_64-4m.bin",
        ],
        "aarch64" => &[
            "/usr/share/edk2/aarch64/QEMU_CODE.fd",
            "/usr/share/AAVMF/AAVMF_CODE.fd",
            "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
        ],
        "armv7l" => &[
            "/usr/share/edk2/arm/QEMU_CODE.fd",
            "/usr/share/AAVMF/AAVMF32_CODE.fd",
        ],
        _ => &[
            "/usr/share/qemu-efi-riscv64/RISCV_VIRT_CODE.fd",
            "/usr/share/edk2/riscv/RISCV_VIRT_CODE.fd",
        ],
    };
    out.extend(distro.iter().map(PathBuf::from));
    Ok(out)
}

/// The first candidate that `exists`, or upstream's error with its hint.
pub fn find(
    arch: &str,
    qemu_exe: &Path,
    home: &Path,
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf, FirmwareError> {
    let found = candidates(arch, qemu_exe, home)?
        .into_iter()
        .find(|p| exists(p));
    tracing::debug!("firmware for {arch}: {found:?}");
    found.ok_or_else(|| {
        if arch == "x86_64" {
            FirmwareError::NotFoundX86
        } else {
            let qemu_arch = qemu_exe
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default();
            FirmwareError::NotFound {
                arch: arch.to_string(),
                qemu_arch: qemu_arch
                    .strip_prefix("qemu-system-")
                    .unwrap_or(&qemu_arch)
                    .to_string(),
            }
        }
    })
}

/// The `firmware.images` entries for qemu and `arch` (no `vmType` means any driver), with
/// their index in the list.
pub fn own_images<'a>(
    images: &'a [FileWithVmType],
    arch: &'a str,
) -> impl Iterator<Item = (usize, &'a FileWithVmType)> + 'a {
    images.iter().enumerate().filter(move |(_, f)| {
        matches!(f.vm_type.as_deref(), None | Some("") | Some(crate::NAME))
            && f.arch.as_deref().is_none_or(|a| a == arch)
    })
}

/// A location the instance flow downloads (`http://`, `https://`) before the driver starts,
/// handing the driver the cached file's path instead.
pub fn is_remote(location: &str) -> bool {
    location.starts_with("http://") || location.starts_with("https://")
}

/// A `firmware.images` location this driver can use without a download: an absolute path or
/// a `file://` URL. `None` for a remote one.
pub fn local_path(location: &str) -> Option<PathBuf> {
    let p = location.strip_prefix("file://").unwrap_or(location);
    let p = Path::new(p);
    p.is_absolute().then(|| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "/Users/u";

    fn found_only(want: &'static str) -> impl Fn(&Path) -> bool {
        move |p| p == Path::new(want)
    }

    #[test]
    fn homebrew_firmware_beside_qemu() {
        let exe = Path::new("/opt/homebrew/bin/qemu-system-aarch64");
        let want = "/opt/homebrew/share/qemu/edk2-aarch64-code.fd";
        assert_eq!(
            find("aarch64", exe, Path::new(HOME), found_only(want)).unwrap(),
            PathBuf::from(want)
        );
        let exe = Path::new("/usr/local/bin/qemu-system-x86_64");
        let want = "/usr/local/share/qemu/edk2-x86_64-code.fd";
        assert_eq!(
            find("x86_64", exe, Path::new(HOME), found_only(want)).unwrap(),
            PathBuf::from(want)
        );
        let c = candidates("riscv64", exe, Path::new(HOME)).unwrap();
        assert_eq!(
            c[0],
            PathBuf::from("/Users/u/.local/share/qemu/edk2-riscv-code.fd")
        );
    }

    #[test]
    fn user_copy_wins_then_distro_order() {
        let exe = Path::new("/usr/bin/qemu-system-aarch64");
        let c = candidates("aarch64", exe, Path::new(HOME)).unwrap();
        assert_eq!(
            c,
            [
                "/Users/u/.local/share/qemu/edk2-aarch64-code.fd",
                "/usr/share/qemu/edk2-aarch64-code.fd",
                "/usr/bin/share/edk2-aarch64-code.fd",
                "/usr/share/edk2/aarch64/QEMU_CODE.fd",
                "/usr/share/AAVMF/AAVMF_CODE.fd",
                "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            find("aarch64", exe, Path::new(HOME), |_| true).unwrap(),
            c[0]
        );
    }

    #[test]
    fn upstream_errors_with_hints() {
        let exe = Path::new("/usr/bin/qemu-system-x86_64");
        let e = find("x86_64", exe, Path::new(HOME), |_| false).unwrap_err();
        assert!(e.to_string().contains("firmware.legacyBIOS"), "{e}");
        let exe = Path::new("/usr/bin/qemu-system-riscv64");
        let e = find("riscv64", exe, Path::new(HOME), |_| false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "could not find firmware for `riscv64` (hint: try copying the `edk-riscv64-code.fd` firmware to $HOME/.local/share/qemu/)"
        );
        assert!(matches!(
            find("s390x", exe, Path::new(HOME), |_| true),
            Err(FirmwareError::UnexpectedArch(_))
        ));
    }

    #[test]
    fn uefi_per_arch_and_legacy_bios() {
        assert!(uses_uefi("x86_64", false));
        assert!(!uses_uefi("x86_64", true));
        assert!(
            uses_uefi("aarch64", true),
            "legacyBIOS is ignored on aarch64"
        );
        assert!(uses_uefi("riscv64", false));
        assert!(!uses_uefi("s390x", false) && !uses_uefi("ppc64le", false));
    }

    #[test]
    fn local_and_remote_images() {
        assert_eq!(local_path("/fw/a.fd"), Some(PathBuf::from("/fw/a.fd")));
        assert_eq!(
            local_path("file:///fw/a.fd"),
            Some(PathBuf::from("/fw/a.fd"))
        );
        assert_eq!(local_path("https://example.com/a.fd"), None);
        assert_eq!(local_path("a.fd"), None);
        let img = |arch: &str, vm: Option<&str>| FileWithVmType {
            location: format!("/{arch}"),
            arch: Some(arch.into()),
            digest: None,
            vm_type: vm.map(Into::into),
        };
        let images = [
            img("x86_64", Some("vz")),
            img("aarch64", None),
            img("x86_64", Some("qemu")),
        ];
        let own: Vec<usize> = own_images(&images, "x86_64").map(|(i, _)| i).collect();
        assert_eq!(own, [2]);
    }
}
