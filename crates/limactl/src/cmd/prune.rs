//! `limactl prune [--keep-referred]`: empties the download cache (images, kernels, initrds
//! fetched for instances), or with `--keep-referred` keeps the entries some instance's config
//! or some template refers to. Instances keep working either way: their disks do not point into the cache.

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct PruneArgs {
    /// Keep objects that are referred by some instances or templates.
    #[arg(long)]
    pub keep_referred: bool,
}

pub fn run(args: PruneArgs) -> Result<()> {
    let downloader =
        downloader::Downloader::with_default_cache().context("finding the download cache")?;
    if args.keep_referred {
        let mut keep =
            instance::manage::locations_referred_by_instances().context("cannot safely prune")?;
        keep.extend(
            instance::manage::locations_referred_by_templates()
                .context("cannot safely prune: loading the templates")?,
        );
        let removed = downloader
            .prune_except(keep.iter().map(String::as_str))
            .context("pruning the download cache")?;
        for path in removed {
            tracing::debug!("Deleted {}", path.display());
        }
        return Ok(());
    }
    if let Some(dir) = downloader.download_dir() {
        tracing::info!("Pruning {}", dir.display());
    }
    downloader.prune().context("pruning the download cache")?;
    Ok(())
}
