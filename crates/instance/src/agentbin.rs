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

/// Upstream's `sharePaths`: `<prefix>/share/lima` beside the running limactl, when it
/// exists and is not empty.
pub fn share_dirs() -> Vec<PathBuf> {
    let Ok(exe) = std::env::current_exe() else {
        return Vec::new();
    };
    share_dirs_beside(&exe)
}

fn share_dirs_beside(exe: &Path) -> Vec<PathBuf> {
    let bin_dir = exe.parent().unwrap_or(Path::new("."));
    let share = bin_dir.join("..").join("share").join("lima");
    let non_empty = std::fs::read_dir(&share).is_ok_and(|mut d| d.next().is_some());
    if non_empty {
        vec![share]
    } else {
        Vec::new()
    }
}

/// Every guest agent `limactl info` reports (upstream's `guestAgents`): for each OS and arch,
/// the first `lima-guestagent.<OS>-<arch>` (or `.gz`) in the share directories, keyed by the
/// arch for Linux and `<OS>-<arch>` for the others, as upstream.
pub fn installed() -> Vec<(String, PathBuf)> {
    installed_in(&share_dirs())
}

fn installed_in(share_dirs: &[PathBuf]) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for arch in Arch::ALL {
        for os in Os::ALL {
            let file = format!("lima-guestagent.{}-{}", os.as_str(), arch.as_str());
            let hit = share_dirs.iter().find_map(|d| {
                [d.join(format!("{file}.gz")), d.join(&file)]
                    .into_iter()
                    .find(|p| p.is_file())
            });
            if let Some(path) = hit {
                let key = match os {
                    Os::Linux => arch.as_str().to_string(),
                    _ => format!("{}-{}", os.as_str(), arch.as_str()),
                };
                found.push((key, path));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn installed_agents_are_keyed_as_upstream() {
        let root = tempfile::tempdir().unwrap();
        let exe = root.path().join("bin/limactl");
        std::fs::create_dir(root.path().join("bin")).unwrap();
        assert!(share_dirs_beside(&exe).is_empty(), "no share dir yet");
        let share = root.path().join("share/lima");
        std::fs::create_dir_all(&share).unwrap();
        assert!(
            share_dirs_beside(&exe).is_empty(),
            "an empty one does not count"
        );
        std::fs::write(share.join("lima-guestagent.Linux-aarch64.gz"), "").unwrap();
        std::fs::write(share.join("lima-guestagent.Linux-aarch64"), "").unwrap();
        std::fs::write(share.join("lima-guestagent.FreeBSD-x86_64"), "").unwrap();
        let dirs = share_dirs_beside(&exe);
        assert_eq!(dirs.len(), 1);
        let got = installed_in(&dirs);
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["FreeBSD-x86_64", "aarch64"]);
        assert!(
            got[1].1.ends_with("lima-guestagent.Linux-aarch64.gz"),
            "{got:?}"
        );
    }

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
