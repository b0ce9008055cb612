//! `copyToHost`: once the guest is ready, each rule's guest file is read over SSH (`cat`, then
//! `sudo cat` when permission is denied, as upstream's `copyToHost`) and written to its host
//! path (parent directories made 0700, the file 0600, replaced through a rename so a symlink
//! planted at the path is replaced, never followed). A missing guest file is skipped when the
//! rule says `skipIfMissing`. Rules with `deleteOnStop` have their host file removed when the
//! host agent stops.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// One `copyToHost` entry, its templates already expanded by the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRule {
    pub guest: String,
    pub host: PathBuf,
    pub skip_if_missing: bool,
    pub delete_on_stop: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("copyToHost: cannot run ssh to read {guest}: {source}")]
    Spawn {
        guest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("copyToHost: reading {guest} in the guest failed: {stderr}")]
    Read { guest: String, stderr: String },
    #[error("copyToHost: writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The rules of a config (entries without both paths were refused by validation).
pub fn plan(rules: &[limatype::CopyToHost]) -> Vec<CopyRule> {
    rules
        .iter()
        .filter_map(|r| {
            Some(CopyRule {
                guest: r.guest.clone()?,
                host: PathBuf::from(r.host.clone()?),
                skip_if_missing: r.skip_if_missing.unwrap_or(false),
                delete_on_stop: r.delete_on_stop.unwrap_or(false),
            })
        })
        .collect()
}

/// What became of one rule.
#[derive(Debug, PartialEq, Eq)]
pub enum Copied {
    Copied,
    SkippedMissing,
}

/// Copies one rule's file with `ssh` (the program, for tests) and `ssh_args`.
pub async fn copy(ssh: &Path, ssh_args: &[String], rule: &CopyRule) -> Result<Copied, CopyError> {
    tracing::info!(
        "Copying config from {} to {}",
        rule.guest,
        rule.host.display()
    );
    let guest = sshutil::shell_quote(&rule.guest);
    let mut out = read(
        ssh,
        ssh_args,
        &format!("env LANG=C LC_ALL=C cat {guest}"),
        rule,
    )
    .await?;
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied") {
        tracing::info!("Retrying {} with sudo (permission denied)", rule.guest);
        out = read(ssh, ssh_args, &format!("sudo cat {guest}"), rule).await?;
    }
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if rule.skip_if_missing && stderr.contains("No such file or directory") {
            tracing::info!("Skip missing {} (no such file or directory)", rule.guest);
            return Ok(Copied::SkippedMissing);
        }
        return Err(CopyError::Read {
            guest: rule.guest.clone(),
            stderr,
        });
    }
    write_private(&rule.host, &out.stdout)?;
    Ok(Copied::Copied)
}

async fn read(
    ssh: &Path,
    ssh_args: &[String],
    command: &str,
    rule: &CopyRule,
) -> Result<std::process::Output, CopyError> {
    tokio::process::Command::new(ssh)
        .args(ssh_args)
        .args(["--", command])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| CopyError::Spawn {
            guest: rule.guest.clone(),
            source,
        })
}

/// Writes `bytes` to `path` (0600) through a temporary file and a rename in its directory.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CopyError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let err = |source| CopyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Removes the host files of the `deleteOnStop` rules (at host agent stop).
pub fn delete_on_stop(rules: &[CopyRule]) {
    for r in rules.iter().filter(|r| r.delete_on_stop) {
        tracing::info!("Deleting {}", r.host.display());
        if let Err(e) = std::fs::remove_file(&r.host) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("deleting {}: {e}", r.host.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fake `ssh` running the remote command locally (`sudo` stripped), so guest paths are
    /// host paths; a path containing `denied` is refused unless read through sudo.
    fn fake_ssh(dir: &Path) -> PathBuf {
        let p = dir.join("ssh");
        std::fs::write(
            &p,
            "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done\nshift\n\
             case \"$1\" in\n\
             sudo*) eval \"${1#sudo }\" ;;\n\
             *denied*) echo 'cat: x: Permission denied' >&2; exit 1 ;;\n\
             *) eval \"$1\" ;;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn rule(guest: &Path, host: &Path, skip: bool) -> CopyRule {
        CopyRule {
            guest: guest.display().to_string(),
            host: host.to_path_buf(),
            skip_if_missing: skip,
            delete_on_stop: true,
        }
    }

    #[tokio::test]
    async fn copies_retries_with_sudo_skips_missing_and_deletes_on_stop() {
        let d = tempfile::tempdir().unwrap();
        let ssh = fake_ssh(d.path());
        let guest = d.path().join("guest file.txt");
        std::fs::write(&guest, "kubeconfig\n").unwrap();
        let host = d.path().join("out/sub/config");
        let r = rule(&guest, &host, false);
        assert_eq!(copy(&ssh, &[], &r).await.unwrap(), Copied::Copied);
        assert_eq!(std::fs::read_to_string(&host).unwrap(), "kubeconfig\n");
        let mode = std::fs::metadata(&host).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let denied = d.path().join("denied.txt");
        std::fs::write(&denied, "secret\n").unwrap();
        let host2 = d.path().join("out/secret");
        assert_eq!(
            copy(&ssh, &[], &rule(&denied, &host2, false))
                .await
                .unwrap(),
            Copied::Copied
        );
        assert_eq!(std::fs::read_to_string(&host2).unwrap(), "secret\n");

        let missing = d.path().join("missing");
        let host3 = d.path().join("out/none");
        assert_eq!(
            copy(&ssh, &[], &rule(&missing, &host3, true))
                .await
                .unwrap(),
            Copied::SkippedMissing
        );
        let e = copy(&ssh, &[], &rule(&missing, &host3, false))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("No such file") && e.contains("missing"), "{e}");
        assert!(!host3.exists());

        delete_on_stop(&[r]);
        assert!(!host.exists());
    }

    #[test]
    fn a_symlink_at_the_host_path_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_private(&link, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "new");
    }
}
