//! `limactl template ...`
use clap::Subcommand;

#[derive(Subcommand)]
pub enum TemplateCmd {
    /// List the available templates.
    List,
}

pub fn run(cmd: TemplateCmd) -> anyhow::Result<()> {
    match cmd {
        TemplateCmd::List => anyhow::bail!("template list: not written yet"),
    }
}
