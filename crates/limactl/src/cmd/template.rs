//! `limactl template ...`: list, validate, copy, query (`yq`) templates and resolve their
//! URLs (`url`), through `limaload`.
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
    /// Copy a template via locator to a local file or stdout (default). Relative `base:` and
    /// `file:` locators are made absolute unless --verbatim.
    #[command(after_help = COPY_EXAMPLE)]
    Copy {
        /// Embed external dependencies into template (`template:` bases and scripts stay
        /// references).
        #[arg(long)]
        embed: bool,
        /// Embed all dependencies into template, `template:` ones too.
        #[arg(long)]
        embed_all: bool,
        /// Fill defaults (implies --embed-all, and adds `_config/base.yaml`).
        #[arg(long)]
        fill: bool,
        /// Don't make locators absolute (copy the bytes unchanged).
        #[arg(long)]
        verbatim: bool,
        #[arg(value_name = "TEMPLATE")]
        locator: String,
        #[arg(value_name = "DEST", default_value = "-")]
        dest: String,
    },
    /// Transform custom template URLs to regular file or https URLs.
    Url {
        #[arg(value_name = "CUSTOM_URL")]
        locator: String,
    },
}

const COPY_EXAMPLE: &str = "Examples:
  Template locators are local files, file://, https://, or template: URLs

  # Copy default template to STDOUT
  limactl template copy template:default -

  # Copy template from web location to local file and embed all external references
  # (this does not embed template: references)
  limactl template copy --embed https://example.com/lima.yaml mighty-machine.yaml";

/// `template copy`'s flags.
#[derive(Debug, Clone, Copy, Default)]
struct CopyMode {
    embed: bool,
    embed_all: bool,
    fill: bool,
    verbatim: bool,
}

impl CopyMode {
    /// As upstream: --fill implies --embed-all, which implies --embed; none goes with
    /// --verbatim.
    fn normalized(mut self) -> anyhow::Result<Self> {
        self.embed_all |= self.fill;
        self.embed |= self.embed_all;
        if self.embed && self.verbatim {
            bail!("--verbatim cannot be used with any of --embed, --embed-all, or --fill");
        }
        Ok(self)
    }
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
            embed,
            embed_all,
            fill,
            verbatim,
            locator,
            dest,
        } => {
            let mode = CopyMode {
                embed,
                embed_all,
                fill,
                verbatim,
            }
            .normalized()?;
            copy(&opts, &locator, &dest, mode)
        }
        TemplateCmd::Url { locator } => {
            println!("{}", limaload::transform_custom_url(&locator)?);
            Ok(())
        }
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
                tracing::info!("{locator}: OK");
                if fill {
                    print!("{}", loaded.config.to_yaml());
                }
            }
            Err(err) => {
                invalid += 1;
                for d in &err.0 {
                    tracing::error!("{d}");
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
        let text = limayq::render(&v, limayq::Format::Yaml, true)?;
        // Coloured on a terminal as upstream's yq, except a bare string.
        if crate::colorout::stdout_is_tty() && !v.is_string() {
            out.push_str(&limayq::colorize_yaml(&text));
        } else {
            out.push_str(&text);
        }
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

fn copy(
    opts: &limaload::LoadOptions,
    locator: &str,
    dest: &str,
    mode: CopyMode,
) -> anyhow::Result<()> {
    let load_err = |e: limaload::LoadError| anyhow::anyhow!("{e}");
    // Read once: `-` is stdin.
    let src = limaload::read(locator, &opts.template_dirs).map_err(|d| anyhow::anyhow!("{d}"))?;
    if src.text.is_empty() {
        bail!("don't know how to interpret `{locator}` as a template locator");
    }
    let text = if mode.fill {
        let o = options_for(opts, locator);
        let embedded = limaload::embed_source(src, &o).map_err(load_err)?;
        limaload::fill(&embedded, &o).map_err(load_err)?.to_yaml()
    } else if mode.embed {
        // Upstream embeds `_config/base.yaml` only with --fill.
        let mut o = options_for(opts, locator);
        o.use_default_base = false;
        limaload::embed_text(src, &o, mode.embed_all).map_err(load_err)?
    } else if mode.verbatim {
        src.text
    } else {
        limaload::use_abs_locators(&src).map_err(load_err)?
    };
    if dest == "-" {
        // Upstream runs stdout through yq to colour it on a terminal.
        let text = if crate::colorout::stdout_is_tty() {
            limayq::colorize_yaml(&text)
        } else {
            text
        };
        std::io::stdout().lock().write_all(text.as_bytes())?;
    } else {
        std::fs::write(dest, text).with_context(|| format!("writing {dest}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::CopyMode;

    #[test]
    fn fill_implies_embed_all_and_embed() {
        let m = CopyMode {
            fill: true,
            ..Default::default()
        }
        .normalized()
        .unwrap();
        assert!(m.embed && m.embed_all);
        let m = CopyMode {
            embed_all: true,
            ..Default::default()
        }
        .normalized()
        .unwrap();
        assert!(m.embed && !m.fill);
    }

    #[test]
    fn verbatim_refuses_any_embedding() {
        for m in [
            CopyMode {
                embed: true,
                ..Default::default()
            },
            CopyMode {
                fill: true,
                ..Default::default()
            },
        ] {
            let err = CopyMode {
                verbatim: true,
                ..m
            }
            .normalized()
            .unwrap_err();
            assert!(
                err.to_string().contains("--verbatim cannot be used"),
                "{err}"
            );
        }
    }
}
