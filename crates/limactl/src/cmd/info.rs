//! `limactl info`: JSON about this limactl and its host: version, `$LIMA_HOME`, host OS and
//! arch, and every driver with its location (`internal`, or the executable's path) and
//! protocol version. External drivers are started for their handshake; one that fails is
//! listed with its error, and the others are still reported. `--yq EXPR` applies an
//! expression to that JSON.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::drivers;

#[derive(Args)]
pub struct InfoArgs {
    /// Apply yq expression to output.
    #[arg(long, value_name = "EXPR", default_value = ".")]
    pub yq: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    version: String,
    /// Upstream's `templates`: each `template:NAME` and its file.
    templates: Vec<Template>,
    lima_compat_version: String,
    lima_home: String,
    #[serde(rename = "hostOS")]
    host_os: String,
    host_arch: String,
    identity_file: String,
    /// The external-driver protocol this limactl speaks.
    protocol_version: String,
    vm_types: Vec<String>,
    vm_types_ex: BTreeMap<String, DriverInfo>,
    libexec_paths: Vec<String>,
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
    let mut out = String::new();
    for v in limayq::eval(&args.yq, &serde_json::to_value(&info)?)? {
        out.push_str(&render_json(&v)?);
    }
    print!("{out}");
    Ok(())
}

/// As upstream's yq JSON encoder with indent 4: strings unquoted, the rest indented JSON.
fn render_json(v: &serde_json::Value) -> Result<String> {
    if let serde_json::Value::String(s) = v {
        return Ok(format!("{s}\n"));
    }
    let mut buf = vec![];
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(buf)? + "\n")
}

async fn collect() -> Result<Info> {
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
    Ok(Info {
        version: env!("CARGO_PKG_VERSION").to_string(),
        templates: limaload::list_templates(&limaload::LoadOptions::detect().template_dirs)
            .into_iter()
            .map(|(name, path)| Template {
                name,
                location: path.display().to_string(),
            })
            .collect(),
        lima_compat_version: limatype::LIMA_COMPAT_VERSION.to_string(),
        lima_home: store::lima_home()?.display().to_string(),
        host_os: limatype::Os::host().to_string(),
        host_arch: limatype::Arch::host().to_string(),
        identity_file: store::config_dir()?
            .join(limatype::filenames::USER_PRIVATE_KEY)
            .display()
            .to_string(),
        protocol_version: own_protocol,
        vm_types: reg.names(),
        vm_types_ex,
        libexec_paths: registry::discovery::self_libexec_dirs()
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
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
