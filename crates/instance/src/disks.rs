//! What the driver's disks are made from, fetched into the instance directory through the
//! download cache with digest checks: the image as `basedisk` and, for direct boot, `kernel`,
//! `kernel.cmdline` and `initrd`; when a download fails, the next image of the arch (and of the
//! first one's `variant`/`archVariant`, as upstream) is tried.

use std::path::Path;

use limatype::{filenames, Filled};

use crate::{InstanceError, Result};

/// Fetches one file of an image entry through the download cache, checking its digest.
/// Images and kernels are decompressed as Lima does; initrds are kept as they are.
fn fetch(file: &limatype::File, dest: &Path, what: &'static str) -> Result<()> {
    let fail = |source| InstanceError::Fetch {
        what,
        location: file.location.clone(),
        source,
    };
    let decompress = dest.file_name().and_then(|n| n.to_str()) != Some(filenames::INITRD);
    let downloader = downloader::Downloader::with_default_cache().map_err(fail)?;
    downloader
        .download(&downloader::Request {
            location: &file.location,
            dest: Some(dest),
            digest: file.digest.as_deref(),
            decompress,
            description: None,
        })
        .map(|_| ())
        .map_err(fail)
}

/// The image entries to try for the instance's arch, in order (an entry without `arch`
/// matches any). As upstream, only those of the first one's `variant` and `archVariant`: a
/// fallback after a failed download never boots another flavour of the guest.
fn images_for_arch(config: &Filled) -> Result<Vec<limatype::Image>> {
    let arch = config.arch.to_string();
    let images = config.images.as_deref().unwrap_or_default();
    let of_arch: Vec<&limatype::Image> = images
        .iter()
        .filter(|i| i.arch.as_deref().is_none_or(|a| a == arch))
        .collect();
    let Some(first) = of_arch.first() else {
        return Err(InstanceError::NoImage {
            arch,
            count: images.len(),
        });
    };
    let flavour = |i: &limatype::Image| (i.variant.clone(), i.arch_variant.clone());
    let want = flavour(first);
    Ok(of_arch
        .into_iter()
        .filter(|i| flavour(i) == want)
        .cloned()
        .collect())
}

/// Fetches the first image (with its kernel and initrd) that downloads; a failure moves on
/// to the next candidate with a warning, and the first failure is returned if none works.
pub fn fetch_image(dir: &Path, config: &Filled) -> Result<()> {
    let mut first_error = None;
    let candidates = images_for_arch(config)?;
    let count = candidates.len();
    for image in candidates {
        match fetch_one(dir, &image) {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!("{e}; trying the next image, if any");
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(InstanceError::NoImage {
        arch: config.arch.to_string(),
        count,
    }))
}

fn fetch_one(dir: &Path, image: &limatype::Image) -> Result<()> {
    if let Some(k) = &image.kernel {
        let kernel = limatype::File {
            location: k.location.clone(),
            arch: k.arch.clone(),
            digest: k.digest.clone(),
        };
        fetch(&kernel, &dir.join(filenames::KERNEL), "kernel")?;
        if let Some(cmdline) = &k.cmdline {
            store::write_private_file(&dir.join(filenames::KERNEL_CMDLINE), cmdline.as_bytes())?;
        }
        if let Some(initrd) = &image.initrd {
            fetch(initrd, &dir.join(filenames::INITRD), "initrd")?;
        }
    }
    fetch(&image.file(), &dir.join(filenames::BASE_DISK), "image")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(images: &str) -> Filled {
        let y = limatype::LimaYaml::from_yaml(&format!(
            "os: Linux\narch: x86_64\ncpus: 1\nmemory: 1GiB\ndisk: 1GiB\ntimezone: UTC\n\
             user: {{name: u, comment: u, home: /home/u, shell: /bin/sh, uid: 1000, passwordlessSudo: true}}\n\
             images:\n{images}"
        ))
        .unwrap();
        Filled::try_from(y).unwrap()
    }

    fn locations(c: &Filled) -> Vec<String> {
        images_for_arch(c)
            .unwrap()
            .into_iter()
            .map(|i| i.location)
            .collect()
    }

    #[test]
    fn fallbacks_keep_the_first_images_variant_and_arch_variant() {
        let c = filled(
            "- {location: /arm.img, arch: aarch64}\n\
             - {location: /a.img, arch: x86_64, variant: cloud}\n\
             - {location: /b.img, arch: x86_64, variant: minimal}\n\
             - {location: /c.img, arch: x86_64, variant: cloud, archVariant: v3}\n\
             - {location: /d.img, arch: x86_64, variant: cloud}\n",
        );
        assert_eq!(locations(&c), ["/a.img", "/d.img"]);
        let plain = filled("- {location: /a.img, arch: x86_64}\n- {location: /b.img}\n");
        assert_eq!(locations(&plain), ["/a.img", "/b.img"]);
    }

    #[test]
    fn no_image_for_the_arch_is_an_error() {
        let c = filled("- {location: /arm.img, arch: aarch64}\n");
        assert!(matches!(
            images_for_arch(&c),
            Err(InstanceError::NoImage { count: 1, .. })
        ));
    }

    #[test]
    fn a_failed_download_falls_back_and_the_first_error_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.img");
        std::fs::write(&good, b"disk").unwrap();
        let inst = dir.path().join("inst");
        std::fs::create_dir(&inst).unwrap();
        let c = filled(&format!(
            "- {{location: {}/missing.img, arch: x86_64}}\n- {{location: {}, arch: x86_64}}\n",
            dir.path().display(),
            good.display()
        ));
        fetch_image(&inst, &c).unwrap();
        assert_eq!(
            std::fs::read(inst.join(filenames::BASE_DISK)).unwrap(),
            b"disk"
        );
        let none = filled(&format!(
            "- {{location: {}/missing.img, arch: x86_64}}\n",
            dir.path().display()
        ));
        // A fresh directory: an existing `basedisk` is kept as it is.
        let inst2 = dir.path().join("inst2");
        std::fs::create_dir(&inst2).unwrap();
        let e = fetch_image(&inst2, &none).unwrap_err().to_string();
        assert!(e.contains("missing.img"), "{e}");
    }
}
