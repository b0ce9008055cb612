//! Builds a seed ISO from a lima.yaml (for manual boots):
//! `cargo run -p cidata --example seed -- LIMA.YAML NAME PUBKEY_FILE MAC OUT.iso [BOOT_SCRIPT...]`

use std::collections::BTreeMap;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, yaml, name, pubkey, mac, out, scripts @ ..] = args.as_slice() else {
        return Err("usage: seed LIMA.YAML NAME PUBKEY_FILE MAC OUT.iso [BOOT_SCRIPT...]".into());
    };
    let config: limatype::LimaYaml = serde_yaml::from_str(&std::fs::read_to_string(yaml)?)?;
    let config = limadefaults::fill_in_memory(&config, &limadefaults::detect_host(), name)?;
    let keys = vec![std::fs::read_to_string(pubkey)?.trim().to_string()];
    let mut boot = BTreeMap::new();
    for s in scripts {
        let p = Path::new(s);
        let file_name = p.file_name().ok_or("boot script without a file name")?;
        boot.insert(file_name.to_string_lossy().into_owned(), std::fs::read(p)?);
    }
    let seed = cidata::build_seed(&cidata::SeedInput {
        instance_name: name,
        instance_id: cidata::fresh_instance_id(),
        config: &config,
        ssh_public_keys: &keys,
        boot_scripts: &boot,
        guest_agent: None,
        nic_mac: Some(mac.clone()),
        host_proxy_env: cidata::net::host_proxy_env(std::env::vars()),
        containerd_archive: None,
        dns_local_ports: None,
    })?;
    seed.write_iso(Path::new(out))?;
    Ok(())
}
