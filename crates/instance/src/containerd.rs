//! `containerd.system` / `containerd.user`: the nerdctl-full archive for the guest's arch
//! (`containerd.archives`), fetched through the download cache with its digest checked, so
//! the seed can carry it (upstream's `cacheutil.EnsureNerdctlArchiveCache`). The guest side,
//! installing it and starting containerd, is `cidata`'s boot.sh.

use std::path::PathBuf;

use limatype::Filled;

use crate::{InstanceError, Result};

/// Whether the config wants containerd in the guest (never in plain mode).
pub fn wanted(config: &Filled) -> bool {
    let c = config.containerd.clone().unwrap_or_default();
    !config.plain.unwrap_or(false) && (c.system.unwrap_or(false) || c.user.unwrap_or(false))
}

/// The local file of the nerdctl archive for `config`'s arch, `None` when containerd is not
/// wanted. Entries for the arch (or without one) are tried in order, as upstream does; the
/// first that downloads and matches its digest wins, else the last error is returned.
pub fn archive(config: &Filled) -> Result<Option<PathBuf>> {
    if !wanted(config) {
        return Ok(None);
    }
    let arch = config.arch.to_string();
    let archives = config
        .containerd
        .as_ref()
        .and_then(|c| c.archives.clone())
        .unwrap_or_default();
    let mut last = None;
    for f in archives
        .iter()
        .filter(|f| f.arch.as_deref().is_none_or(|a| a == arch))
    {
        let fail = |source| InstanceError::Fetch {
            what: "the nerdctl archive",
            location: f.location.clone(),
            source,
        };
        let got = downloader::Downloader::with_default_cache()
            .map_err(fail)
            .and_then(|d| {
                d.fetch_in_place(&f.location, f.digest.as_deref(), None)
                    .map_err(fail)
            });
        match got {
            Ok(path) => return Ok(Some(path)),
            Err(e) => {
                tracing::warn!("{e}");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(InstanceError::NoContainerdArchive {
        arch,
        count: archives.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(archives: &str, user: bool) -> Filled {
        let yaml = limatype::LimaYaml::from_yaml(&format!(
            "arch: x86_64\ncontainerd:\n  user: {user}\n  archives:\n{archives}"
        ))
        .unwrap();
        let host = limatype::HostFacts::pretend(limatype::Os::Linux, limatype::Arch::X86_64);
        limadefaults::fill_in_memory(&yaml, &host, "t").unwrap()
    }

    #[test]
    fn local_archive_checked_by_digest_and_arch() {
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("nerdctl-full.tar.gz");
        std::fs::write(&tgz, b"archive").unwrap();
        // Well-formed, but not the file's.
        let wrong = "sha256:4b1ad4c9b3a8d3c4e6e3d1b1c4a8f8ae0b9ba3d0d0b9c36a3ac7f6e8f5d2e3a1";
        let digest = {
            let out = std::process::Command::new("sha256sum")
                .arg(&tgz)
                .output()
                .unwrap();
            format!(
                "sha256:{}",
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .next()
                    .unwrap()
            )
        };
        let entry = |arch: &str, digest: &str| {
            format!(
                "  - location: {}\n    arch: {arch}\n    digest: {digest}\n",
                tgz.display()
            )
        };
        let ok = config(&entry("x86_64", &digest), true);
        assert_eq!(archive(&ok).unwrap(), Some(tgz.clone()));
        // Not wanted: nothing fetched, even with a bad entry.
        let off = config(&entry("x86_64", wrong), false);
        assert_eq!(archive(&off).unwrap(), None);
        // A wrong digest fails, naming the location.
        let bad = config(&entry("x86_64", wrong), true);
        let e = archive(&bad).unwrap_err().to_string();
        assert!(
            e.contains("nerdctl archive") && e.contains("nerdctl-full.tar.gz"),
            "{e}"
        );
        // An entry for another arch only: the field is named.
        let other = config(&entry("aarch64", &digest), true);
        let e = archive(&other).unwrap_err().to_string();
        assert!(
            e.contains("containerd.archives") && e.contains("x86_64"),
            "{e}"
        );
        // The first entry that works wins.
        let two = config(
            &format!("{}{}", entry("x86_64", wrong), entry("x86_64", &digest)),
            true,
        );
        assert_eq!(archive(&two).unwrap(), Some(tgz));
    }
}
