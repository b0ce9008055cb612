//! The argument vectors of `limactl copy` (scp and rsync), `limactl tunnel` (`ssh -D`) and
//! `limactl shell --sync` (rsync both ways), built as upstream Lima's `pkg/copytool`,
//! `tunnel.go` and `shell.go` build them. Pure: the caller resolves instances (user, address,
//! port, ssh options) and runs the programs.

use crate::shell_quote;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("invalid backend `{0}`, must be one of: scp, rsync, auto")]
    InvalidBackend(String),
    #[error("rsync cannot copy between two instances ({0} and {1}); use --backend=scp")]
    RsyncTwoRemotes(String, String),
}

/// `--backend`: which program copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Auto,
    Rsync,
    Scp,
}

impl std::str::FromStr for Backend {
    type Err = CopyError;
    fn from_str(s: &str) -> Result<Self, CopyError> {
        match s {
            "auto" => Ok(Backend::Auto),
            "rsync" => Ok(Backend::Rsync),
            "scp" => Ok(Backend::Scp),
            other => Err(CopyError::InvalidBackend(other.to_string())),
        }
    }
}

/// One `SOURCE`/`TARGET` word: `INSTANCE:PATH` or a host path. Split at the first colon, as
/// upstream does (so a host path with a colon needs a `./` prefix... which upstream also
/// reads as an instance name; it has no escape either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Host(String),
    Guest { instance: String, path: String },
}

pub fn parse_spec(word: &str) -> Spec {
    match word.split_once(':') {
        Some((instance, path)) => Spec::Guest {
            instance: instance.to_string(),
            path: path.to_string(),
        },
        None => Spec::Host(word.to_string()),
    }
}

/// How to reach one instance over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    pub name: String,
    pub user: String,
    /// `127.0.0.1` unless the driver says otherwise.
    pub address: String,
    pub port: u16,
    /// The instance's ssh options (`KEY=VALUE`, [`crate::instance_opts`]).
    pub opts: Vec<String>,
}

impl Guest {
    /// `USER@ADDRESS`.
    pub fn target(&self) -> String {
        format!("{}@{}", self.user, self.address)
    }
}

/// A resolved path: on the host, or in guest number `guest` of the caller's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Host(String),
    Guest { guest: usize, path: String },
}

/// `-r`, `-v` and extra backend flags (already valid for the backend).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub recursive: bool,
    pub verbose: bool,
    pub extra: Vec<String>,
}

/// `-F /dev/null -o K=V ...`, as upstream's `SSHArgsFromOpts` (quotes kept: ssh parses `-o`
/// values as config lines).
pub fn ssh_args_from_opts(opts: &[String]) -> Vec<String> {
    let mut args = vec!["-F".to_string(), "/dev/null".to_string()];
    for o in opts {
        args.push("-o".into());
        args.push(o.clone());
    }
    args
}

/// The distinct guests the endpoints name, in order of first use.
fn guests_used(paths: &[Endpoint]) -> Vec<usize> {
    let mut used = Vec::new();
    for p in paths {
        if let Endpoint::Guest { guest, .. } = p {
            if !used.contains(guest) {
                used.push(*guest);
            }
        }
    }
    used
}

/// Whether two endpoints are in guests (rsync cannot do that; upstream's auto picks scp).
pub fn has_remote_source_and_destination(paths: &[Endpoint]) -> bool {
    paths
        .iter()
        .filter(|p| matches!(p, Endpoint::Guest { .. }))
        .count()
        >= 2
}

/// scp's arguments (without `scp`): the instance's ssh options when one instance is involved
/// (connection sharing), else only `common` (options that fit every instance); then
/// `-q|-v [-r] EXTRA -3 --` and the paths, guests as `scp://USER@ADDRESS:PORT/PATH`
/// (OpenSSH 8.0 or later, as upstream on a current OpenSSH).
pub fn scp_args(
    guests: &[Guest],
    paths: &[Endpoint],
    opts: &Options,
    common: &[String],
) -> Vec<String> {
    let used = guests_used(paths);
    let ssh_opts = match used.as_slice() {
        [one] => &guests[*one].opts[..],
        _ => common,
    };
    let mut args = ssh_args_from_opts(ssh_opts);
    args.push(if opts.verbose { "-v" } else { "-q" }.into());
    if opts.recursive {
        args.push("-r".into());
    }
    args.extend(opts.extra.iter().cloned());
    args.extend(["-3".to_string(), "--".to_string()]);
    for p in paths {
        args.push(match p {
            Endpoint::Host(path) => path.clone(),
            Endpoint::Guest { guest, path } => {
                let g = &guests[*guest];
                format!("scp://{}:{}/{}", g.target(), g.port, path)
            }
        });
    }
    args
}

/// The `-e` command rsync reaches a guest with: `ssh -F /dev/null -o ... -p PORT`, each word
/// shell-quoted (rsync splits it like a shell).
pub fn rsync_ssh_command(guest: &Guest) -> String {
    let mut words = vec!["ssh".to_string()];
    words.extend(ssh_args_from_opts(&guest.opts));
    words.extend(["-p".to_string(), guest.port.to_string()]);
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// rsync's arguments (without `rsync`): `-a -v --progress|-q [-r] EXTRA [-e SSH] -- PATHS`,
/// guests as `USER@ADDRESS:PATH`. With `-r`, trailing slashes are arranged so a directory is
/// copied into the target as scp would (upstream's fix for lima#4468): a source without a
/// trailing slash gets one, a local path with one loses it, and a remote path with one makes
/// the other paths lose theirs.
pub fn rsync_args(
    guests: &[Guest],
    paths: &[Endpoint],
    opts: &Options,
) -> Result<Vec<String>, CopyError> {
    let used = guests_used(paths);
    if used.len() > 1 || has_remote_source_and_destination(paths) {
        let names: Vec<&str> = paths
            .iter()
            .filter_map(|p| match p {
                Endpoint::Guest { guest, .. } => Some(guests[*guest].name.as_str()),
                Endpoint::Host(_) => None,
            })
            .collect();
        return Err(CopyError::RsyncTwoRemotes(
            names[0].to_string(),
            names[names.len() - 1].to_string(),
        ));
    }
    let mut args = vec!["-a".to_string()];
    if opts.verbose {
        args.extend(["-v".to_string(), "--progress".to_string()]);
    } else {
        args.push("-q".into());
    }
    if opts.recursive {
        args.push("-r".into());
    }
    args.extend(opts.extra.iter().cloned());
    if let Some(g) = used.first() {
        args.extend(["-e".to_string(), rsync_ssh_command(&guests[*g])]);
    }
    let mut paths: Vec<Endpoint> = paths.to_vec();
    if opts.recursive {
        arrange_slashes(&mut paths);
    }
    args.push("--".into());
    for p in &paths {
        args.push(match p {
            Endpoint::Host(path) => path.clone(),
            Endpoint::Guest { guest, path } => format!("{}:{}", guests[*guest].target(), path),
        });
    }
    Ok(args)
}

/// Upstream's loop, kept in its order (a later path can undo an earlier one's change).
fn arrange_slashes(paths: &mut [Endpoint]) {
    fn path_mut(e: &mut Endpoint) -> &mut String {
        match e {
            Endpoint::Host(p) | Endpoint::Guest { path: p, .. } => p,
        }
    }
    for i in 0..paths.len() {
        let remote = matches!(paths[i], Endpoint::Guest { .. });
        if path_mut(&mut paths[i]).ends_with('/') {
            if remote {
                for (j, other) in paths.iter_mut().enumerate() {
                    if i != j {
                        let p = path_mut(other);
                        if let Some(s) = p.strip_suffix('/') {
                            *p = s.to_string();
                        }
                    }
                }
            } else {
                let p = path_mut(&mut paths[i]);
                p.pop();
            }
        } else {
            path_mut(&mut paths[i]).push('/');
        }
    }
}

/// `ssh` arguments (without `ssh`) that run `command` in the guest (the rsync check, `mkdir`,
/// `rm` of `shell --sync`).
pub fn ssh_command_args(guest: &Guest, command: &str) -> Vec<String> {
    let mut args = ssh_args_from_opts(&guest.opts);
    args.extend([
        "-p".to_string(),
        guest.port.to_string(),
        guest.target(),
        command.to_string(),
    ]);
    args
}

/// Upstream's test for rsync in a guest.
pub const RSYNC_CHECK: &str = "command -v rsync >/dev/null 2>&1";

/// `limactl tunnel`'s ssh arguments (without `ssh`): quiet, to the background once connected,
/// no command, a SOCKS proxy on `127.0.0.1:SOCKS_PORT`.
pub fn tunnel_args(guest: &Guest, socks_port: u16) -> Vec<String> {
    let mut args = ssh_args_from_opts(&guest.opts);
    args.extend([
        "-q".to_string(),
        "-f".to_string(),
        "-N".to_string(),
        "-D".to_string(),
        format!("127.0.0.1:{socks_port}"),
        "-p".to_string(),
        guest.port.to_string(),
        guest.address.clone(),
    ]);
    args
}

/// What `limactl tunnel` prints once the proxy is up (upstream's text for each host OS).
pub fn tunnel_message(os: &str, socks_port: u16, hostname: &str) -> String {
    let mut s = match os {
        "macos" => format!(
            "Open <System Settings> → <Network> → <Wi-Fi> (or whatever) → <Details> → <Proxies> → <SOCKS proxy>,\n\
             and specify the following configuration:\n\
             - Server: 127.0.0.1\n\
             - Port: {socks_port}\n"
        ),
        "windows" => format!(
            "Open <Settings> → <Network & Internet> → <Proxy>,\n\
             and specify the following configuration:\n\
             - Address: socks=127.0.0.1\n\
             - Port: {socks_port}\n"
        ),
        _ => format!("Set `ALL_PROXY=socks5h://127.0.0.1:{socks_port}`, etc.\n"),
    };
    s.push_str(&format!(
        "The instance can be connected from the host as <http://{hostname}.internal> via a web browser.\n"
    ));
    s
}

/// `shell --sync` refuses a directory shallower than this (`/Users/USER` is 3): syncing back
/// with `--delete` must never act on a home or a system directory.
pub const SYNC_MINIMUM_DEPTH: usize = 4;

/// Upstream's `pathDepth` for a POSIX path: fields separated by runs of `/`, a trailing `/`
/// ignored unless the path is `/`.
pub fn path_depth(path: &str) -> usize {
    let mut s = path.to_string();
    while s.contains("//") {
        s = s.replace("//", "/");
    }
    if let Some(t) = s.strip_suffix('/') {
        if t.contains('/') {
            s = t.to_string();
        }
    }
    s.matches('/').count() + 1
}

/// What an rsync dry run with `--itemize-changes` would change.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    pub added: usize,
    pub deleted: usize,
    pub modified: usize,
    pub metadata: usize,
}

impl SyncStats {
    pub fn is_empty(&self) -> bool {
        *self == SyncStats::default()
    }
}

impl std::fmt::Display for SyncStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        write!(
            f,
            "added: {}, deleted: {}, modified: {}, metadata: {}",
            self.added, self.deleted, self.modified, self.metadata
        )
    }
}

/// Upstream's `parseRsyncStats`: `*deleting` lines are deletions; a `<`, `>` or `c` update is
/// an addition when its checksum column is `+`, else a modification; a `.` update with any
/// attribute changed is a metadata change.
pub fn parse_rsync_stats(output: &str) -> SyncStats {
    let mut s = SyncStats::default();
    for line in output.lines() {
        let b = line.as_bytes();
        if b.len() < 12 {
            continue;
        }
        if line.starts_with("*deleting") {
            s.deleted += 1;
            continue;
        }
        match b[0] {
            b'<' | b'>' | b'c' => {
                if b[2] == b'+' {
                    s.added += 1;
                } else {
                    s.modified += 1;
                }
            }
            b'.' if b[2..11].iter().any(|c| *c != b'.') => s.metadata += 1,
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(name: &str, port: u16) -> Guest {
        Guest {
            name: name.into(),
            user: "u".into(),
            address: "127.0.0.1".into(),
            port,
            opts: vec![
                "IdentityFile=\"/k/user\"".into(),
                format!("ControlPath=\"/l/{name}/ssh.sock\""),
            ],
        }
    }

    fn g(i: usize, p: &str) -> Endpoint {
        Endpoint::Guest {
            guest: i,
            path: p.into(),
        }
    }

    fn h(p: &str) -> Endpoint {
        Endpoint::Host(p.into())
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn specs_split_at_the_first_colon() {
        assert_eq!(parse_spec("./a"), Spec::Host("./a".into()));
        assert_eq!(
            parse_spec("default:/etc/os-release"),
            Spec::Guest {
                instance: "default".into(),
                path: "/etc/os-release".into()
            }
        );
        assert_eq!(
            parse_spec("vm:a:b"),
            Spec::Guest {
                instance: "vm".into(),
                path: "a:b".into()
            }
        );
        assert_eq!("auto".parse::<Backend>().unwrap(), Backend::Auto);
        assert_eq!(
            "ftp".parse::<Backend>().unwrap_err().to_string(),
            "invalid backend `ftp`, must be one of: scp, rsync, auto"
        );
    }

    #[test]
    fn scp_one_instance_uses_its_options() {
        let guests = [guest("vm", 60022)];
        let args = scp_args(
            &guests,
            &[h("myfile.txt"), g(0, "/tmp/")],
            &Options::default(),
            &["Common=yes".into()],
        );
        assert_eq!(
            args,
            s(&[
                "-F",
                "/dev/null",
                "-o",
                "IdentityFile=\"/k/user\"",
                "-o",
                "ControlPath=\"/l/vm/ssh.sock\"",
                "-q",
                "-3",
                "--",
                "myfile.txt",
                "scp://u@127.0.0.1:60022//tmp/",
            ])
        );
    }

    #[test]
    fn scp_two_instances_use_common_options() {
        let guests = [guest("a", 1), guest("b", 2)];
        let opts = Options {
            recursive: true,
            verbose: true,
            extra: vec![],
        };
        let args = scp_args(
            &guests,
            &[g(0, "/src"), g(1, "dst")],
            &opts,
            &["Common=yes".into()],
        );
        assert_eq!(
            args,
            s(&[
                "-F",
                "/dev/null",
                "-o",
                "Common=yes",
                "-v",
                "-r",
                "-3",
                "--",
                "scp://u@127.0.0.1:1//src",
                "scp://u@127.0.0.1:2/dst",
            ])
        );
        // The same instance twice is one host: its own options.
        let args = scp_args(&guests, &[g(1, "/x"), g(1, "/y")], &opts, &[]);
        assert_eq!(args[3], "IdentityFile=\"/k/user\"");
    }

    #[test]
    fn rsync_as_upstream() {
        let guests = [guest("vm", 60022)];
        let args = rsync_args(
            &guests,
            &[g(0, "/etc/os-release"), h(".")],
            &Options::default(),
        )
        .unwrap();
        assert_eq!(
            args,
            s(&[
                "-a",
                "-q",
                "-e",
                "ssh -F /dev/null -o 'IdentityFile=\"/k/user\"' -o 'ControlPath=\"/l/vm/ssh.sock\"' -p 60022",
                "--",
                "u@127.0.0.1:/etc/os-release",
                ".",
            ])
        );
        // Host to host: no -e.
        let args = rsync_args(&guests, &[h("a"), h("b")], &Options::default()).unwrap();
        assert_eq!(args, s(&["-a", "-q", "--", "a", "b"]));
    }

    #[test]
    fn rsync_recursive_slashes_as_upstream() {
        let guests = [guest("vm", 22)];
        let opts = Options {
            recursive: true,
            verbose: true,
            extra: vec!["--delete".into()],
        };
        let tail = |paths: &[Endpoint]| {
            let a = rsync_args(&guests, paths, &opts).unwrap();
            let dd = a.iter().position(|w| w == "--").unwrap();
            assert_eq!(
                a[..dd - 2],
                s(&["-a", "-v", "--progress", "-r", "--delete"])[..]
            );
            a[dd + 1..].to_vec()
        };
        // ./mydir → ./mydir/ (contents), like scp -r copying the directory.
        assert_eq!(
            tail(&[h("./mydir"), g(0, "/tmp/x")]),
            s(&["./mydir/", "u@127.0.0.1:/tmp/x/"])
        );
        // A local trailing slash is dropped.
        assert_eq!(
            tail(&[h("./mydir/"), g(0, "/tmp/x")]),
            s(&["./mydir", "u@127.0.0.1:/tmp/x/"])
        );
        // A remote trailing slash strips the others' (here none) and keeps its own.
        assert_eq!(
            tail(&[g(0, "/src/"), h("/dst")]),
            s(&["u@127.0.0.1:/src/", "/dst/"])
        );
    }

    #[test]
    fn rsync_refuses_two_guests() {
        let guests = [guest("a", 1), guest("b", 2)];
        let e = rsync_args(&guests, &[g(0, "/x"), g(1, "/y")], &Options::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rsync cannot copy between two instances (a and b); use --backend=scp"
        );
        assert!(has_remote_source_and_destination(&[g(0, "/x"), g(0, "/y")]));
        assert!(!has_remote_source_and_destination(&[h("/x"), g(0, "/y")]));
    }

    #[test]
    fn tunnel_as_upstream() {
        let args = tunnel_args(&guest("vm", 60022), 1080);
        assert_eq!(
            args[6..],
            s(&[
                "-q",
                "-f",
                "-N",
                "-D",
                "127.0.0.1:1080",
                "-p",
                "60022",
                "127.0.0.1"
            ])[..]
        );
        assert_eq!(
            tunnel_message("linux", 1080, "lima-vm"),
            "Set `ALL_PROXY=socks5h://127.0.0.1:1080`, etc.\n\
             The instance can be connected from the host as <http://lima-vm.internal> via a web browser.\n"
        );
        assert!(tunnel_message("macos", 1080, "x").contains("- Port: 1080\n"));
        assert!(tunnel_message("windows", 1, "x").contains("- Address: socks=127.0.0.1\n"));
        assert_eq!(
            ssh_command_args(&guest("vm", 5), RSYNC_CHECK)[6..],
            s(&["-p", "5", "u@127.0.0.1", "command -v rsync >/dev/null 2>&1"])[..]
        );
    }

    #[test]
    fn depth_as_upstream() {
        assert_eq!(path_depth("/"), 2);
        assert_eq!(path_depth("/Users/u"), 3);
        assert_eq!(path_depth("/Users/u/"), 3);
        assert_eq!(path_depth("//home//u/src"), 4);
    }

    #[test]
    fn stats_as_upstream() {
        let out = ">f+++++++++ new.txt\n\
                   >f.st...... changed.txt\n\
                   *deleting   gone.txt\n\
                   .d..t...... dir/\n\
                   .f......... same.txt\n\
                   short\n";
        let st = parse_rsync_stats(out);
        assert_eq!(
            st.to_string(),
            "added: 1, deleted: 1, modified: 1, metadata: 1"
        );
        assert!(parse_rsync_stats("sending incremental file list\n").is_empty());
        assert_eq!(SyncStats::default().to_string(), "");
    }
}
