//! The edit flags of `limactl create`/`start`/`edit` (`--cpus`, `--mount`, ...) as yq
//! expressions, in upstream's order and with upstream's texts
//! (`cmd/limactl/editflags/editflags.go`), so that a flag means what `--set EXPR` would.

use crate::YqError;

/// The flags as given (`None`/empty: not given). Filled by the CLI.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EditFlags {
    pub cpus: Option<i64>,
    pub dns: Vec<std::net::IpAddr>,
    /// GiB, as written (`--memory 1.5`).
    pub memory: Option<String>,
    pub mount: Vec<String>,
    pub mount_only: Vec<String>,
    pub mount_none: bool,
    pub mount_type: Option<String>,
    pub vm_type: Option<String>,
    pub mount_inotify: Option<bool>,
    pub mount_writable: Option<bool>,
    pub network: Vec<String>,
    pub nested_virt: Option<bool>,
    pub rosetta: Option<bool>,
    pub set: Vec<String>,
    pub param: Vec<String>,
    pub video: Option<bool>,
    pub ssh_port: Option<u16>,
    pub arch: Option<String>,
    pub containerd: Option<String>,
    /// GiB, as written.
    pub disk: Option<String>,
    pub plain: Option<bool>,
    pub port_forward: Vec<String>,
    pub shell: Option<String>,
}

/// The result: expressions, and warnings for the user (upstream logs them).
#[derive(Debug, Default, PartialEq)]
pub struct Translated {
    pub exprs: Vec<String>,
    pub warnings: Vec<String>,
}

fn flag_err(flag: &'static str, detail: impl Into<String>) -> YqError {
    YqError::Flag {
        flag,
        detail: detail.into(),
    }
}

/// Go's `%q` for the strings we quote: a JSON string literal is the same for printable text.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A `--mount` path as upstream's `localpathutil.Expand`: `~` and `~/x` become the home,
/// relative paths absolute (against `cwd`).
fn expand(path: &str, home: &str, cwd: &std::path::Path) -> Result<String, YqError> {
    if path.is_empty() {
        return Err(flag_err("mount", "empty path"));
    }
    let p = if path == "~" {
        home.to_string()
    } else if let Some(rest) = path.strip_prefix("~/") {
        format!("{}/{rest}", home.trim_end_matches('/'))
    } else if path.starts_with('~') {
        return Err(flag_err(
            "mount",
            format!("{path:?}: ~USER is not supported, use an absolute path"),
        ));
    } else if std::path::Path::new(path).is_absolute() {
        path.to_string()
    } else {
        cwd.join(path).display().to_string()
    };
    Ok(p)
}

fn mount_list(ss: &[String], home: &str, cwd: &std::path::Path) -> Result<String, YqError> {
    let mut mounts = vec![];
    for s in ss {
        let writable = s.ends_with(":w");
        let loc = expand(s.strip_suffix(":w").unwrap_or(s), home, cwd)?;
        mounts.push(format!(
            r#"{{"location": {}, "mountPoint": {}, "writable": {writable}}}"#,
            q(&loc),
            q(&loc)
        ));
    }
    Ok(format!("[{}]", mounts.join(",")))
}

/// `HOST:GUEST[,static=BOOL]` as upstream's `ParsePortForward`.
pub fn parse_port_forward(spec: &str) -> Result<(String, String, bool), YqError> {
    let parts: Vec<&str> = spec.split(',').collect();
    if parts.len() > 2 {
        return Err(flag_err(
            "port-forward",
            format!("invalid port forward format {spec:?}, expected HOST:GUEST or HOST:GUEST,static=true"),
        ));
    }
    let ports: Vec<&str> = parts[0].trim().split(':').collect();
    if ports.len() != 2 {
        return Err(flag_err(
            "port-forward",
            format!(
                "invalid port forward format {:?}, expected HOST:GUEST",
                parts[0]
            ),
        ));
    }
    let mut is_static = false;
    if let Some(p) = parts.get(1) {
        let p = p.trim();
        let Some(v) = p.strip_prefix("static=") else {
            return Err(flag_err(
                "port-forward",
                format!("invalid parameter {p:?}, expected `static=` followed by a boolean value"),
            ));
        };
        is_static = parse_go_bool(v).ok_or_else(|| {
            flag_err(
                "port-forward",
                format!("invalid value for static parameter: {v:?}"),
            )
        })?;
    }
    Ok((
        ports[0].trim().to_string(),
        ports[1].trim().to_string(),
        is_static,
    ))
}

/// A flag upstream applies to new instances only: warned about and skipped otherwise.
fn only_new(
    t: &mut Translated,
    new_instance: bool,
    flag: &str,
    value: String,
    expr: Result<String, YqError>,
) -> Result<(), YqError> {
    if new_instance {
        t.exprs.push(expr?);
    } else {
        t.warnings.push(format!(
            "`--{flag}` is not applicable to an existing instance (Hint: create a new instance with `limactl create --{flag}={value} --name=NAME`)"
        ));
    }
    Ok(())
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Upstream's float formatting of `--memory`/`--disk` (`%s` of a float32): `2` for 2.0.
fn gib(flag: &'static str, v: &str) -> Result<String, YqError> {
    let f: f32 = v
        .trim()
        .parse()
        .map_err(|_| flag_err(flag, format!("{v:?} is not a number of GiB")))?;
    if !f.is_finite() || f < 0.0 {
        return Err(flag_err(flag, format!("{v:?} is not a number of GiB")));
    }
    Ok(format!("{f}"))
}

impl EditFlags {
    /// No flag was given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The expressions, in upstream's order. `new_instance`: flags that only make sense for a
    /// new instance (`--arch`, `--containerd`, `--plain`) are warned about and skipped
    /// otherwise. `params`: the template's `param:` keys (for `--param`). `home`/`cwd`: to
    /// expand `--mount` paths.
    pub fn expressions(
        &self,
        new_instance: bool,
        params: &[String],
        home: &str,
        cwd: &std::path::Path,
    ) -> Result<Translated, YqError> {
        let mut t = Translated::default();
        if let Some(n) = self.cpus {
            if n < 0 {
                return Err(flag_err(
                    "cpus",
                    "invalid value for number of cpus, must be >= 0",
                ));
            }
            t.exprs.push(format!(".cpus = {n}"));
        }
        if !self.dns.is_empty() {
            let ips: Vec<String> = self.dns.iter().map(|ip| format!("\"{ip}\"")).collect();
            t.exprs.push(format!(
                ".dns += [{}] | .dns |= unique | .hostResolver.enabled=false",
                ips.join(",")
            ));
            t.warnings.push(format!(
                "Disabling HostResolver, as custom DNS addresses ({}) are specified",
                self.dns
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        if let Some(m) = &self.memory {
            t.exprs
                .push(format!(".memory = \"{}GiB\"", gib("memory", m)?));
        }
        if !self.mount.is_empty() {
            if !self.mount_only.is_empty() {
                return Err(flag_err(
                    "mount",
                    "flag `--mount` conflicts with `--mount-only`",
                ));
            }
            let mut ss = self.mount.clone();
            ss.reverse();
            t.exprs.push(format!(
                ".mounts = {} + .mounts",
                mount_list(&ss, home, cwd)?
            ));
        }
        if !self.mount_only.is_empty() {
            t.exprs.push(format!(
                ".mounts = {}",
                mount_list(&self.mount_only, home, cwd)?
            ));
        }
        if self.mount_none {
            for (name, v) in [("mount", &self.mount), ("mount-only", &self.mount_only)] {
                if !v.is_empty() {
                    return Err(flag_err(
                        "mount-none",
                        format!("flag `--mount-none` conflicts with `{name}`"),
                    ));
                }
            }
            t.exprs.push(".mounts = null".into());
        }
        if let Some(v) = &self.mount_type {
            t.exprs.push(format!(".mountType = {}", q(v)));
        }
        if let Some(v) = &self.vm_type {
            t.exprs.push(format!(".vmType = {}", q(v)));
        }
        if let Some(b) = self.mount_inotify {
            t.warnings.push("`--mount-inotify` is experimental".into());
            t.exprs.push(format!(".mountInotify = {b}"));
        }
        if let Some(b) = self.mount_writable {
            t.exprs.push(format!(".mounts[].writable = {b}"));
        }
        if !self.network.is_empty() {
            let mut nets = vec![];
            for s in &self.network {
                if s == "vzNAT" {
                    nets.push(r#"{"vzNAT": true}"#.to_string());
                } else if let Some(n) = s.strip_prefix("lima:") {
                    nets.push(format!(r#"{{"lima": {}}}"#, q(n)));
                } else {
                    return Err(flag_err(
                        "network",
                        format!("network name must be `vzNAT` or `lima:*`, got {s:?}"),
                    ));
                }
            }
            t.exprs.push(format!(
                ".networks += [{}] | .networks |= unique_by(.lima)",
                nets.join(",")
            ));
        }
        if let Some(b) = self.nested_virt {
            t.exprs.push(format!(".nestedVirtualization = {b}"));
        }
        if let Some(b) = self.rosetta {
            t.exprs.push(format!(
                ".vmOpts.vz.rosetta.enabled = {b} | .vmOpts.vz.rosetta.binfmt = {b}"
            ));
        }
        t.exprs.extend(self.set.iter().cloned());
        for p in &self.param {
            let Some((k, v)) = p.split_once('=') else {
                return Err(flag_err(
                    "param",
                    format!("invalid parameter {p:?}, expected NAME=VALUE"),
                ));
            };
            if !params.iter().any(|x| x == k) {
                return Err(flag_err(
                    "param",
                    format!("template does not define param {k:?}"),
                ));
            }
            t.exprs.push(format!(".param[{}] = {}", q(k), q(v)));
        }
        if let Some(b) = self.video {
            let display = if b { "default" } else { "none" };
            t.exprs.push(format!(".video.display = \"{display}\""));
        }
        if let Some(p) = self.ssh_port {
            t.exprs.push(format!(".ssh.localPort = {p}"));
        }
        if let Some(a) = &self.arch {
            only_new(
                &mut t,
                new_instance,
                "arch",
                a.clone(),
                Ok(format!(".arch = {}", q(a))),
            )?;
        }
        if let Some(c) = &self.containerd {
            let e = match c.as_str() {
                "user" => Ok(".containerd.user = true | .containerd.system = false".to_string()),
                "system" => Ok(".containerd.user = false | .containerd.system = true".to_string()),
                "user+system" | "system+user" => {
                    Ok(".containerd.user = true | .containerd.system = true".to_string())
                }
                "none" => Ok(".containerd.user = false | .containerd.system = false".to_string()),
                _ => Err(flag_err(
                    "containerd",
                    format!("expected one of [`user`, `system`, `user+system`, `none`], got {c:?}"),
                )),
            };
            only_new(&mut t, new_instance, "containerd", c.clone(), e)?;
        }
        if let Some(d) = &self.disk {
            t.exprs.push(format!(".disk= \"{}GiB\"", gib("disk", d)?));
        }
        if let Some(b) = self.plain {
            only_new(
                &mut t,
                new_instance,
                "plain",
                b.to_string(),
                Ok(format!(".plain = {b}")),
            )?;
        }
        if !self.port_forward.is_empty() {
            let mut ports = vec![];
            for spec in &self.port_forward {
                let (host, guest, st) = parse_port_forward(spec)?;
                ports.push(format!(
                    r#"{{"guestPort": {}, "hostPort": {}, "static": {st}}}"#,
                    q(&guest),
                    q(&host)
                ));
            }
            t.exprs
                .push(format!(".portForwards += [{}]", ports.join(",")));
        }
        if let Some(s) = &self.shell {
            t.exprs.push(format!(".user.shell = {}", q(s)));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn exprs(f: &EditFlags, new: bool) -> Result<Translated, YqError> {
        f.expressions(new, &["ver".to_string()], "/home/u", Path::new("/cwd"))
    }

    /// Every flag at once: the expressions in upstream's order, with upstream's texts.
    #[test]
    fn all_flags_as_upstream() {
        let f = EditFlags {
            cpus: Some(3),
            dns: vec!["8.8.8.8".parse().unwrap(), "1.1.1.1".parse().unwrap()],
            memory: Some("1.5".into()),
            mount: vec!["~/src:w".into(), "rel".into()],
            mount_type: Some("9p".into()),
            vm_type: Some("qemu".into()),
            mount_inotify: Some(true),
            mount_writable: Some(true),
            network: vec!["vzNAT".into(), "lima:shared".into()],
            nested_virt: Some(true),
            rosetta: Some(true),
            set: vec![".a = 1".into()],
            param: vec!["ver=1.2".into()],
            video: Some(false),
            ssh_port: Some(60022),
            arch: Some("aarch64".into()),
            containerd: Some("user+system".into()),
            disk: Some("50".into()),
            plain: Some(true),
            port_forward: vec!["8080:80".into(), "9090:9090,static=true".into()],
            shell: Some("/bin/zsh".into()),
            ..EditFlags::default()
        };
        let t = exprs(&f, true).unwrap();
        let want = [
            ".cpus = 3",
            r#".dns += ["8.8.8.8","1.1.1.1"] | .dns |= unique | .hostResolver.enabled=false"#,
            r#".memory = "1.5GiB""#,
            r#".mounts = [{"location": "/cwd/rel", "mountPoint": "/cwd/rel", "writable": false},{"location": "/home/u/src", "mountPoint": "/home/u/src", "writable": true}] + .mounts"#,
            r#".mountType = "9p""#,
            r#".vmType = "qemu""#,
            ".mountInotify = true",
            ".mounts[].writable = true",
            r#".networks += [{"vzNAT": true},{"lima": "shared"}] | .networks |= unique_by(.lima)"#,
            ".nestedVirtualization = true",
            ".vmOpts.vz.rosetta.enabled = true | .vmOpts.vz.rosetta.binfmt = true",
            ".a = 1",
            r#".param["ver"] = "1.2""#,
            r#".video.display = "none""#,
            ".ssh.localPort = 60022",
            r#".arch = "aarch64""#,
            ".containerd.user = true | .containerd.system = true",
            r#".disk= "50GiB""#,
            ".plain = true",
            r#".portForwards += [{"guestPort": "80", "hostPort": "8080", "static": false},{"guestPort": "9090", "hostPort": "9090", "static": true}]"#,
            r#".user.shell = "/bin/zsh""#,
        ];
        assert_eq!(t.exprs, want);
        // The same, one a line, as a snapshot a reviewer can diff against upstream's.
        insta::assert_snapshot!("all_flags", t.exprs.join("\n"));
        // Each one is a valid expression for our evaluator.
        let doc = serde_json::json!({"mounts": [], "dns": [], "param": {"ver": "1"}});
        crate::eval_one(&crate::join(&t.exprs), &doc).unwrap();
    }

    #[test]
    fn existing_instance_skips_create_only_flags() {
        let f = EditFlags {
            arch: Some("x86_64".into()),
            plain: Some(true),
            cpus: Some(2),
            ..EditFlags::default()
        };
        let t = exprs(&f, false).unwrap();
        assert_eq!(t.exprs, [".cpus = 2"]);
        assert_eq!(t.warnings.len(), 2);
        assert!(t.warnings[0].contains("`--arch` is not applicable to an existing instance"));
    }

    #[test]
    fn bad_values_name_the_flag() {
        let cases: Vec<(EditFlags, &str)> = vec![
            (
                EditFlags {
                    cpus: Some(-1),
                    ..Default::default()
                },
                "--cpus",
            ),
            (
                EditFlags {
                    memory: Some("lots".into()),
                    ..Default::default()
                },
                "--memory",
            ),
            (
                EditFlags {
                    mount: vec!["/a".into()],
                    mount_only: vec!["/b".into()],
                    ..Default::default()
                },
                "conflicts with `--mount-only`",
            ),
            (
                EditFlags {
                    mount_none: true,
                    mount: vec!["/a".into()],
                    ..Default::default()
                },
                "--mount-none",
            ),
            (
                EditFlags {
                    network: vec!["bridged".into()],
                    ..Default::default()
                },
                "`vzNAT` or `lima:*`",
            ),
            (
                EditFlags {
                    param: vec!["nope=1".into()],
                    ..Default::default()
                },
                "does not define param \"nope\"",
            ),
            (
                EditFlags {
                    param: vec!["novalue".into()],
                    ..Default::default()
                },
                "NAME=VALUE",
            ),
            (
                EditFlags {
                    containerd: Some("both".into()),
                    ..Default::default()
                },
                "--containerd",
            ),
            (
                EditFlags {
                    port_forward: vec!["80".into()],
                    ..Default::default()
                },
                "HOST:GUEST",
            ),
            (
                EditFlags {
                    port_forward: vec!["1:2,static=maybe".into()],
                    ..Default::default()
                },
                "static parameter",
            ),
        ];
        for (f, want) in cases {
            let e = exprs(&f, true).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should contain {want}");
        }
    }

    #[test]
    fn numbers_print_as_go_does() {
        assert_eq!(gib("disk", "100").unwrap(), "100");
        assert_eq!(gib("memory", "0.5").unwrap(), "0.5");
    }
}
