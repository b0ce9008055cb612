//! `limactl template ...`: list, validate, copy and query (`yq`) templates (through `limaload`).
use std::io::Write;

use anyhow::{bail, Context};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum TemplateCmd {
    /// List the available templates (LIMA_TEMPLATES_PATH, else the bundled ones).
    List,
    /// Validate templates; every problem is printed as `FILE:LINE: FIELD: message`.
    Validate {
        /// Print the filled config of each valid template.
        #[arg(long)]
        fill: bool,
        /// Path, `-`, file:// or http(s):// URL, or template:NAME.
        #[arg(required = true, value_name = "LOCATOR")]
        locators: Vec<String>,
    },
    /// Query a template with a yq expression: bases and scripts embedded and defaults filled
    /// first (as `template copy --fill TEMPLATE - | yq EXPR`).
    Yq {
        #[arg(value_name = "TEMPLATE")]
        locator: String,
        #[arg(value_name = "EXPR")]
        expr: String,
    },
    /// Copy a template to a file or to stdout (`-`).
    Copy {
        /// Embed bases and scripts and fill in every default.
        #[arg(long)]
        fill: bool,
        #[arg(value_name = "LOCATOR")]
        locator: String,
        #[arg(value_name = "DEST", default_value = "-")]
        dest: String,
    },
}

pub fn run(cmd: TemplateCmd) -> anyhow::Result<()> {
    let opts = limaload::LoadOptions::detect();
    match cmd {
        TemplateCmd::List => {
            let mut out = std::io::stdout().lock();
            for (name, _) in limaload::list_templates(&opts.template_dirs) {
                writeln!(out, "{name}")?;
            }
            Ok(())
        }
        TemplateCmd::Validate { fill, locators } => validate(&opts, &locators, fill),
        TemplateCmd::Yq { locator, expr } => yq(&opts, &locator, &expr),
        TemplateCmd::Copy {
            fill,
            locator,
            dest,
        } => copy(&opts, &locator, &dest, fill),
    }
}

fn options_for(opts: &limaload::LoadOptions, locator: &str) -> limaload::LoadOptions {
    let mut o = opts.clone();
    // Only the instance-name-dependent defaults (paths, MACs) use it; any name validates.
    o.name = Some(limaload::instance_name(locator).unwrap_or_else(|| "default".into()));
    o
}

pub fn validate(
    opts: &limaload::LoadOptions,
    locators: &[String],
    fill: bool,
) -> anyhow::Result<()> {
    let mut invalid = 0;
    for locator in locators {
        match limaload::load(locator, &options_for(opts, locator)) {
            Ok(loaded) => {
                eprintln!("{locator}: OK");
                if fill {
                    print!("{}", loaded.config.to_yaml());
                }
            }
            Err(err) => {
                invalid += 1;
                for d in &err.0 {
                    eprintln!("{d}");
                }
            }
        }
    }
    if invalid > 0 {
        bail!("{invalid} of {} templates are invalid", locators.len());
    }
    Ok(())
}

fn yq(opts: &limaload::LoadOptions, locator: &str, expr: &str) -> anyhow::Result<()> {
    let o = options_for(opts, locator);
    let embedded = limaload::embed(locator, &o)?;
    let filled = limaload::fill(&embedded, &o)?.to_yaml();
    let doc = limayq::parse_yaml(&filled)?;
    let mut out = String::new();
    for v in limayq::eval(expr, &doc)? {
        out.push_str(&limayq::render(&v, limayq::Format::Yaml, true)?);
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

fn copy(opts: &limaload::LoadOptions, locator: &str, dest: &str, fill: bool) -> anyhow::Result<()> {
    let text = if fill {
        let o = options_for(opts, locator);
        let embedded = limaload::embed(locator, &o)?;
        limaload::fill(&embedded, &o)?.to_yaml()
    } else {
        let src =
            limaload::read(locator, &opts.template_dirs).map_err(|d| anyhow::anyhow!("{d}"))?;
        limaload::use_abs_locators(&src)?
    };
    if dest == "-" {
        std::io::stdout().lock().write_all(text.as_bytes())?;
    } else {
        std::fs::write(dest, text).with_context(|| format!("writing {dest}"))?;
    }
    Ok(())
}
