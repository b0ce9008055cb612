//! How limactl connects the pieces for one instance: config loading, the driver (through the
//! registry), image fetching and the cidata seed.
//! Config loading goes through `limaload` (bases, defaults, validation), images through the
//! `downloader` cache, the seed through `cidata`. Interim: until the registry lands, this
//! calls the qemu driver's machine directly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
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
    let m = qemu::machine::Machine::new(name, Path::new("/nonexistent"), config.clone(), 0);
    m.validate()?;
    Ok(())
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

pub fn prepare_disks(name: &str, dir: &Path, config: &LimaYaml) -> Result<()> {
    let m = qemu::machine::Machine::new(name, dir, config.clone(), 0);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(m.create_disk(&fetch))?;
    Ok(())
}

pub struct DevVm(pub Arc<qemu::machine::Machine>);

#[async_trait::async_trait]
impl hostagent::agent::Vm for DevVm {
    fn driver_name(&self) -> String {
        "qemu (internal)".into()
    }
    async fn create(&self) -> Result<(), String> {
        Ok(())
    }
    async fn boot_scripts(&self) -> Result<BTreeMap<String, Vec<u8>>, String> {
        Ok(BTreeMap::new())
    }
    async fn start(&self) -> Result<(), String> {
        self.0.start().await.map(|_| ()).map_err(|e| e.to_string())
    }
    async fn wait_exit(&self) -> String {
        match self.0.wait_exit().await {
            Ok(s) => s,
            Err(e) => e.to_string(),
        }
    }
    async fn stop(&self) -> Result<(), String> {
        self.0
            .stop(std::time::Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())
    }
    async fn ssh_address(&self) -> Result<String, String> {
        Ok("127.0.0.1".into())
    }
}

pub fn make_vm(
    name: &str,
    dir: &Path,
    config: &LimaYaml,
    port: u16,
) -> Result<Box<dyn hostagent::agent::Vm>> {
    Ok(Box::new(DevVm(Arc::new(qemu::machine::Machine::new(
        name,
        dir,
        config.clone(),
        port,
    )))))
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
