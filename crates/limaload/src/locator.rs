//! Reading a config from a locator: a path, `-` (stdin), `file://`, `http(s)://`,
//! `template:NAME` / `template://NAME`; and the template directories.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::Diagnostic;

/// Lima's limit on the size of one template (and of stdin).
pub const MAX_TEMPLATE_BYTES: u64 = 4 << 20;

/// Why a locator could not be resolved or read. The texts are what `FILE: message`
/// diagnostics show.
#[derive(Debug, thiserror::Error)]
pub enum LocatorError {
    #[error("template name is empty")]
    EmptyTemplateName,
    #[error("template name {0:?} must not contain \"..\"")]
    TemplateNameTraversal(String),
    #[error("template name {0:?} must be relative")]
    TemplateNameAbsolute(String),
    #[error("template `{}` not found (searched {})", yaml_file_name(.name), join_dirs(.dirs))]
    TemplateNotFound { name: String, dirs: Vec<PathBuf> },
    #[error("cannot open: {0}")]
    Open(#[source] std::io::Error),
    #[error("is a directory")]
    IsDirectory,
    /// A FIFO, socket or device: reading it could block forever or never end.
    #[error("is not a regular file (a {kind})")]
    NotRegularFile { kind: &'static str },
    #[error("reading {what}: {source}")]
    Read {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is larger than the {} MiB limit for a template", MAX_TEMPLATE_BYTES >> 20)]
    TooLarge { what: &'static str },
    #[error("{what} is not UTF-8 text (invalid byte at offset {offset}); is it a YAML file?")]
    NotUtf8 { what: &'static str, offset: usize },
    #[error("fetching: {0}")]
    Http(#[source] Box<ureq::Error>),
    #[error("URL plugins loop: {}", .0.join(" -> "))]
    PluginLoop(Vec<String>),
    #[error("running {}: {source}", plugin.display())]
    PluginSpawn {
        plugin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} {arg} failed ({status}): {stderr}", plugin.display())]
    PluginFailed {
        plugin: PathBuf,
        arg: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{} {arg} printed no locator", plugin.display())]
    PluginNoLocator { plugin: PathBuf, arg: String },
    /// The plugin printed something else than one locator (e.g. the template itself): what
    /// it printed is not quoted.
    #[error("{} {arg} printed {lines} lines, not one locator", plugin.display())]
    PluginNotALocator {
        plugin: PathBuf,
        arg: String,
        lines: usize,
    },
    #[error("resolving `{locator}`: {source}")]
    GitHub {
        locator: String,
        #[source]
        source: crate::github::GitHubError,
    },
    #[error("a file:// URL needs an absolute path")]
    FileUrlNotAbsolute,
    #[error(
        "unsupported locator scheme {0:?}: no `limactl-url-{0}` plugin in $PATH or libexec/lima \
         (else use a path, -, file://, http(s)://, template: or github:)"
    )]
    UnsupportedScheme(String),
    #[error("{0}")]
    Absolute(#[source] std::io::Error),
    #[error("locator is empty")]
    EmptyLocator,
    #[error("cannot expand ~: HOME is not set")]
    NoHome,
    #[error("relative locator {0:?} must not contain \"..\" path segments")]
    RelativeTraversal(String),
    #[error("relative locator {0:?} cannot be used in a config read from stdin")]
    RelativeFromStdin(String),
}

/// The file upstream looks for: `.yaml` added unless the name has an extension (one not
/// starting with a digit, so `ubuntu-24.04` is `ubuntu-24.04.yaml`).
fn yaml_file_name(name: &str) -> String {
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("");
    if ext.is_empty() || ext.starts_with(|c: char| c.is_ascii_digit()) {
        format!("{name}.yaml")
    } else {
        name.to_string()
    }
}

fn join_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// One config read from a locator.
#[derive(Debug, Clone)]
pub struct Source {
    /// The locator made absolute: an absolute path, a URL, or `template:NAME`.
    pub locator: String,
    /// What messages call the file: the path for local files and templates, else the locator.
    pub display: String,
    pub text: String,
}

/// The template directories, in search order: `LIMA_TEMPLATES_PATH` (a `:` list) when set;
/// else `$LIMA_HOME/_templates`, `<exe dir>/../share/lima/templates` and, for development
/// builds, this source tree's `templates/`.
pub fn template_dirs(lima_home: &Path) -> Vec<PathBuf> {
    if let Some(list) = std::env::var_os("LIMA_TEMPLATES_PATH").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    let mut dirs = vec![lima_home.join(limatype::filenames::TEMPLATES_DIR)];
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("../share/lima/templates"));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates"));
    dirs
}

/// Lists templates as (name, path), sorted by name; the first directory holding a name wins.
/// Names are relative paths without `.yaml` (`docker`, `experimental/foo`); files and
/// directories starting with `_` (bases such as `_images/`) or `.` are skipped, as
/// `limactl template list` does.
pub fn list_templates(dirs: &[PathBuf]) -> Vec<(String, PathBuf)> {
    let mut found = std::collections::BTreeMap::new();
    for dir in dirs {
        walk(dir, "", 0, &mut found);
    }
    found.into_iter().collect()
}

fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    found: &mut std::collections::BTreeMap<String, PathBuf>,
) {
    if depth > 8 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('_') || file_name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk(&path, &format!("{prefix}{file_name}/"), depth + 1, found);
        } else if let Some(stem) = file_name.strip_suffix(".yaml") {
            found.entry(format!("{prefix}{stem}")).or_insert(path);
        }
    }
}

/// The template name of a `template:NAME` or `template://NAME` locator.
pub fn template_name(locator: &str) -> Option<&str> {
    locator
        .strip_prefix("template://")
        .or_else(|| locator.strip_prefix("template:"))
}

/// Finds template `name` in `dirs`. Refuses names that could leave the template
/// directories (`..` segments, absolute paths).
pub fn find_template(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, LocatorError> {
    if name.is_empty() {
        return Err(LocatorError::EmptyTemplateName);
    }
    if name.split(['/', '\\']).any(|seg| seg == "..") || name.contains('\0') {
        return Err(LocatorError::TemplateNameTraversal(name.into()));
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(LocatorError::TemplateNameAbsolute(name.into()));
    }
    // As Lima: add `.yaml` unless the name has an extension (`ubuntu-24.04` has none).
    let ext = Path::new(name).extension().and_then(|e| e.to_str());
    let file = match ext {
        Some(e) if !e.is_empty() && !e.starts_with(|c: char| c.is_ascii_digit()) => {
            name.to_string()
        }
        _ => format!("{name}.yaml"),
    };
    for dir in dirs {
        let path = dir.join(&file);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(LocatorError::TemplateNotFound {
        name: name.into(),
        dirs: dirs.to_vec(),
    })
}

fn read_limited(mut r: impl Read, what: &'static str) -> Result<String, LocatorError> {
    let mut buf = Vec::new();
    r.by_ref()
        .take(MAX_TEMPLATE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|source| LocatorError::Read { what, source })?;
    if buf.len() as u64 > MAX_TEMPLATE_BYTES {
        return Err(LocatorError::TooLarge { what });
    }
    let mut text = String::from_utf8(buf).map_err(|e| LocatorError::NotUtf8 {
        what,
        offset: e.utf8_error().valid_up_to(),
    })?;
    // A UTF-8 byte order mark is no content (Lima's YAML library skips it too).
    if text.starts_with(BOM) {
        text.drain(..BOM.len_utf8());
    }
    Ok(text)
}

/// The UTF-8 byte order mark some editors put at the start of a file.
pub(crate) const BOM: char = '\u{feff}';

/// What a file that is neither regular nor a directory is, for messages.
fn special_kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_socket() {
            return "socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "device";
        }
    }
    let _ = t;
    "special file"
}

fn read_file(path: &Path) -> Result<String, LocatorError> {
    // Looked at before opening: opening a FIFO blocks until a writer comes, a device may
    // never end.
    let meta = std::fs::metadata(path).map_err(LocatorError::Open)?;
    if meta.is_dir() {
        return Err(LocatorError::IsDirectory);
    }
    if !meta.is_file() {
        return Err(LocatorError::NotRegularFile {
            kind: special_kind(meta.file_type()),
        });
    }
    let f = std::fs::File::open(path).map_err(LocatorError::Open)?;
    let meta = f.metadata().map_err(LocatorError::Open)?;
    if !meta.is_file() {
        // Replaced between the two looks.
        return Err(LocatorError::NotRegularFile {
            kind: special_kind(meta.file_type()),
        });
    }
    read_limited(f, "file")
}

fn read_http(url: &str) -> Result<String, LocatorError> {
    let resp = ureq::get(url)
        .call()
        .map_err(|e| LocatorError::Http(Box::new(e)))?;
    read_limited(resp.into_body().into_reader(), "response")
}

/// Schemes the loader reads itself; any other `SCHEME:` goes to a `limactl-url-SCHEME` plugin.
const BUILTIN_SCHEMES: &[&str] = &["template", "http", "https", "file"];

/// Where URL plugins are looked up, as Lima does: limactl's own directory, `$PATH`, then
/// `libexec/lima` beside the running limactl (the plug-in directories of `osutil::plugins`).
fn plugin_dirs() -> Vec<PathBuf> {
    osutil::plugins::dirs()
}

fn find_url_plugin(scheme: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let name = format!("limactl-url-{scheme}{}", std::env::consts::EXE_SUFFIX);
    dirs.iter()
        .map(|d| d.join(&name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && osutil::is_executable(&m)))
}

/// Resolves custom URL schemes (`dev:webapp`) through `limactl-url-<scheme>` plugins: the
/// plugin gets what follows the colon and prints a locator, which may itself use a custom
/// scheme. Locators without one come back unchanged; a loop is an error.
pub fn resolve_custom_scheme(
    locator: &str,
    plugin_dirs: &[PathBuf],
) -> Result<String, LocatorError> {
    let mut current = locator.to_string();
    let mut seen = vec![];
    loop {
        let Some(scheme) = url_scheme(&current).filter(|s| !BUILTIN_SCHEMES.contains(s)) else {
            return Ok(current);
        };
        let Some(plugin) = find_url_plugin(scheme, plugin_dirs) else {
            return Ok(current);
        };
        if seen.contains(&current) {
            seen.push(current);
            return Err(LocatorError::PluginLoop(seen));
        }
        let arg = &current[scheme.len() + 1..];
        let out = std::process::Command::new(&plugin)
            .arg(arg)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| LocatorError::PluginSpawn {
                plugin: plugin.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(LocatorError::PluginFailed {
                plugin,
                arg: arg.into(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().into(),
            });
        }
        let next = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if next.is_empty() {
            return Err(LocatorError::PluginNoLocator {
                plugin,
                arg: arg.into(),
            });
        }
        if next.contains(['\n', '\r']) {
            return Err(LocatorError::PluginNotALocator {
                plugin,
                arg: arg.into(),
                lines: next.lines().count(),
            });
        }
        seen.push(std::mem::replace(&mut current, next));
    }
}

/// Custom schemes through their plugins and `github:` locators through GitHub (see
/// [`crate::github`]), until neither is left; a loop is an error.
pub fn resolve_locator(
    locator: &str,
    plugin_dirs: &[PathBuf],
    http: &dyn crate::github::Http,
) -> Result<String, LocatorError> {
    let mut current = locator.to_string();
    let mut seen = vec![];
    loop {
        current = resolve_custom_scheme(&current, plugin_dirs)?;
        let Some(rest) = current.strip_prefix("github:") else {
            if !seen.is_empty() {
                tracing::warn!("The github: scheme is still EXPERIMENTAL");
            }
            return Ok(current);
        };
        if seen.contains(&current) {
            seen.push(current);
            return Err(LocatorError::PluginLoop(seen));
        }
        let next = crate::github::transform(rest, http).map_err(|source| LocatorError::GitHub {
            locator: current.clone(),
            source,
        })?;
        tracing::debug!("Locator `{current}` replaced with `{next}`");
        seen.push(std::mem::replace(&mut current, next));
    }
}

/// Upstream's `TransformCustomURL` (`limactl template url`): custom schemes through their
/// `limactl-url-<scheme>` plugins, `github:` locators as raw.githubusercontent.com URLs,
/// `template://NAME` rewritten as `template:NAME` (with upstream's warning); any other locator
/// comes back unchanged.
pub fn transform_custom_url(locator: &str) -> Result<String, LocatorError> {
    let resolved = resolve_locator(locator, &plugin_dirs(), &crate::github::Ureq)?;
    let Some(rest) = resolved.strip_prefix("template://") else {
        return Ok(resolved);
    };
    // Go's path.Join(host, path): empty and `.` segments dropped.
    let joined: Vec<&str> = rest
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let fixed = format!(
        "template:{}{}",
        if rest.starts_with('/') { "/" } else { "" },
        joined.join("/")
    );
    tracing::warn!("Template locator `{resolved}` should be written `{fixed}` since Lima v2.0");
    Ok(fixed)
}

/// Reads a locator. `template_dirs` is where `template:` names are looked up.
pub fn read(locator: &str, template_dirs: &[PathBuf]) -> Result<Source, Diagnostic> {
    let fail = |display: &str, e: LocatorError| Diagnostic {
        file: display.to_string(),
        line: None,
        field: String::new(),
        message: e.to_string(),
    };
    let resolved = resolve_locator(locator, &plugin_dirs(), &crate::github::Ureq)
        .map_err(|m| fail(locator, m))?;
    let locator = resolved.as_str();
    if let Some(name) = template_name(locator) {
        let path = find_template(name, template_dirs).map_err(|m| fail(locator, m))?;
        let display = path.display().to_string();
        let text = read_file(&path).map_err(|m| fail(&display, m))?;
        return Ok(Source {
            locator: format!("template:{name}"),
            display,
            text,
        });
    }
    if locator.starts_with("http://") || locator.starts_with("https://") {
        let text = read_http(locator).map_err(|m| fail(locator, m))?;
        return Ok(Source {
            locator: locator.into(),
            display: locator.into(),
            text,
        });
    }
    if locator == "-" {
        let text = read_limited(std::io::stdin().lock(), "stdin").map_err(|m| fail("-", m))?;
        return Ok(Source {
            locator: "-".into(),
            display: "-".into(),
            text,
        });
    }
    let path = match locator.strip_prefix("file://") {
        Some(p) if !p.starts_with('/') => {
            return Err(fail(locator, LocatorError::FileUrlNotAbsolute))
        }
        Some(p) => PathBuf::from(p),
        None if url_scheme(locator).is_some() => {
            let scheme = url_scheme(locator).unwrap_or_default();
            return Err(fail(
                locator,
                LocatorError::UnsupportedScheme(scheme.into()),
            ));
        }
        None => {
            std::path::absolute(locator).map_err(|e| fail(locator, LocatorError::Absolute(e)))?
        }
    };
    let display = if locator.starts_with("file://") {
        path.display().to_string()
    } else {
        locator.to_string()
    };
    let text = read_file(&path).map_err(|m| fail(&display, m))?;
    Ok(Source {
        locator: path.display().to_string(),
        display,
        text,
    })
}

/// The instance name Lima derives from a locator: the file name without `.yaml`/`.yml`.
pub fn instance_name(locator: &str) -> Option<String> {
    let last = template_name(locator)
        .unwrap_or(locator)
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()?;
    let stem = last
        .strip_suffix(".yaml")
        .or_else(|| last.strip_suffix(".yml"))
        .unwrap_or(last);
    let valid = !stem.is_empty()
        && stem.len() <= 76
        && stem
            .split(['.', '_', '-'])
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()));
    valid.then(|| stem.to_string())
}

/// Makes a `base:`/`file:` locator found in the template at `parent` absolute, as Lima does:
/// URLs stay; relative paths are joined to the parent's directory (or template directory);
/// `..` segments are refused.
pub fn absolute_locator(locator: &str, parent: &str) -> Result<String, LocatorError> {
    if locator.is_empty() {
        return Err(LocatorError::EmptyLocator);
    }
    if is_url(locator) {
        return Ok(locator.into());
    }
    if locator.starts_with('/') {
        return Ok(locator.into());
    }
    if let Some(rest) = locator.strip_prefix("~/") {
        let home = std::env::var("HOME").map_err(|_| LocatorError::NoHome)?;
        return Ok(format!("{}/{rest}", home.trim_end_matches('/')));
    }
    if locator.split(['/', '\\']).any(|s| s == "..") {
        return Err(LocatorError::RelativeTraversal(locator.into()));
    }
    if parent == "-" {
        return Err(LocatorError::RelativeFromStdin(locator.into()));
    }
    if let Some(name) = template_name(parent) {
        let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        return Ok(if dir.is_empty() {
            format!("template:{locator}")
        } else {
            format!("template:{dir}/{locator}")
        });
    }
    if is_url(parent) {
        let dir = parent.rsplit_once('/').map(|(d, _)| d).unwrap_or(parent);
        return Ok(format!("{dir}/{locator}"));
    }
    let dir = Path::new(parent).parent().unwrap_or(Path::new("/"));
    Ok(dir.join(locator).display().to_string())
}

/// `scheme:rest` with a scheme of 2+ characters, as Go's url.Parse sees it (so `C:` is not one).
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = scheme.len() > 1
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(scheme)
}

fn is_url(s: &str) -> bool {
    url_scheme(s).is_some()
}
