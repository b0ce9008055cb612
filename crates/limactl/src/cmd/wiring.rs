//! How limactl connects the pieces for one instance: config loading, the driver (through the
//! registry), image fetching and the cidata seed.
//! Config loading goes through `limaload` (bases, defaults, validation). Interim: until the
//! registry, downloader and cidata crates land, this calls the qemu driver's machine directly, copies local
//! files (digest-checked) instead of downloading, and writes the seed with genisoimage.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use limatype::LimaYaml;

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

fn fetch(file: &limatype::File, dest: &Path) -> Result<(), String> {
    let src = file
        .location
        .strip_prefix("file://")
        .unwrap_or(&file.location);
    std::fs::copy(src, dest).map_err(|e| format!("{src}: {e}"))?;
    Ok(())
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

pub fn write_seed(
    dir: &Path,
    name: &str,
    config: &LimaYaml,
    _scripts: &BTreeMap<String, Vec<u8>>,
    _port: u16,
    pubkey: &str,
    user: &str,
) -> Result<(), String> {
    let _ = config;
    let seed = dir.join("cidata-src");
    let _ = std::fs::remove_dir_all(&seed);
    std::fs::create_dir_all(&seed).map_err(|e| e.to_string())?;
    std::fs::write(
        seed.join("meta-data"),
        format!(
            "instance-id: {name}-{}\nlocal-hostname: lima-{name}\n",
            std::process::id()
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(seed.join("user-data"), format!("#cloud-config\nusers:\n  - name: {user}\n    shell: /bin/bash\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    lock_passwd: true\n    ssh_authorized_keys:\n      - {pubkey}\nbootcmd:\n  - rm -f /run/lima-boot-done\nruncmd:\n  - touch /run/lima-boot-done\n")).map_err(|e| e.to_string())?;
    std::fs::write(
        seed.join("network-config"),
        format!(
            "version: 2\nethernets:\n  eth:\n    match:\n      macaddress: '{}'\n    dhcp4: true\n",
            qemu::cmdline::mac_address(dir)
        ),
    )
    .map_err(|e| e.to_string())?;
    let out = std::process::Command::new("genisoimage")
        .args(["-quiet", "-output"])
        .arg(dir.join("cidata.iso"))
        .args(["-volid", "cidata", "-joliet", "-rock"])
        .arg(&seed)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(())
}
