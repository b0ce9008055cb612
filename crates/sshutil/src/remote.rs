//! The remote command of `limactl shell`, built as upstream Lima's `shellAction` builds it:
//! `CHANGE_DIR ; exec [env VAR=...] SHELL -l [-c 'COMMAND']`, where CHANGE_DIR is
//! `cd WORKDIR || exit 1` for an explicit `--workdir`, else the host's current directory when
//! a mount shares it (`|| cd HOST_HOME`), else the host's home when mounted, else `false`.
//! Also `--preserve-env`'s filter (upstream's `envutil`): which host variables go along.

use std::path::Path;

use crate::shell_quote;

/// Variables never passed by `--preserve-env` unless `LIMA_SHELLENV_BLOCK` replaces the list
/// (upstream's `defaultBlockList`).
pub const DEFAULT_ENV_BLOCK_LIST: &[&str] = &[
    "BASH*",
    "DISPLAY",
    "DYLD_*",
    "EUID",
    "FPATH",
    "GID",
    "GROUP",
    "HOME",
    "HOSTNAME",
    "LD_*",
    "LOGNAME",
    "OLDPWD",
    "PATH",
    "PWD",
    "SHELL",
    "SHLVL",
    "SSH_*",
    "TERM",
    "TERMINFO",
    "TMPDIR",
    "UID",
    "USER",
    "XAUTHORITY",
    "XDG_*",
    "ZDOTDIR",
    "ZSH*",
    "_*",
];

#[derive(Debug, thiserror::Error)]
pub enum EnvPatternError {
    #[error("invalid {var} pattern: pattern `{pattern}` contains invalid character `{ch}` at position {pos}")]
    InvalidChar {
        var: &'static str,
        pattern: String,
        ch: char,
        pos: usize,
    },
}

/// Where the guest shell starts.
pub struct ChangeDir<'a> {
    /// `--workdir`: must be entered, or the command fails.
    pub workdir: Option<&'a str>,
    /// The host's current directory, if known.
    pub host_cwd: Option<&'a str>,
    /// The host's home directory, if known.
    pub host_home: Option<&'a str>,
    /// Whether a mount of the instance shares a host path (the guest sees it at the same path).
    pub mounted: &'a dyn Fn(&str) -> bool,
    /// wsl2 guests see every host directory.
    pub all_visible: bool,
}

/// The `cd` part of the remote command (upstream's `changeDirCmd`).
pub fn change_dir_command(c: &ChangeDir) -> String {
    if let Some(wd) = c.workdir.filter(|w| !w.is_empty()) {
        return format!("cd {} || exit 1", shell_quote(wd));
    }
    if let Some(cwd) = c.host_cwd {
        if c.all_visible || (c.mounted)(cwd) {
            return match c.host_home {
                Some(home) => format!("cd {} || cd {}", shell_quote(cwd), shell_quote(home)),
                None => format!("cd {}", shell_quote(cwd)),
            };
        }
    }
    match c.host_home {
        Some(home) if (c.mounted)(home) => format!("cd {}", shell_quote(home)),
        _ => "false".to_string(),
    }
}

/// The whole remote command. `shell` is `--shell` (else the guest user's configured shell,
/// else the login shell `"$SHELL"`); `env` the `NAME=value` pairs `--preserve-env` passes;
/// `command` the words to run (a login shell when empty). Leading `NAME=value` words of the
/// command keep their `=` unquoted, so they stay assignments.
pub fn remote_script(
    change_dir: &str,
    shell: Option<&str>,
    env: &[String],
    command: &[String],
) -> String {
    let shell = match shell {
        Some(s) => shell_quote(s),
        None => "\"$SHELL\"".to_string(),
    };
    let mut env_prefix = String::new();
    if !env.is_empty() {
        env_prefix.push_str("env ");
        for e in env {
            env_prefix.push_str(&shell_quote(e));
            env_prefix.push(' ');
        }
    }
    // -l works in bash, zsh and FreeBSD sh (--login does not in the last).
    let mut script = format!("{change_dir} ; exec {env_prefix}{shell} -l");
    if !command.is_empty() {
        let mut in_env = true;
        let words: Vec<String> = command
            .iter()
            .map(|w| match w.split_once('=') {
                Some((name, value)) if in_env => format!("{name}={}", shell_quote(value)),
                _ => {
                    in_env = false;
                    shell_quote(w)
                }
            })
            .collect();
        script.push_str(&format!(" -c {}", shell_quote(&words.join(" "))));
    }
    script
}

/// Whether host path `path` is inside a mount `location` (`~` is `home`); `/` covers all.
pub fn mount_contains(location: &str, home: Option<&str>, path: &str) -> bool {
    let loc = match (location.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{home}{rest}")
        }
        _ => location.to_string(),
    };
    let resolve = |p: &str| {
        std::fs::canonicalize(p)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_else(|_| p.to_string())
    };
    let (loc, path) = (resolve(&loc), resolve(path));
    let loc = loc.trim_end_matches('/');
    loc.is_empty() || path == loc || Path::new(&path).starts_with(loc)
}

fn check_patterns(var: &'static str, list: &str) -> Result<Vec<String>, EnvPatternError> {
    let patterns: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    for p in &patterns {
        if let Some((pos, ch)) = p
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '*'))
        {
            return Err(EnvPatternError::InvalidChar {
                var,
                pattern: p.clone(),
                ch,
                pos,
            });
        }
    }
    Ok(patterns)
}

/// The block list from `LIMA_SHELLENV_BLOCK`'s value: none → the default; `+A,B` → the
/// default and A, B; `A,B` → only A, B.
pub fn block_list(value: Option<&str>) -> Result<Vec<String>, EnvPatternError> {
    let default = || DEFAULT_ENV_BLOCK_LIST.iter().map(|s| s.to_string());
    match value.filter(|v| !v.is_empty()) {
        None => Ok(default().collect()),
        Some(v) => {
            let extra = check_patterns("LIMA_SHELLENV_BLOCK", v.trim_start_matches('+'))?;
            if v.starts_with('+') {
                Ok(default().chain(extra).collect())
            } else {
                Ok(extra)
            }
        }
    }
}

/// The allow list from `LIMA_SHELLENV_ALLOW`'s value (exempts names from the block list).
pub fn allow_list(value: Option<&str>) -> Result<Vec<String>, EnvPatternError> {
    check_patterns("LIMA_SHELLENV_ALLOW", value.unwrap_or(""))
}

/// `*` matches any run of characters; everything else itself.
fn matches(name: &str, pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return name == pattern;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The `NAME=value` entries of `env` that `--preserve-env` passes: allowed ones always, then
/// all but the blocked ones.
pub fn filter_env(env: &[(String, String)], allow: &[String], block: &[String]) -> Vec<String> {
    env.iter()
        .filter(|(name, _)| {
            allow.iter().any(|p| matches(name, p)) || !block.iter().any(|p| matches(name, p))
        })
        .map(|(n, v)| format!("{n}={v}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn change_dir_as_upstream() {
        let mounted_home = |p: &str| p.starts_with("/home/u");
        let none = |_: &str| false;
        let c = |workdir, cwd, mounted: &dyn Fn(&str) -> bool| {
            change_dir_command(&ChangeDir {
                workdir,
                host_cwd: cwd,
                host_home: Some("/home/u"),
                mounted,
                all_visible: false,
            })
        };
        assert_eq!(c(Some("/tmp/a b"), None, &none), "cd '/tmp/a b' || exit 1");
        assert_eq!(
            c(None, Some("/home/u/src"), &mounted_home),
            "cd /home/u/src || cd /home/u"
        );
        assert_eq!(c(None, Some("/srv"), &mounted_home), "cd /home/u");
        assert_eq!(c(None, Some("/srv"), &none), "false");
        assert_eq!(c(None, None, &none), "false");
    }

    #[test]
    fn remote_script_as_upstream() {
        assert_eq!(
            remote_script("cd /home/u || cd /home/u", None, &[], &[]),
            "cd /home/u || cd /home/u ; exec \"$SHELL\" -l"
        );
        assert_eq!(
            remote_script("false", Some("/bin/bash"), &[], &words(&["uname", "-a"])),
            "false ; exec /bin/bash -l -c 'uname -a'"
        );
        // Leading assignments keep `=` unquoted; quotes inside are quoted again for -c.
        assert_eq!(
            remote_script("false", None, &[], &words(&["FOO=a b", "echo", "it's"])),
            r#"false ; exec "$SHELL" -l -c 'FOO='"'"'a b'"'"' echo '"'"'it'"'"'"'"'"'"'"'"'s'"'"''"#
        );
        assert_eq!(
            remote_script("false", None, &words(&["A=1", "B=x y"]), &[]),
            "false ; exec env A=1 'B=x y' \"$SHELL\" -l"
        );
    }

    #[test]
    fn env_filter_as_upstream() {
        let env: Vec<(String, String)> = [
            ("PATH", "/bin"),
            ("HOME", "/h"),
            ("SSH_AUTH_SOCK", "/s"),
            ("_X", "1"),
            ("FOO", "bar"),
            ("XDG_RUNTIME_DIR", "/r"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let block = block_list(None).unwrap();
        assert_eq!(filter_env(&env, &[], &block), ["FOO=bar"]);
        let allow = allow_list(Some("SSH_*")).unwrap();
        assert_eq!(
            filter_env(&env, &allow, &block),
            ["SSH_AUTH_SOCK=/s", "FOO=bar"]
        );
        let block = block_list(Some("+FOO")).unwrap();
        assert!(filter_env(&env, &[], &block).is_empty());
        let block = block_list(Some("FOO,HOME")).unwrap();
        assert_eq!(filter_env(&env, &[], &block).len(), 4);
        assert_eq!(
            block_list(Some("A-B")).unwrap_err().to_string(),
            "invalid LIMA_SHELLENV_BLOCK pattern: pattern `A-B` contains invalid character `-` at position 1"
        );
    }

    #[test]
    fn mounts_cover_paths() {
        assert!(mount_contains("~", Some("/nonexist/h"), "/nonexist/h/x"));
        assert!(!mount_contains("~", Some("/nonexist/h"), "/nonexist/hx"));
        assert!(mount_contains("/", None, "/anything"));
        assert!(!mount_contains("/nonexist/a", None, "/nonexist/b"));
    }
}
