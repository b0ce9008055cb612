//! What can go wrong in an instance's flow, with the instance, the file or the driver call
//! named in each message.

use std::path::PathBuf;
use std::time::Duration;

use limatype::Status;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(transparent)]
    Load(#[from] limaload::LoadError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error(transparent)]
    Ssh(#[from] sshutil::SshError),
    /// A driver call failed; `driver` is how the driver is described (`qemu (internal)`).
    #[error("{driver} driver: {call}: {error}")]
    Driver {
        driver: String,
        call: &'static str,
        error: driver::DriverError,
    },
    #[error("{what} {location}: {source}")]
    Fetch {
        what: &'static str,
        location: String,
        #[source]
        source: downloader::DownloadError,
    },
    #[error("field `firmware.images[{index}]`: fetching {location}: {source}")]
    FirmwareFetch {
        index: usize,
        location: String,
        #[source]
        source: downloader::DownloadError,
    },
    #[error("field `containerd.archives` has no entry for arch {arch:?} ({count} entries)")]
    NoContainerdArchive { arch: String, count: usize },
    #[error("field `images` has no entry for arch {arch:?} ({count} entries)")]
    NoImage { arch: String, count: usize },
    #[error("writing {}: {source}", limatype::filenames::CIDATA_ISO)]
    Seed {
        #[source]
        source: cidata::CidataError,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("instance {0:?} does not exist, run `limactl create {0}` to create a new instance")]
    NotFound(String),
    /// `copy`, `tunnel`, `shell --sync`: upstream's words (with backquotes).
    #[error("instance `{0}` does not exist, run `limactl create {0}` to create a new instance")]
    Absent(String),
    #[error("instance `{0}` is stopped, run `limactl start {0}` to start the instance")]
    Stopped(String),
    #[error("instance `{name}` cannot be reached over SSH: {why}")]
    NoSsh { name: String, why: String },
    #[error(transparent)]
    Copy(#[from] sshutil::copytool::CopyError),
    #[error("{0}")]
    CopyTool(String),
    #[error("{command}: {why}")]
    Command { command: String, why: String },
    #[error("instance {0:?} already exists")]
    Exists(String),
    #[error(transparent)]
    Yq(#[from] limayq::YqError),
    #[error("cannot edit a running instance {0:?}; run `limactl stop {0}` first")]
    EditRunning(String),
    #[error(
        "{} exists without lima.yaml and holds other files; run `limactl delete {name}` to remove it",
        dir.display()
    )]
    NotEmpty { name: String, dir: PathBuf },
    #[error(
        "instance {name:?} already exists; run `limactl start {name}` or choose another --name"
    )]
    ExistsChooseName { name: String },
    #[error("cannot name an instance after {locator:?}; use --name: {source}")]
    UnnamedLocator {
        locator: String,
        #[source]
        source: store::StoreError,
    },
    #[error(
        "instance {name:?} is being started or stopped by another process (status {status}); \
         wait for it, or run `limactl stop -f {name}`"
    )]
    Busy { name: String, status: Status },
    #[error("instance {0:?} is not running")]
    NotRunning(String),
    #[error("unknown header: {0}")]
    SnapshotHeader(String),
    #[error(
        "DEGRADED. The VM seems running, but file sharing and port forwarding may not work \
         (hint: see {}); instance {name:?}: {errors}",
        log.display()
    )]
    Degraded {
        name: String,
        errors: String,
        log: PathBuf,
    },
    #[error("instance {name:?} is {status}: {errors}; use `limactl stop -f {name}`")]
    NoHostAgent {
        name: String,
        status: Status,
        errors: String,
    },
    #[error(
        "the host agent of {name:?} did not exit within {timeout:?}; use `limactl stop -f {name}`\n{logs}"
    )]
    StopTimeout {
        name: String,
        timeout: Duration,
        logs: String,
    },
    #[error(
        "instance {name:?} is {status} (not stopped); run `limactl stop {name}` first or use `limactl delete -f {name}`"
    )]
    NotStopped { name: String, status: Status },
    #[error(
        "instance {0:?} is protected to prohibit accidental removal (Hint: use `limactl unprotect`)"
    )]
    Protected(String),
    #[error(
        "instance {name:?} is protected to prohibit accidental {what} (Hint: use `limactl unprotect`)"
    )]
    ProtectedFrom { name: String, what: &'static str },
    #[error("new instance name {new:?} must be different from {old:?}")]
    SameName { old: String, new: String },
    #[error("cannot {verb} a running instance {name:?}; run `limactl stop {name}` first")]
    CloneRunning { verb: &'static str, name: String },
    #[error(
        "instance name {name:?} too long: {} must be less than UNIX_PATH_MAX={max} characters, \
         but is {len}",
        path.display()
    )]
    NameTooLong {
        name: String,
        path: PathBuf,
        max: usize,
        len: usize,
    },
    #[error("could not detect a text editor binary, try setting $EDITOR")]
    NoEditor,
    #[error("could not execute editor {} for a file {}: {why}", editor.display(), file.display())]
    Editor {
        editor: PathBuf,
        file: PathBuf,
        why: String,
    },
    #[error("the YAML is invalid, saved the buffer as {}: {source}", saved.display())]
    Rejected {
        saved: PathBuf,
        #[source]
        source: Box<InstanceError>,
    },
    #[error("factory-reset of {name:?}: {}", failures.join("; "))]
    ResetIncomplete { name: String, failures: Vec<String> },
    #[error("autostart is not supported on {0}")]
    AutostartUnsupported(&'static str),
    #[error("systemctl {args}: {why}")]
    Systemctl { args: String, why: String },
    #[error("cannot delete {name:?} now: {source}")]
    DeleteLocked {
        name: String,
        #[source]
        source: store::StoreError,
    },
    #[error(
        "the guest agent {file} was not found in {}; build it with `cargo xtask build`",
        searched.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    GuestAgentMissing {
        file: String,
        searched: Vec<PathBuf>,
    },
    #[error("starting the host agent: {0}")]
    SpawnAgent(#[source] std::io::Error),
    #[error("starting instance {name:?}: {why}\n{logs}")]
    StartFailed {
        name: String,
        why: String,
        logs: String,
    },
    #[error("starting instance {name:?}: the instance did not become ready within {timeout:?}")]
    StartTimeout { name: String, timeout: Duration },
    #[error(transparent)]
    Agent(#[from] hostagent::agent::AgentError),
    #[error("{command}: {why}")]
    QemuImg { command: String, why: String },
    #[error("disk format {0:?} not supported, use `qcow2` or `raw` instead")]
    DiskFormat(String),
    #[error("--size {text:?}: {why}")]
    DiskSize { text: String, why: String },
    #[error(
        "specified size {size} is less than the current disk size {current} of disk {name:?}. \
         Disk shrinking is currently unavailable"
    )]
    DiskShrink {
        name: String,
        size: limatype::ByteSize,
        current: limatype::ByteSize,
    },
    #[error(
        "cannot delete disk {name:?} in use by instance {instance:?} (stop it first, or use \
         --force)"
    )]
    DiskInUse { name: String, instance: String },
    #[error(
        "cannot resize disk {name:?} used by running instance {instance:?}. Please stop the VM \
         instance"
    )]
    DiskResizeRunning { name: String, instance: String },
    #[error(
        "additionalDisks[{index}]: disk {name:?} does not exist; create it with \
         `limactl disk create {name} --size SIZE`"
    )]
    DiskMissing { index: usize, name: String },
    #[error("additionalDisks[{index}]: {source}")]
    AttachDisk {
        index: usize,
        #[source]
        source: store::StoreError,
    },
    #[error("provision[{index}] (mode ansible): `ansible-playbook` is not installed (not found in $PATH); install ansible, or remove the step")]
    AnsibleMissing { index: usize },
    #[error("provision[{index}] (mode ansible): playbook {playbook:?} failed: {detail}")]
    AnsibleFailed {
        index: usize,
        playbook: String,
        detail: String,
    },
}

pub type Result<T, E = InstanceError> = std::result::Result<T, E>;

/// An `Io` error maker for `map_err`.
pub(crate) fn io(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> InstanceError {
    let path = path.into();
    move |source| InstanceError::Io { what, path, source }
}
