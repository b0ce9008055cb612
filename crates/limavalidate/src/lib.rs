//! `limavalidate` — layer 2: driver-independent validation of a lima.yaml.
//!
//! [`validate`] checks a config after `limadefaults::fill` and returns every problem at once,
//! each naming its field path (`portForwards[2].guestPortRange`). [`LineIndex`] maps such a
//! path to its line in the YAML text the value came from. The rules follow upstream Lima's
//! `limayaml.Validate`; checks that need the driver or `_config/networks.yaml` (which named
//! networks exist) are left to the driver and the network layer.

mod lines;

use std::collections::BTreeMap;

use limatype::{ByteSize, LimaYaml, LIMA_COMPAT_VERSION};

pub use lines::LineIndex;

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path, e.g. `portForwards[2].guestPortRange`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// `major.minor.patch` of a Lima version (`v` prefix, `-suffix`, `.m` ignored as Lima does).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.trim().strip_prefix('v').unwrap_or(v.trim());
    let v = v.split(['-', '+']).next().unwrap_or_default();
    let v = v.strip_suffix(".m").unwrap_or(v);
    let mut parts = v.split('.').map(|p| {
        (!p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
    });
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Checks on a config as written, before defaults hide them: Lima's fill turns `cpus: 0`
/// into the default, but a config that says 0 CPUs is a mistake worth reporting.
pub fn validate_raw(config: &LimaYaml) -> Vec<Problem> {
    let mut p = Problems::default();
    if config.cpus == Some(0) {
        p.add(
            "cpus",
            format!(
                "must be at least 1, got {}",
                config.cpus.unwrap_or_default()
            ),
        );
    }
    if let Some(m) = config.memory.as_deref().filter(|m| m.trim().is_empty()) {
        p.add("memory", format!("must be a size like \"4GiB\", got {m:?}"));
    }
    p.0
}

fn is_abs(p: &str) -> bool {
    p.starts_with('/')
}

/// `guestPort`/`hostPort` (`side` is `guest` or `host`): unset beside a socket, equal to the
/// start of its range, a valid port.
fn check_single_port(
    p: &mut Problems,
    f: &str,
    side: &str,
    port: Option<i64>,
    socket: &str,
    range_start: i64,
) {
    let Some(port) = port.filter(|p| *p != 0) else {
        return;
    };
    let field = format!("{f}.{side}Port");
    if !socket.is_empty() {
        p.add(
            field.clone(),
            format!("must be unset when `{side}Socket` is set"),
        );
    }
    if port != range_start {
        p.add(field.clone(), format!("must match `{side}PortRange[0]`"));
    }
    check_port(p, &field, port);
}

fn check_port(p: &mut Problems, field: &str, port: i64) {
    let msg = match port {
        i64::MIN..=-1 => "must be > 0",
        0 => "must be set",
        22 => "must not be 22",
        65536.. => "must be < 65536",
        _ => return,
    };
    p.add(field, format!("{msg}, got {port}"));
}

fn check_digest(p: &mut Problems, field: &str, digest: &str) {
    let Some((algo, hex)) = digest.split_once(':') else {
        p.add(field, format!("{digest:?} must look like \"sha256:<hex>\""));
        return;
    };
    let want = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            p.add(
                field,
                format!("unsupported digest algorithm {algo:?} (sha256, sha384, sha512)"),
            );
            return;
        }
    };
    if hex.len() != want
        || !hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        p.add(
            field,
            format!("{algo} digest must be {want} lowercase hex characters"),
        );
    }
}

fn check_file(
    p: &mut Problems,
    field: &str,
    location: &str,
    arch: Option<&str>,
    digest: Option<&str>,
) {
    if location.is_empty() {
        p.add(format!("{field}.location"), "must be set");
    }
    match arch {
        Some(a) if limatype::ARCH_TYPES.contains(&a) => {}
        Some(a) => p.add(
            format!("{field}.arch"),
            format!("must be one of {:?}, got {a:?}", limatype::ARCH_TYPES),
        ),
        None => p.add(format!("{field}.arch"), "must be set"),
    }
    if let Some(d) = digest.filter(|d| !d.is_empty()) {
        check_digest(p, &format!("{field}.digest"), d);
    }
}

/// The longest guest user name (`useradd`'s limit).
pub const MAX_USER_NAME: usize = 32;

/// Lima's rule for guest user names, `^[a-z_][a-z0-9_-]*$` (what `useradd` accepts, without
/// the trailing `$`), at most [`MAX_USER_NAME`] characters.
pub fn valid_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_USER_NAME
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A name a shell can export: `^[A-Za-z_][A-Za-z0-9_]*$`.
fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The most CPUs a config may ask for: far above any host Lima runs on, and what QEMU's
/// largest machine types allow.
pub const MAX_CPUS: i64 = 1024;

fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 76
        && s.split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Validates a filled config (see `limadefaults::fill`). Fields still unset are skipped, so an
/// unfilled config can be checked too, with fewer guarantees. `vmType` only has to be a
/// well-formed driver name: which drivers exist is the registry's business. Returns every
/// problem found.
pub fn validate(y: &LimaYaml) -> Vec<Problem> {
    let mut problems = Problems::default();
    let p = &mut problems;
    let os = y.os.as_deref().unwrap_or("Linux");
    let arch = y.arch.as_deref().unwrap_or_default();
    // The order of the groups is the order problems are reported in.
    validate_base_and_version(p, y);
    validate_platform(p, y, os, arch);
    validate_user(p, y, os);
    validate_images(p, y);
    validate_resources(p, y);
    validate_additional_disks(p, y);
    validate_mounts(p, y, os);
    validate_ssh(p, y);
    validate_mount_type(p, y);
    validate_provision(p, y, os);
    validate_containerd(p, y);
    validate_probes(p, y);
    validate_port_forwards(p, y);
    validate_copy_to_host(p, y);
    validate_dns(p, y);
    validate_networks(p, y);
    validate_param(p, y);
    validate_env(p, y);
    validate_sudo(p, y, os);
    validate_devices_and_timezone(p, y, arch);
    problems.0
}

/// `base` must be embedded; `minimumLimaVersion` must not exceed ours.
fn validate_base_and_version(p: &mut Problems, y: &LimaYaml) {
    if y.base.as_ref().is_some_and(|b| !b.is_empty()) {
        p.add("base", "must be resolved (embedded) before validation");
    }
    if let Some(v) = &y.minimum_lima_version {
        match parse_version(v) {
            None => p.add(
                "minimumLimaVersion",
                format!("must be a semver value like \"1.1.0\", got {v:?}"),
            ),
            Some(want) => {
                let have = parse_version(LIMA_COMPAT_VERSION).unwrap_or_default();
                if want > have {
                    p.add(
                        "minimumLimaVersion",
                        format!("template requires Lima {v}; this implementation is compatible with Lima {LIMA_COMPAT_VERSION}"),
                    );
                }
            }
        }
    }
}

/// `os`, `arch` and `vmType` (only its form: the registry knows which drivers exist).
fn validate_platform(p: &mut Problems, y: &LimaYaml, os: &str, arch: &str) {
    if !limatype::OS_TYPES.contains(&os) {
        p.add(
            "os",
            format!("must be one of {:?}, got {os:?}", limatype::OS_TYPES),
        );
    }
    if os == "Windows" {
        if y.vm_type.as_deref().is_some_and(|v| v != "qemu") {
            p.add("vmType", "Windows guests are only supported with \"qemu\"");
        }
        if arch != "x86_64" && arch != "aarch64" {
            p.add(
                "arch",
                "Windows guests are only supported on x86_64 and aarch64",
            );
        }
    }
    if let Some(a) = &y.arch {
        if !limatype::ARCH_TYPES.contains(&a.as_str()) {
            p.add(
                "arch",
                format!("must be one of {:?}, got {a:?}", limatype::ARCH_TYPES),
            );
        }
    }
    if let Some(v) = y.vm_type.as_deref() {
        if !limatype::valid_driver_name(v) {
            p.add(
                "vmType",
                format!("must be a driver name (ASCII letters, digits, `-`, `_`), got {v:?}"),
            );
        }
    }
}

/// `user`: shell, name, uid and home.
fn validate_user(p: &mut Problems, y: &LimaYaml, os: &str) {
    if let Some(shell) = y.user.as_ref().and_then(|u| u.shell.as_deref()) {
        if os == "Windows" {
            let base = shell
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or(shell)
                .to_ascii_lowercase();
            if !["cmd.exe", "powershell.exe", "pwsh.exe"].contains(&base.as_str()) {
                p.add(
                    "user.shell",
                    format!(
                        "must be cmd.exe, powershell.exe or pwsh.exe on Windows, got {shell:?}"
                    ),
                );
            }
        } else if !is_abs(shell) {
            p.add(
                "user.shell",
                format!("must be an absolute path, got {shell:?}"),
            );
        }
    }
    if let Some(u) = &y.user {
        if let Some(name) = &u.name {
            if name.is_empty() {
                p.add("user.name", "must not be empty");
            } else if os == "Windows" {
                if name.chars().any(char::is_control) {
                    p.add(
                        "user.name",
                        format!("must not contain control characters, got {name:?}"),
                    );
                }
            } else if !valid_user_name(name) {
                p.add(
                    "user.name",
                    format!(
                        "must be a user name (lowercase letters, digits, `_` and `-`, starting \
                         with a letter or `_`, at most {MAX_USER_NAME} characters), got {name:?}"
                    ),
                );
            }
        }
        if let Some(uid) = u.uid {
            if !(0..=u32::MAX as i64).contains(&uid) {
                p.add(
                    "user.uid",
                    format!("must be between 0 and {}, got {uid}", u32::MAX),
                );
            }
        }
        if let Some(home) = &u.home {
            if !is_abs(home) && os != "Windows" {
                p.add(
                    "user.home",
                    format!("must be an absolute path, got {home:?}"),
                );
            }
        }
    }
}

/// `images` and their kernels and initrds.
fn validate_images(p: &mut Problems, y: &LimaYaml) {
    match &y.images {
        None => p.add("images", "must be set"),
        Some(v) if v.is_empty() => p.add("images", "must be set"),
        Some(images) => {
            for (i, img) in images.iter().enumerate() {
                let f = format!("images[{i}]");
                check_file(
                    p,
                    &f,
                    &img.location,
                    img.arch.as_deref(),
                    img.digest.as_deref(),
                );
                if let Some(k) = &img.kernel {
                    check_file(
                        p,
                        &format!("{f}.kernel"),
                        &k.location,
                        k.arch.as_deref(),
                        k.digest.as_deref(),
                    );
                    if k.arch != img.arch {
                        p.add(
                            format!("{f}.kernel.arch"),
                            format!(
                                "must match the image arch {:?}",
                                img.arch.as_deref().unwrap_or_default()
                            ),
                        );
                    }
                }
                if let Some(k) = &img.initrd {
                    check_file(
                        p,
                        &format!("{f}.initrd"),
                        &k.location,
                        k.arch.as_deref(),
                        k.digest.as_deref(),
                    );
                    if k.arch != img.arch {
                        p.add(
                            format!("{f}.initrd.arch"),
                            format!(
                                "must match the image arch {:?}",
                                img.arch.as_deref().unwrap_or_default()
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// `cpus`, `memory` and `disk`.
fn validate_resources(p: &mut Problems, y: &LimaYaml) {
    if let Some(c) = y.cpus {
        if c < 1 {
            p.add("cpus", format!("must be at least 1, got {c}"));
        } else if c > MAX_CPUS {
            p.add("cpus", format!("must be at most {MAX_CPUS}, got {c}"));
        }
    }
    for (field, value) in [("memory", &y.memory), ("disk", &y.disk)] {
        if let Some(v) = value {
            match v.parse::<ByteSize>() {
                Err(_) if overflows(v) => p.add(
                    field,
                    format!("{v} is too large: no size can be more than 16EiB"),
                ),
                Err(_) => p.add(field, format!("must be a size like \"4GiB\", got {v:?}")),
                Ok(ByteSize(0)) => p.add(field, "must not be zero"),
                Ok(_) => {}
            }
        }
    }
}

/// Whether `text` is a well-formed size too large to represent (`99999999999PiB`): the same
/// text with a small number parses.
fn overflows(text: &str) -> bool {
    let t = text.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    digits > 0
        && t[..digits].parse::<f64>().is_ok()
        && format!("1{}", &t[digits..]).parse::<ByteSize>().is_ok()
}

/// Checks that need the host: a `memory` larger than all of the host's memory
/// (`host_memory_bytes`; 0 = unknown, not checked) can never be given to the VM.
pub fn validate_for_host(y: &LimaYaml, host_memory_bytes: u64) -> Vec<Problem> {
    let mut p = Problems::default();
    if let Some(v) = &y.memory {
        if let Ok(ByteSize(bytes)) = v.parse::<ByteSize>() {
            if host_memory_bytes > 0 && bytes > host_memory_bytes {
                p.add(
                    "memory",
                    format!(
                        "{} is more than this host's {} of memory",
                        v.trim(),
                        ByteSize(host_memory_bytes)
                    ),
                );
            }
        }
    }
    p.0
}

/// `env`: names a shell can export, values on one line.
fn validate_env(p: &mut Problems, y: &LimaYaml) {
    for (name, value) in y.env.iter().flatten() {
        let field = format!("env.{name}");
        if !valid_env_name(name) {
            p.add(
                &field,
                format!("name must match ^[A-Za-z_][A-Za-z0-9_]*$, got {name:?}"),
            );
        }
        if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
            p.add(
                &field,
                format!("value contains control character {c:?} (values are one line)"),
            );
        }
    }
}

/// `additionalDisks`: valid, unique names.
fn validate_additional_disks(p: &mut Problems, y: &LimaYaml) {
    let mut disk_names = BTreeMap::new();
    for (i, d) in y.additional_disks.iter().flatten().enumerate() {
        if !valid_identifier(&d.name) {
            p.add(format!("additionalDisks[{i}].name"), format!("{:?} is not a valid disk name (letters, digits, `.`, `_`, `-`; at most 76 characters)", d.name));
        }
        if let Some(prev) = disk_names.insert(d.name.clone(), i) {
            p.add(
                format!("additionalDisks[{i}].name"),
                format!("{:?} is already used by additionalDisks[{prev}]", d.name),
            );
        }
    }
}

/// `mounts`: locations, mount points and their 9p/virtiofs options.
fn validate_mounts(p: &mut Problems, y: &LimaYaml, os: &str) {
    let home = y
        .user
        .as_ref()
        .and_then(|u| u.home.clone())
        .unwrap_or_default();
    for (i, m) in y.mounts.iter().flatten().enumerate() {
        let f = format!("mounts[{i}]");
        if !is_abs(&m.location) && !m.location.starts_with('~') {
            p.add(
                format!("{f}.location"),
                format!("must be an absolute path, got {:?}", m.location),
            );
        } else if is_abs(&m.location) {
            if let Ok(meta) = std::fs::metadata(&m.location) {
                if !meta.is_dir() {
                    p.add(
                        format!("{f}.location"),
                        format!("{:?} is not a directory", m.location),
                    );
                }
            }
        }
        if let Some(mp) = m.mount_point.as_deref() {
            if [
                "/", "/bin", "/dev", "/etc", "/home", "/opt", "/sbin", "/tmp", "/usr", "/var",
            ]
            .contains(&mp)
            {
                p.add(
                    format!("{f}.mountPoint"),
                    format!("must not be a system path such as /etc or /usr, got {mp:?}"),
                );
            } else if !home.is_empty() && mp == home {
                p.add(
                    format!("{f}.mountPoint"),
                    format!("{mp:?} is the guest user's home directory"),
                );
            }
            if mp.starts_with('~') {
                p.add(format!("{f}.mountPoint"), "must not start with `~`");
            } else if !mp.is_empty() && !is_abs(mp) && mp != m.location && os != "Windows" {
                p.add(
                    format!("{f}.mountPoint"),
                    format!("must be an absolute path, got {mp:?}"),
                );
            }
        }
        if let Some(msize) = m.nine_p.as_ref().and_then(|n| n.msize.as_deref()) {
            if msize.parse::<ByteSize>().is_err() {
                p.add(
                    format!("{f}.9p.msize"),
                    format!("must be a size like \"128KiB\", got {msize:?}"),
                );
            }
        }
        if let Some(sm) = m.nine_p.as_ref().and_then(|n| n.security_model.as_deref()) {
            if !["passthrough", "mapped-xattr", "mapped-file", "none"].contains(&sm) {
                p.add(
                    format!("{f}.9p.securityModel"),
                    format!("must be passthrough, mapped-xattr, mapped-file or none, got {sm:?}"),
                );
            }
        }
        if let Some(q) = m.virtiofs.as_ref().and_then(|v| v.queue_size) {
            if q < 1 {
                p.add(
                    format!("{f}.virtiofs.queueSize"),
                    format!("must be at least 1, got {q}"),
                );
            }
        }
    }
}

/// `ssh.localPort` (0 means "pick one").
fn validate_ssh(p: &mut Problems, y: &LimaYaml) {
    if let Some(port) = y.ssh.as_ref().and_then(|s| s.local_port) {
        if port != 0 {
            check_port(p, "ssh.localPort", port);
        }
    }
}

/// `mountType` and `mountTypesUnsupported`.
fn validate_mount_type(p: &mut Problems, y: &LimaYaml) {
    if let Some(mt) = y.mount_type.as_deref() {
        if !limatype::MOUNT_TYPES.contains(&mt) {
            p.add(
                "mountType",
                format!("must be one of {:?}, got {mt:?}", limatype::MOUNT_TYPES),
            );
        }
        if y.mount_types_unsupported.iter().flatten().any(|u| u == mt) {
            p.add(
                "mountType",
                format!("{mt:?} is listed in `mountTypesUnsupported`"),
            );
        }
    }
}

/// `containerd.archives`, when containerd is enabled.
fn validate_containerd(p: &mut Problems, y: &LimaYaml) {
    let containerd = y.containerd.as_ref();
    if containerd.is_some_and(|c| c.user == Some(true) || c.system == Some(true)) {
        let archives = containerd.and_then(|c| c.archives.as_ref());
        if archives.is_none_or(|a| a.is_empty()) {
            p.add(
                "containerd.archives",
                "must be provided when containerd is enabled",
            );
        }
        for (i, a) in archives.into_iter().flatten().enumerate() {
            check_file(
                p,
                &format!("containerd.archives[{i}]"),
                &a.location,
                a.arch.as_deref(),
                a.digest.as_deref(),
            );
        }
    }
}

/// `probes`: embedded scripts and known modes.
fn validate_probes(p: &mut Problems, y: &LimaYaml) {
    for (i, probe) in y.probes.iter().flatten().enumerate() {
        let f = format!("probes[{i}]");
        if probe.file.is_some() {
            p.add(
                format!("{f}.file"),
                "must be embedded as `script` before validation",
            );
        }
        if let Some(s) = &probe.script {
            if !s.starts_with("#!") {
                p.add(format!("{f}.script"), "must start with a '#!' line");
            }
        }
        if let Some(mode) = probe.mode.as_deref() {
            if !limatype::PROBE_MODES.contains(&mode) {
                p.add(
                    format!("{f}.mode"),
                    format!("must be \"readiness\", got {mode:?}"),
                );
            }
        }
    }
}

/// `copyToHost`: absolute paths.
fn validate_copy_to_host(p: &mut Problems, y: &LimaYaml) {
    for (i, c) in y.copy_to_host.iter().flatten().enumerate() {
        let f = format!("copyToHost[{i}]");
        for (key, value) in [("guest", &c.guest), ("host", &c.host)] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                if !is_abs(v) {
                    p.add(
                        format!("{f}.{key}"),
                        format!("must be an absolute path, got {v:?}"),
                    );
                }
            }
        }
    }
}

/// `dns` and `hostResolver`.
fn validate_dns(p: &mut Problems, y: &LimaYaml) {
    if y.host_resolver
        .as_ref()
        .is_some_and(|h| h.enabled == Some(true))
        && y.dns.as_ref().is_some_and(|d| !d.is_empty())
    {
        p.add("dns", "must be empty when `hostResolver.enabled` is true");
    }
    for (i, d) in y.dns.iter().flatten().enumerate() {
        if d.parse::<std::net::IpAddr>().is_err() {
            p.add(
                format!("dns[{i}]"),
                format!("must be an IP address, got {d:?}"),
            );
        }
    }
}

/// `param`: names and printable values.
fn validate_param(p: &mut Problems, y: &LimaYaml) {
    for (name, value) in y.param.iter().flatten() {
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            p.add(
                format!("param.{name}"),
                "name must match ^[a-zA-Z][a-zA-Z0-9_]*$",
            );
        }
        if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
            p.add(
                format!("param.{name}"),
                format!("value contains unprintable character {c:?}"),
            );
        }
    }
}

/// `user.passwordlessSudo` against the guest OS, the driver and `plain`.
fn validate_sudo(p: &mut Problems, y: &LimaYaml, os: &str) {
    let sudo = y.user.as_ref().and_then(|u| u.passwordless_sudo);
    if os == "Darwin" && sudo == Some(true) {
        p.add(
            "user.passwordlessSudo",
            "`true` is not supported on macOS guests",
        );
    }
    if y.vm_type.as_deref() == Some("wsl2") && sudo == Some(false) {
        p.add(
            "user.passwordlessSudo",
            "`false` is not supported on WSL2 guests",
        );
    }
    if sudo == Some(false) && os != "Darwin" && y.plain != Some(true) {
        p.add("user.passwordlessSudo", "`false` requires `plain: true`");
    }
}

/// `tpm`, `audio.interface` and `timezone`.
fn validate_devices_and_timezone(p: &mut Problems, y: &LimaYaml, arch: &str) {
    if y.tpm == Some(true) && !["x86_64", "aarch64", "armv7l", "riscv64"].contains(&arch) {
        p.add("tpm", format!("is not supported on arch {arch:?}"));
    }
    if let Some(iface) = y.audio.as_ref().and_then(|a| a.interface.as_deref()) {
        if !["", "hda", "virtio"].contains(&iface) {
            p.add(
                "audio.interface",
                format!("must be \"hda\" or \"virtio\", got {iface:?}"),
            );
        }
    }
    if let Some(tz) = y.timezone.as_deref() {
        if tz.contains("..") || tz.starts_with('/') || tz.chars().any(char::is_whitespace) {
            p.add(
                "timezone",
                format!("must be a zone name like \"Europe/Paris\", got {tz:?}"),
            );
        }
    }
}

/// `provision`: embedded scripts, known modes, and per step the fields its mode allows.
fn validate_provision(p: &mut Problems, y: &LimaYaml, os: &str) {
    for (i, prov) in y.provision.iter().flatten().enumerate() {
        let f = format!("provision[{i}]");
        if prov.file.is_some() {
            p.add(
                format!("{f}.file"),
                "must be embedded as `script` before validation",
            );
        }
        let mode = prov.mode.as_deref().unwrap_or("system");
        if !limatype::PROVISION_MODES.contains(&mode) {
            p.add(
                format!("{f}.mode"),
                format!(
                    "must be one of {:?}, got {mode:?}",
                    limatype::PROVISION_MODES
                ),
            );
            continue;
        }
        check_provision_step(p, &f, prov, mode, os);
    }
}

/// One provision step whose mode is known: the fields its mode allows and requires.
fn check_provision_step(
    p: &mut Problems,
    f: &str,
    prov: &limatype::Provision,
    mode: &str,
    os: &str,
) {
    if mode != "dependency" && prov.skip_default_dependency_resolution.is_some() {
        p.add(
            format!("{f}.skipDefaultDependencyResolution"),
            "can only be set when mode is \"dependency\"",
        );
    }
    if os == "Windows" && ["ansible", "boot", "yq"].contains(&mode) {
        p.add(
            format!("{f}.mode"),
            format!("{mode:?} is not supported on Windows guests"),
        );
    }
    if mode == "data" || mode == "yq" {
        check_provision_file_step(p, f, prov, mode);
    } else {
        check_provision_script_step(p, f, prov, mode);
    }
    if prov.playbook.as_deref().is_some_and(|pb| !pb.is_empty()) {
        if mode != "ansible" {
            p.add(
                format!("{f}.playbook"),
                "can only be set when mode is \"ansible\"",
            );
        }
        if prov.script.as_deref().is_some_and(|s| !s.is_empty()) {
            p.add(
                format!("{f}.script"),
                "must be empty when `playbook` is set",
            );
        }
    }
}

/// A `data` or `yq` step: an absolute `path`, `content` or `expression`, octal `permissions`.
fn check_provision_file_step(p: &mut Problems, f: &str, prov: &limatype::Provision, mode: &str) {
    match prov.path.as_deref() {
        None => p.add(
            format!("{f}.path"),
            format!("must be set when mode is {mode:?}"),
        ),
        Some(path) if !is_abs(path) => p.add(
            format!("{f}.path"),
            format!("must be an absolute path, got {path:?}"),
        ),
        _ => {}
    }
    if mode == "data" && prov.content.is_none() {
        p.add(format!("{f}.content"), "must be set when mode is \"data\"");
    }
    if mode == "yq" && prov.expression.is_none() {
        p.add(format!("{f}.expression"), "must be set when mode is \"yq\"");
    }
    // The guest agent writes YAML and JSON only (upstream's yq has more formats).
    if let (true, Some(path)) = (mode == "yq", prov.path.as_deref()) {
        let format = prov.format.as_deref().unwrap_or("auto");
        if let Err(e) = limayq::provision::file_format(format, path) {
            p.add(format!("{f}.format"), e.to_string());
        }
    }
    if let Some(perm) = prov.permissions.as_deref() {
        if perm.is_empty() || i64::from_str_radix(perm, 8).is_err() {
            p.add(
                format!("{f}.permissions"),
                format!("must be an octal number, got {perm:?}"),
            );
        }
    }
    if mode == "data" && prov.format.is_some() {
        p.add(format!("{f}.format"), "can only be set when mode is \"yq\"");
    }
}

/// A script step (`system`, `user`, `boot`, `dependency`, `ansible`): a script, and none of the
/// file-step fields.
fn check_provision_script_step(p: &mut Problems, f: &str, prov: &limatype::Provision, mode: &str) {
    if prov.script.as_deref().unwrap_or_default().is_empty() && mode != "ansible" {
        p.add(format!("{f}.script"), "must not be empty");
    }
    for (key, set) in [
        ("content", prov.content.is_some()),
        ("overwrite", prov.overwrite.is_some()),
        ("owner", prov.owner.is_some()),
    ] {
        if set {
            p.add(
                format!("{f}.{key}"),
                "can only be set when mode is \"data\"",
            );
        }
    }
    for (key, set) in [
        ("path", prov.path.is_some()),
        ("permissions", prov.permissions.is_some()),
    ] {
        if set {
            p.add(
                format!("{f}.{key}"),
                "can only be set when mode is \"data\" or \"yq\"",
            );
        }
    }
    if prov.format.is_some() {
        p.add(format!("{f}.format"), "can only be set when mode is \"yq\"");
    }
}

/// `portForwards`, rule by rule.
fn validate_port_forwards(p: &mut Problems, y: &LimaYaml) {
    for (i, rule) in y.port_forwards.iter().flatten().enumerate() {
        let f = format!("portForwards[{i}]");
        let e = Ends::of(rule);
        check_forward_ips(p, &f, rule);
        check_forward_ports(p, &f, rule, e);
        check_forward_sockets(p, &f, e);
        check_forward_proto_and_reverse(p, &f, rule, e);
    }
}

/// Both ends of a port forward as the checks see them: sockets ("" = none) and port ranges.
#[derive(Clone, Copy)]
struct Ends<'a> {
    guest_socket: &'a str,
    host_socket: &'a str,
    guest_range: [i64; 2],
    host_range: [i64; 2],
}

impl<'a> Ends<'a> {
    fn of(rule: &'a limatype::PortForward) -> Self {
        let guest_range = rule.guest_port_range.unwrap_or([1, 65535]);
        Ends {
            guest_socket: rule.guest_socket.as_deref().unwrap_or_default(),
            host_socket: rule.host_socket.as_deref().unwrap_or_default(),
            guest_range,
            host_range: rule.host_port_range.unwrap_or(guest_range),
        }
    }
}

/// `guestIP`, `hostIP` and `guestIPMustBeZero`.
fn check_forward_ips(p: &mut Problems, f: &str, rule: &limatype::PortForward) {
    for (key, ip) in [("guestIP", &rule.guest_ip), ("hostIP", &rule.host_ip)] {
        if let Some(ip) = ip {
            if ip.parse::<std::net::IpAddr>().is_err() {
                p.add(
                    format!("{f}.{key}"),
                    format!("must be an IP address, got {ip:?}"),
                );
            }
        }
    }
    if rule.guest_ip_must_be_zero == Some(true)
        && rule.guest_ip.as_deref().is_some_and(|ip| ip != "0.0.0.0")
    {
        p.add(
            format!("{f}.guestIPMustBeZero"),
            "can only be true when `guestIP` is 0.0.0.0",
        );
    }
}

/// `guestPort`/`hostPort` against the ranges, and the ranges themselves.
fn check_forward_ports(p: &mut Problems, f: &str, rule: &limatype::PortForward, e: Ends) {
    let Ends {
        guest_socket,
        host_socket,
        guest_range,
        host_range,
    } = e;
    check_single_port(p, f, "guest", rule.guest_port, guest_socket, guest_range[0]);
    check_single_port(p, f, "host", rule.host_port, host_socket, host_range[0]);
    for j in 0..2 {
        check_port(p, &format!("{f}.guestPortRange[{j}]"), guest_range[j]);
        if host_socket.is_empty() {
            check_port(p, &format!("{f}.hostPortRange[{j}]"), host_range[j]);
        }
    }
    if guest_range[0] > guest_range[1] {
        p.add(
            format!("{f}.guestPortRange"),
            format!("is reversed: {} > {}", guest_range[0], guest_range[1]),
        );
    }
    if host_socket.is_empty() && host_range[0] > host_range[1] {
        p.add(
            format!("{f}.hostPortRange"),
            format!("is reversed: {} > {}", host_range[0], host_range[1]),
        );
    }
}

/// `guestSocket` and `hostSocket`: absolute, short enough, and mapped one to one.
fn check_forward_sockets(p: &mut Problems, f: &str, e: Ends) {
    let Ends {
        guest_socket,
        host_socket,
        guest_range,
        host_range,
    } = e;
    if !guest_socket.is_empty() {
        if !is_abs(guest_socket) {
            p.add(
                format!("{f}.guestSocket"),
                format!("must be an absolute path, got {guest_socket:?}"),
            );
        }
        if host_socket.is_empty() && host_range[1] != host_range[0] {
            p.add(
                format!("{f}.guestSocket"),
                "can only be mapped to a single port or socket, not a range",
            );
        }
    }
    if !host_socket.is_empty() {
        if !is_abs(host_socket) {
            p.add(
                format!("{f}.hostSocket"),
                format!("must be an absolute path, got {host_socket:?}"),
            );
        }
        if guest_socket.is_empty() && guest_range[1] != guest_range[0] {
            p.add(
                format!("{f}.hostSocket"),
                "can only be mapped from a single port or socket, not a range",
            );
        }
        // UNIX_PATH_MAX: 108 on Linux, 104 on macOS.
        let max = if cfg!(target_os = "linux") { 108 } else { 104 };
        if host_socket.len() >= max {
            p.add(
                format!("{f}.hostSocket"),
                format!("must be shorter than {max} bytes, is {}", host_socket.len()),
            );
        }
    } else if guest_range[1].wrapping_sub(guest_range[0])
        != host_range[1].wrapping_sub(host_range[0])
    {
        p.add(
            format!("{f}.hostPortRange"),
            "must span as many ports as `guestPortRange`",
        );
    }
}

/// `proto`, and `reverse` (which needs sockets at both ends).
fn check_forward_proto_and_reverse(
    p: &mut Problems,
    f: &str,
    rule: &limatype::PortForward,
    e: Ends,
) {
    if let Some(proto) = rule.proto.as_deref() {
        if !limatype::PORT_PROTOS.contains(&proto) {
            p.add(
                format!("{f}.proto"),
                format!("must be \"tcp\", \"udp\" or \"any\", got {proto:?}"),
            );
        }
    }
    if rule.reverse == Some(true) && (e.guest_socket.is_empty() || e.host_socket.is_empty()) {
        p.add(
            format!("{f}.reverse"),
            "requires both `guestSocket` and `hostSocket`",
        );
    }
}

/// `networks`: one of `lima`/`socket`/`vzNAT`, MAC addresses, unique interface names.
fn validate_networks(p: &mut Problems, y: &LimaYaml) {
    let mut interfaces = BTreeMap::new();
    for (i, nw) in y.networks.iter().flatten().enumerate() {
        let f = format!("networks[{i}]");
        let lima = nw.lima.as_deref().unwrap_or_default();
        let socket = nw.socket.as_deref().unwrap_or_default();
        let vz_nat = nw.vz_nat == Some(true);
        match (!lima.is_empty(), !socket.is_empty(), vz_nat) {
            (true, true, _) => p.add(
                format!("{f}.lima"),
                "`lima` and `socket` are mutually exclusive",
            ),
            (true, _, true) => p.add(
                format!("{f}.lima"),
                "`lima` and `vzNAT` are mutually exclusive",
            ),
            (_, true, true) => p.add(
                format!("{f}.socket"),
                "`socket` and `vzNAT` are mutually exclusive",
            ),
            (false, false, false) => p.add(&f, "one of `lima`, `socket` or `vzNAT` must be set"),
            _ => {}
        }
        if !socket.is_empty() {
            use std::os::unix::fs::FileTypeExt;
            if let Ok(meta) = std::fs::metadata(socket) {
                if !meta.file_type().is_socket() {
                    p.add(format!("{f}.socket"), format!("{socket:?} is not a socket"));
                }
            }
        }
        if let Some(mac) = nw.mac_address.as_deref().filter(|m| !m.is_empty()) {
            let octets: Vec<&str> = mac.split([':', '-']).collect();
            if octets.len() != 6
                || !octets
                    .iter()
                    .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()))
            {
                p.add(
                    format!("{f}.macAddress"),
                    format!("must be a 48-bit MAC address like \"52:55:55:12:34:56\", got {mac:?}"),
                );
            }
        }
        if let Some(iface) = nw.interface.as_deref() {
            if iface.len() >= 16 {
                p.add(
                    format!("{f}.interface"),
                    format!("must be shorter than 16 bytes, got {iface:?}"),
                );
            }
            if iface.contains([' ', '\t', '\n', '/']) {
                p.add(
                    format!("{f}.interface"),
                    "must not contain whitespace or slashes",
                );
            }
            if iface == "eth0" {
                p.add(
                    format!("{f}.interface"),
                    "\"eth0\" is reserved for the user-mode network",
                );
            }
            if let Some(prev) = interfaces.insert(iface.to_string(), i) {
                p.add(
                    format!("{f}.interface"),
                    format!("{iface:?} is already used by networks[{prev}]"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
