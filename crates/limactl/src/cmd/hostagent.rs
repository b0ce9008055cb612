//! `limactl hostagent NAME`: the host agent of one instance, started in the background by
//! `limactl start` (not meant to be run by hand).

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use limatype::filenames;

use super::wiring;

#[derive(Args)]
pub struct HostagentArgs {
    /// Instance name.
    pub name: String,
}

pub fn run(args: HostagentArgs) -> Result<()> {
    // Keep the instance lock handed over by `limactl start` for our lifetime only.
    store::adopt_inherited_lock();
    let name = args.name;
    let dir = store::instance_dir(&name)?;
    let pid_path = dir.join(filenames::HOST_AGENT_PID);
    store::write_pid_file(&pid_path, std::process::id())?;
    let result = run_agent(&name, &dir);
    let _ = std::fs::remove_file(&pid_path);
    result
}

fn run_agent(name: &str, dir: &std::path::Path) -> Result<()> {
    let config = wiring::load_instance(&dir.join(filenames::LIMA_YAML))?;
    let port = match config.ssh.as_ref().and_then(|s| s.local_port).unwrap_or(0) {
        0 => hostagent::agent::free_local_port().context("finding a free port for ssh")?,
        p => u16::try_from(p).context("field `ssh.localPort`")?,
    };
    // The same account the seed creates in the guest.
    let user = cidata::guest_user(&config).name;
    let key = sshutil::ensure_user_key_in(&store::config_dir()?)?;
    let pubkey = key.public_key()?;
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join(filenames::HOST_AGENT_STDOUT_LOG))?;
    let hub = hostagent::server::Hub::new(Some(log));
    let timeout = Duration::from_secs(
        std::env::var("LIMA_READY_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
    );
    let opts = hostagent::agent::Options {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        ssh_local_port: port,
        ssh_user: user.clone(),
        private_key: key.private.clone(),
        ready_timeout: timeout,
        driver_description: String::new(),
    };
    let seed = |scripts: &std::collections::BTreeMap<String, Vec<u8>>, _port: u16| {
        wiring::write_seed(dir, name, &config, scripts, &pubkey)
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // Internal or external alike; an external driver process lives as long as `driver`.
        let (driver, description) = wiring::configured_driver(name, dir, &config, port).await?;
        let opts = hostagent::agent::Options {
            driver_description: description,
            ..opts
        };
        hostagent::agent::run(opts, driver.as_ref(), &seed, hub)
            .await
            .map_err(|e| anyhow::anyhow!(e))
    })
}
