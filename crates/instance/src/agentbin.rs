//! Which `lima-guestagent` binary goes into a guest's seed: `lima-guestagent.<OS>-<arch>` in
//! `<prefix>/share/lima/` beside limactl (as `cargo xtask build`/`dist` install it and upstream
//! names it), or, in a development build, the `lima-guestagent` cargo built next to limactl
//! when the guest's arch is the host's. A missing one is an error naming the file and the
//! directories searched, never a silent VM without forwarding.

use std::path::{Path, PathBuf};

use limatype::{Arch, Os};

use crate::{InstanceError, Result};

/// The guest agent for a guest of `os`/`arch`; `None` for a guest OS that has none (only Linux
/// guests run it).
pub fn find(os: Os, arch: Arch) -> Result<Option<PathBuf>> {
    let exe = std::env::current_exe().map_err(InstanceError::SpawnAgent)?;
    find_beside(&exe, os, arch)
}

fn find_beside(exe: &Path, os: Os, arch: Arch) -> Result<Option<PathBuf>> {
    if os != Os::Linux {
        return Ok(None);
    }
    let file = format!("lima-guestagent.{}-{}", os.as_str(), arch.as_str());
    let bin_dir = exe.parent().unwrap_or(Path::new("."));
    let share = bin_dir.join("..").join("share").join("lima");
    let mut candidates = vec![share.join(&file)];
    if arch == Arch::host() {
        candidates.push(bin_dir.join("lima-guestagent"));
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(Some(found.clone()));
    }
    Err(InstanceError::GuestAgentMissing {
        file,
        searched: candidates
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_then_development_build_then_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        let share = root.path().join("share/lima");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&share).unwrap();
        let exe = bin.join("limactl");
        let host = Arch::host();

        let e = find_beside(&exe, Os::Linux, host).unwrap_err().to_string();
        assert!(e.contains(&format!("lima-guestagent.Linux-{host}")), "{e}");
        assert!(
            e.contains("share/lima") && e.contains(&bin.display().to_string()),
            "{e}"
        );

        std::fs::write(bin.join("lima-guestagent"), "dev").unwrap();
        assert_eq!(
            find_beside(&exe, Os::Linux, host).unwrap(),
            Some(bin.join("lima-guestagent"))
        );
        let installed = share.join(format!("lima-guestagent.Linux-{host}"));
        std::fs::write(&installed, "release").unwrap();
        let found = find_beside(&exe, Os::Linux, host).unwrap().unwrap();
        assert_eq!(
            found.canonicalize().unwrap(),
            installed.canonicalize().unwrap()
        );

        // Another arch never gets the host's development build.
        let other = if host == Arch::X86_64 {
            Arch::Aarch64
        } else {
            Arch::X86_64
        };
        assert!(find_beside(&exe, Os::Linux, other).is_err());
        assert_eq!(find_beside(&exe, Os::Darwin, host).unwrap(), None);
    }
}
