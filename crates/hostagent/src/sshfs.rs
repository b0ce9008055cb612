//! reverse-sshfs mounts (upstream's `mountType: reverse-sshfs`): for each mount the guest runs
//! `sshfs -o slave` over the instance's SSH connection, and its SFTP requests are served by
//! the host's own `sftp-server`, connected to ssh's stdin/stdout. Works with any driver, since
//! it needs only SSH. Read-only mounts are read-only on both sides: `-o ro` in the guest and
//! `sftp-server -R` on the host.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::requirements::{self, Requirement};

/// Where distributions put OpenSSH's `sftp-server` (Debian, Fedora, Arch, Homebrew, macOS).
const SFTP_SERVER_PATHS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/local/libexec/sftp-server",
    "/opt/homebrew/libexec/sftp-server",
];

/// How long a mount may take to appear in the guest after sshfs started.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// Created in the guest once every reverse-sshfs mount is up; the boot script waits for it
/// before provisioning, so scripts see the mounts.
pub const MOUNTS_READY_FILE: &str = "/run/lima-sshfs-mounts-ready";

#[derive(Debug, thiserror::Error)]
pub enum SshfsError {
    #[error(
        "reverse-sshfs needs OpenSSH's sftp-server on the host (apt-get install \
         openssh-sftp-server); looked in {}",
        SFTP_SERVER_PATHS.join(", ")
    )]
    NoSftpServer,
    #[error("mounts[].sshfs.sftpDriver {0:?}: only \"\", \"auto\" and \"openssh-sftp-server\" are supported")]
    SftpDriver(String),
    #[error("creating the mount's location {path}: {source}")]
    Location {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reverse-sshfs mount of {location} at {mount_point} in the guest failed: {reason}")]
    Mount {
        location: String,
        mount_point: String,
        reason: String,
    },
}

/// One reverse-sshfs mount, from the filled `mounts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshfsMount {
    pub location: String,
    pub mount_point: String,
    pub writable: bool,
    pub cache: bool,
    pub follow_symlinks: bool,
    pub sftp_driver: String,
}

impl SshfsMount {
    /// From a filled `mounts` entry (defaults applied by `limadefaults`).
    pub fn from_config(m: &limatype::Mount) -> Self {
        let sshfs = m.sshfs.clone().unwrap_or_default();
        Self {
            location: m.location.clone(),
            mount_point: m.mount_point.clone().unwrap_or_else(|| m.location.clone()),
            writable: m.writable.unwrap_or(false),
            cache: sshfs.cache.unwrap_or(true),
            follow_symlinks: sshfs.follow_symlinks.unwrap_or(false),
            sftp_driver: sshfs.sftp_driver.unwrap_or_default(),
        }
    }

    /// The remote command: the mount point made when missing and given to the user when not
    /// writable (fusermount needs that; as upstream's prepare step: the boot script does it
    /// too, but may not have run yet, and a directory left by another mount type is root's),
    /// then
    /// `sshfs :LOCATION MOUNTPOINT -o slave ...`, each word quoted for the guest's shell. The
    /// options are upstream's (`allow_other`, `cache=no`, `follow_symlinks`).
    pub fn remote_command(&self) -> String {
        let point = sshutil::shell_quote(&self.mount_point);
        format!(
            "{{ [ -d {point} ] || sudo mkdir -p {point}; }} && \
             {{ [ -w {point} ] || sudo chown \"$(id -u):$(id -g)\" {point}; }} && exec {}",
            self.sshfs_command()
        )
    }

    /// `sshfs :LOCATION MOUNTPOINT -o slave -o OPTIONS`, quoted for the guest's shell.
    pub fn sshfs_command(&self) -> String {
        let mut opts = String::from("allow_other");
        if !self.cache {
            opts.push_str(",cache=no");
        }
        if self.follow_symlinks {
            opts.push_str(",follow_symlinks");
        }
        if !self.writable {
            opts.push_str(",ro");
        }
        [
            "sshfs",
            &format!(":{}", self.location),
            &self.mount_point,
            "-o",
            "slave",
            "-o",
            &opts,
        ]
        .iter()
        .map(|w| sshutil::shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// The host's `sftp-server` arguments: read-only unless the mount is writable, logging
    /// errors only (its log goes to our stderr).
    pub fn sftp_server_args(&self) -> Vec<&'static str> {
        let mut args = vec!["-e", "-l", "ERROR"];
        if !self.writable {
            args.push("-R");
        }
        args
    }
}

/// A shell function, `lima_is_mounted MOUNTPOINT TYPE`, that succeeds when the (escaped)
/// mount point is mounted with that file system type.
pub const IS_MOUNTED_FN: &str = "lima_is_mounted() { while read -r _ mp type _; do \
     [ \"$mp\" = \"$1\" ] && [ \"$type\" = \"$2\" ] && return 0; done </proc/mounts; return 1; }";

/// A call of [`IS_MOUNTED_FN`] for `mount_point`.
pub fn is_mounted_call(mount_point: &str, fs_type: &str) -> String {
    format!(
        "lima_is_mounted {} {}",
        sshutil::shell_quote(&cidata::fstab_escape(mount_point)),
        sshutil::shell_quote(fs_type)
    )
}

/// What the host agent does about `mounts`: reverse-sshfs mounts it makes itself, and every
/// mount the guest must show before the instance is ready (fstab ones for 9p and virtiofs).
pub fn plan(
    config: &limatype::Filled,
) -> (Vec<SshfsMount>, Vec<crate::requirements::ExpectedMount>) {
    use limatype::MountType;
    let mounts = config.mounts.clone().unwrap_or_default();
    let (fs_type, in_fstab) = match config.mount_type {
        Some(MountType::ReverseSshfs) => ("fuse.sshfs", false),
        Some(MountType::NineP) => ("9p", true),
        Some(MountType::Virtiofs) => ("virtiofs", true),
        // wsl2 shares are the distribution's own; nothing to check here.
        Some(MountType::Wsl2) | None => return (vec![], vec![]),
    };
    let sshfs = if config.mount_type == Some(MountType::ReverseSshfs) {
        mounts.iter().map(SshfsMount::from_config).collect()
    } else {
        vec![]
    };
    let expected = mounts
        .iter()
        .map(|m| crate::requirements::ExpectedMount {
            location: m.location.clone(),
            mount_point: m.mount_point.clone().unwrap_or_else(|| m.location.clone()),
            fs_type,
            in_fstab,
        })
        .collect();
    (sshfs, expected)
}

/// The host's `sftp-server`.
pub fn find_sftp_server() -> Result<PathBuf, SshfsError> {
    SFTP_SERVER_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && osutil::is_executable(&m)))
        .ok_or(SshfsError::NoSftpServer)
}

/// What the guest must have before sshfs can run (upstream's two essential requirements).
pub fn requirements() -> Vec<Requirement> {
    vec![
        Requirement {
            description: "sshfs binary to be installed".into(),
            script: "#!/bin/sh\ni=0\nuntil command -v sshfs >/dev/null 2>&1; do\n\
                     i=$((i + 1)); [ \"$i\" -lt 10 ] || { echo 'sshfs is not installed yet' >&2; exit 1; }\n\
                     sleep 3\ndone\n"
                .into(),
            debug_hint: "The sshfs binary was not installed in the guest. Make sure that you \
                         are using an officially supported image. Also see \
                         /var/log/cloud-init-output.log in the guest. A possible workaround \
                         is to run `apt-get install sshfs` in the guest."
                .into(),
            retry: true,
            fatal: false,
        },
        Requirement {
            description: "fuse to \"allow_other\" as user".into(),
            script: "#!/bin/sh\ni=0\nuntil grep -qs '^user_allow_other' /etc/fuse.conf /etc/fuse3.conf; do\n\
                     i=$((i + 1)); [ \"$i\" -lt 10 ] || { echo '/etc/fuse.conf (/etc/fuse3.conf) is not updated to contain \"user_allow_other\"' >&2; exit 1; }\n\
                     sleep 3\ndone\n"
                .into(),
            debug_hint: "Append \"user_allow_other\" to /etc/fuse.conf (/etc/fuse3.conf) in the guest."
                .into(),
            retry: true,
            fatal: false,
        },
    ]
}

/// A running reverse-sshfs mount: its `sftp-server` and `ssh` processes, killed when dropped
/// (the guest's sshfs then ends with its channel).
pub struct Running {
    pub mount: SshfsMount,
    ssh: tokio::process::Child,
    _sftp: tokio::process::Child,
}

impl Running {
    /// Waits until the ssh carrying this mount ends; its exit status as text.
    pub async fn ended(&mut self) -> String {
        match self.ssh.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        }
    }
}

/// Starts one mount and waits until it shows in the guest's `/proc/mounts` (or fails with
/// sshfs's own words). The host location is created when missing, as upstream does.
pub async fn mount(ssh_args: &[String], m: &SshfsMount) -> Result<Running, SshfsError> {
    if !matches!(m.sftp_driver.as_str(), "" | "auto" | "openssh-sftp-server") {
        return Err(SshfsError::SftpDriver(m.sftp_driver.clone()));
    }
    let sftp_server = find_sftp_server()?;
    std::fs::create_dir_all(&m.location).map_err(|source| SshfsError::Location {
        path: PathBuf::from(&m.location),
        source,
    })?;
    let failed = |reason: String| SshfsError::Mount {
        location: m.location.clone(),
        mount_point: m.mount_point.clone(),
        reason,
    };
    // One socket pair: the host end is sftp-server's stdin and stdout, the other is ssh's.
    let (host_end, guest_end) =
        std::os::unix::net::UnixStream::pair().map_err(|source| SshfsError::Spawn {
            program: "socketpair".into(),
            source,
        })?;
    let stdio = |s: &std::os::unix::net::UnixStream| -> Result<Stdio, SshfsError> {
        let fd: OwnedFd = s
            .try_clone()
            .map_err(|source| SshfsError::Spawn {
                program: "dup".into(),
                source,
            })?
            .into();
        Ok(Stdio::from(fd))
    };
    let sftp = spawn(
        tokio::process::Command::new(&sftp_server)
            .args(m.sftp_server_args())
            .stdin(stdio(&host_end)?)
            .stdout(stdio(&host_end)?)
            .stderr(Stdio::inherit()),
        &sftp_server.display().to_string(),
    )?;
    let mut ssh = spawn(
        tokio::process::Command::new("ssh")
            .args(ssh_args)
            .args(["--", &m.remote_command()])
            .stdin(stdio(&guest_end)?)
            .stdout(stdio(&guest_end)?)
            .stderr(Stdio::piped()),
        "ssh",
    )?;
    drop((host_end, guest_end));
    let mut stderr = ssh.stderr.take().expect("piped");
    let stderr_text = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });

    let test = format!(
        "#!/bin/sh\n{IS_MOUNTED_FN}\n{}\n",
        is_mounted_call(&m.mount_point, "fuse.sshfs")
    );
    let deadline = Instant::now() + MOUNT_TIMEOUT;
    loop {
        if let Some(status) = ssh.try_wait().ok().flatten() {
            let text = stderr_text.await.unwrap_or_default();
            return Err(failed(format!("sshfs ended ({status}): {}", text.trim())));
        }
        match requirements::run_script(ssh_args, &test, Duration::from_secs(20)).await {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => {
                return Err(failed(format!(
                    "not mounted after {MOUNT_TIMEOUT:?} (last check: {e})"
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    // From here on sshfs's stderr only matters in the log.
    tokio::spawn(async move {
        let text = stderr_text.await.unwrap_or_default();
        if !text.trim().is_empty() {
            tracing::warn!("sshfs: {}", text.trim());
        }
    });
    Ok(Running {
        mount: m.clone(),
        ssh,
        _sftp: sftp,
    })
}

fn spawn(
    cmd: &mut tokio::process::Command,
    program: &str,
) -> Result<tokio::process::Child, SshfsError> {
    cmd.kill_on_drop(true)
        .spawn()
        .map_err(|source| SshfsError::Spawn {
            program: program.to_string(),
            source,
        })
}

/// Tells the guest's boot script that the mounts are up (see [`MOUNTS_READY_FILE`]).
pub async fn announce_ready(ssh_args: &[String]) -> Result<(), requirements::ScriptError> {
    requirements::run_script(
        ssh_args,
        &format!("#!/bin/sh\nsudo touch {MOUNTS_READY_FILE}\n"),
        Duration::from_secs(30),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(writable: bool) -> SshfsMount {
        SshfsMount {
            location: "/home/alice/my dir".into(),
            mount_point: "/home/alice/my dir".into(),
            writable,
            cache: true,
            follow_symlinks: false,
            sftp_driver: String::new(),
        }
    }

    #[test]
    fn remote_command_quotes_paths_and_sets_upstream_options() {
        assert_eq!(
            mount(true).sshfs_command(),
            "sshfs ':/home/alice/my dir' '/home/alice/my dir' -o slave -o allow_other"
        );
        assert!(mount(true).remote_command().starts_with(
            "{ [ -d '/home/alice/my dir' ] || sudo mkdir -p '/home/alice/my dir'; } && \
             { [ -w '/home/alice/my dir' ] || sudo chown"
        ));
        assert!(mount(true)
            .remote_command()
            .ends_with(&format!("&& exec {}", mount(true).sshfs_command())));
        let mut m = mount(false);
        m.cache = false;
        m.follow_symlinks = true;
        assert_eq!(
            m.sshfs_command(),
            "sshfs ':/home/alice/my dir' '/home/alice/my dir' -o slave \
             -o allow_other,cache=no,follow_symlinks,ro"
        );
    }

    #[test]
    fn read_only_mounts_are_read_only_on_the_host_too() {
        assert!(mount(false).sftp_server_args().contains(&"-R"));
        assert!(!mount(true).sftp_server_args().contains(&"-R"));
    }

    /// The mount test, run by a real shell against a fake /proc/mounts line format.
    #[test]
    fn is_mounted_test_matches_path_and_type() {
        let test = format!(
            "{IS_MOUNTED_FN}\n{}",
            is_mounted_call("/mnt/my dir", "fuse.sshfs")
        );
        let run = |mounts: &str| {
            let script = test.replace("</proc/mounts", "<\"$MOUNTS\"");
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("mounts");
            std::fs::write(&f, mounts).unwrap();
            std::process::Command::new("sh")
                .args(["-c", &script])
                .env("MOUNTS", &f)
                .status()
                .unwrap()
                .success()
        };
        assert!(run("x /mnt/my\\040dir fuse.sshfs rw 0 0\n"));
        assert!(!run("x /mnt/my\\040dir 9p rw 0 0\n"));
        assert!(!run("x /mnt/my fuse.sshfs rw 0 0\n"));
    }
}
