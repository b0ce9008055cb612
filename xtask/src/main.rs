//! `cargo xtask`: all project automation (build, dist, checks, images, benchmarks), in Rust.
//! Not part of the layering: nothing depends on it.

mod layers;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check the workspace's crate dependencies against the declared layer table.
    CheckLayers,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::CheckLayers => anyhow::bail!("check-layers: not written yet"),
    }
}

/// The workspace root (xtask lives one level below it).
#[allow(dead_code)]
pub fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
