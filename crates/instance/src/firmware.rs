//! `firmware.images` with a remote (`http://`, `https://`) location: fetched into the download
//! cache with its digest checked by `limactl start` (so its progress shows, as the image's
//! does), then handed to the driver as the cached local path. Drivers (layer 6) cannot use the
//! downloader; the qemu driver copies a local image into the instance as `qemu-efi-code.fd`
//! as it always did (upstream's qemu driver downloads there itself).

use std::path::PathBuf;

use downloader::{DownloadError, Downloader};
use limatype::{filenames, FileWithVmType, Filled};

use crate::{InstanceError, Result};

/// Whether `location` needs a download (the drivers read paths and `file://` themselves).
fn is_remote(location: &str) -> bool {
    location.starts_with("http://") || location.starts_with("https://")
}

/// The firmware image `driver` would use for the config's arch: the first entry for it (no
/// `vmType` means any driver), when that one is remote, with its index in the list.
fn remote_entry<'a>(config: &'a Filled, driver: &str) -> Option<(usize, &'a FileWithVmType)> {
    let arch = config.arch.to_string();
    let images = config.firmware.as_ref()?.images.as_deref()?;
    images
        .iter()
        .enumerate()
        .find(|(_, f)| {
            (matches!(f.vm_type.as_deref(), None | Some(""))
                || f.vm_type.as_deref() == Some(driver))
                && f.arch.as_deref().is_none_or(|a| a == arch)
        })
        .filter(|(_, f)| is_remote(&f.location))
}

/// Fetches the remote firmware image `driver` would use into `dl`'s cache, digest checked;
/// `None` when there is none. Skipped when the instance holds its firmware already
/// (`qemu-efi-code.fd`, copied on an earlier start), as upstream downloads only then.
pub fn fetch(
    downloader: impl FnOnce() -> std::result::Result<Downloader, DownloadError>,
    dir: &std::path::Path,
    config: &Filled,
    driver: &str,
) -> Result<Option<PathBuf>> {
    let Some((i, f)) = remote_entry(config, driver) else {
        return Ok(None);
    };
    if dir.join(filenames::QEMU_EFI_CODE_FD).exists() {
        return Ok(None);
    }
    let fail = |source| InstanceError::FirmwareFetch {
        index: i,
        location: f.location.clone(),
        source,
    };
    let description = format!("UEFI code {}", f.location);
    downloader()
        .map_err(fail)?
        .fetch_in_place(&f.location, f.digest.as_deref(), Some(&description))
        .map(Some)
        .map_err(fail)
}

/// `config` with the remote firmware image `driver` would use replaced by its cached file,
/// when [`fetch`] put it in `dl`'s cache (never touches the network); unchanged otherwise, so a
/// driver that finds its firmware in the instance directory still starts offline.
pub fn localized(dl: &Downloader, config: Filled, driver: &str) -> Filled {
    let Some((i, f)) = remote_entry(&config, driver) else {
        return config;
    };
    let cached = match dl.cached(&f.location, f.digest.as_deref()) {
        Ok(Some(p)) => p,
        Ok(None) => return config,
        Err(e) => {
            tracing::warn!("firmware.images[{i}]: {e}");
            return config;
        }
    };
    let mut yaml = config.clone().into_yaml();
    if let Some(img) = yaml
        .firmware
        .as_mut()
        .and_then(|fw| fw.images.as_mut())
        .and_then(|imgs| imgs.get_mut(i))
    {
        img.location = cached.display().to_string();
    }
    match Filled::try_from(yaml) {
        Ok(filled) => filled,
        Err(e) => {
            tracing::warn!("firmware.images[{i}]: {e}");
            config
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// Serves `body` for every GET on 127.0.0.1 (one thread); returns the base URL.
    fn serve(body: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let head = reader.read_line(&mut line).is_ok() && line.starts_with("HEAD");
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                }
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                if !head {
                    let _ = stream.write_all(body);
                }
            }
        });
        base
    }

    fn config(images: &str) -> Filled {
        let yaml = limatype::LimaYaml::from_yaml(&format!(
            "os: Linux\narch: x86_64\ncpus: 1\nmemory: 1GiB\ndisk: 10GiB\ntimezone: UTC\n\
             user: {{name: me, comment: Me, home: /home/me.guest, shell: /bin/bash, uid: 1000, \
             passwordlessSudo: true}}\nfirmware:\n  images:\n{images}"
        ))
        .unwrap();
        Filled::try_from(yaml).unwrap()
    }

    const FW: &[u8] = b"fake UEFI code image";

    /// `sha256sum` of [`FW`] and of `another image`.
    const FW_SHA256: &str =
        "sha256:6464066a4ce3bbee4d03f253019bda876d0ec1d1e4a35f6fdd61937e7bf9fc33";
    const OTHER_SHA256: &str =
        "sha256:210277cb6266afe7c6cc4227ff3e9efc818f55234a7d7fbf033ab602440f2437";

    #[test]
    fn remote_firmware_is_fetched_digest_checked_and_handed_down_as_a_path() {
        let base = serve(FW);
        let cache = tempfile::tempdir().unwrap();
        let inst = tempfile::tempdir().unwrap();
        let dl =
            Downloader::new(cache.path().to_path_buf()).progress(downloader::ProgressMode::Hidden);
        let url = format!("{base}/OVMF_CODE.fd");
        let cfg = config(&format!(
            "  - {{location: '{url}', arch: x86_64, digest: '{}'}}\n",
            FW_SHA256
        ));
        // Nothing fetched yet: the driver sees the URL.
        assert_eq!(
            localized(&dl, cfg.clone(), "qemu")
                .firmware
                .as_ref()
                .unwrap()
                .images
                .as_ref()
                .unwrap()[0]
                .location,
            url
        );
        let got = fetch(|| Ok(dl.clone()), inst.path(), &cfg, "qemu")
            .unwrap()
            .unwrap();
        assert_eq!(std::fs::read(&got).unwrap(), FW);
        let local = localized(&dl, cfg, "qemu");
        let img = &local.firmware.as_ref().unwrap().images.as_ref().unwrap()[0];
        assert_eq!(img.location, got.display().to_string());
        assert_eq!(img.digest.as_deref(), Some(FW_SHA256), "digest kept");
    }

    #[test]
    fn wrong_digest_fails_naming_the_field_and_hands_nothing_down() {
        let base = serve(FW);
        let cache = tempfile::tempdir().unwrap();
        let inst = tempfile::tempdir().unwrap();
        let dl =
            Downloader::new(cache.path().to_path_buf()).progress(downloader::ProgressMode::Hidden);
        let url = format!("{base}/OVMF_CODE.fd");
        let cfg = config(&format!(
            "  - {{location: '{url}', digest: '{}'}}\n",
            OTHER_SHA256
        ));
        let e = fetch(|| Ok(dl.clone()), inst.path(), &cfg, "qemu")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("firmware.images[0]") && e.contains("digest mismatch"),
            "{e}"
        );
        let local = localized(&dl, cfg, "qemu");
        assert_eq!(
            local.firmware.as_ref().unwrap().images.as_ref().unwrap()[0].location,
            url
        );
    }

    #[test]
    fn only_the_drivers_first_entry_for_the_arch_and_not_again() {
        let cache = tempfile::tempdir().unwrap();
        let inst = tempfile::tempdir().unwrap();
        let dl =
            Downloader::new(cache.path().to_path_buf()).progress(downloader::ProgressMode::Hidden);
        // Unreachable URLs: a fetch attempt would fail.
        let cfg = config(
            "  - {location: 'http://127.0.0.1:9/vz.fd', vmType: vz}\n\
             \x20 - {location: '/srv/OVMF_CODE.fd', arch: x86_64}\n\
             \x20 - {location: 'http://127.0.0.1:9/late.fd'}\n",
        );
        assert!(fetch(|| Ok(dl.clone()), inst.path(), &cfg, "qemu")
            .unwrap()
            .is_none());
        let arm = config("  - {location: 'http://127.0.0.1:9/arm.fd', arch: aarch64}\n");
        assert!(fetch(|| Ok(dl.clone()), inst.path(), &arm, "qemu")
            .unwrap()
            .is_none());
        let remote = config("  - {location: 'http://127.0.0.1:9/x.fd'}\n");
        assert!(fetch(|| Ok(dl.clone()), inst.path(), &remote, "qemu").is_err());
        std::fs::write(inst.path().join(filenames::QEMU_EFI_CODE_FD), FW).unwrap();
        assert!(fetch(|| Ok(dl.clone()), inst.path(), &remote, "qemu")
            .unwrap()
            .is_none());
    }
}
