//! What the driver's disks are made from, fetched into the instance directory through the
//! download cache with digest checks: the image as `basedisk` and, for direct boot, `kernel`,
//! `kernel.cmdline` and `initrd`.

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

/// The first image entry for the instance's arch (an entry without `arch` matches any).
fn image_for_arch(config: &Filled) -> Result<limatype::Image> {
    let arch = config.arch.to_string();
    let images = config.images.as_deref().unwrap_or_default();
    images
        .iter()
        .find(|i| i.arch.as_deref().is_none_or(|a| a == arch))
        .cloned()
        .ok_or(InstanceError::NoImage {
            arch,
            count: images.len(),
        })
}

pub fn fetch_image(dir: &Path, config: &Filled) -> Result<()> {
    let image = image_for_arch(config)?;
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
