//! virtiofsd for `mountType: virtiofs`: finding the daemon (the Rust one or QEMU's older C
//! one, whose flags differ), its arguments, and one process per mount, started before qemu
//! (which connects to its socket) and stopped after qemu. Files in the instance dir:
//! `virtiofsd-N.sock` (upstream's name), `virtiofsd-N.pid`, `virtiofsd-N.stderr.log`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cmdline::{MountDevice, MountSpec};

#[derive(Debug, thiserror::Error)]
pub enum VirtiofsdError {
    #[error(
        "virtiofsd is not installed (needed by `mountType: virtiofs`); looked in: {}. \
         Install it (Debian: package `virtiofsd`, or `qemu-system-common` before Debian 13), \
         or use `mountType: 9p`",
        searched.join(", ")
    )]
    NotFound { searched: Vec<String> },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// `details`: a hint when there is one, then the tail of the daemon's log.
    #[error(
        "virtiofsd for mount {index} ({dir}) exited before creating its socket ({status}){details}"
    )]
    EarlyExit {
        index: usize,
        dir: String,
        status: String,
        details: String,
    },
    #[error("virtiofsd for mount {index} did not create {socket} within {secs}s")]
    NoSocket {
        index: usize,
        socket: String,
        secs: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = VirtiofsdError> = std::result::Result<T, E>;

/// `virtiofsd-N.sock`: where virtiofsd listens and qemu's chardev connects.
pub fn socket_path(inst_dir: &Path, index: usize) -> PathBuf {
    inst_dir.join(format!("virtiofsd-{index}.sock"))
}

/// `virtiofsd-N.pid`: the daemon's pid, for humans and for a stop without the child handle.
pub fn pid_path(inst_dir: &Path, index: usize) -> PathBuf {
    inst_dir.join(format!("virtiofsd-{index}.pid"))
}

/// `virtiofsd-N.stderr.log`: the daemon's output.
pub fn log_path(inst_dir: &Path, index: usize) -> PathBuf {
    inst_dir.join(format!("virtiofsd-{index}.stderr.log"))
}

/// Directories of QEMU's vhost-user descriptors (`*.json` with `"type": "fs"` name the
/// virtiofsd binary), as upstream Lima searches them (`FindVirtiofsd`).
pub fn descriptor_dirs(home: Option<&Path>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = home
        .map(|h| h.join(".local/share/qemu/vhost-user"))
        .into_iter()
        .collect();
    v.push("/usr/share/qemu/vhost-user".into());
    v
}

/// Fixed places distributions install virtiofsd (Fedora and Debian 13's Rust daemon, Debian
/// 12's QEMU one), tried after the descriptors and before `$PATH`.
pub const FIXED_PATHS: &[&str] = &["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"];

/// The binary a vhost-user descriptor names, if it is a file-system backend.
pub fn binary_from_descriptor(json: &str) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    (v["type"].as_str() == Some("fs"))
        .then(|| v["binary"].as_str().map(PathBuf::from))
        .flatten()
}

/// Every candidate path in search order: descriptors' binaries (their `*.json` files read in
/// name order), the fixed paths, then `virtiofsd` in each `$PATH` entry.
pub fn candidates(home: Option<&Path>, path_env: Option<&OsStr>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in descriptor_dirs(home) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        out.extend(
            files
                .iter()
                .filter_map(|f| std::fs::read_to_string(f).ok())
                .filter_map(|j| binary_from_descriptor(&j)),
        );
    }
    out.extend(FIXED_PATHS.iter().map(PathBuf::from));
    if let Some(p) = path_env {
        out.extend(std::env::split_paths(p).map(|d| d.join("virtiofsd")));
    }
    out
}

/// The first candidate that is an executable file, or an error naming what was searched.
pub fn find(home: Option<&Path>, path_env: Option<&OsStr>) -> Result<PathBuf> {
    let c = candidates(home, path_env);
    if let Some(found) = c
        .iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && osutil::is_executable(&m)))
    {
        return Ok(found.clone());
    }
    let mut searched: Vec<String> = descriptor_dirs(home)
        .iter()
        .map(|d| format!("{}/*.json", d.display()))
        .collect();
    searched.extend(FIXED_PATHS.iter().map(|s| s.to_string()));
    searched.push("$PATH".into());
    Err(VirtiofsdError::NotFound { searched })
}

/// Which command line a virtiofsd takes, from its `--help` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The Rust virtiofsd (`--shared-dir`); `readonly` when it has `--readonly` (1.11+).
    Rust { readonly: bool },
    /// QEMU's C virtiofsd (QEMU ≤ 7.2, `-o source=`): no read-only mode, and it must run as
    /// root (it sandboxes itself in namespaces).
    Qemu,
}

impl Flavor {
    pub fn from_help(help: &str) -> Flavor {
        if help.contains("--shared-dir") {
            Flavor::Rust {
                readonly: help.contains("--readonly"),
            }
        } else {
            Flavor::Qemu
        }
    }
}

/// The daemon's arguments for one mount. A read-only mount is enforced by the guest's `ro`
/// mount option (cidata's fstab line); the daemon is also made read-only only when it can be
/// (Rust virtiofsd with `--readonly`): QEMU's C virtiofsd has no such mode, and
/// vhost-user-fs has no read-only property (upstream Lima passes neither).
pub fn args(flavor: Flavor, socket: &Path, dir: &Path, writable: bool) -> Vec<String> {
    let mut a = vec![format!("--socket-path={}", socket.display())];
    match flavor {
        Flavor::Rust { readonly } => {
            a.push(format!("--shared-dir={}", dir.display()));
            if readonly && !writable {
                a.push("--readonly".into());
            }
        }
        Flavor::Qemu => {
            // FUSE option syntax: a comma inside the value is escaped with a backslash.
            let d = dir.display().to_string();
            a.push("-o".into());
            a.push(format!(
                "source={}",
                d.replace('\\', "\\\\").replace(',', "\\,")
            ));
        }
    }
    a
}

/// A started virtiofsd.
pub struct Daemon {
    pub index: usize,
    pub pid: u32,
    pub socket: PathBuf,
    pub pid_file: PathBuf,
    pub child: tokio::process::Child,
}

/// How long a daemon may take to create its socket.
const SOCKET_WAIT: Duration = Duration::from_secs(10);

/// Starts one virtiofsd per virtiofs mount of `mounts` (none: nothing is looked up) and
/// returns once every socket exists. On an error, the daemons already started are stopped.
pub async fn start_all(mounts: &[MountSpec], inst_dir: &Path) -> Result<Vec<Daemon>> {
    let wanted: Vec<(usize, &MountSpec, &Path)> = mounts
        .iter()
        .enumerate()
        .filter_map(|(i, m)| match &m.device {
            MountDevice::Virtiofs { socket, .. } => Some((i, m, socket.as_path())),
            MountDevice::NineP { .. } => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let bin = find(home.as_deref(), std::env::var_os("PATH").as_deref())?;
    let flavor = flavor_of(&bin).await;
    tracing::info!("virtiofsd: {} ({flavor:?})", bin.display());
    let mut started = Vec::new();
    for (i, m, socket) in wanted {
        match start_one(&bin, flavor, i, m, socket, inst_dir).await {
            Ok(d) => started.push(d),
            Err(e) => {
                stop_all(started).await;
                return Err(e);
            }
        }
    }
    Ok(started)
}

async fn flavor_of(bin: &Path) -> Flavor {
    let out = tokio::process::Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .await;
    let help = out
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t
        })
        .unwrap_or_default();
    Flavor::from_help(&help)
}

async fn start_one(
    bin: &Path,
    flavor: Flavor,
    index: usize,
    m: &MountSpec,
    socket: &Path,
    inst_dir: &Path,
) -> Result<Daemon> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| VirtiofsdError::Io { path, source }
    };
    // A stale socket would look ready before the daemon listens.
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(socket)(e)),
        _ => {}
    }
    let log_path = log_path(inst_dir, index);
    let a = args(flavor, socket, &m.location, m.writable);
    tracing::info!("starting {} {}", bin.display(), a.join(" "));
    let mut child = crate::vm::spawn_logged(bin, &a, inst_dir, &log_path).map_err(|e| match e {
        crate::vm::SpawnError::Log(e) => io(&log_path)(e),
        crate::vm::SpawnError::Spawn(source) => VirtiofsdError::Spawn {
            program: bin.display().to_string(),
            source,
        },
    })?;
    let pid = child.id().unwrap_or(0);
    let pid_file = pid_path(inst_dir, index);
    let daemon = |child| Daemon {
        index,
        pid,
        socket: socket.to_path_buf(),
        pid_file: pid_file.clone(),
        child,
    };
    if let Err(e) = std::fs::write(&pid_file, format!("{pid}\n")) {
        stop(daemon(child)).await;
        return Err(io(&pid_file)(e));
    }
    let deadline = Instant::now() + SOCKET_WAIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = std::fs::remove_file(&pid_file);
            // SAFETY: geteuid cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let hint = if flavor == Flavor::Qemu && !root {
                " (QEMU's C virtiofsd must run as root; the Rust virtiofsd need not)"
            } else {
                ""
            };
            return Err(VirtiofsdError::EarlyExit {
                index,
                dir: m.location.display().to_string(),
                status: status.to_string(),
                details: format!(
                    "{hint}; last lines of {}:\n{}",
                    log_path.display(),
                    crate::vm::tail_lines(&log_path, 20)
                ),
            });
        }
        if socket.exists() {
            return Ok(daemon(child));
        }
        if Instant::now() > deadline {
            stop(daemon(child)).await;
            return Err(VirtiofsdError::NoSocket {
                index,
                socket: socket.display().to_string(),
                secs: SOCKET_WAIT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops a daemon: SIGTERM, then SIGKILL after 3s; reaps it and removes its socket and pid
/// file.
pub async fn stop(mut d: Daemon) {
    let exited = |c: &mut tokio::process::Child| c.try_wait().ok().flatten().is_some();
    if !exited(&mut d.child) {
        if let Ok(pid) = i32::try_from(d.pid) {
            if pid > 1 {
                // SAFETY: a plain signal to our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while !exited(&mut d.child) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !exited(&mut d.child) {
            tracing::warn!(
                "virtiofsd {} (pid {}) ignored SIGTERM; killing it",
                d.index,
                d.pid
            );
            let _ = d.child.kill().await;
        }
    }
    let _ = std::fs::remove_file(&d.socket);
    let _ = std::fs::remove_file(&d.pid_file);
}

/// Stops every daemon (see [`stop`]).
pub async fn stop_all(daemons: Vec<Daemon>) {
    for d in daemons {
        stop(d).await;
    }
}

/// Cleans up after daemons this process does not hold (a host agent that died): each
/// `virtiofsd-N.pid` whose process still runs with this instance's `virtiofsd-N.sock` on its
/// command line gets SIGTERM; then stale `virtiofsd-N.sock` and `.pid` files are removed (logs
/// are kept). Daemons stopped through [`stop`] have left no pid file behind.
pub fn cleanup(inst_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(inst_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Some(rest) = name.strip_prefix("virtiofsd-") else {
            continue;
        };
        if let Some(index) = rest.strip_suffix(".pid").and_then(|n| n.parse().ok()) {
            terminate_orphan(&e.path(), &socket_path(inst_dir, index));
        }
        if rest.ends_with(".sock") || rest.ends_with(".pid") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn terminate_orphan(pid_file: &Path, socket: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 1)
    else {
        return;
    };
    // Only a process that still names our socket: the pid may have been reused.
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return;
    };
    let socket = socket.display().to_string();
    let ours = cmdline
        .split(|b| *b == 0)
        .any(|arg| String::from_utf8_lossy(arg).contains(&socket));
    if ours {
        tracing::warn!("stopping a leftover virtiofsd (pid {pid}, {socket})");
        // SAFETY: a plain signal to a process whose command line names this instance's socket.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUST_HELP: &str = "Usage: virtiofsd [OPTIONS]\n      --shared-dir <SHARED_DIR>\n      --readonly\n      --socket-path <SOCKET_PATH>\n";
    const RUST_OLD_HELP: &str = "Usage: virtiofsd [OPTIONS]\n      --shared-dir <SHARED_DIR>\n      --socket-path <SOCKET_PATH>\n";
    const QEMU_HELP: &str = "usage: /usr/lib/qemu/virtiofsd [options]\n    -o source=PATH             shared directory tree\n    --socket-path=PATH         path for the vhost-user socket\n";

    #[test]
    fn flavor_from_help_text() {
        assert_eq!(
            Flavor::from_help(RUST_HELP),
            Flavor::Rust { readonly: true }
        );
        assert_eq!(
            Flavor::from_help(RUST_OLD_HELP),
            Flavor::Rust { readonly: false }
        );
        assert_eq!(Flavor::from_help(QEMU_HELP), Flavor::Qemu);
        assert_eq!(Flavor::from_help(""), Flavor::Qemu);
    }

    #[test]
    fn arguments_per_flavor() {
        let sock = Path::new("/i/virtiofsd-0.sock");
        let dir = Path::new("/home/u");
        assert_eq!(
            args(Flavor::Rust { readonly: true }, sock, dir, false),
            [
                "--socket-path=/i/virtiofsd-0.sock",
                "--shared-dir=/home/u",
                "--readonly"
            ]
        );
        assert_eq!(
            args(Flavor::Rust { readonly: true }, sock, dir, true),
            ["--socket-path=/i/virtiofsd-0.sock", "--shared-dir=/home/u"]
        );
        assert_eq!(
            args(Flavor::Rust { readonly: false }, sock, dir, false),
            ["--socket-path=/i/virtiofsd-0.sock", "--shared-dir=/home/u"],
            "no --readonly: the guest's ro option enforces it"
        );
        assert_eq!(
            args(Flavor::Qemu, sock, dir, false),
            ["--socket-path=/i/virtiofsd-0.sock", "-o", "source=/home/u"]
        );
        assert_eq!(
            args(Flavor::Qemu, sock, Path::new("/a,b"), true)[2],
            "source=/a\\,b"
        );
    }

    #[test]
    fn descriptor_names_fs_backends_only() {
        assert_eq!(
            binary_from_descriptor(
                r#"{"description": "QEMU virtiofsd vhost-user-fs", "type": "fs", "binary": "/usr/lib/qemu/virtiofsd"}"#
            ),
            Some(PathBuf::from("/usr/lib/qemu/virtiofsd"))
        );
        assert_eq!(
            binary_from_descriptor(r#"{"type": "gpu", "binary": "/usr/lib/vhost-user-gpu"}"#),
            None
        );
        assert_eq!(binary_from_descriptor("not json"), None);
    }

    #[test]
    fn search_order_and_not_found_error() {
        let home = tempfile::tempdir().unwrap();
        let vu = home.path().join(".local/share/qemu/vhost-user");
        std::fs::create_dir_all(&vu).unwrap();
        std::fs::write(
            vu.join("50-mine.json"),
            r#"{"type": "fs", "binary": "/opt/mine/virtiofsd"}"#,
        )
        .unwrap();
        let path = OsStr::new("/p1:/p2");
        let c = candidates(Some(home.path()), Some(path));
        assert_eq!(c[0], PathBuf::from("/opt/mine/virtiofsd"));
        let fixed = c
            .iter()
            .position(|p| p == Path::new("/usr/libexec/virtiofsd"))
            .unwrap();
        assert_eq!(c[fixed + 1], PathBuf::from("/usr/lib/qemu/virtiofsd"));
        assert_eq!(
            c[c.len() - 2..],
            [
                PathBuf::from("/p1/virtiofsd"),
                PathBuf::from("/p2/virtiofsd")
            ]
        );

        // An executable in PATH is found when nothing earlier exists on this machine.
        let bin_dir = tempfile::tempdir().unwrap();
        let bin = bin_dir.path().join("virtiofsd");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = find(Some(home.path()), Some(bin_dir.path().as_os_str())).unwrap();
        let installed = FIXED_PATHS.iter().any(|p| Path::new(p).exists())
            || Path::new("/usr/share/qemu/vhost-user").exists();
        if !installed {
            assert_eq!(found, bin);
        }

        let e = VirtiofsdError::NotFound {
            searched: vec!["/usr/libexec/virtiofsd".into(), "$PATH".into()],
        }
        .to_string();
        assert!(
            e.contains("virtiofsd is not installed")
                && e.contains("/usr/libexec/virtiofsd, $PATH")
                && e.contains("mountType: 9p"),
            "{e}"
        );
    }

    #[test]
    fn file_names_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(socket_path(d, 2), d.join("virtiofsd-2.sock"));
        assert_eq!(pid_path(d, 2), d.join("virtiofsd-2.pid"));
        for f in [
            "virtiofsd-0.sock",
            "virtiofsd-0.pid",
            "virtiofsd-0.stderr.log",
            "qemu.pid",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
        cleanup(d);
        assert!(!d.join("virtiofsd-0.sock").exists() && !d.join("virtiofsd-0.pid").exists());
        assert!(d.join("virtiofsd-0.stderr.log").exists() && d.join("qemu.pid").exists());
    }

    fn mount(location: &Path, writable: bool, socket: &Path) -> MountSpec {
        MountSpec {
            location: location.to_path_buf(),
            tag: "lima-0".into(),
            writable,
            device: MountDevice::Virtiofs {
                socket: socket.to_path_buf(),
                queue_size: 1024,
            },
        }
    }

    /// A stand-in daemon: a shell script run with the arguments [`args`] builds.
    fn fake(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("fake-virtiofsd");
        std::fs::write(&bin, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }

    #[tokio::test]
    async fn daemon_lifecycle_with_a_fake_daemon() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = tmp.path();
        // Creates the file named by --socket-path= (a plain file is enough to look ready).
        let bin = fake(
            inst,
            r#"for a; do case "$a" in --socket-path=*) : > "${a#--socket-path=}";; esac; done; exec sleep 60"#,
        );
        let sock = socket_path(inst, 0);
        std::fs::write(&sock, "stale").unwrap();
        let m = mount(Path::new("/srv"), false, &sock);
        let d = start_one(&bin, Flavor::Rust { readonly: false }, 0, &m, &sock, inst)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&sock).unwrap(),
            "",
            "stale socket replaced"
        );
        let pid: i32 = std::fs::read_to_string(pid_path(inst, 0))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pid as u32, d.pid);
        assert!(osutil::pid_alive(pid));
        stop(d).await;
        assert!(!osutil::pid_alive(pid), "stopped and reaped");
        assert!(!sock.exists() && !pid_path(inst, 0).exists());
    }

    #[tokio::test]
    async fn cleanup_terminates_a_leftover_daemon_only_if_it_names_our_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = tmp.path();
        // Keeps its arguments on its command line (no exec), as a real daemon does.
        let bin = fake(
            inst,
            r#"for a; do case "$a" in --socket-path=*) : > "${a#--socket-path=}";; esac; done; trap 'exit 0' TERM; while :; do sleep 0.1; done"#,
        );
        let sock = socket_path(inst, 1);
        let m = mount(Path::new("/srv"), true, &sock);
        let flavor = Flavor::Rust { readonly: false };
        let mut ours = start_one(&bin, flavor, 1, &m, &sock, inst).await.unwrap();
        // Another process's pid in a pid file (pid reuse) must survive.
        let mut other = tokio::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        std::fs::write(pid_path(inst, 2), format!("{}\n", other.id().unwrap())).unwrap();
        cleanup(inst);
        let waited = tokio::time::timeout(Duration::from_secs(5), ours.child.wait()).await;
        assert!(waited.is_ok(), "the leftover daemon got SIGTERM");
        assert!(
            other.try_wait().unwrap().is_none(),
            "an unrelated process is left alone"
        );
        other.kill().await.unwrap();
        assert!(!sock.exists() && !pid_path(inst, 1).exists() && !pid_path(inst, 2).exists());
        assert!(log_path(inst, 1).exists());
    }

    #[tokio::test]
    async fn daemon_exiting_early_reports_its_log() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = tmp.path();
        let bin = fake(inst, "echo 'fuse: unknown option(s): --bogus' >&2; exit 1");
        let sock = socket_path(inst, 3);
        let m = mount(Path::new("/srv"), true, &sock);
        let e = start_one(&bin, Flavor::Qemu, 3, &m, &sock, inst)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("mount 3 (/srv)") && e.contains("unknown option(s): --bogus"),
            "{e}"
        );
        assert!(!pid_path(inst, 3).exists());
    }

    /// The real daemon on this machine, when there is one and we may run it: it must accept
    /// the arguments we build and create its socket. No VM is involved.
    #[tokio::test]
    async fn installed_virtiofsd_creates_its_socket() {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let Ok(bin) = find(home.as_deref(), std::env::var_os("PATH").as_deref()) else {
            eprintln!("SKIPPED: no virtiofsd installed");
            return;
        };
        let flavor = flavor_of(&bin).await;
        // SAFETY: geteuid cannot fail.
        if flavor == Flavor::Qemu && unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: QEMU's C virtiofsd needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let share = tmp.path().join("share");
        std::fs::create_dir(&share).unwrap();
        let sock = socket_path(tmp.path(), 0);
        let d = start_all(&[mount(&share, false, &sock)], tmp.path())
            .await
            .unwrap();
        assert_eq!(d.len(), 1);
        assert!(sock.exists());
        stop_all(d).await;
        assert!(!sock.exists());
    }

    #[tokio::test]
    async fn no_virtiofs_mounts_start_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = MountSpec {
            location: "/x".into(),
            tag: "lima-0".into(),
            writable: false,
            device: MountDevice::NineP {
                security_model: "none".into(),
            },
        };
        assert!(start_all(&[m], dir.path()).await.unwrap().is_empty());
    }
}
