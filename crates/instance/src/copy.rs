//! The SSH side flows of a running instance: `limactl copy` (scp or rsync, chosen as upstream's
//! `copytool.New` chooses), `limactl tunnel` (`ssh -D`) and `limactl shell --sync` (rsync the
//! host directory into the guest and back). Instances are resolved here; the argument vectors
//! are `sshutil::copytool`'s pure functions.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use limatype::{filenames, Instance, Status};
use sshutil::copytool::{self, Backend, Endpoint, Guest, Options, Spec, SyncStats};

use crate::{InstanceError, Result};

/// A program and its arguments, for the caller to run (it owns stdio and the exit code).
#[derive(Debug, Clone)]
pub struct Plan {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Plan {
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        c
    }
}

/// `program` in `$PATH`, as Go's `exec.LookPath`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && osutil::is_executable(&m)))
}

fn user_key() -> Result<PathBuf> {
    Ok(store::config_dir()?.join(filenames::USER_PRIVATE_KEY))
}

/// Inspects `name` and refuses a missing or stopped instance with upstream's words.
pub fn inspect_not_stopped(name: &str) -> Result<Instance> {
    let inst = match crate::ops::inspect(name) {
        Err(InstanceError::NotFound(_)) => return Err(InstanceError::Absent(name.to_string())),
        other => other?,
    };
    if inst.status == Status::Stopped {
        return Err(InstanceError::Stopped(name.to_string()));
    }
    Ok(inst)
}

/// How to reach `inst` over SSH: its user, address, forwarded port and options.
pub fn guest_of(inst: &Instance) -> Result<Guest> {
    let no_ssh = |why: &str| InstanceError::NoSsh {
        name: inst.name.clone(),
        why: why.to_string(),
    };
    let user = inst
        .config
        .as_ref()
        .and_then(|c| c.user.as_ref()?.name.clone())
        .ok_or_else(|| no_ssh("its lima.yaml has no user name"))?;
    let port = u16::try_from(inst.ssh_local_port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| no_ssh(&format!("no SSH port (status {})", inst.status)))?;
    let address = if inst.ssh_address.is_empty() {
        "127.0.0.1".to_string()
    } else {
        inst.ssh_address.clone()
    };
    let flags = inst
        .config
        .as_ref()
        .map(sshutil::SshFlags::from_config)
        .unwrap_or_default();
    let opts = sshutil::instance_opts(Path::new(&inst.dir), &user_key()?, &user, &flags)?;
    Ok(Guest {
        name: inst.name.clone(),
        user,
        address,
        port,
        opts,
    })
}

/// The words of `limactl copy` resolved: the guests they name (each once) and the endpoints.
pub fn resolve(words: &[String]) -> Result<(Vec<Guest>, Vec<Endpoint>)> {
    let mut guests: Vec<Guest> = Vec::new();
    let mut paths = Vec::new();
    for w in words {
        paths.push(match copytool::parse_spec(w) {
            Spec::Host(p) => Endpoint::Host(p),
            Spec::Guest { instance, path } => {
                let guest = match guests.iter().position(|g| g.name == instance) {
                    Some(i) => i,
                    None => {
                        let inst = inspect_not_stopped(&instance)?;
                        guests.push(guest_of(&inst)?);
                        guests.len() - 1
                    }
                };
                Endpoint::Guest { guest, path }
            }
        });
    }
    Ok((guests, paths))
}

/// Whether `rsync` runs in the guest (upstream's `command -v rsync` over SSH).
pub fn guest_has_rsync(g: &Guest) -> bool {
    let ok = Command::new("ssh")
        .args(copytool::ssh_command_args(g, copytool::RSYNC_CHECK))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        tracing::debug!("rsync not available on instance `{}`", g.name);
    }
    ok
}

fn all_have_rsync(guests: &[Guest], paths: &[Endpoint]) -> bool {
    let mut used: Vec<usize> = paths
        .iter()
        .filter_map(|p| match p {
            Endpoint::Guest { guest, .. } => Some(*guest),
            Endpoint::Host(_) => None,
        })
        .collect();
    used.sort_unstable();
    used.dedup();
    used.iter().all(|i| guest_has_rsync(&guests[*i]))
}

fn not_on_host(program: &str) -> String {
    format!("{program} not found on host: exec: \"{program}\": executable file not found in $PATH")
}

/// The copy `limactl copy` runs: `--backend` resolved as upstream does (auto: rsync when it
/// is on the host and in every guest involved and at most one path is remote, else scp).
pub fn plan_copy(backend: Backend, words: &[String], opts: &Options) -> Result<Plan> {
    let (guests, paths) = resolve(words)?;
    let scp = |guests: &[Guest], paths: &[Endpoint]| -> Result<Plan> {
        let program = which("scp").ok_or_else(|| InstanceError::CopyTool(not_on_host("scp")))?;
        let common = sshutil::common_opts(&user_key()?, false)?;
        Ok(Plan {
            program,
            args: copytool::scp_args(guests, paths, opts, &common),
        })
    };
    let rsync = |program: PathBuf| -> Result<Plan> {
        Ok(Plan {
            program,
            args: copytool::rsync_args(&guests, &paths, opts)?,
        })
    };
    match backend {
        Backend::Scp => scp(&guests, &paths),
        Backend::Rsync => {
            let program =
                which("rsync").ok_or_else(|| InstanceError::CopyTool(not_on_host("rsync")))?;
            if !all_have_rsync(&guests, &paths) {
                return Err(InstanceError::CopyTool(
                    "rsync not available on guest(s)".into(),
                ));
            }
            rsync(program)
        }
        Backend::Auto => {
            if !copytool::has_remote_source_and_destination(&paths) {
                match which("rsync") {
                    Some(program) if all_have_rsync(&guests, &paths) => return rsync(program),
                    Some(_) => {
                        tracing::debug!("rsync not available on guest(s), falling back to scp")
                    }
                    None => tracing::debug!("rsync not found on host, falling back to scp"),
                }
            }
            scp(&guests, &paths).map_err(|e| match e {
                InstanceError::CopyTool(why) => {
                    InstanceError::CopyTool(format!("neither rsync nor scp found on host: {why}"))
                }
                other => other,
            })
        }
    }
}

/// A free TCP port on 127.0.0.1 (upstream's `freeport.TCP`).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| InstanceError::Command {
        command: "finding a free port".into(),
        why: e.to_string(),
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| InstanceError::Command {
            command: "finding a free port".into(),
            why: e.to_string(),
        })
}

/// `limactl tunnel`'s ssh: a SOCKS proxy on `socks_port` that goes to the background.
pub fn plan_tunnel(inst: &Instance, socks_port: u16) -> Result<Plan> {
    let guest = guest_of(inst)?;
    Ok(Plan {
        program: PathBuf::from("ssh"),
        args: copytool::tunnel_args(&guest, socks_port),
    })
}

/// `shell --sync DIR`: where the host directory goes in the guest.
#[derive(Debug, Clone)]
pub struct Sync {
    pub name: String,
    pub guest: Guest,
    /// Absolute host directory.
    pub host_dir: String,
    /// `GUEST_HOME + host_dir`.
    pub guest_dir: String,
    /// `guest_dir` as it goes into rsync's remote path (quoted for rsync before 3.2.4).
    rsync_guest_dir: String,
}

fn sync_err(why: impl Into<String>) -> InstanceError {
    InstanceError::CopyTool(why.into())
}

/// Upstream's checks for `--sync`, in its order, then the directories.
pub fn prepare_sync(inst: &Instance, dir: &str, workdir: Option<&str>) -> Result<Sync> {
    let config = inst.config.as_ref();
    if config
        .and_then(|c| c.mounts.as_ref())
        .is_some_and(|m| !m.is_empty())
    {
        return Err(sync_err("cannot use `--sync` when the instance has host mounts configured, start the instance with `--mount-none` to disable mounts"));
    }
    if inst.vm_type == "wsl2" {
        return Err(sync_err("cannot use `--sync` with a wsl2 instance, the host directory is already visible in the guest"));
    }
    let host_dir = std::path::absolute(dir).map_err(|e| {
        sync_err(format!(
            "failed to determine the host directory to sync: {e}"
        ))
    })?;
    let host_dir = clean(&host_dir);
    if which("rsync").is_none() {
        return Err(sync_err(format!(
            "rsync is required for `--sync` but not found: {}",
            "exec: \"rsync\": executable file not found in $PATH"
        )));
    }
    check_sync_depth(&host_dir)?;
    if workdir.is_some_and(|w| !w.is_empty()) {
        return Err(sync_err(
            "cannot use `--workdir` and `--sync` at the same time",
        ));
    }
    let home = config
        .and_then(|c| c.user.as_ref()?.home.clone())
        .ok_or_else(|| sync_err(format!("instance `{}` has no user home", inst.name)))?;
    let guest_dir = format!("{home}{host_dir}");
    let guest = guest_of(inst)?;
    Ok(Sync {
        name: inst.name.clone(),
        guest,
        host_dir,
        rsync_guest_dir: guest_dir.clone(),
        guest_dir,
    })
}

/// Lexically cleans an absolute path as Go's `filepath.Abs` does (`..` pops a component;
/// `std::path::absolute` keeps it).
fn clean(path: &Path) -> String {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

/// Refuses a shallow directory: syncing back deletes what the guest deleted.
pub fn check_sync_depth(host_dir: &str) -> Result<()> {
    let depth = copytool::path_depth(host_dir);
    if depth < copytool::SYNC_MINIMUM_DEPTH {
        return Err(sync_err(format!(
            "expected the depth of the host working directory (`{host_dir}`) to be at least {}, only got {depth} (Hint: cd to a deeper directory)",
            copytool::SYNC_MINIMUM_DEPTH
        )));
    }
    Ok(())
}

fn run(mut c: Command, what: &str) -> Result<()> {
    tracing::debug!("executing {c:?}");
    let status = c.status().map_err(|e| InstanceError::Command {
        command: what.into(),
        why: e.to_string(),
    })?;
    if !status.success() {
        return Err(InstanceError::Command {
            command: what.into(),
            why: status.to_string(),
        });
    }
    Ok(())
}

fn ssh_in_guest(g: &Guest, command: &str) -> Command {
    let mut c = Command::new("ssh");
    c.args(copytool::ssh_command_args(g, command));
    c.stdin(Stdio::null());
    c
}

/// `rsync --version`'s `X.Y.Z`.
fn rsync_version() -> Option<(u32, u32, u32)> {
    let out = Command::new("rsync").arg("--version").output().ok()?;
    parse_rsync_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_rsync_version(text: &str) -> Option<(u32, u32, u32)> {
    let rest = &text[text.find("version ")? + "version ".len()..];
    let word = rest.split_whitespace().next()?;
    let mut n = word.split('.').map(|p| p.parse::<u32>().ok());
    Some((n.next()??, n.next()??, n.next()??))
}

impl Sync {
    fn rsync(&self, paths: &[Endpoint], opts: &Options) -> Result<Command> {
        let mut c = Command::new("rsync");
        c.args(copytool::rsync_args(
            std::slice::from_ref(&self.guest),
            paths,
            opts,
        )?);
        Ok(c)
    }

    fn remote(&self) -> Endpoint {
        Endpoint::Guest {
            guest: 0,
            path: self.rsync_guest_dir.clone(),
        }
    }

    fn sync_opts() -> Options {
        Options {
            recursive: true,
            verbose: false,
            extra: vec!["--delete".into()],
        }
    }

    /// Makes the guest directory and copies the host directory into it (`--delete`).
    pub fn to_guest(&mut self) -> Result<()> {
        let mkdir = format!("mkdir -p {}", sshutil::shell_quote(&self.guest_dir));
        run(
            ssh_in_guest(&self.guest, &mkdir),
            "creating the synced workdir in the guest",
        )?;
        // Before 3.2.4 rsync does not protect args: the remote shell would split spaces.
        match rsync_version() {
            Some(v) if v < (3, 2, 4) => {
                self.rsync_guest_dir = sshutil::shell_quote(&self.guest_dir)
            }
            Some(_) => {}
            None => return Err(sync_err("failed to get rsync version")),
        }
        let paths = [Endpoint::Host(self.host_dir.clone()), self.remote()];
        run(
            self.rsync(&paths, &Self::sync_opts())?,
            "rsync to the guest",
        )
    }

    /// What syncing back would change (rsync's dry run with `--itemize-changes`): its output
    /// and the counts.
    pub fn stats(&self) -> Result<(String, SyncStats)> {
        let parent = Path::new(&self.host_dir)
            .parent()
            .unwrap_or(Path::new("/"))
            .to_string_lossy()
            .into_owned();
        let opts = Options {
            recursive: false,
            verbose: true,
            extra: ["--dry-run", "--itemize-changes", "-ah", "--delete"]
                .map(String::from)
                .to_vec(),
        };
        let mut c = self.rsync(&[self.remote(), Endpoint::Host(parent)], &opts)?;
        tracing::debug!("executing rsync for stats: {c:?}");
        let out = c
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| InstanceError::Command {
                command: "rsync --dry-run".into(),
                why: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(InstanceError::Command {
                command: "rsync --dry-run".into(),
                why: out.status.to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let stats = copytool::parse_rsync_stats(&text);
        Ok((text, stats))
    }

    /// Copies the guest directory back to `dest` (the host directory, or a temporary one to
    /// show a diff).
    pub fn from_guest(&self, dest: &str) -> Result<()> {
        let paths = [self.remote(), Endpoint::Host(dest.to_string())];
        run(
            self.rsync(&paths, &Self::sync_opts())?,
            "syncing back the changes from the guest",
        )
    }

    /// Removes the guest directory.
    pub fn remove_guest_dir(&self) -> Result<()> {
        let rm = format!("rm -rf {}", sshutil::shell_quote(&self.guest_dir));
        run(
            ssh_in_guest(&self.guest, &rm),
            "cleaning up the guest synced workdir",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsync_versions() {
        assert_eq!(
            parse_rsync_version("rsync  version 3.2.7  protocol version 31\n"),
            Some((3, 2, 7))
        );
        assert_eq!(parse_rsync_version("rsync version v3"), None);
    }

    #[test]
    fn shallow_dirs_are_refused() {
        let e = check_sync_depth("/home/u").unwrap_err().to_string();
        assert_eq!(e, "expected the depth of the host working directory (`/home/u`) to be at least 4, only got 3 (Hint: cd to a deeper directory)");
        assert!(check_sync_depth("/home/u/src").is_ok());
        assert_eq!(clean(Path::new("/home/u/a/../b/./c/")), "/home/u/b/c");
        assert_eq!(clean(Path::new("/..")), "/");
    }
}
