//! `limactl prune`: empties the download cache (images, kernels, initrds fetched for
//! instances). Instances keep working: their disks do not point into the cache.

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct PruneArgs {}

pub fn run(_args: PruneArgs) -> Result<()> {
    let downloader =
        downloader::Downloader::with_default_cache().context("finding the download cache")?;
    if let Some(dir) = downloader.download_dir() {
        eprintln!("Pruning {}", dir.display());
    }
    downloader.prune().context("pruning the download cache")?;
    Ok(())
}
