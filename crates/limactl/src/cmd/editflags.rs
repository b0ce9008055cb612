//! The edit flags of `create`, `start` and `edit` (upstream's `editflags.RegisterEdit` and
//! `RegisterCreate`) as clap arguments; `limayq::editflags` turns them into yq expressions.

use std::net::IpAddr;

use anyhow::Result;
use clap::Args;

/// Flags of `limactl edit` (and of `create`/`start`). A bool flag may be given bare
/// (`--video`) or with a value (`--video=false`); absent, the config is left as it is.
#[derive(Args, Clone, Default)]
pub struct EditFlagArgs {
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<i64>,
    /// Specify custom DNS (disable host resolver).
    #[arg(long, value_delimiter = ',')]
    pub dns: Vec<IpAddr>,
    /// Memory in GiB.
    #[arg(long)]
    pub memory: Option<String>,
    /// Directories to mount, suffix ':w' for writable (do not overlap existing mounts).
    #[arg(long, value_delimiter = ',')]
    pub mount: Vec<String>,
    /// Similar to --mount, but overrides the existing mounts.
    #[arg(long, value_delimiter = ',')]
    pub mount_only: Vec<String>,
    /// Remove all mounts.
    #[arg(long)]
    pub mount_none: bool,
    /// Mount type (reverse-sshfs, 9p, virtiofs).
    #[arg(long)]
    pub mount_type: Option<String>,
    /// Make all mounts writable.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub mount_writable: Option<bool>,
    /// Enable inotify for mounts.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub mount_inotify: Option<bool>,
    /// Additional networks, e.g., "vzNAT" or "lima:shared" to assign vmnet IP.
    #[arg(long, value_delimiter = ',')]
    pub network: Vec<String>,
    /// Enable nested virtualization.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub nested_virt: Option<bool>,
    /// Enable Rosetta (for vz instances).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub rosetta: Option<bool>,
    /// Modify the template inplace, using yq syntax. Can be passed multiple times.
    #[arg(long = "set", value_name = "EXPR")]
    pub set: Vec<String>,
    /// Set a template parameter, e.g. name=value. Can be passed multiple times.
    #[arg(long)]
    pub param: Vec<String>,
    /// SSH port (0 for random).
    #[arg(long)]
    pub ssh_port: Option<u16>,
    /// Enable video output (has negative performance impact for QEMU).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub video: Option<bool>,
    /// Disk size in GiB.
    #[arg(long)]
    pub disk: Option<String>,
    /// Virtual machine type.
    #[arg(long)]
    pub vm_type: Option<String>,
    /// User login shell in the guest (e.g. /bin/bash, /bin/zsh).
    #[arg(long)]
    pub shell: Option<String>,
}

/// Flags of `limactl create` and `start`: the edit flags and those that apply to new
/// instances only.
#[derive(Args, Clone, Default)]
pub struct CreateFlagArgs {
    #[command(flatten)]
    pub edit: EditFlagArgs,
    /// Machine architecture (x86_64, aarch64, riscv64, armv7l, s390x, ppc64le).
    #[arg(long)]
    pub arch: Option<String>,
    /// containerd mode (user, system, user+system, none).
    #[arg(long)]
    pub containerd: Option<String>,
    /// Plain mode. Disables mounts, port forwarding, containerd, etc.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub plain: Option<bool>,
    /// Port forwards (host:guest), e.g., '8080:80' or '9090:9090,static=true'.
    #[arg(long)]
    pub port_forward: Vec<String>,
}

impl EditFlagArgs {
    fn to_flags(&self) -> limayq::editflags::EditFlags {
        limayq::editflags::EditFlags {
            cpus: self.cpus,
            dns: self.dns.clone(),
            memory: self.memory.clone(),
            mount: self.mount.clone(),
            mount_only: self.mount_only.clone(),
            mount_none: self.mount_none,
            mount_type: self.mount_type.clone(),
            vm_type: self.vm_type.clone(),
            mount_inotify: self.mount_inotify,
            mount_writable: self.mount_writable,
            network: self.network.clone(),
            nested_virt: self.nested_virt,
            rosetta: self.rosetta,
            set: self.set.clone(),
            param: self.param.clone(),
            video: self.video,
            ssh_port: self.ssh_port,
            shell: self.shell.clone(),
            ..Default::default()
        }
    }

    /// No flag was given.
    pub fn is_empty(&self) -> bool {
        self.to_flags().is_empty()
    }

    /// The edit of an existing instance's text (create-only flags do not exist here).
    pub fn edit_fn(&self) -> impl Fn(&str) -> Result<String, limayq::YqError> + Sync + '_ {
        let flags = self.to_flags();
        move |text| apply(&flags, false, text)
    }
}

impl CreateFlagArgs {
    fn to_flags(&self) -> limayq::editflags::EditFlags {
        limayq::editflags::EditFlags {
            arch: self.arch.clone(),
            containerd: self.containerd.clone(),
            plain: self.plain,
            port_forward: self.port_forward.clone(),
            ..self.edit.to_flags()
        }
    }

    /// No flag was given.
    pub fn is_empty(&self) -> bool {
        self.to_flags().is_empty()
    }

    /// The edit of a new instance's config text, or (`new_instance` false) of an existing
    /// one's, where the create-only flags are warned about and skipped.
    pub fn edit_fn(
        &self,
        new_instance: bool,
    ) -> impl Fn(&str) -> Result<String, limayq::YqError> + Sync + '_ {
        let flags = self.to_flags();
        move |text| apply(&flags, new_instance, text)
    }
}

/// The flags' expressions applied to `text` (warnings logged as upstream does); the text is
/// returned as it is when no flag was given.
fn apply(
    flags: &limayq::editflags::EditFlags,
    new_instance: bool,
    text: &str,
) -> Result<String, limayq::YqError> {
    let params = if flags.param.is_empty() {
        vec![]
    } else {
        template_params(text)?
    };
    let home = std::env::var("HOME").unwrap_or_default();
    let cwd = std::env::current_dir().unwrap_or_default();
    let t = flags.expressions(new_instance, &params, &home, &cwd)?;
    for w in &t.warnings {
        tracing::warn!("{w}");
    }
    if t.exprs.is_empty() {
        return Ok(text.to_string());
    }
    let expr = limayq::join(&t.exprs);
    tracing::debug!(%expr, "applying the edit flags");
    limayq::edit_yaml(text, &expr)
}

/// The keys of the config's `param:` map (what `--param` may set).
fn template_params(text: &str) -> Result<Vec<String>, limayq::YqError> {
    let v = limayq::parse_yaml(text)?;
    Ok(v.get("param")
        .and_then(|p| p.as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default())
}

/// Reads `--list-templates`' names.
pub fn list_templates() -> Result<String> {
    let opts = limaload::LoadOptions::detect();
    Ok(limaload::list_templates(&opts.template_dirs)
        .into_iter()
        .map(|(name, _)| name + "\n")
        .collect())
}
