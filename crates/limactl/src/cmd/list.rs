//! `limactl list`: instances and their status, read from `$LIMA_HOME` without starting
//! anything.

use anyhow::Result;
use clap::Args;
use limatype::Instance;

#[derive(Args)]
pub struct ListArgs {
    /// Instance names to show (all if none).
    pub names: Vec<String>,
    /// One JSON object per line (same as --format json).
    #[arg(long)]
    pub json: bool,
    /// table, json, yaml, or a template such as '{{.Name}} {{.Status}}' (default table).
    #[arg(long, short = 'f')]
    pub format: Option<String>,
    /// Apply yq expression to each instance (implies --format json).
    #[arg(long, value_name = "EXPR")]
    pub yq: Vec<String>,
    /// Filter instances using yq expression (equivalent to --yq 'select(EXPR)').
    #[arg(long, short = 'l', value_name = "EXPR")]
    pub filter: Vec<String>,
    /// Only the names.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn run(args: ListArgs) -> Result<()> {
    let all = store::instance_names()?;
    let names: Vec<String> = if args.names.is_empty() {
        all
    } else {
        for n in &args.names {
            if !all.contains(n) {
                anyhow::bail!("no instance matches {n:?}");
            }
        }
        args.names.clone()
    };
    let mut insts = vec![];
    for n in &names {
        match instance::ops::inspect(n) {
            // Deleted since the directory was read: not an instance any more.
            Err(instance::InstanceError::NotFound(_)) if args.names.is_empty() => continue,
            other => insts.push(other?),
        }
    }
    if args.json && args.format.is_some() {
        anyhow::bail!("option --json conflicts with option --format");
    }
    if !args.yq.is_empty() {
        if let Some(f) = args
            .format
            .as_deref()
            .filter(|f| *f != "json" && *f != "yaml")
        {
            anyhow::bail!("option --yq only works with --format json or yaml, not {f:?}");
        }
    }
    if !args.filter.is_empty() {
        let filter = args
            .filter
            .iter()
            .map(|f| format!("select({f})"))
            .collect::<Vec<_>>();
        let expr = limayq::join(&filter);
        let mut kept = vec![];
        for i in insts {
            if !limayq::eval(&expr, &serde_json::to_value(&i)?)?.is_empty() {
                kept.push(i);
            }
        }
        insts = kept;
    }
    if !args.yq.is_empty() {
        let mut exprs = args.yq.clone();
        if args.quiet {
            exprs.push(".name".into());
        }
        let format = match args.format.as_deref() {
            Some("yaml") => limayq::Format::Yaml,
            _ => limayq::Format::Json,
        };
        print!("{}", yq_each(&insts, &limayq::join(&exprs), format)?);
        return Ok(());
    }
    if args.quiet {
        for i in &insts {
            println!("{}", i.name);
        }
        return Ok(());
    }
    let format = if args.json {
        "json"
    } else {
        args.format.as_deref().unwrap_or("table")
    };
    let out = match format {
        "json" => insts
            .iter()
            .map(|i| serde_json::to_string(i).map(|s| s + "\n"))
            .collect::<Result<String, _>>()?,
        "yaml" => insts
            .iter()
            .map(|i| serde_yaml::to_string(i).map(|s| format!("---\n{s}")))
            .collect::<Result<String, _>>()?,
        "table" => {
            if insts.is_empty() {
                eprintln!("No instance found. Run `limactl create` to create an instance.");
                return Ok(());
            }
            table(&insts)
        }
        tmpl => insts
            .iter()
            .map(|i| render(tmpl, i).map(|s| s + "\n"))
            .collect::<Result<String>>()?,
    };
    print!("{out}");
    Ok(())
}

/// `--yq EXPR`: the expression over each instance (as `--format json` shows it); every
/// output on its own, JSON on one line, strings unquoted (as upstream's yq encoder).
pub fn yq_each(insts: &[Instance], expr: &str, format: limayq::Format) -> Result<String> {
    let mut out = String::new();
    for i in insts {
        for v in limayq::eval(expr, &serde_json::to_value(i)?)? {
            match (format, &v) {
                (_, serde_json::Value::String(_)) | (limayq::Format::Yaml, _) => {
                    out.push_str(&limayq::render(&v, format, true)?)
                }
                (limayq::Format::Json, _) => {
                    out.push_str(&serde_json::to_string(&v)?);
                    out.push('\n');
                }
            }
        }
    }
    Ok(out)
}

/// Columns as Lima prints them: NAME STATUS SSH VMTYPE ARCH CPUS MEMORY DISK DIR.
pub fn table(insts: &[Instance]) -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let mut rows = vec![[
        "NAME", "STATUS", "SSH", "VMTYPE", "ARCH", "CPUS", "MEMORY", "DISK", "DIR",
    ]
    .map(String::from)
    .to_vec()];
    for i in insts {
        let dir = match i.dir.strip_prefix(&home) {
            Some(rest) if !home.is_empty() && rest.starts_with('/') => format!("~{rest}"),
            _ => i.dir.clone(),
        };
        rows.push(vec![
            i.name.clone(),
            i.status.to_string(),
            format!("{}:{}", i.ssh_address, i.ssh_local_port),
            i.vm_type.clone(),
            i.arch.clone(),
            i.cpus.to_string(),
            store::format_bytes(i.memory),
            store::format_bytes(i.disk),
            dir,
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in rows {
        let last = r.len() - 1;
        for (c, cell) in r.iter().enumerate() {
            if c == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}", w = widths[c] + 4));
            }
        }
        s.push('\n');
    }
    s
}

/// A small subset of Go templates: `{{.Field}}` with Lima's field names (Name, Status, Dir,
/// SSHLocalPort, ...), looked up in the instance's JSON form.
pub fn render(tmpl: &str, inst: &Instance) -> Result<String> {
    let json = serde_json::to_value(inst)?;
    let mut out = String::new();
    let mut rest = tmpl;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("template {tmpl:?}: unclosed {{{{"))?;
        let expr = rest[start + 2..start + end].trim();
        let field = expr.strip_prefix('.').ok_or_else(|| {
            anyhow::anyhow!("template {tmpl:?}: only {{{{.Field}}}} is supported, got {expr:?}")
        })?;
        let value = lookup(&json, field)
            .ok_or_else(|| anyhow::anyhow!("template {tmpl:?}: no field {field:?}"))?;
        match value {
            serde_json::Value::String(s) => out.push_str(&s),
            v => out.push_str(&v.to_string()),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(json: &serde_json::Value, field: &str) -> Option<serde_json::Value> {
    let obj = json.as_object()?;
    let want = field.to_ascii_lowercase();
    if let Some((_, v)) = obj.iter().find(|(k, _)| k.to_ascii_lowercase() == want) {
        return Some(v.clone());
    }
    // Zero values are omitted from the JSON form but exist as fields.
    let zero = [
        ("cpus", serde_json::json!(0)),
        ("memory", serde_json::json!(0)),
        ("disk", serde_json::json!(0)),
        ("sshlocalport", serde_json::json!(0)),
        ("message", serde_json::json!("")),
    ];
    zero.into_iter().find(|(k, _)| *k == want).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use limatype::Status;

    fn inst() -> Instance {
        Instance {
            name: "vm".into(),
            status: Status::Running,
            dir: "/x/vm".into(),
            vm_type: "qemu".into(),
            arch: "x86_64".into(),
            cpus: 2,
            memory: 2 << 30,
            disk: 10 << 30,
            ssh_address: "127.0.0.1".into(),
            ssh_local_port: 40022,
            ..Default::default()
        }
    }

    #[test]
    fn table_columns() {
        let t = table(&[inst()]);
        let lines: Vec<&str> = t.lines().collect();
        let head: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            head,
            ["NAME", "STATUS", "SSH", "VMTYPE", "ARCH", "CPUS", "MEMORY", "DISK", "DIR"]
        );
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "vm",
                "Running",
                "127.0.0.1:40022",
                "qemu",
                "x86_64",
                "2",
                "2GiB",
                "10GiB",
                "/x/vm"
            ]
        );
    }

    #[test]
    fn templates() {
        assert_eq!(
            render("{{.Name}}:{{.Status}}:{{.SSHLocalPort}}", &inst()).unwrap(),
            "vm:Running:40022"
        );
        assert!(render("{{.Nope}}", &inst())
            .unwrap_err()
            .to_string()
            .contains("Nope"));
        assert!(render("{{json .}}", &inst()).is_err());
    }
}
