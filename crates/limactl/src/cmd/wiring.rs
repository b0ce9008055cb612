//! How limactl connects the pieces for one instance: config loading, the driver (through the
//! registry), image fetching and the cidata seed.
//! Interim: until the registry and limaload crates land, this calls the qemu driver's machine
//! directly and reads lima.yaml without filling defaults.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use limatype::{filenames, LimaYaml};

pub fn load_locator(locator: &str) -> Result<(String, LimaYaml)> {
    let path = locator.strip_prefix("file://").unwrap_or(locator);
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let y: LimaYaml = serde_yaml::from_str(&text).with_context(|| format!("parsing {path}"))?;
    Ok((text, y))
}

pub fn load_instance(path: &Path) -> Result<LimaYaml> {
    Ok(load_locator(&path.display().to_string())?.1)
}

pub fn validate(name: &str, config: &LimaYaml) -> Result<()> {
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
