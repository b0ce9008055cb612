//! `limactl info`: upstream's `LimaInfo` JSON (version, templates, the filled default
//! template, `$LIMA_HOME`, drivers, guest agents, the shell's env block list, host OS and
//! arch, identity file, plug-ins, libexec and share paths), each driver with its location
//! (`internal`, or the executable's path) and protocol version. External drivers are started for their handshake; one that fails is
//! listed with its error, and the others are still reported. `--yq EXPR` applies an
//! expression to that JSON.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::drivers;

#[derive(Args)]
pub struct InfoArgs {
    /// Apply yq expression to output.
    #[arg(long, value_name = "EXPR", default_value = ".")]
    pub yq: String,
}

/// Upstream's `LimaInfo`, its fields in its order, then ours (`limaCompatVersion`,
/// `protocolVersion`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    version: String,
    /// Each `template:NAME` and its file.
    templates: Vec<Template>,
    /// `template:default` with its bases embedded and every default filled in.
    default_template: limatype::Filled,
    lima_home: String,
    vm_types: Vec<String>,
    vm_types_ex: BTreeMap<String, DriverInfo>,
    guest_agents: BTreeMap<String, GuestAgent>,
    shell_env_block: Vec<String>,
    #[serde(rename = "hostOS")]
    host_os: String,
    host_arch: String,
    identity_file: String,
    plugins: Vec<Plugin>,
    libexec_paths: Vec<String>,
    share_paths: Vec<String>,
    lima_compat_version: String,
    /// The external-driver protocol this limactl speaks.
    protocol_version: String,
}

#[derive(Serialize)]
struct GuestAgent {
    location: String,
}

#[derive(Serialize)]
struct Plugin {
    name: String,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

#[derive(Serialize)]
struct Template {
    name: String,
    location: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DriverInfo {
    /// `internal`, or the executable's path.
    location: String,
    /// For an internal driver, the protocol of this limactl (it is the same code); for an
    /// external one, what its handshake announced. Empty when the handshake failed.
    protocol_version: String,
    /// The driver's own version (from its Info).
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    image_formats: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(args: InfoArgs) -> Result<()> {
    // A bad expression is reported before any driver is started.
    limayq::eval(&args.yq, &serde_json::Value::Null)
        .map(drop)
        .or_else(|e| match e {
            limayq::YqError::Parse { .. } => Err(e),
            _ => Ok(()),
        })?;
    let rt = tokio::runtime::Runtime::new()?;
    let info = rt.block_on(collect())?;
    let tty = crate::colorout::stdout_is_tty();
    // As upstream's yq encoder on a terminal: coloured, except a bare string.
    let colored = |v: &serde_json::Value, text: String| match v {
        serde_json::Value::String(_) => text,
        _ if tty => limayq::colorize_json(&text),
        _ => text,
    };
    let mut out = String::new();
    if args.yq.trim() == "." {
        // Straight from the struct: its fields in upstream's order (a yq result's maps come
        // back with sorted keys).
        out = colored(&serde_json::Value::Null, render_json(&info)?);
    } else {
        for v in limayq::eval(&args.yq, &serde_json::to_value(&info)?)? {
            out.push_str(&colored(&v, render_json(&v)?));
        }
    }
    print!("{out}");
    Ok(())
}

/// As upstream's yq JSON encoder with indent 4: strings unquoted, the rest indented JSON.
fn render_json<T: Serialize>(v: &T) -> Result<String> {
    if let Ok(serde_json::Value::String(s)) = serde_json::to_value(v) {
        return Ok(format!("{s}\n"));
    }
    let mut buf = vec![];
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(buf)? + "\n")
}

async fn collect() -> Result<Info> {
    // As upstream, a default template that does not load fails `info`.
    let mut opts = limaload::LoadOptions::detect();
    opts.name = Some("default".into());
    let default_template = limaload::load("template:default", &opts)
        .context("loading template:default")?
        .config;
    let reg = drivers::registry();
    let own_protocol = drivergrpc::PROTOCOL_VERSION.to_string();
    // All drivers at once: each external one may take up to its start and call deadlines, and
    // several broken ones must cost one deadline, not one each.
    let mut asked = tokio::task::JoinSet::new();
    for entry in reg.list() {
        let own_protocol = own_protocol.clone();
        asked.spawn(async move {
            let d = describe(reg, &entry, own_protocol).await;
            (entry.name, d)
        });
    }
    let mut vm_types_ex = BTreeMap::new();
    while let Some(done) = asked.join_next().await {
        let (name, d) = done?;
        vm_types_ex.insert(name, d);
    }
    let paths = |ps: Vec<std::path::PathBuf>| -> Vec<String> {
        ps.iter().map(|p| p.display().to_string()).collect()
    };
    Ok(Info {
        version: env!("CARGO_PKG_VERSION").to_string(),
        templates: limaload::list_templates(&opts.template_dirs)
            .into_iter()
            .map(|(name, path)| Template {
                name,
                location: path.display().to_string(),
            })
            .collect(),
        default_template,
        lima_home: store::lima_home()?.display().to_string(),
        vm_types: reg.names(),
        vm_types_ex,
        guest_agents: instance::agentbin::installed()
            .into_iter()
            .map(|(key, path)| {
                let location = path.display().to_string();
                (key, GuestAgent { location })
            })
            .collect(),
        shell_env_block: sshutil::remote::DEFAULT_ENV_BLOCK_LIST
            .iter()
            .map(|s| s.to_string())
            .collect(),
        host_os: limatype::Os::host().to_string(),
        host_arch: limatype::Arch::host().to_string(),
        identity_file: store::config_dir()?
            .join(limatype::filenames::USER_PRIVATE_KEY)
            .display()
            .to_string(),
        plugins: osutil::plugins::discover(&osutil::plugins::dirs())
            .into_iter()
            .map(|p| Plugin {
                name: p.name,
                path: p.path.display().to_string(),
                description: p.description,
            })
            .collect(),
        libexec_paths: paths(registry::discovery::self_libexec_dirs()),
        share_paths: paths(instance::agentbin::share_dirs()),
        lima_compat_version: limatype::LIMA_COMPAT_VERSION.to_string(),
        protocol_version: own_protocol,
    })
}

/// One driver as `info` shows it: started (if external) and asked for its Info; a failure is
/// reported in `error`.
async fn describe(
    reg: &registry::Registry,
    entry: &registry::Entry,
    own_protocol: String,
) -> DriverInfo {
    let location = entry.location.describe();
    let failed = |location, protocol_version, e: String| DriverInfo {
        location,
        protocol_version,
        version: String::new(),
        image_formats: Vec::new(),
        error: Some(e),
    };
    let (connected, loc) = match reg.connect(&entry.name).await {
        Ok(c) => c,
        Err(e) => return failed(location, String::new(), e.to_string()),
    };
    let protocol_version = match loc {
        registry::Location::Internal => own_protocol,
        registry::Location::External(_) => connected.protocol_version.clone(),
    };
    match connected.driver.info().await {
        Ok(i) => DriverInfo {
            location,
            protocol_version,
            version: i.version,
            image_formats: i.image_formats,
            error: None,
        },
        Err(e) => failed(location, protocol_version, e.to_string()),
    }
}
