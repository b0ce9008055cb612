//! `limaload` — layer 3: from a locator to a filled, validated config.
//!
//! [`load`] reads a locator (path, `-`, `file://`, `http(s)://`, `template:NAME`, `github:`
//! ([`github`])), resolves
//! `base:` templates and `file:` scripts ([`embed`]), then applies `$LIMA_HOME/_config`
//! `default.yaml` / `override.yaml` and the built-in defaults (`limadefaults`) and validates
//! (`limavalidate`). Every problem is a [`Diagnostic`] naming the file, line and field.
//! `vmType` is left unset when no file sets it: the driver registry picks the driver.

mod embed;
pub mod github;
mod locator;

use std::path::{Path, PathBuf};

use limatype::HostFacts;
use limatype::LimaYaml;
use limavalidate::LineIndex;

pub use embed::use_abs_locators;
pub use locator::{
    absolute_locator, find_template, instance_name, list_templates, read, resolve_custom_scheme,
    resolve_locator, template_dirs, template_name, transform_custom_url, LocatorError, Source,
    MAX_TEMPLATE_BYTES,
};

/// One problem, printed as `FILE:LINE: FIELD: message` (parts that are unknown are left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: Option<usize>,
    /// Field path such as `portForwards[2].guestPortRange`; empty for file-level problems.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Loading failed; holds every problem found (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub Vec<Diagnostic>);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// Where and for whom a config is loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub host: HostFacts,
    /// Directories searched for `template:` names, in order.
    pub template_dirs: Vec<PathBuf>,
    /// Instance name; derived from the locator when None (`default` for stdin).
    pub name: Option<String>,
    /// Read `$LIMA_HOME/_config/{default,override}.yaml` (`host.lima_home`).
    pub use_config_files: bool,
    /// Apply `$LIMA_HOME/_config/base.yaml` as the first base (when creating an instance; an
    /// instance's own lima.yaml already has it embedded).
    pub use_default_base: bool,
}

impl LoadOptions {
    /// The running host's facts and template directories, with `_config` files.
    pub fn detect() -> Self {
        let host = limadefaults::detect_host();
        let template_dirs = template_dirs(&host.lima_home);
        LoadOptions {
            host,
            template_dirs,
            name: None,
            use_config_files: true,
            use_default_base: true,
        }
    }
}

/// A config with its bases and scripts embedded, before defaults.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// Instance name (from the options or the locator).
    pub name: String,
    /// What messages call the top-level file.
    pub display: String,
    /// The YAML to store as an instance's lima.yaml: the original text when nothing was
    /// embedded (comments kept), else the merged document.
    pub text: String,
    pub config: LimaYaml,
    /// The top-level file as written, and its line index (for diagnostics).
    main: LimaYaml,
    main_lines: LineIndex,
}

/// A loaded, filled and validated config.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub embedded: Embedded,
    /// The filled config (defaults applied, validated), its defaulted fields typed.
    pub config: limatype::Filled,
}

/// A YAML parse failure: the field path the deserializer had reached (from
/// `serde_path_to_error`, `.` for the document) and serde_yaml's error.
pub(crate) struct ParseError {
    pub path: String,
    pub error: serde_yaml::Error,
}

impl<E: Into<serde_yaml::Error>> From<serde_path_to_error::Error<E>> for ParseError {
    fn from(e: serde_path_to_error::Error<E>) -> Self {
        ParseError {
            path: e.path().to_string(),
            error: e.into_inner().into(),
        }
    }
}

/// Deserializes YAML text, tracking the field path of a failure.
pub(crate) fn from_yaml_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    Ok(serde_path_to_error::deserialize(
        serde_yaml::Deserializer::from_str(text),
    )?)
}

/// `a.b[2].c`, then `a.b[2]`, `a.b`, `a`.
fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path).filter(|p| !p.is_empty()), |p| {
        p.rfind(['.', '[']).map(|cut| &p[..cut])
    })
}

/// The last key of a field path (`a.b[2].c` -> `c`).
fn field_key(path: &str) -> &str {
    path.rsplit(['.', '[']).next().unwrap_or(path)
}

/// Whether a mapping key looks like a field name someone meant to write.
fn plausible_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// serde's messages quote a string value in full (`invalid type: string "…", expected …`):
/// for a multi-line or long value, often a whole script or another file's content, the
/// file and line say where it is, and the text is left out.
fn without_long_quotes(message: &str) -> String {
    const MAX_QUOTED: usize = 64;
    let mut out = String::new();
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        let open = start + "string ".len();
        out.push_str(&rest[..open]);
        let body = &rest[open + 1..];
        // The closing quote of a Debug-escaped string: the first `"` not escaped.
        let mut escaped = false;
        let end = body.char_indices().find_map(|(i, c)| {
            let close = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            close.then_some(i)
        });
        let Some(end) = end else {
            out.push_str(&rest[open..]);
            return out;
        };
        let quoted = &body[..end];
        let lines = quoted.trim_end_matches("\\n").matches("\\n").count() + 1;
        if lines > 1 {
            out.push_str(&format!("of {lines} lines"));
        } else if quoted.chars().count() > MAX_QUOTED {
            out.push_str(&format!("of {} characters", quoted.chars().count()));
        } else {
            out.push_str(&rest[open..open + end + 2]);
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Turns a parse failure into a diagnostic naming the field and line.
pub(crate) fn parse_diagnostic(src: &Source, e: &ParseError) -> Diagnostic {
    let mut line = e.error.location().map(|l| l.line());
    let mut field = if e.path == "." {
        String::new()
    } else {
        e.path.clone()
    };
    let mut message = e.error.to_string();
    // serde_yaml appends " at line L column C"; the line is reported separately.
    if let Some(pos) = message.rfind(" at line ") {
        message.truncate(pos);
    }
    // serde_yaml prefixes nested errors with the field or its parent, which is said already.
    if let Some(rest) =
        self_and_ancestors(&field).find_map(|p| message.strip_prefix(&format!("{p}: ")))
    {
        message = rest.to_string();
    }
    // A repeated key fails the mapping holding it, at the mapping's line; the line index knows
    // the key and where it repeats (the repeat is the mistake). An error after the repeat is
    // something else (e.g. a syntax error further down).
    let lines = LineIndex::from_yaml(&src.text);
    let repeat = lines
        .duplicate_keys()
        .iter()
        .find(|(key_path, repeat_line)| {
            let parent = key_path.rfind('.').map_or("", |cut| &key_path[..cut]);
            parent == field && line.is_none_or(|l| l <= *repeat_line)
        });
    if let Some((key_path, repeat_line)) = repeat {
        field = key_path.clone();
        line = Some(*repeat_line);
    }
    Diagnostic {
        file: src.display.clone(),
        line,
        field,
        message: without_long_quotes(&message),
    }
}

/// A key that is no field name at all (a line of a script, or of some other file given as a
/// base) is not repeated in the message: the file and line say where it is.
pub(crate) fn without_odd_key(mut d: Diagnostic) -> Diagnostic {
    let Some(key) = d
        .message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once("`, "))
        .map(|(key, _)| key.to_string())
    else {
        return d;
    };
    if plausible_key(&key) {
        return d;
    }
    if field_key(&d.field) == key {
        let parent = self_and_ancestors(&d.field)
            .nth(1)
            .unwrap_or_default()
            .to_string();
        d.field = parent;
    }
    d.message = "is not a lima.yaml field (is this file a lima.yaml?)".into();
    d
}

/// Reads `locator` and embeds its bases and scripts.
pub fn embed(locator: &str, opts: &LoadOptions) -> Result<Embedded, LoadError> {
    let src = read(locator, &opts.template_dirs).map_err(|d| LoadError(vec![d]))?;
    let name = match &opts.name {
        Some(n) => n.clone(),
        None if locator == "-" => "default".into(),
        // As upstream, named after the file GitHub serves (`github:o/r/k8s` gives `k8s`).
        None if locator.starts_with("github:") => instance_name(&src.locator).ok_or_else(|| {
            LoadError(vec![Diagnostic {
                file: src.display.clone(),
                line: None,
                field: String::new(),
                message: format!(
                    "cannot derive an instance name from {:?} (resolved from {locator:?}); \
                     give one with --name",
                    src.locator
                ),
            }])
        })?,
        None => instance_name(locator).ok_or_else(|| {
            LoadError(vec![Diagnostic {
                file: src.display.clone(),
                line: None,
                field: String::new(),
                message: format!("cannot derive an instance name from {locator:?}"),
            }])
        })?,
    };
    let mut opts = opts.clone();
    opts.name = Some(name);
    embed_source(src, &opts)
}

/// Lima's `_config/base.yaml`: when present, the first base of every config loaded with
/// `use_config_files`.
pub const DEFAULT_BASE_YAML: &str = "base.yaml";

/// Embeds an already read source (e.g. bytes from elsewhere, named by `src.display`); the
/// instance name is `opts.name` or `default`.
pub fn embed_source(src: Source, opts: &LoadOptions) -> Result<Embedded, LoadError> {
    embed_source_with(src, opts, true).map(|(e, _)| e)
}

/// `limactl template copy --embed` (`embed_all` false) and `--embed-all` (true): the text of
/// `src` (read with [`read`]) with its bases and `file:` scripts inlined; without `embed_all`, `template:`
/// bases and scripts stay references. `opts.use_default_base` adds `_config/base.yaml`.
/// Nothing to embed: the text with absolute locators (upstream's `UseAbsLocators`).
pub fn embed_text(src: Source, opts: &LoadOptions, embed_all: bool) -> Result<String, LoadError> {
    let (e, embedded_any) = embed_source_with(src.clone(), opts, embed_all)?;
    if !embedded_any {
        return use_abs_locators(&src);
    }
    Ok(e.text)
}

fn embed_source_with(
    mut src: Source,
    opts: &LoadOptions,
    embed_all: bool,
) -> Result<(Embedded, bool), LoadError> {
    if let Some(text) = src.text.strip_prefix(locator::BOM) {
        src.text = text.to_string();
    }
    let name = opts.name.clone().unwrap_or_else(|| "default".into());
    let (main, _) = embed::parse(&src)?;
    let mut embedder = embed::Embedder::new(&opts.template_dirs);
    embedder.embed_all = embed_all;
    let default_base = opts
        .host
        .lima_home
        .join(limatype::filenames::CONFIG_DIR)
        .join(DEFAULT_BASE_YAML);
    if opts.use_default_base
        && default_base.is_file()
        && src.locator != default_base.display().to_string()
    {
        embedder.default_base = Some(default_base.display().to_string());
    }
    let merged = embedder.embed(&src, &mut Vec::new())?;
    let mut config: LimaYaml = serde_yaml::from_value(merged.clone()).map_err(|e| {
        LoadError(vec![Diagnostic {
            file: src.display.clone(),
            line: None,
            field: String::new(),
            message: format!("after merging bases: {e}"),
        }])
    })?;
    let before = config.clone();
    embed::combine_list_entries(&mut config);
    // The stored/copied text carries the combined lists too, as upstream's Embed writes them.
    let mut merged = merged;
    if let Some(map) = merged.as_mapping_mut() {
        let lists = [
            (
                "additionalDisks",
                before.additional_disks != config.additional_disks,
                serde_yaml::to_value(&config.additional_disks),
            ),
            (
                "mounts",
                before.mounts != config.mounts,
                serde_yaml::to_value(&config.mounts),
            ),
            (
                "networks",
                before.networks != config.networks,
                serde_yaml::to_value(&config.networks),
            ),
        ];
        for (key, differs, value) in lists {
            if let (true, Ok(v)) = (differs, value) {
                map.insert(key.into(), v);
            }
        }
    }
    let changed = embedder.changed || main.base.is_some();
    let text = if changed {
        serde_yaml::to_string(&merged).unwrap_or_else(|_| config.to_yaml())
    } else {
        src.text.clone()
    };
    let embedded = Embedded {
        name,
        display: src.display.clone(),
        text,
        config,
        main,
        main_lines: LineIndex::from_yaml(&src.text),
    };
    Ok((embedded, embedder.changed))
}

/// Reads and strictly parses an optional `_config` file.
fn read_config_file(path: &Path) -> Result<Option<LimaYaml>, LoadError> {
    if !path.exists() {
        return Ok(None);
    }
    let src = read(&path.display().to_string(), &[]).map_err(|d| LoadError(vec![d]))?;
    let (typed, _) = embed::parse(&src)?;
    Ok(Some(typed))
}

/// Lists Lima fills in the order o, y, d (so the config's entries start after override's).
const O_Y_D_LISTS: &[&str] = &[
    "images",
    "additionalDisks",
    "provision",
    "probes",
    "portForwards",
    "copyToHost",
    "mountTypesUnsupported",
];

fn list_len(y: &LimaYaml, key: &str) -> usize {
    match key {
        "images" => y.images.as_ref().map_or(0, Vec::len),
        "additionalDisks" => y.additional_disks.as_ref().map_or(0, Vec::len),
        "provision" => y.provision.as_ref().map_or(0, Vec::len),
        "probes" => y.probes.as_ref().map_or(0, Vec::len),
        "portForwards" => y.port_forwards.as_ref().map_or(0, Vec::len),
        "copyToHost" => y.copy_to_host.as_ref().map_or(0, Vec::len),
        "mountTypesUnsupported" => y.mount_types_unsupported.as_ref().map_or(0, Vec::len),
        "mounts" => y.mounts.as_ref().map_or(0, Vec::len),
        "networks" => y.networks.as_ref().map_or(0, Vec::len),
        _ => 0,
    }
}

/// Maps a field path of the filled config back to the top-level file: the same path with the
/// list index the entry has there, or None when the entry came from a base or `_config` file.
fn path_in_main(
    field: &str,
    e: &Embedded,
    defaults: Option<&LimaYaml>,
    overrides: Option<&LimaYaml>,
) -> Option<String> {
    let Some(open) = field.find('[') else {
        return Some(field.to_string());
    };
    let key = &field[..open];
    if key.contains('.') {
        // Nested lists (e.g. containerd.archives[0]) are not remapped.
        return Some(field.to_string());
    }
    let close = open + field[open..].find(']')?;
    let index: usize = field[open + 1..close].parse().ok()?;
    let empty = LimaYaml::default();
    let (d, o) = (defaults.unwrap_or(&empty), overrides.unwrap_or(&empty));
    let merged_len = list_len(&e.config, key);
    let main_len = list_len(&e.main, key);
    let in_merged = if O_Y_D_LISTS.contains(&key) {
        index.checked_sub(list_len(o, key))?
    } else if matches!(key, "mounts" | "networks") {
        index.checked_sub(list_len(d, key))?
    } else {
        index
    };
    if in_merged >= merged_len {
        return None;
    }
    let in_main = if matches!(key, "provision" | "probes") {
        // Bases' steps come first.
        in_merged.checked_sub(merged_len - main_len)?
    } else {
        in_merged
    };
    (in_main < main_len).then(|| format!("{key}[{in_main}]{}", &field[close + 1..]))
}

/// Lima refuses `param` keys that nothing uses (a typo would silently do nothing).
fn unused_params(y: &LimaYaml) -> Vec<String> {
    let mut texts: Vec<&str> = Vec::new();
    for p in y.provision.iter().flatten() {
        texts.extend(
            [
                &p.script,
                &p.content,
                &p.expression,
                &p.owner,
                &p.path,
                &p.permissions,
            ]
            .into_iter()
            .flatten()
            .map(String::as_str),
        );
    }
    texts.extend(
        y.probes
            .iter()
            .flatten()
            .filter_map(|p| p.script.as_deref()),
    );
    for c in y.copy_to_host.iter().flatten() {
        texts.extend(
            [&c.guest, &c.host]
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
    }
    for r in y.port_forwards.iter().flatten() {
        texts.extend(
            [&r.guest_socket, &r.host_socket]
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
    }
    for m in y.mounts.iter().flatten() {
        texts.push(&m.location);
        texts.extend(m.mount_point.as_deref());
    }
    let used = |key: &str| {
        let env_name = format!("PARAM_{key}");
        texts.iter().any(|t| {
            t.match_indices(".Param.").any(|(i, _)| {
                let rest = &t[i + 7..];
                rest.starts_with(key)
                    && !rest[key.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            }) || t.match_indices(&env_name).any(|(i, _)| {
                let before_ok = !t[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
                let after_ok = !t[i + env_name.len()..]
                    .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
                before_ok && after_ok
            })
        })
    };
    y.param
        .iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .filter(|k| k != "internal_netplanOptional" && !used(k))
        .collect()
}

/// The `_config/default.yaml` and `_config/override.yaml` of `opts.host.lima_home`, if used
/// and present.
fn config_files(opts: &LoadOptions) -> Result<(Option<LimaYaml>, Option<LimaYaml>), LoadError> {
    if !opts.use_config_files {
        return Ok((None, None));
    }
    let config_dir = opts.host.lima_home.join(limatype::filenames::CONFIG_DIR);
    Ok((
        read_config_file(&config_dir.join(limatype::filenames::DEFAULT_YAML))?,
        read_config_file(&config_dir.join(limatype::filenames::OVERRIDE_YAML))?,
    ))
}

/// Applies `_config` files and built-in defaults to an embedded config, without validating.
pub fn fill(e: &Embedded, opts: &LoadOptions) -> Result<LimaYaml, LoadError> {
    let (defaults, overrides) = config_files(opts)?;
    Ok(limadefaults::fill(
        &e.config,
        defaults.as_ref(),
        overrides.as_ref(),
        &opts.host,
        &e.name,
    ))
}

/// Applies `_config` files and defaults to an embedded config, then validates it.
pub fn fill_and_validate(e: &Embedded, opts: &LoadOptions) -> Result<limatype::Filled, LoadError> {
    let (defaults, overrides) = config_files(opts)?;
    let mut problems = limavalidate::validate_raw(&e.config);
    problems.extend(
        unused_params(&e.config)
            .into_iter()
            .map(|k| limavalidate::Problem {
                field: format!("param.{k}"),
                message: "is not used in any provision, probe, copyToHost, portForward or mount"
                    .into(),
            }),
    );
    let filled = limadefaults::fill(
        &e.config,
        defaults.as_ref(),
        overrides.as_ref(),
        &opts.host,
        &e.name,
    );
    problems.extend(limavalidate::validate(&filled));
    problems.extend(limavalidate::validate_for_host(
        &filled,
        opts.host.memory.bytes(),
    ));
    if problems.is_empty() {
        // Validated values parse; a field the defaults left unset would be a defaults bug,
        // reported like any other problem rather than a panic.
        return limatype::Filled::try_from(filled).map_err(|nf| {
            LoadError(vec![Diagnostic {
                file: e.display.clone(),
                line: None,
                field: nf.field.to_string(),
                message: nf.why,
            }])
        });
    }
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    for d in problems.into_iter().map(|p| {
        let mapped = path_in_main(&p.field, e, defaults.as_ref(), overrides.as_ref());
        let line = mapped.as_deref().and_then(|m| e.main_lines.nearest(m));
        Diagnostic {
            file: e.display.clone(),
            line,
            field: match (line, mapped) {
                (Some(_), Some(m)) => m,
                _ => p.field,
            },
            message: p.message,
        }
    }) {
        if !diagnostics.contains(&d) {
            diagnostics.push(d);
        }
    }
    Err(LoadError(diagnostics))
}

/// Reads, embeds, fills and validates the config at `locator`.
pub fn load(locator: &str, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let embedded = embed(locator, opts)?;
    let config = fill_and_validate(&embedded, opts)?;
    Ok(Loaded { embedded, config })
}

/// Loads YAML text that has no file of its own (named `display` in messages); relative
/// `base:` locators resolve against the current directory.
pub fn load_text(text: &str, display: &str, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let src = Source {
        locator: std::env::current_dir()
            .map(|d| d.join(display).display().to_string())
            .unwrap_or_else(|_| display.to_string()),
        display: display.to_string(),
        text: text.to_string(),
    };
    let embedded = embed_source(src, opts)?;
    let config = fill_and_validate(&embedded, opts)?;
    Ok(Loaded { embedded, config })
}

#[cfg(test)]
mod tests;

/// The body of the `limaload-fuzz` target (and of the stable corpus test): loads arbitrary
/// bytes with fixed host facts, no `_config` files and no template directories. Panics only
/// on a bug: a panic inside loading, or an accepted config that does not round-trip.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = LoadOptions {
        host: HostFacts {
            os: limatype::Os::Linux,
            arch: limatype::Arch::X86_64,
            cpus: 4,
            memory: limatype::ByteSize(8 << 30),
            user_name: "fuzz".into(),
            user_comment: String::new(),
            uid: 1000,
            home: "/home/fuzz".into(),
            timezone: "UTC".into(),
            machine_id: String::new(),
            lima_home: PathBuf::from("/nonexistent/lima-fuzz"),
            temp_dir: "/tmp".into(),
        },
        template_dirs: Vec::new(),
        name: Some("fuzz".into()),
        use_config_files: false,
        use_default_base: false,
    };
    if let Ok(loaded) = load_text(text, "fuzz.yaml", &opts) {
        let again = LimaYaml::from_yaml(&loaded.config.yaml().to_yaml());
        assert!(
            again.is_ok(),
            "filled config does not parse again: {again:?}"
        );
        let _ = LimaYaml::from_yaml(&loaded.embedded.text).expect("embedded text parses again");
    }
}
