//! `limactl list`: instances and their status, read from `$LIMA_HOME` without starting
//! anything; printed by `store::format` (table, JSON lines, YAML, or a Go template). On a
//! terminal JSON and YAML are coloured as upstream's yq does (the table never is).

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Args;
use store::format::{GlobalFields, PrintOptions};

#[derive(Args)]
#[command(
    after_help = "Formats: json, yaml, table, or a Go template such as '{{.Name}} {{.Status}}' \
                  (fields: --list-fields).\n\nThese functions are available to go templates:\n  \
                  indent <size>: add spaces to beginning of each line\n  \
                  missing <message>: return message if the text is empty"
)]
pub struct ListArgs {
    /// Instance names to show (all if none), in the order given.
    pub names: Vec<String>,
    /// Same as --format=json.
    #[arg(long)]
    pub json: bool,
    /// Output format, one of: json, yaml, table, go-template.
    #[arg(long, short = 'f')]
    pub format: Option<String>,
    /// Apply yq expression to each instance (implies --format json).
    #[arg(long, value_name = "EXPR")]
    pub yq: Vec<String>,
    /// Filter instances using yq expression (equivalent to --yq 'select(EXPR)').
    #[arg(long, short = 'l', value_name = "EXPR")]
    pub filter: Vec<String>,
    /// Only show names.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// List fields available for format.
    #[arg(long)]
    pub list_fields: bool,
    /// Show all fields (never hide a table column on a narrow terminal).
    #[arg(long)]
    pub all_fields: bool,
}

pub fn run(args: ListArgs) -> Result<()> {
    if args.json && args.format.is_some() {
        bail!("option --json conflicts with option --format");
    }
    if args.list_fields && args.format.is_some() {
        bail!("option --list-fields conflicts with option --format");
    }
    let yq = !args.yq.is_empty();
    let format = match (&args.format, args.json) {
        (_, true) => "json",
        (Some(f), false) => f.as_str(),
        // --yq implies JSON.
        (None, false) if yq => "json",
        (None, false) => "table",
    };
    if yq && format != "json" && format != "yaml" {
        bail!("option --yq only works with --format json or yaml, not {format:?}");
    }
    if args.quiet && format != "table" && !yq {
        bail!("option --quiet can only be used with '--format table'");
    }
    if args.list_fields {
        println!("{}", store::format::field_names().join("\n"));
        return Ok(());
    }

    let all = store::instance_names()?;
    if args.names.is_empty() && all.is_empty() {
        tracing::warn!("No instance found. Run `limactl create` to create an instance.");
        return Ok(());
    }
    let mut unmatched = false;
    let names: Vec<String> = if args.names.is_empty() {
        all
    } else {
        let mut names = vec![];
        for arg in &args.names {
            if all.contains(arg) {
                names.push(arg.clone());
            } else {
                tracing::warn!("No instance matching {arg} found.");
                unmatched = true;
            }
        }
        names
    };
    if args.quiet && !yq && args.filter.is_empty() {
        let out: String = names.iter().map(|n| format!("{n}\n")).collect();
        return finish(&out, unmatched);
    }

    let mut insts = vec![];
    for n in &names {
        match instance::ops::inspect(n) {
            // Gone since the directory was read.
            Err(instance::InstanceError::NotFound(_)) => {
                tracing::warn!("Skipping instance `{n}`: it does not exist any more (being cloned or deleted?)");
                unmatched |= !args.names.is_empty();
            }
            other => insts.push(other.with_context(|| format!("unable to load instance {n}"))?),
        }
    }
    for i in &insts {
        if !i.errors.is_empty() {
            tracing::warn!(errors = ?i.errors, "instance `{}` has errors", i.name);
        }
    }
    if !args.filter.is_empty() {
        let filter: Vec<String> = args.filter.iter().map(|f| format!("select({f})")).collect();
        let expr = limayq::join(&filter);
        let mut kept = vec![];
        for i in insts {
            if !limayq::eval(&expr, &serde_json::to_value(&i)?)?.is_empty() {
                kept.push(i);
            }
        }
        insts = kept;
    }
    if yq || (args.quiet && !args.filter.is_empty()) {
        let mut exprs = if yq {
            args.yq.clone()
        } else {
            vec![".".into()]
        };
        if args.quiet {
            exprs.push(".name".into());
        }
        let yq_format = match format {
            "yaml" => limayq::Format::Yaml,
            _ => limayq::Format::Json,
        };
        let out = yq_each(&insts, &limayq::join(&exprs), yq_format)?;
        return finish(&tty(out, format), unmatched);
    }
    let opts = PrintOptions {
        all_fields: args.all_fields,
        terminal_width: osutil::stdout_terminal_width().unwrap_or(0),
    };
    let out = store::format::print_instances(&insts, format, &opts, &global_fields()?)?;
    finish(&tty(out, format), unmatched)
}

/// As upstream: JSON and YAML coloured on a terminal (JSON indented too); the table plain.
fn tty(out: String, format: &str) -> String {
    if crate::colorout::stdout_is_tty() {
        crate::colorout::for_terminal(&out, format)
    } else {
        out
    }
}

/// `expr` applied to each instance's JSON, one result per line (strings bare, as yq prints).
pub fn yq_each(insts: &[limatype::Instance], expr: &str, format: limayq::Format) -> Result<String> {
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

/// Prints `out`; an unmatched name then exits 1 without an error line, as upstream's
/// `unmatchedInstancesError` (the warnings already named each one).
fn finish(out: &str, unmatched: bool) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    if unmatched {
        std::process::exit(1);
    }
    Ok(())
}

/// The host facts upstream adds to each instance's template data.
pub fn global_fields() -> Result<GlobalFields> {
    Ok(GlobalFields::detect()?)
}
