//! Instances as `limactl list` prints them (upstream's `store.PrintInstances`): the table
//! (with its column-hiding rules for narrow terminals), JSON lines, YAML documents, or a Go
//! template over upstream's `FormatData` field names (`{{.Name}}`, `{{.SSHLocalPort}}`, ...),
//! rendered by the project's one template engine (`limadefaults::tmpl`).

use std::collections::HashMap;

use limadefaults::tmpl::{self, TemplateError, Value};
use limatype::Instance;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("instance {name:?}: {source}")]
    Encode {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What the table needs to know about where it is printed.
#[derive(Debug, Clone, Default)]
pub struct PrintOptions {
    /// `--all-fields`: never hide a column.
    pub all_fields: bool,
    /// The terminal's width; 0 when unknown (not a terminal): then no column is hidden.
    pub terminal_width: usize,
}

/// Host facts that upstream adds to each instance for templates (deprecated there, still
/// available): `HostOS`, `HostArch`, `LimaHome`, `IdentityFile`; and the home directory the
/// table's `DIR` shortens to `~`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GlobalFields {
    #[serde(rename = "HostOS")]
    pub host_os: String,
    #[serde(rename = "HostArch")]
    pub host_arch: String,
    #[serde(rename = "LimaHome")]
    pub lima_home: String,
    #[serde(rename = "IdentityFile")]
    pub identity_file: String,
    #[serde(skip)]
    pub home_dir: String,
}

impl GlobalFields {
    /// This host's: its OS and arch, `$LIMA_HOME` and the user's Lima key.
    pub fn detect() -> crate::Result<GlobalFields> {
        Ok(GlobalFields {
            host_os: limatype::Os::host().to_string(),
            host_arch: limatype::Arch::host().to_string(),
            lima_home: crate::lima_home()?.display().to_string(),
            identity_file: crate::config_dir()?
                .join(limatype::filenames::USER_PRIVATE_KEY)
                .display()
                .to_string(),
            home_dir: std::env::var("HOME").unwrap_or_default(),
        })
    }
}

/// An instance's `message` rendered as upstream's `store.Inspect` does: a Go template over
/// the instance's fields (`{{.Name}}`, `{{.Dir}}`, `{{.SSHLocalPort}}`, `{{.Config...}}`),
/// the host fields and `{{.Param.KEY}}`.
pub fn render_message(
    i: &Instance,
    message: &str,
    global: &GlobalFields,
) -> Result<String, FormatError> {
    if message.is_empty() {
        return Ok(String::new());
    }
    let mut data = format_data(i, global)?;
    if let (Value::Object(m), Some(param)) =
        (&mut data, i.config.as_ref().and_then(|c| c.param.as_ref()))
    {
        let param = param
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        m.insert("Param".into(), Value::Map(param));
    }
    Ok(tmpl::execute(message, &data)?)
}

/// The template field names (Go's), sorted, without the deprecated host fields: what
/// `--list-fields` prints.
pub fn field_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = INSTANCE_FIELDS.iter().map(|(_, go)| *go).collect();
    names.sort_unstable();
    names
}

/// Instance JSON keys and their Go field names, in upstream's struct order.
const INSTANCE_FIELDS: &[(&str, &str)] = &[
    ("name", "Name"),
    ("hostname", "Hostname"),
    ("status", "Status"),
    ("dir", "Dir"),
    ("vmType", "VMType"),
    ("arch", "Arch"),
    ("cpus", "CPUs"),
    ("memory", "Memory"),
    ("disk", "Disk"),
    ("message", "Message"),
    ("additionalDisks", "AdditionalDisks"),
    ("network", "Networks"),
    ("sshLocalPort", "SSHLocalPort"),
    ("sshConfigFile", "SSHConfigFile"),
    ("hostAgentPID", "HostAgentPID"),
    ("driverPID", "DriverPID"),
    ("errors", "Errors"),
    ("config", "Config"),
    ("sshAddress", "SSHAddress"),
    ("protected", "Protected"),
    ("limaVersion", "LimaVersion"),
    ("param", "Param"),
    ("autoStartedIdentifier", "AutoStartedIdentifier"),
];

/// Prints `insts` as `format`: `json`, `yaml`, `table`, or a Go template (one line per
/// instance).
pub fn print_instances(
    insts: &[Instance],
    format: &str,
    opts: &PrintOptions,
    global: &GlobalFields,
) -> Result<String, FormatError> {
    match format {
        "table" => return Ok(table(insts, opts, global)),
        "json" => {
            return insts
                .iter()
                .map(|i| {
                    serde_json::to_string(&trimmed(i))
                        .map(|s| s + "\n")
                        .map_err(|e| encode_error(i, e))
                })
                .collect()
        }
        "yaml" => {
            return insts
                .iter()
                .map(|i| {
                    yaml_form(i, global)
                        .map(|s| format!("---\n{s}"))
                        .map_err(|e| encode_error(i, e))
                })
                .collect()
        }
        _ => {}
    }
    let mut out = String::new();
    for i in insts {
        let data = format_data(i, global)?;
        out.push_str(&tmpl::execute(format, &data)?);
        out.push('\n');
    }
    Ok(out)
}

fn encode_error(i: &Instance, e: impl std::error::Error + Send + Sync + 'static) -> FormatError {
    FormatError::Encode {
        name: i.name.clone(),
        source: Box::new(e),
    }
}

/// The message without its final newline, as upstream prints it.
fn trimmed(i: &Instance) -> Instance {
    let mut i = i.clone();
    if let Some(m) = i.message.strip_suffix('\n') {
        i.message = m.to_string();
    }
    i
}

/// Upstream's YAML of `FormatData`: the instance's fields, then the host fields.
fn yaml_form(i: &Instance, global: &GlobalFields) -> Result<String, serde_yaml::Error> {
    #[derive(Serialize)]
    struct Form<'a> {
        #[serde(flatten)]
        inst: Instance,
        #[serde(flatten)]
        global: &'a GlobalFields,
    }
    serde_yaml::to_string(&Form {
        inst: trimmed(i),
        global,
    })
}

/// The template data of one instance: every field under its Go name (zero values included,
/// as a Go struct has them), the host fields, and the exact JSON/YAML forms for `json .` and
/// `yaml .`.
fn format_data(i: &Instance, global: &GlobalFields) -> Result<Value, FormatError> {
    let inst = trimmed(i);
    let json = serde_json::to_value(&inst).map_err(|e| encode_error(i, e))?;
    let mut data: HashMap<String, Value> = HashMap::new();
    let zero = |key: &str| match key {
        "cpus" | "memory" | "disk" | "sshLocalPort" | "hostAgentPID" | "driverPID" => {
            Value::from(0i64)
        }
        "additionalDisks" | "network" | "errors" => Value::Array(vec![]),
        "param" => Value::Map(HashMap::new()),
        "config" => Value::Nil,
        _ => Value::String(String::new()),
    };
    for (key, go) in INSTANCE_FIELDS {
        let v = match json.get(*key) {
            Some(v) => tmpl::from_json(v, &go_name),
            None => zero(key),
        };
        data.insert((*go).to_string(), v);
    }
    // Exact forms are encoded from the structs: a `serde_json::Value` would sort the keys.
    if let (Some(cfg), Some(Value::Map(m))) = (&inst.config, data.get_mut("Config")) {
        let cfg = serde_json::to_string(cfg).map_err(|e| encode_error(i, e))?;
        m.insert(tmpl::JSON_FORM.into(), Value::String(cfg));
    }
    for (k, v) in [
        ("HostOS", &global.host_os),
        ("HostArch", &global.host_arch),
        ("LimaHome", &global.lima_home),
        ("IdentityFile", &global.identity_file),
    ] {
        data.insert(k.into(), Value::String(v.clone()));
    }
    let exact = serde_json::to_string(&inst).map_err(|e| encode_error(i, e))?;
    data.insert(tmpl::JSON_FORM.into(), Value::String(exact));
    let yaml = yaml_form(i, global).map_err(|e| encode_error(i, e))?;
    data.insert(tmpl::YAML_FORM.into(), Value::String(yaml));
    Ok(Value::Object(data))
}

/// Go's field name for a lima.yaml / instance JSON key: `vmType` → `VMType`, `cpus` →
/// `CPUs`, `sshLocalPort` → `SSHLocalPort`; other words are capitalized.
pub fn go_name(key: &str) -> String {
    if let Some((_, go)) = INSTANCE_FIELDS.iter().find(|(k, _)| *k == key) {
        return (*go).to_string();
    }
    let mut words: Vec<String> = vec![];
    for c in key.chars() {
        if c.is_ascii_uppercase() || words.is_empty() {
            words.push(String::new());
        }
        if let Some(w) = words.last_mut() {
            w.push(c);
        }
    }
    words
        .iter()
        .map(|w| match w.to_ascii_lowercase().as_str() {
            "cpus" => "CPUs".to_string(),
            "cpu" | "vm" | "ssh" | "dns" | "id" | "uid" | "url" | "ip" | "os" | "tcp" | "udp"
            | "pid" | "gui" | "vnc" | "rtc" | "ca" | "mac" | "vsock" => w.to_ascii_uppercase(),
            _ => {
                let mut cs = w.chars();
                cs.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                    .unwrap_or_default()
            }
        })
        .collect()
}

/// Upstream's table: NAME STATUS SSH VMTYPE ARCH CPUS MEMORY DISK DIR, aligned as Go's
/// tabwriter (minwidth 4, padding 4). On a terminal too narrow for every column, VMTYPE
/// goes when all instances share one type, ARCH when all share the host's, then DIR (never
/// with `--all-fields`).
pub fn table(insts: &[Instance], opts: &PrintOptions, global: &GlobalFields) -> String {
    const COLUMN_WIDTH: usize = 8;
    let width = opts.terminal_width;
    let narrow = |columns: usize| width != 0 && columns * COLUMN_WIDTH > width && !opts.all_fields;
    let one = |f: &dyn Fn(&Instance) -> &str| {
        let mut seen: Vec<&str> = insts.iter().map(f).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() == 1
    };
    let mut columns = 5; // NAME 1, STATUS 2, SSH 2
    let hide_type = narrow(columns + 7) && one(&|i| i.vm_type.as_str());
    if !hide_type {
        columns += 1;
    }
    let hide_arch = narrow(columns + 6)
        && one(&|i| i.arch.as_str())
        && insts.first().map(|i| i.arch.as_str()) == Some(global.host_arch.as_str());
    if !hide_arch {
        columns += 1;
    }
    columns += 3;
    let hide_dir = narrow(columns + 2);

    let mut head = vec!["NAME", "STATUS", "SSH"];
    if !hide_type {
        head.push("VMTYPE");
    }
    if !hide_arch {
        head.push("ARCH");
    }
    head.extend(["CPUS", "MEMORY", "DISK"]);
    if !hide_dir {
        head.push("DIR");
    }
    let mut rows: Vec<Vec<String>> = vec![head.into_iter().map(String::from).collect()];
    for i in insts {
        let mut row = vec![
            i.name.clone(),
            i.status.to_string(),
            format!("{}:{}", i.ssh_address, i.ssh_local_port),
        ];
        if !hide_type {
            row.push(i.vm_type.clone());
        }
        if !hide_arch {
            row.push(i.arch.clone());
        }
        row.extend([
            i.cpus.to_string(),
            crate::format_bytes(i.memory),
            crate::format_bytes(i.disk),
        ]);
        if !hide_dir {
            // As upstream: a plain prefix match, replaced once.
            let home = &global.home_dir;
            row.push(match i.dir.strip_prefix(home.as_str()) {
                Some(rest) if !home.is_empty() => format!("~{rest}"),
                _ => i.dir.clone(),
            });
        }
        rows.push(row);
    }
    tabwrite(&rows)
}

/// Go's `tabwriter.NewWriter(w, 4, 8, 4, ' ', 0)` for rows of equal length: each cell but the
/// last is padded to its column's widest cell plus 4 (at least 4).
fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count() + 4)
                .max()
                .unwrap_or(0)
                .max(4)
        })
        .collect();
    let mut s = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                s.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use limatype::Status;

    fn inst() -> Instance {
        Instance {
            name: "foo".into(),
            status: Status::Stopped,
            vm_type: "qemu".into(),
            arch: "x86_64".into(),
            dir: "dir".into(),
            ssh_address: "127.0.0.1".into(),
            ..Default::default()
        }
    }

    fn global() -> GlobalFields {
        GlobalFields {
            host_os: "linux".into(),
            host_arch: "x86_64".into(),
            lima_home: "/h/.lima".into(),
            identity_file: "/h/.lima/_config/user".into(),
            home_dir: "/h".into(),
        }
    }

    fn width(w: usize) -> PrintOptions {
        PrintOptions {
            all_fields: false,
            terminal_width: w,
        }
    }

    // The expected tables are upstream's pkg/store/instance_test.go ones.
    #[test]
    fn table_as_upstream() {
        let g = global();
        assert_eq!(
            table(&[inst()], &width(0), &g),
            "NAME    STATUS     SSH            VMTYPE    ARCH      CPUS    MEMORY    DISK    DIR\n\
             foo     Stopped    127.0.0.1:0    qemu      x86_64    0       0B        0B      dir\n"
        );
        assert_eq!(
            table(&[inst()], &width(60), &g),
            "NAME    STATUS     SSH            CPUS    MEMORY    DISK\n\
             foo     Stopped    127.0.0.1:0    0       0B        0B\n"
        );
        assert_eq!(
            table(&[inst()], &width(80), &g),
            "NAME    STATUS     SSH            CPUS    MEMORY    DISK    DIR\n\
             foo     Stopped    127.0.0.1:0    0       0B        0B      dir\n"
        );
        let mut other = inst();
        other.arch = "unknown".into();
        assert_eq!(
            table(&[other], &width(80), &g),
            "NAME    STATUS     SSH            ARCH       CPUS    MEMORY    DISK\n\
             foo     Stopped    127.0.0.1:0    unknown    0       0B        0B\n"
        );
        let all = PrintOptions {
            all_fields: true,
            terminal_width: 60,
        };
        assert!(table(&[inst()], &all, &g).starts_with("NAME    STATUS     SSH            VMTYPE"));
        let mut bar = inst();
        bar.name = "bar".into();
        bar.vm_type = "vz".into();
        bar.arch = "aarch64".into();
        assert_eq!(
            table(&[inst(), bar], &width(80), &g),
            "NAME    STATUS     SSH            VMTYPE    ARCH       CPUS    MEMORY    DISK\n\
             foo     Stopped    127.0.0.1:0    qemu      x86_64     0       0B        0B\n\
             bar     Stopped    127.0.0.1:0    vz        aarch64    0       0B        0B\n"
        );
        let mut home = inst();
        home.dir = "/h/dir".into();
        assert!(table(&[home], &width(0), &g).ends_with("0B      ~/dir\n"));
    }

    #[test]
    fn templates_use_go_field_names() {
        let mut i = inst();
        i.cpus = 4;
        i.memory = 2 << 30;
        i.message = "hello\n".into();
        let out = print_instances(
            &[i],
            "{{.Name}} {{.Status}} {{.VMType}} {{.CPUs}} {{.Memory}} {{.SSHLocalPort}} {{.HostAgentPID}} {{.Protected}} {{.HostArch}} {{.LimaHome}} [{{.Message}}]",
            &width(0),
            &global(),
        )
        .unwrap();
        assert_eq!(
            out,
            "foo Stopped qemu 4 2147483648 0 0 false x86_64 /h/.lima [hello]\n"
        );
        let json = print_instances(&[inst()], "{{json .}}", &width(0), &global()).unwrap();
        assert_eq!(
            json,
            print_instances(&[inst()], "json", &width(0), &global()).unwrap()
        );
        assert!(
            print_instances(&[inst()], "{{.Nope}}", &width(0), &global())
                .unwrap_err()
                .to_string()
                .contains("Nope")
        );
    }

    #[test]
    fn go_names() {
        assert_eq!(go_name("vmType"), "VMType");
        assert_eq!(go_name("cpus"), "CPUs");
        assert_eq!(go_name("mountType"), "MountType");
        assert_eq!(go_name("ssh"), "SSH");
        assert_eq!(go_name("network"), "Networks");
        assert!(field_names().contains(&"SSHLocalPort"));
        assert!(!field_names().contains(&"HostOS"));
    }
}
