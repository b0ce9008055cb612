//! `cargo xtask ci`: every check the project's CI runs, in order, stopping at the first
//! failing step (the test step itself runs all tests, without fail-fast).

use std::ffi::OsString;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Skip building the local guest image (tests that need it then skip or fail on their own).
    #[arg(long)]
    pub skip_image: bool,
}

/// One CI step: a cargo invocation from the workspace root.
struct Step {
    what: &'static str,
    args: &'static [&'static str],
}

const FMT: Step = Step {
    what: "formatting",
    args: &["fmt", "--all", "--check"],
};

const CLIPPY: Step = Step {
    what: "clippy",
    args: &[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ],
};

/// Unused wrappers are expected: deny.toml lists every crate allowed to use each workspace
/// crate, and most of them do not. Advisories are not checked: the advisory database cannot
/// be fetched offline.
const DENY: Step = Step {
    what: "cargo-deny",
    args: &[
        "deny",
        "check",
        "--allow",
        "unused-wrapper",
        "bans",
        "licenses",
        "sources",
    ],
};

const LOCAL_IMAGE: Step = Step {
    what: "local guest image",
    args: &["xtask", "local-image"],
};

const TESTS: Step = Step {
    what: "tests",
    args: &["nextest", "run", "--workspace", "--no-fail-fast"],
};

pub fn run(args: Args) -> Result<()> {
    run_step(&FMT)?;
    run_step(&CLIPPY)?;

    eprintln!("==> ci: layering: cargo xtask check-layers");
    let manifest = crate::project_root().join("Cargo.toml");
    if !crate::check_layers::report(Some(&manifest))? {
        fail("layering", "cargo xtask check-layers");
    }

    run_step(&DENY)?;

    // The offline local guest image, before the tests that boot it.
    if args.skip_image {
        eprintln!("==> ci: local guest image: skipped (--skip-image)");
    } else {
        run_step(&LOCAL_IMAGE)?;
    }

    run_step(&TESTS)?;
    eprintln!("==> ci: all steps passed");
    Ok(())
}

fn run_step(step: &Step) -> Result<()> {
    let command = format!("cargo {}", step.args.join(" "));
    eprintln!("==> ci: {}: {command}", step.what);
    let args: Vec<OsString> = step.args.iter().map(OsString::from).collect();
    let status = duct::cmd(cargo(), args)
        .dir(crate::project_root())
        .unchecked()
        .run()
        .with_context(|| format!("starting `{command}`"))?
        .status;
    if !status.success() {
        fail(step.what, &format!("{command} ({status})"));
    }
    Ok(())
}

/// Stops CI at a failed step; the step's own output above says why.
fn fail(what: &str, command: &str) -> ! {
    eprintln!("==> ci: FAILED at {what}: {command}");
    std::process::exit(1);
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}
