//! `cargo xtask build` and `cargo xtask dist`: limactl with some drivers compiled in and the
//! others as `lima-driver-<name>` executables beside it, laid out as an installation prefix:
//!
//! ```text
//! _output/bin/limactl
//! _output/libexec/lima/lima-driver-<name>     (one per external driver)
//! _output/share/lima/lima-guestagent.Linux-<arch>  (the guest agent, Linux hosts only)
//! _output/share/lima/templates/               (dist only, from the top-level templates/)
//! ```
//!
//! limactl finds external drivers in `<its dir>/../libexec/lima` and the guest agent it puts
//! into a guest's seed in `<its dir>/../share/lima`, so the tree (and the dist tarball,
//! unpacked anywhere) is relocatable.
//!
//! The guest agent (`lima-guestagent`, crate `guestagent`) is built for the host's arch with
//! the host's toolchain, in the same profile as limactl, and named with Lima's OS and arch
//! names (`lima-guestagent.Linux-x86_64`, `lima-guestagent.Linux-aarch64`). It is built only
//! on a Linux host (elsewhere that would be a binary for the wrong OS; cross-building it is
//! not done yet), and it links the build host's glibc dynamically, so a guest needs a glibc
//! at least as new.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Every driver this workspace has: crate `crates/<name>`, limactl feature `driver-<name>`,
/// executable `lima-driver-<name>`. Derived from the layer table's `Kind::Driver` rows.
pub const KNOWN_DRIVERS: &[&str] = crate::layers::DRIVERS;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Drivers to build as separate executables instead of compiling them into limactl
    /// (comma-separated, e.g. `--external vz,qemu`).
    #[arg(long, value_delimiter = ',')]
    pub external: Vec<String>,
    /// Build with the release profile (default: dev).
    #[arg(long)]
    pub release: bool,
}

#[derive(clap::Args)]
pub struct DistArgs {
    /// Drivers to ship as separate executables (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "all_external")]
    pub external: Vec<String>,
    /// Ship every driver as a separate executable (limactl with no driver compiled in).
    #[arg(long)]
    pub all_external: bool,
    /// Build with the release profile (default: dev).
    #[arg(long)]
    pub release: bool,
}

/// Which drivers go into limactl and which become executables.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub internal: Vec<&'static str>,
    pub external: Vec<&'static str>,
}

/// Splits [`KNOWN_DRIVERS`] by the `--external` list; an unknown name is an error listing the
/// known drivers. Repeated names count once.
pub fn plan(external: &[String]) -> Result<Plan> {
    for name in external {
        if !KNOWN_DRIVERS.contains(&name.as_str()) {
            bail!(
                "unknown driver {name:?} in --external; known drivers: {}",
                KNOWN_DRIVERS.join(", ")
            );
        }
    }
    let (external, internal) = KNOWN_DRIVERS
        .iter()
        .partition(|d| external.iter().any(|e| e == *d));
    Ok(Plan { internal, external })
}

/// The `--features` value for limactl (empty: no driver compiled in).
pub fn limactl_features(plan: &Plan) -> String {
    plan.internal
        .iter()
        .map(|d| format!("driver-{d}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The executable file name of an external driver on this host (limatype's rule, as the
/// registry finds it).
pub fn driver_exe_name(driver: &str) -> String {
    limatype::driver_file_name(driver, limatype::Os::host())
}

/// A driver's cargo bin target: `lima-driver-<name>` on every host.
fn driver_bin_target(driver: &str) -> String {
    format!("{}{driver}", limatype::DRIVER_FILE_PREFIX)
}

pub fn output_dir() -> PathBuf {
    crate::project_root().join("_output")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                crate::project_root().join(p)
            }
        })
        .unwrap_or_else(|| crate::project_root().join("target"))
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

pub fn run_build(args: BuildArgs) -> Result<()> {
    let plan = plan(&args.external)?;
    build_tree(&plan, args.release, &output_dir())?;
    Ok(())
}

/// Builds limactl and the external drivers and installs them under `prefix`.
fn build_tree(plan: &Plan, release: bool, prefix: &Path) -> Result<()> {
    let profile_dir = if release { "release" } else { "debug" };
    let bins = target_dir().join(profile_dir);

    let mut limactl = vec![
        "build".to_string(),
        "-p".into(),
        "limactl".into(),
        "--bin".into(),
        "limactl".into(),
        "--no-default-features".into(),
    ];
    let features = limactl_features(plan);
    if !features.is_empty() {
        limactl.extend(["--features".into(), features.clone()]);
    }
    if release {
        limactl.push("--release".into());
    }
    eprintln!(
        "==> limactl with internal drivers: {}",
        if plan.internal.is_empty() {
            "none".to_string()
        } else {
            plan.internal.join(", ")
        }
    );
    duct::cmd(cargo(), &limactl)
        .dir(crate::project_root())
        .run()
        .context("building limactl")?;
    // Copy right away: a later build of limactl with other features overwrites it.
    let bin_dir = prefix.join("bin");
    std::fs::create_dir_all(&bin_dir)?;
    let limactl_name = format!("limactl{}", std::env::consts::EXE_SUFFIX);
    install(&bins.join(&limactl_name), &bin_dir.join(&limactl_name))?;
    install_wrappers(&wrappers_dir(), &bin_dir)?;

    let libexec = prefix.join("libexec/lima");
    std::fs::create_dir_all(&libexec)?;
    remove_stale_drivers(&libexec, plan)?;
    for driver in &plan.external {
        let exe = driver_exe_name(driver);
        eprintln!("==> external driver {driver}: {exe}");
        let bin = driver_bin_target(driver);
        let mut args = vec!["build", "-p", driver, "--bin", &bin];
        if release {
            args.push("--release");
        }
        duct::cmd(cargo(), &args)
            .dir(crate::project_root())
            .run()
            .with_context(|| format!("building {exe}"))?;
        install(&bins.join(&exe), &libexec.join(&exe))?;
    }
    build_guestagent(release, &prefix.join("share/lima"))?;
    eprintln!("==> {}", prefix.display());
    Ok(())
}

/// The installed guest agent's file name for a Linux guest of `arch`:
/// `lima-guestagent.Linux-<arch>`, as limactl looks it up.
pub fn guestagent_file_name(arch: limatype::Arch) -> String {
    format!(
        "lima-guestagent.{}-{}",
        limatype::Os::Linux.as_str(),
        arch.as_str()
    )
}

/// Builds `lima-guestagent` (on a Linux host) and returns where cargo put it, or `None` on
/// other hosts.
pub fn cargo_build_guestagent(release: bool) -> Result<Option<PathBuf>> {
    if limatype::Os::host() != limatype::Os::Linux {
        eprintln!(
            "==> guest agent: not built on {} (it must be a Linux binary; cross-building is not done yet)",
            limatype::Os::host()
        );
        return Ok(None);
    }
    eprintln!("==> guest agent: lima-guestagent");
    let mut args = vec!["build", "-p", "guestagent", "--bin", "lima-guestagent"];
    if release {
        args.push("--release");
    }
    duct::cmd(cargo(), &args)
        .dir(crate::project_root())
        .run()
        .context("building lima-guestagent")?;
    let exe = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("lima-guestagent");
    if !exe.is_file() {
        bail!("built lima-guestagent not found at {}", exe.display());
    }
    Ok(Some(exe))
}

/// Builds the guest agent and installs it as `<share>/lima-guestagent.Linux-<host arch>`.
fn build_guestagent(release: bool, share: &Path) -> Result<()> {
    let Some(exe) = cargo_build_guestagent(release)? else {
        return Ok(());
    };
    std::fs::create_dir_all(share)?;
    install(
        &exe,
        &share.join(guestagent_file_name(limatype::Arch::host())),
    )
}

/// Drivers left in libexec by an earlier build with another `--external` list would still be
/// found by limactl; remove those not in the plan.
fn remove_stale_drivers(libexec: &Path, plan: &Plan) -> Result<()> {
    for entry in std::fs::read_dir(libexec)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name.starts_with(limatype::DRIVER_FILE_PREFIX)
            && !plan.external.iter().any(|d| driver_exe_name(d) == name);
        if stale {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Upstream's wrapper scripts (`lima`, `nerdctl.lima`, `docker.lima`, ...), kept in the repo.
fn wrappers_dir() -> PathBuf {
    crate::project_root().join("crates/limactl/wrappers")
}

/// Installs every wrapper script of `from` into `bin_dir`, executable.
fn install_wrappers(from: &Path, bin_dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        if !path.is_file() || path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let to = bin_dir.join(path.file_name().unwrap_or_default());
        install(&path, &to)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    eprintln!("==> wrappers from {} installed", from.display());
    Ok(())
}

/// Copies an executable (replacing the destination, not writing through it: it may be
/// running).
fn install(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_extension("tmp-install");
    std::fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| format!("installing {}", to.display()))?;
    Ok(())
}

pub fn run_dist(args: DistArgs) -> Result<()> {
    let external: Vec<String> = if args.all_external {
        KNOWN_DRIVERS.iter().map(|d| d.to_string()).collect()
    } else {
        args.external
    };
    let plan = plan(&external)?;
    let stage = output_dir().join("dist-stage");
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    build_tree(&plan, args.release, &stage)?;
    let templates = crate::project_root().join("templates");
    let share = stage.join("share/lima/templates");
    std::fs::create_dir_all(&share)?;
    if templates.is_dir() {
        copy_dir(&templates, &share)?;
    }
    let tarball = output_dir().join(format!(
        "lima-{}-{}-{}.tar.gz",
        env!("CARGO_PKG_VERSION"),
        limatype::Os::host(),
        limatype::Arch::host()
    ));
    write_tarball(&stage, &tarball)?;
    std::fs::remove_dir_all(&stage)?;
    println!("{}", tarball.display());
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &dest)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
        // Symlinks are skipped: a template tree must not point outside itself.
    }
    Ok(())
}

/// A `tar.gz` of everything under `root`, with paths relative to it (`bin/limactl`, ...), so
/// it unpacks into any prefix. Entries are sorted and owned by 0:0 with a fixed mtime, so the
/// archive depends only on the files' contents and modes.
pub fn write_tarball(root: &Path, tarball: &Path) -> Result<()> {
    let tmp = tarball.with_extension("tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut files = Vec::new();
    collect(root, Path::new(""), &mut files)?;
    for rel in files {
        let path = root.join(&rel);
        let meta = std::fs::metadata(&path)?;
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, &rel, std::io::empty())?;
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if osutil::is_executable(&meta) {
                0o755
            } else {
                0o644
            });
            header.set_size(meta.len());
            let f = std::fs::File::open(&path)?;
            tar.append_data(&mut header, &rel, f)
                .with_context(|| format!("adding {}", rel.display()))?;
        }
    }
    tar.into_inner()?.finish()?;
    std::fs::rename(&tmp, tarball)?;
    Ok(())
}

/// Relative paths of every directory and file under `dir`, sorted, parents first.
fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let child = rel.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            out.push(child.clone());
            collect(root, &child, out)?;
        } else if ty.is_file() {
            out.push(child);
        }
    }
    Ok(())
}

#[cfg(test)]
mod wrapper_tests {
    use super::*;

    #[test]
    fn wrappers_are_installed_executable() {
        let bin = tempfile::tempdir().unwrap();
        install_wrappers(&wrappers_dir(), bin.path()).unwrap();
        for name in [
            "lima",
            "nerdctl.lima",
            "docker.lima",
            "podman.lima",
            "kubectl.lima",
            "apptainer.lima",
        ] {
            let meta = std::fs::metadata(bin.path().join(name)).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{name}");
            }
            assert!(meta.len() > 0, "{name}");
        }
        assert!(!bin.path().join("README.md").exists());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn guestagent_names_follow_lima() {
        assert_eq!(
            guestagent_file_name(limatype::Arch::X86_64),
            "lima-guestagent.Linux-x86_64"
        );
        assert_eq!(
            guestagent_file_name(limatype::Arch::Aarch64),
            "lima-guestagent.Linux-aarch64"
        );
    }

    #[test]
    fn no_external_means_everything_internal() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.internal, KNOWN_DRIVERS);
        assert!(p.external.is_empty());
        assert_eq!(
            limactl_features(&p),
            "driver-qemu,driver-vz,driver-wsl2,driver-krunkit"
        );
    }

    #[test]
    fn named_drivers_become_external() {
        let p = plan(&names(&["vz", "qemu", "vz"])).unwrap();
        assert_eq!(p.external, vec!["qemu", "vz"]);
        assert_eq!(p.internal, vec!["wsl2", "krunkit"]);
        assert_eq!(limactl_features(&p), "driver-wsl2,driver-krunkit");
    }

    #[test]
    fn all_external_leaves_no_feature() {
        let p = plan(&names(KNOWN_DRIVERS)).unwrap();
        assert!(p.internal.is_empty());
        assert_eq!(limactl_features(&p), "");
    }

    #[test]
    fn unknown_driver_lists_known_ones() {
        let e = plan(&names(&["qemu", "hyperv"])).unwrap_err().to_string();
        assert!(e.contains("\"hyperv\""), "{e}");
        for d in KNOWN_DRIVERS {
            assert!(e.contains(d), "{e}");
        }
    }

    #[test]
    fn stale_drivers_are_removed_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "lima-driver-vz",
            "lima-driver-qemu",
            "lima-driver-old",
            "README",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        remove_stale_drivers(dir.path(), &plan(&names(&["vz"])).unwrap()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec!["README", "lima-driver-vz"]);
    }

    #[test]
    fn tarball_is_relative_and_keeps_exec_bits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("share/lima/templates")).unwrap();
        std::fs::write(root.join("bin/limactl"), b"#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                root.join("bin/limactl"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        std::fs::write(root.join("share/lima/templates/default.yaml"), b"x: 1\n").unwrap();
        let tgz = dir.path().join("out.tar.gz");
        write_tarball(&root, &tgz).unwrap();

        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&tgz).unwrap(),
        ));
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let mode = e.header().mode().unwrap();
            seen.push((path, mode));
        }
        let expect = [
            ("bin", 0o755),
            ("bin/limactl", if cfg!(unix) { 0o755 } else { 0o644 }),
            ("share", 0o755),
            ("share/lima", 0o755),
            ("share/lima/templates", 0o755),
            ("share/lima/templates/default.yaml", 0o644),
        ];
        let expect: Vec<(String, u32)> = expect.iter().map(|(p, m)| (p.to_string(), *m)).collect();
        assert_eq!(seen, expect);
    }
}
