//! `limactl show-ssh NAME`: the SSH command line, arguments, options or config block for an
//! instance (deprecated upstream in favour of `ssh -F <dir>/ssh.config lima-NAME`, kept for
//! scripts). Reads the instance directory only; works on a stopped instance too.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Args)]
pub struct ShowSshArgs {
    /// Instance name.
    pub name: String,
    /// Format: cmd, args, options, config.
    #[arg(long, short = 'f', default_value = "cmd")]
    pub format: String,
}

pub fn run(args: ShowSshArgs) -> Result<()> {
    let name = &args.name;
    let inst = match instance::ops::inspect(name) {
        Err(instance::InstanceError::NotFound(_)) => bail!(
            "instance `{name}` does not exist, run `limactl create {name}` to create a new instance"
        ),
        other => other?,
    };
    let Some(user) = inst
        .config
        .as_ref()
        .and_then(|c| c.user.as_ref())
        .and_then(|u| u.name.clone())
    else {
        bail!(
            "instance `{name}` has no usable lima.yaml (status {})",
            inst.status
        );
    };
    let dir = Path::new(&inst.dir);
    tracing::warn!(
        "`limactl show-ssh` is deprecated. Instead, use `ssh -F {} {}`.",
        dir.join(limatype::filenames::SSH_CONFIG).display(),
        inst.hostname
    );
    let key = store::config_dir()?.join(limatype::filenames::USER_PRIVATE_KEY);
    let flags = inst
        .config
        .as_ref()
        .map(sshutil::SshFlags::from_config)
        .unwrap_or_default();
    let mut opts = sshutil::instance_opts(dir, &key, &user, &flags)?;
    opts.push("Hostname=127.0.0.1".into());
    opts.push(format!("Port={}", inst.ssh_local_port));
    let out = sshutil::format_opts("ssh", name, &args.format, &opts)
        .with_context(|| format!("instance `{name}`"))?;
    print!("{out}");
    Ok(())
}
