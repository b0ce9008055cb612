//! How limactl connects the pieces for one instance: config loading, the driver (through the
//! registry), image fetching and the cidata seed.
//! Config loading goes through `limaload` (bases, defaults, validation), images through the
//! `downloader` cache, the seed through `cidata`, the driver through the `registry` (internal
//! or external alike; see `crate::drivers`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use driver::{ConfigContext, DynDriver, InstanceConfig};
use limatype::{filenames, LimaYaml};

pub fn load_locator(locator: &str) -> Result<(String, LimaYaml)> {
    let mut opts = limaload::LoadOptions::detect();
    opts.name = Some(limaload::instance_name(locator).unwrap_or_else(|| "default".into()));
    let loaded = limaload::load(locator, &opts)?;
    Ok((loaded.embedded.text, loaded.config))
}

pub fn load_instance(path: &Path) -> Result<LimaYaml> {
    let mut opts = limaload::LoadOptions::detect();
    opts.name = path
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    // `_config/base.yaml` was embedded when the instance was created.
    opts.use_default_base = false;
    Ok(limaload::load(&path.display().to_string(), &opts)?.config)
}

pub fn validate(name: &str, config: &LimaYaml) -> Result<()> {
    let problems = limavalidate::validate(config);
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(|p| format!("{name}: {p}")).collect();
        anyhow::bail!("invalid config:\n{}", lines.join("\n"));
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(resolve_driver(config))?;
    Ok(())
}

/// The driver that runs `config` (its `vmType`, or the host's preferred one that accepts it),
/// how to name it (`qemu (internal)`, `qemu (external: PATH)`), and the config after the
/// driver's `fill_config`.
pub async fn resolve_driver(config: &LimaYaml) -> Result<(DynDriver, String, LimaYaml)> {
    let resolved = crate::drivers::registry()
        .resolve(config, &ConfigContext::current())
        .await?;
    let description = match &resolved.location {
        registry::Location::Internal => format!("{} (internal)", resolved.name),
        registry::Location::External(p) => {
            format!("{} (external: {})", resolved.name, p.display())
        }
    };
    Ok((resolved.driver, description, resolved.config))
}

/// [`resolve_driver`], then bound to the instance.
pub async fn configured_driver(
    name: &str,
    dir: &Path,
    config: &LimaYaml,
    ssh_local_port: u16,
) -> Result<(DynDriver, String)> {
    let (driver, description, filled) = resolve_driver(config).await?;
    driver
        .configure(InstanceConfig {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            config: filled,
            ssh_local_port,
        })
        .await
        .with_context(|| format!("configuring the {description} driver"))?;
    Ok((driver, description))
}

/// Fetches one file of an image entry through the download cache, checking its digest.
/// Images and kernels are decompressed as Lima does; initrds are kept as they are.
fn fetch(file: &limatype::File, dest: &Path) -> Result<(), String> {
    let decompress = dest.file_name().and_then(|n| n.to_str()) != Some(filenames::INITRD);
    let downloader = downloader::Downloader::with_default_cache().map_err(|e| e.to_string())?;
    downloader
        .download(&downloader::Request {
            location: &file.location,
            dest: Some(dest),
            digest: file.digest.as_deref(),
            decompress,
            description: None,
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Fetches what the disks are made from into the instance directory (the image as
/// `basedisk`; `kernel`, `kernel.cmdline`, `initrd` for direct boot), then has the driver make
/// the disks. Does nothing once `diffdisk` exists.
pub fn prepare_disks(name: &str, dir: &Path, config: &LimaYaml) -> Result<()> {
    if dir.join(filenames::DIFF_DISK).exists() {
        return Ok(());
    }
    fetch_image(dir, config)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (driver, description) = configured_driver(name, dir, config, 0).await?;
        driver
            .create_disk()
            .await
            .with_context(|| format!("{description} driver: creating the disks"))
    })
}

/// The first image entry for the instance's arch (an entry without `arch` matches any).
fn image_for_arch(config: &LimaYaml) -> Result<limatype::Image> {
    let arch = config.arch.clone().unwrap_or_else(limatype::host_arch);
    let images = config.images.as_deref().unwrap_or_default();
    images
        .iter()
        .find(|i| i.arch.as_deref().is_none_or(|a| a == arch))
        .cloned()
        .with_context(|| {
            format!(
                "field `images` has no entry for arch {arch:?} ({} entries)",
                images.len()
            )
        })
}

fn fetch_image(dir: &Path, config: &LimaYaml) -> Result<()> {
    let image = image_for_arch(config)?;
    let fetch_to = |file: &limatype::File, dest: &str, what: &str| {
        fetch(file, &dir.join(dest))
            .map_err(|why| anyhow::anyhow!("{what} {}: {why}", file.location))
    };
    if let Some(k) = &image.kernel {
        let kernel = limatype::File {
            location: k.location.clone(),
            arch: k.arch.clone(),
            digest: k.digest.clone(),
        };
        fetch_to(&kernel, filenames::KERNEL, "kernel")?;
        if let Some(cmdline) = &k.cmdline {
            store::write_private_file(&dir.join(filenames::KERNEL_CMDLINE), cmdline.as_bytes())?;
        }
        if let Some(initrd) = &image.initrd {
            fetch_to(initrd, filenames::INITRD, "initrd")?;
        }
    }
    fetch_to(&image.file(), filenames::BASE_DISK, "image")
}

/// Writes `cidata.iso` for this boot: the user's key, the driver's boot scripts and a fresh
/// instance id (so cloud-init runs its per-instance steps again).
pub fn write_seed(
    dir: &Path,
    name: &str,
    config: &LimaYaml,
    scripts: &BTreeMap<String, Vec<u8>>,
    pubkey: &str,
) -> Result<(), String> {
    let keys = [pubkey.trim().to_string()];
    let seed = cidata::build_seed(&cidata::SeedInput {
        instance_name: name,
        instance_id: cidata::fresh_instance_id(),
        config,
        ssh_public_keys: &keys,
        boot_scripts: scripts,
        guest_agent: None,
        nic_mac: Some(qemu::cmdline::mac_address(dir)),
    })
    .map_err(|e| e.to_string())?;
    seed.write_iso(&dir.join(filenames::CIDATA_ISO))
        .map_err(|e| e.to_string())
}
