//! `sshutil` — layer 7.1: the user's SSH key pair in `$LIMA_HOME/_config` (made with the system
//! `ssh-keygen` on first use), the ssh options for an instance, the per-instance `ssh.config`
//! (so `ssh -F ~/.lima/NAME/ssh.config lima-NAME` works) and `ssh` argument lists.

pub mod copytool;
pub mod remote;

use std::path::{Path, PathBuf};
use std::process::Command;

use limatype::filenames;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot run {program}: {source} (is OpenSSH installed?)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ssh-keygen failed for {path}: {output}")]
    Keygen { path: PathBuf, output: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("unknown format: `{0}` (one of: cmd, args, options, config)")]
    UnknownFormat(String),
    #[error("unexpected option `{0}` (not KEY=VALUE)")]
    BadOption(String),
    #[error("refusing a line break in an ssh.config value: {0:?}")]
    LineBreak(String),
    #[error("control socket path {0} is too long for a unix socket (>= 108 bytes); use a shorter LIMA_HOME")]
    PathTooLong(PathBuf),
}

pub type Result<T, E = SshError> = std::result::Result<T, E>;

/// The key pair's paths.
#[derive(Debug, Clone)]
pub struct UserKey {
    pub private: PathBuf,
    pub public: PathBuf,
}

impl UserKey {
    pub fn public_key(&self) -> Result<String> {
        std::fs::read_to_string(&self.public)
            .map(|s| s.trim().to_string())
            .map_err(|source| SshError::Io {
                path: self.public.clone(),
                source,
            })
    }
}

/// `CONFIG/user{,.pub}` (CONFIG is `$LIMA_HOME/_config`), generating an ed25519 pair on first
/// use. Concurrent callers serialise on a lock in CONFIG, so only one generates.
pub fn ensure_user_key_in(config: &Path) -> Result<UserKey> {
    let key = UserKey {
        private: config.join(filenames::USER_PRIVATE_KEY),
        public: config.join(filenames::USER_PUBLIC_KEY),
    };
    if key.private.exists() && key.public.exists() {
        return Ok(key);
    }
    store::ensure_private_dir(config)?;
    let _lock = lock_dir(config)?;
    if key.private.exists() && key.public.exists() {
        return Ok(key);
    }
    let _ = std::fs::remove_file(&key.private);
    let _ = std::fs::remove_file(&key.public);
    let out = Command::new("ssh-keygen")
        .args(["-t", "ed25519", "-q", "-N", "", "-C", "lima", "-f"])
        .arg(&key.private)
        .output()
        .map_err(|source| SshError::Spawn {
            program: "ssh-keygen".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(SshError::Keygen {
            path: key.private.clone(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    tracing::debug!("generated {}", key.private.display());
    Ok(key)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SshError + '_ {
    move |source| SshError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A blocking flock on `DIR/.keygen.lock`, released when the file is dropped.
fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join(".keygen.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io_err(&path)(std::io::Error::last_os_error()));
    }
    Ok(f)
}

/// The `ssh` section's switches that change how limactl connects (upstream's `SSHOpts`
/// flags): extra identities from `~/.ssh`, agent and X11 forwarding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SshFlags {
    /// `ssh.loadDotSSHPubKeys`: also offer the private keys of `~/.ssh/*.pub`.
    pub load_dot_ssh_pub_keys: bool,
    pub forward_agent: bool,
    pub forward_x11: bool,
    pub forward_x11_trusted: bool,
}

impl SshFlags {
    /// The flags of a (filled) lima.yaml; unset ones are off, as upstream's defaults are.
    pub fn from_config(config: &limatype::LimaYaml) -> Self {
        let ssh = config.ssh.clone().unwrap_or_default();
        SshFlags {
            load_dot_ssh_pub_keys: ssh.load_dot_ssh_pub_keys.unwrap_or(false),
            forward_agent: ssh.forward_agent.unwrap_or(false),
            forward_x11: ssh.forward_x11.unwrap_or(false),
            forward_x11_trusted: ssh.forward_x11_trusted.unwrap_or(false),
        }
    }
}

/// The user's home directory (`$HOME`), where `~/.ssh` is looked up.
fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `HOME/.ssh/*.pub`, sorted (upstream's `filepath.Glob` order).
fn dot_ssh_pub_files(home: &Path) -> Result<Vec<PathBuf>> {
    let dir = home.join(".ssh");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(SshError::Io { path: dir, source }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".pub") && !n.starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The private keys beside `HOME/.ssh/*.pub` (upstream's `CommonOpts` with `useDotSSH`): a
/// `.pub` without its private key (an SSH certificate, say) is skipped.
pub fn dot_ssh_identities(home: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for public in dot_ssh_pub_files(home)? {
        let private = public.with_extension("");
        match std::fs::metadata(&private) {
            Ok(_) => out.push(private),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SshError::Io {
                    path: private,
                    source,
                })
            }
        }
    }
    Ok(out)
}

/// The lines of `HOME/.ssh/*.pub` that look like SSH public keys (upstream's
/// `DefaultPubKeys` with `loadDotSSH`): authorized in the guest besides Lima's own key. A
/// file that does not look like one is skipped with a warning, as upstream does.
pub fn dot_ssh_pub_keys(home: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in dot_ssh_pub_files(home)? {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(SshError::Io { path: f, source }),
        };
        let key = text.trim();
        if is_ssh_public_key(key) {
            out.push(key.to_string());
        } else {
            tracing::warn!(
                "public key {} doesn't seem to be in ssh format",
                f.display()
            );
        }
    }
    Ok(out)
}

/// Whether `key` reads as one `TYPE BASE64 [COMMENT]` line (upstream's `detectValidPublicKey`).
fn is_ssh_public_key(key: &str) -> bool {
    if key.contains('\n') {
        return false;
    }
    let mut words = key.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return false;
    };
    (kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
        && blob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
}

/// The authorized keys for the guest: Lima's own public key, then `~/.ssh/*.pub` when
/// `ssh.loadDotSSHPubKeys` is on.
pub fn authorized_keys(user_key: &UserKey, load_dot_ssh_pub_keys: bool) -> Result<Vec<String>> {
    let mut keys = vec![user_key.public_key()?];
    if load_dot_ssh_pub_keys {
        if let Some(home) = home_dir() {
            keys.extend(dot_ssh_pub_keys(&home)?);
        }
    }
    Ok(keys)
}

/// Options shared by every connection to an instance (`KEY=VALUE`, as for `ssh -o`); with
/// `load_dot_ssh`, the private keys of `~/.ssh/*.pub` are offered after Lima's own.
pub fn common_opts(private_key: &Path, load_dot_ssh: bool) -> Result<Vec<String>> {
    let dot_ssh = match home_dir() {
        Some(home) if load_dot_ssh => dot_ssh_identities(&home)?,
        _ => Vec::new(),
    };
    Ok(common_opts_with(private_key, &dot_ssh))
}

fn common_opts_with(private_key: &Path, extra_identities: &[PathBuf]) -> Vec<String> {
    let mut opts: Vec<String> = std::iter::once(private_key)
        .chain(extra_identities.iter().map(PathBuf::as_path))
        .map(|k| format!("IdentityFile=\"{}\"", k.display()))
        .collect();
    opts.extend([
        "StrictHostKeyChecking=no".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "NoHostAuthenticationForLocalhost=yes".into(),
        "PreferredAuthentications=publickey".into(),
        "Compression=no".into(),
        "BatchMode=yes".into(),
        "IdentitiesOnly=yes".into(),
        "GSSAPIAuthentication=no".into(),
        "LogLevel=ERROR".into(),
    ]);
    opts
}

/// [`common_opts`] plus the user, connection sharing through `ssh.sock` in the instance dir
/// and the forwarding `flags` ask for (upstream's `SSHOpts`).
pub fn instance_opts(
    inst_dir: &Path,
    private_key: &Path,
    user: &str,
    flags: &SshFlags,
) -> Result<Vec<String>> {
    let control = inst_dir.join(filenames::SSH_SOCK);
    if control.as_os_str().len() >= 108 {
        return Err(SshError::PathTooLong(control));
    }
    let mut opts = common_opts(private_key, flags.load_dot_ssh_pub_keys)?;
    opts.extend([
        format!("User={user}"),
        "ControlMaster=auto".into(),
        format!("ControlPath=\"{}\"", control.display()),
        "ControlPersist=yes".into(),
    ]);
    for (on, opt) in [
        (flags.forward_agent, "ForwardAgent=yes"),
        (flags.forward_x11, "ForwardX11=yes"),
        (flags.forward_x11_trusted, "ForwardX11Trusted=yes"),
    ] {
        if on {
            opts.push(opt.into());
        }
    }
    Ok(opts)
}

/// The `Host lima-NAME` block of `ssh.config`. A value with a line break would add a
/// directive of its own to the file (`User=x\nProxyCommand ...`): refused, whatever let it
/// through before.
pub fn format_config(inst_name: &str, address: &str, port: u16, opts: &[String]) -> Result<String> {
    for value in opts.iter().map(String::as_str).chain([inst_name, address]) {
        if value.contains(['\n', '\r', '\0']) {
            return Err(SshError::LineBreak(value.to_string()));
        }
    }
    let mut s = String::from(
        "# This SSH config file can be passed to 'ssh -F'.\n\
         # It is written by limactl on each start; edits are lost.\n",
    );
    s.push_str(&format!("Host lima-{inst_name}\n"));
    for o in opts.iter().map(String::as_str).chain([
        format!("Hostname={address}").as_str(),
        &format!("Port={port}"),
    ]) {
        let (k, v) = o.split_once('=').unwrap_or((o, ""));
        s.push_str(&format!("  {k} {v}\n"));
    }
    Ok(s)
}

/// Writes `ssh.config` (0600) into the instance dir and returns its path.
pub fn write_config(
    inst_dir: &Path,
    inst_name: &str,
    address: &str,
    port: u16,
    opts: &[String],
) -> Result<PathBuf> {
    let path = inst_dir.join(filenames::SSH_CONFIG);
    store::write_private_file(
        &path,
        format_config(inst_name, address, port, opts)?.as_bytes(),
    )?;
    Ok(path)
}

/// The formats of `limactl show-ssh --format` (upstream's `sshutil.Formats`).
pub const FORMATS: &[&str] = &["cmd", "args", "options", "config"];

/// `opts` (`KEY=VALUE`) for `limactl show-ssh`, as upstream's `sshutil.Format`: `cmd` (a full
/// `ssh -o ... lima-NAME` line), `args` (the `-o` part), `options` (one per line) or `config`
/// (a `Host lima-NAME` block).
pub fn format_opts(ssh: &str, inst_name: &str, format: &str, opts: &[String]) -> Result<String> {
    let host = format!("lima-{inst_name}");
    if let Some(o) = opts.iter().find(|o| o.contains(['\r', '\n'])) {
        return Err(SshError::LineBreak(o.clone()));
    }
    // Keep the shell from swallowing the quotes in option values.
    let quote = |o: &String| {
        if o.contains('"') {
            format!("'{o}'")
        } else {
            o.clone()
        }
    };
    let dash_o = || opts.iter().flat_map(|o| ["-o".to_string(), quote(o)]);
    Ok(match format {
        "cmd" => {
            let mut words = vec![ssh.to_string()];
            words.extend(dash_o());
            words.push(host);
            words.join(" ") + "\n"
        }
        "args" => dash_o().collect::<Vec<_>>().join(" ") + "\n",
        "options" => opts.iter().map(|o| format!("{o}\n")).collect(),
        "config" => {
            let mut s = format!("Host {host}\n");
            for o in opts {
                let (k, v) = o
                    .split_once('=')
                    .ok_or_else(|| SshError::BadOption(o.clone()))?;
                s.push_str(&format!("  {k} {v}\n"));
            }
            s
        }
        other => return Err(SshError::UnknownFormat(other.to_string())),
    })
}

/// `ssh` arguments that use only the generated config: `-F ssh.config lima-NAME`.
pub fn args_from_config(config: &Path, inst_name: &str) -> Vec<String> {
    vec![
        "-F".into(),
        config.display().to_string(),
        format!("lima-{inst_name}"),
    ]
}

/// Ends the instance's SSH connection sharing (`ssh -O exit` on its control socket, when
/// there is one) and removes the socket. Errors are ignored: the master may be gone already.
pub fn stop_master(inst_dir: &Path, inst_name: &str) {
    let sock = inst_dir.join(filenames::SSH_SOCK);
    if !sock.exists() {
        return;
    }
    let _ = std::process::Command::new("ssh")
        .args(["-O", "exit"])
        .args(args_from_config(
            &inst_dir.join(filenames::SSH_CONFIG),
            inst_name,
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_file(sock);
}

/// `ssh` arguments without any config file: `-F /dev/null -o K=V ... -p PORT ADDRESS`.
pub fn args_from_opts(opts: &[String], address: &str, port: u16) -> Vec<String> {
    let mut args = vec!["-F".to_string(), "/dev/null".to_string()];
    for o in opts {
        args.push("-o".into());
        // Quotes are for config files; on the command line ssh would keep them.
        args.push(o.replace('"', ""));
    }
    args.extend(["-p".into(), port.to_string(), address.to_string()]);
    args
}

/// Quotes a word for a POSIX shell (ssh joins the remote command with spaces and hands it to
/// the remote shell, so each argument must be quoted to survive).
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        word.to_string()
    } else {
        // `'"'"'` as upstream's shellescape writes it (same meaning as `'\''`).
        format!("'{}'", word.replace('\'', r#"'"'"'"#))
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn show_ssh_formats() {
        let opts = vec!["IdentityFile=\"/k\"".to_string(), "Port=22".to_string()];
        assert_eq!(
            format_opts("ssh", "vm", "cmd", &opts).unwrap(),
            "ssh -o 'IdentityFile=\"/k\"' -o Port=22 lima-vm\n"
        );
        assert_eq!(
            format_opts("ssh", "vm", "args", &opts).unwrap(),
            "-o 'IdentityFile=\"/k\"' -o Port=22\n"
        );
        assert_eq!(
            format_opts("ssh", "vm", "options", &opts).unwrap(),
            "IdentityFile=\"/k\"\nPort=22\n"
        );
        assert_eq!(
            format_opts("ssh", "vm", "config", &opts).unwrap(),
            "Host lima-vm\n  IdentityFile \"/k\"\n  Port 22\n"
        );
        assert!(matches!(
            format_opts("ssh", "vm", "url", &opts),
            Err(SshError::UnknownFormat(_))
        ));
        assert!(matches!(
            format_opts("ssh", "vm", "cmd", &["User=a\nProxyCommand x".into()]),
            Err(SshError::LineBreak(_))
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_generated_once_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let config = home.path().join("_config");
        let k = ensure_user_key_in(&config).unwrap();
        let pubkey = k.public_key().unwrap();
        assert!(pubkey.starts_with("ssh-ed25519 "), "{pubkey}");
        let mode = std::fs::metadata(&k.private).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "private key mode {mode:o}");
        let dmode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        let again = ensure_user_key_in(&config).unwrap();
        assert_eq!(again.public_key().unwrap(), pubkey, "key regenerated");
    }

    #[test]
    fn line_breaks_never_reach_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let opts = instance_opts(
            dir.path(),
            Path::new("/k/user"),
            "x\nProxyCommand evil",
            &SshFlags::default(),
        )
        .unwrap();
        let e = write_config(dir.path(), "vm", "127.0.0.1", 40022, &opts).unwrap_err();
        assert!(e.to_string().contains("ProxyCommand evil"), "{e}");
        assert!(!dir.path().join(filenames::SSH_CONFIG).exists());
        let ok = instance_opts(
            dir.path(),
            Path::new("/k/user"),
            "alice",
            &SshFlags::default(),
        )
        .unwrap();
        assert!(format_config("vm", "127.0.0.1\r", 22, &ok).is_err());
        assert!(format_config("vm", "127.0.0.1", 22, &ok).is_ok());
    }

    #[test]
    fn config_file_parses_with_real_ssh() {
        let dir = tempfile::tempdir().unwrap();
        let opts = instance_opts(
            dir.path(),
            Path::new("/k/user"),
            "alice",
            &SshFlags::default(),
        )
        .unwrap();
        let path = write_config(dir.path(), "vm", "127.0.0.1", 40022, &opts).unwrap();
        // `ssh -G` prints the resolved configuration without connecting.
        let out = Command::new("ssh")
            .arg("-G")
            .args(args_from_config(&path, "vm"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let g = String::from_utf8_lossy(&out.stdout);
        for want in [
            "hostname 127.0.0.1",
            "port 40022",
            "user alice",
            "identityfile /k/user",
            "stricthostkeychecking false",
            "userknownhostsfile /dev/null",
            "controlmaster auto",
        ] {
            assert!(g.lines().any(|l| l == want), "missing {want:?} in\n{g}");
        }
        assert!(g.contains(&format!(
            "controlpath {}",
            dir.path().join("ssh.sock").display()
        )));

        let args = args_from_opts(&opts, "127.0.0.1", 40022);
        let out = Command::new("ssh").arg("-G").args(&args).output().unwrap();
        let g = String::from_utf8_lossy(&out.stdout);
        assert!(g.lines().any(|l| l == "identityfile /k/user"), "{g}");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("uname"), "uname");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r#"'it'"'"'s'"#);
        assert_eq!(shell_quote(""), "''");
    }
}

#[cfg(test)]
mod flag_tests {
    use super::*;

    fn home_with_keys() -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        // A key pair, a certificate without its private key and a file that is no key.
        std::fs::write(ssh.join("id_ed25519"), "PRIVATE").unwrap();
        std::fs::write(
            ssh.join("id_ed25519.pub"),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG me@host\n",
        )
        .unwrap();
        std::fs::write(
            ssh.join("vault-cert.pub"),
            "ssh-ed25519-cert-v01@openssh.com AAAAB3 cert\n",
        )
        .unwrap();
        std::fs::write(ssh.join("notes.pub"), "hello world\n").unwrap();
        home
    }

    #[test]
    fn dot_ssh_keys_and_identities() {
        let home = home_with_keys();
        let ids = dot_ssh_identities(home.path()).unwrap();
        assert_eq!(ids, vec![home.path().join(".ssh/id_ed25519")]);
        let keys = dot_ssh_pub_keys(home.path()).unwrap();
        assert_eq!(
            keys,
            vec![
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG me@host".to_string(),
                "ssh-ed25519-cert-v01@openssh.com AAAAB3 cert".to_string(),
            ]
        );
        let none = tempfile::tempdir().unwrap();
        assert!(dot_ssh_identities(none.path()).unwrap().is_empty());
        assert!(dot_ssh_pub_keys(none.path()).unwrap().is_empty());
    }

    #[test]
    fn ssh_config_with_every_flag() {
        let home = home_with_keys();
        let ids = dot_ssh_identities(home.path()).unwrap();
        let mut opts = common_opts_with(Path::new("/lima/_config/user"), &ids);
        opts.extend(
            instance_opts(
                Path::new("/lima/vm"),
                Path::new("/k"),
                "alice",
                &SshFlags {
                    load_dot_ssh_pub_keys: false,
                    forward_agent: true,
                    forward_x11: true,
                    forward_x11_trusted: true,
                },
            )
            .unwrap()
            .into_iter()
            .skip_while(|o| !o.starts_with("User=")),
        );
        let text = format_config("vm", "127.0.0.1", 40022, &opts)
            .unwrap()
            .replace(&home.path().display().to_string(), "HOME");
        insta::assert_snapshot!(text);
        // ssh itself reads the options back.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh.config");
        std::fs::write(
            &path,
            format_config("vm", "127.0.0.1", 40022, &opts).unwrap(),
        )
        .unwrap();
        let out = Command::new("ssh")
            .arg("-G")
            .args(args_from_config(&path, "vm"))
            .output()
            .unwrap();
        let g = String::from_utf8_lossy(&out.stdout);
        for want in [
            "forwardagent yes",
            "forwardx11 yes",
            "forwardx11trusted yes",
        ] {
            assert!(g.lines().any(|l| l == want), "missing {want:?} in\n{g}");
        }
        assert!(
            g.lines()
                .any(|l| l == format!("identityfile {}", ids[0].display())),
            "{g}"
        );
    }

    #[test]
    fn flags_default_off() {
        let opts = instance_opts(
            Path::new("/lima/vm"),
            Path::new("/k"),
            "a",
            &SshFlags::default(),
        )
        .unwrap();
        assert!(!opts.iter().any(|o| o.starts_with("Forward")), "{opts:?}");
        let y = limatype::LimaYaml::from_yaml("ssh:\n  forwardAgent: true\n").unwrap();
        assert!(SshFlags::from_config(&y).forward_agent);
        assert!(!SshFlags::from_config(&y).forward_x11);
    }
}
