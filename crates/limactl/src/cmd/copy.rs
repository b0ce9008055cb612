//! `limactl copy` (alias `cp`) `SOURCE... TARGET`: files between host and guests through scp
//! or rsync (`instance::copy` picks the backend and builds the command); the copy's exit code
//! becomes ours.

use anyhow::{Context, Result};
use clap::Args;
use sshutil::copytool::{Backend, Options};

pub const LONG_ABOUT: &str = "Copy files between host and guest

Prefix guest filenames with the instance name and a colon.

Backends:
  auto   - Automatically selects the best available backend (rsync preferred, falls back to scp)
  rsync  - Uses rsync for faster transfers with resume capability (requires rsync on both host and guest)
  scp    - Uses scp for reliable transfers (always available)

Not to be confused with 'limactl clone'.";

pub const EXAMPLES: &str = "Examples:
  # Copy file from guest to host (auto backend)
  limactl copy default:/etc/os-release .

  # Copy file from host to guest with verbose output
  limactl copy -v myfile.txt default:/tmp/

  # Copy directory recursively using rsync backend
  limactl copy --backend=rsync -r ./mydir default:/tmp/

  # Copy using scp backend specifically
  limactl copy --backend=scp default:/var/log/app.log ./logs/

  # Copy multiple files
  limactl copy file1.txt file2.txt default:/tmp/";

#[derive(Args)]
pub struct CopyArgs {
    /// Copy directories recursively.
    #[arg(short, long)]
    pub recursive: bool,
    /// Enable verbose output.
    #[arg(short, long)]
    pub verbose: bool,
    /// Copy backend (scp|rsync|auto).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// SOURCE ... TARGET: host paths or INSTANCE:PATH.
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    pub paths: Vec<String>,
}

/// Returns the copy program's exit code.
pub fn run(args: CopyArgs, global: &crate::GlobalArgs) -> Result<i32> {
    let backend: Backend = args.backend.parse()?;
    let opts = Options {
        recursive: args.recursive,
        verbose: args.verbose || global.debug(),
        extra: Vec::new(),
    };
    let plan = instance::copy::plan_copy(backend, &args.paths, &opts)?;
    tracing::debug!("using copy tool `{}`", plan.program.display());
    let mut cmd = plan.command();
    tracing::debug!("executing {cmd:?} (may take a long time)");
    let status = cmd
        .status()
        .with_context(|| format!("running {}", plan.program.display()))?;
    Ok(status.code().unwrap_or(1))
}
