//! `base:` composition, as upstream Lima's `limatmpl.Embed` does it:
//!
//! - the template's values win; keys only the base has are copied in; maps merge recursively;
//! - lists are appended (template first, then base), except `provision` and `probes`, where
//!   the base's entries come first (they run first);
//! - `dns` of the base is dropped when the template has a non-empty one;
//! - `minimumLimaVersion` and `vmOpts.qemu.minimumVersion` keep the higher version;
//! - `mountTypesUnsupported` entries are made unique;
//! - after all bases: `additionalDisks` (by name), `mounts` (by mount point) and `networks`
//!   (by interface) entries sharing a key are combined, the earlier entry winning, and a `*`
//!   key fills every earlier entry;
//! - provision and probe `file:` locators are read and inlined as `script` (`content` for data,
//!   `expression` for yq).
//!
//! Lists nested inside list entries are not merged element-wise (yq does; no template uses it).

use serde_yaml::{Mapping, Value};

use crate::locator::{absolute_locator, read, template_name, Source};
use crate::{Diagnostic, LoadError};
use limavalidate::LineIndex;

/// Nesting limit for `base:` chains, far above any real template set.
const MAX_DEPTH: usize = 32;

pub(crate) struct Embedder<'a> {
    pub template_dirs: &'a [std::path::PathBuf],
    /// Every locator included so far (Lima refuses to include one twice).
    seen: Vec<String>,
    /// Whether anything (a base or a script) was embedded.
    pub changed: bool,
    /// `$LIMA_HOME/_config/base.yaml`, applied as the first base of the top-level file.
    pub default_base: Option<String>,
    /// Embed `template:` bases and scripts too (upstream's `embedAll`). When false, the
    /// first `template:` base and all after it stay as `base:` (`template copy --embed`).
    pub embed_all: bool,
}

pub(crate) fn diag(src: &Source, field: &str, message: impl Into<String>) -> Diagnostic {
    let line = LineIndex::from_yaml(&src.text).nearest(field);
    Diagnostic {
        file: src.display.clone(),
        line,
        field: field.to_string(),
        message: message.into(),
    }
}

/// Parses a file strictly into `LimaYaml` (unknown keys, wrong types are diagnostics with the
/// file and line), then as a generic value for merging.
pub(crate) fn parse(src: &Source) -> Result<(limatype::LimaYaml, Value), LoadError> {
    let fail = |d: Diagnostic| LoadError(vec![d]);
    let value = if src.text.trim().is_empty() {
        Value::Null
    } else {
        crate::from_yaml_text::<Value>(&src.text).map_err(|e| {
            let d = with_field_from_line(src, crate::parse_diagnostic(src, &e));
            fail(crate::without_odd_key(d))
        })?
    };
    let value = match value {
        Value::Mapping(m) => Value::Mapping(m),
        Value::Null => Value::Mapping(Mapping::new()),
        _ => {
            let first_line = src
                .text
                .lines()
                .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map_or(1, |i| i + 1);
            return Err(fail(Diagnostic {
                file: src.display.clone(),
                line: Some(first_line),
                field: String::new(),
                message: "a lima.yaml must be a mapping of fields".into(),
            }));
        }
    };
    let typed = typed_config(&src.text, &value).map_err(|e| {
        let mut d = crate::parse_diagnostic(src, &e);
        if d.field.is_empty() {
            // Some errors (custom deserializers) carry no path: find the top-level key that
            // fails on its own.
            if let Some(key) = value.as_mapping().and_then(|m| {
                m.iter().find_map(|(k, v)| {
                    let mut single = Mapping::new();
                    single.insert(k.clone(), v.clone());
                    serde_yaml::from_value::<limatype::LimaYaml>(Value::Mapping(single))
                        .is_err()
                        .then(|| k.as_str().map(str::to_string))
                        .flatten()
                })
            }) {
                d.line = LineIndex::from_yaml(&src.text).line(&key).or(d.line);
                d.field = key;
            }
        }
        fail(crate::without_odd_key(with_field_from_line(src, d)))
    })?;
    // The document merged with bases must not carry `<<` keys either (each file's anchors
    // are its own); a merge that failed was reported by `typed_config` above.
    let mut value = value;
    if limatype::has_merge_key(&value) && value.apply_merge().is_err() {
        return Err(fail(diag(src, "", "cannot resolve `<<` merge keys")));
    }
    Ok((typed, value))
}

/// The typed config of a file whose generic `value` parsed. YAML merge keys (`<<: *anchor`)
/// are resolved by Lima's YAML library but are a plain `<<` field to serde's struct
/// deserializer: such files are parsed from the merged value (without line numbers).
fn typed_config(text: &str, value: &Value) -> Result<limatype::LimaYaml, crate::ParseError> {
    if !limatype::has_merge_key(value) {
        return if text.trim().is_empty() {
            Ok(limatype::LimaYaml::default())
        } else {
            crate::from_yaml_text(text)
        };
    }
    let mut merged = value.clone();
    merged.apply_merge().map_err(|error| crate::ParseError {
        path: ".".into(),
        error,
    })?;
    Ok(serde_path_to_error::deserialize(merged)?)
}

/// Names the field by the line when nothing better is known.
fn with_field_from_line(src: &Source, mut d: Diagnostic) -> Diagnostic {
    if d.field.is_empty() {
        if let Some(l) = d.line {
            d.field = LineIndex::from_yaml(&src.text)
                .path_at(l)
                .unwrap_or_default()
                .to_string();
        }
    }
    d
}

impl<'a> Embedder<'a> {
    pub fn new(template_dirs: &'a [std::path::PathBuf]) -> Self {
        Embedder {
            template_dirs,
            seen: Vec::new(),
            changed: false,
            default_base: None,
            embed_all: true,
        }
    }

    /// Resolves all bases of `src` (recursively) and returns the merged document.
    /// `chain` holds the locators that include this one, outermost first.
    pub fn embed(&mut self, src: &Source, chain: &mut Vec<String>) -> Result<Value, LoadError> {
        let (typed, mut value) = parse(src)?;
        absolutize(&mut value, &typed, src)?;
        let base_at = value
            .as_mapping()
            .and_then(|m| m.keys().position(|k| k.as_str() == Some("base")));
        let mut bases = take_bases(&mut value);
        if chain.is_empty() {
            if let Some(url) = self.default_base.take() {
                bases.insert(0, limatype::LocatorWithDigest { url, digest: None });
            }
        }
        chain.push(src.locator.clone());
        let kept = self.kept_bases(&bases, src)?;
        let embedded = bases.len() - kept.len();
        for (i, base) in bases.iter().take(embedded).enumerate() {
            let field = format!("base[{i}]");
            if base.digest.is_some() {
                return Err(LoadError(vec![diag(
                    src,
                    &field,
                    "`digest` on a base is not supported (as in Lima)",
                )]));
            }
            if let Some(pos) = chain.iter().position(|c| *c == base.url) {
                // The whole chain from the top file, so the way into the loop is visible.
                let _ = pos;
                let mut cycle: Vec<String> = chain.clone();
                cycle.push(base.url.clone());
                return Err(LoadError(vec![diag(
                    src,
                    &field,
                    format!("base cycle: {}", cycle.join(" -> ")),
                )]));
            }
            if self.seen.contains(&base.url) {
                return Err(LoadError(vec![diag(
                    src,
                    &field,
                    format!("base {:?} is included twice", base.url),
                )]));
            }
            if chain.len() >= MAX_DEPTH {
                return Err(LoadError(vec![diag(
                    src,
                    &field,
                    format!("bases nest deeper than {MAX_DEPTH} levels"),
                )]));
            }
            self.seen.push(base.url.clone());
            let base_src = read(&base.url, self.template_dirs).map_err(|d| {
                LoadError(vec![diag(
                    src,
                    &field,
                    format!("{}: {}", d.file, d.message),
                )])
            })?;
            let base_value = self.embed(&base_src, chain)?;
            merge_document(&mut value, &base_value);
            self.changed = true;
        }
        chain.pop();
        if !kept.is_empty() {
            put_bases_at(&mut value, kept, base_at.unwrap_or(0));
        }
        self.embed_scripts(&mut value, src)?;
        Ok(value)
    }

    /// The bases left unembedded: without `embed_all`, from the first `template:` one on. As
    /// upstream, a non-`template:` base after it cannot be embedded (it would be merged
    /// before the skipped one, in the wrong order).
    fn kept_bases<'b>(
        &self,
        bases: &'b [limatype::LocatorWithDigest],
        src: &Source,
    ) -> Result<&'b [limatype::LocatorWithDigest], LoadError> {
        if self.embed_all {
            return Ok(&[]);
        }
        let Some(first) = bases.iter().position(|b| template_name(&b.url).is_some()) else {
            return Ok(&[]);
        };
        if let Some((i, b)) = bases
            .iter()
            .enumerate()
            .skip(first)
            .find(|(_, b)| template_name(&b.url).is_none())
        {
            return Err(LoadError(vec![diag(
                src,
                &format!("base[{i}]"),
                format!(
                    "cannot embed template {:?} after not embedding {:?}",
                    b.url, bases[first].url
                ),
            )]));
        }
        Ok(&bases[first..])
    }

    /// Inlines `file:` of provision steps and probes.
    fn embed_scripts(&mut self, value: &mut Value, src: &Source) -> Result<(), LoadError> {
        for list in ["provision", "probes"] {
            let Some(Value::Sequence(items)) = value.get_mut(list) else {
                continue;
            };
            for (i, item) in items.iter_mut().enumerate() {
                let Some(map) = item.as_mapping_mut() else {
                    continue;
                };
                let Some(file) = map.get("file").cloned() else {
                    continue;
                };
                let mode = map.get("mode").and_then(Value::as_str).unwrap_or("system");
                let target = match (list, mode) {
                    ("provision", "data") => "content",
                    ("provision", "yq") => "expression",
                    _ => "script",
                };
                let already = map.get(target).is_some_and(|v| match v {
                    Value::String(s) => !s.is_empty() || target != "script",
                    Value::Null => false,
                    _ => true,
                });
                if already {
                    continue;
                }
                let field = format!("{list}[{i}].file");
                let url = match &file {
                    Value::String(s) => s.clone(),
                    Value::Mapping(m) => {
                        if m.get("digest").is_some_and(|d| !d.is_null()) {
                            return Err(LoadError(vec![diag(
                                src,
                                &field,
                                "`digest` on a script file is not supported (as in Lima)",
                            )]));
                        }
                        m.get("url")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    }
                    _ => String::new(),
                };
                if !self.embed_all && template_name(&url).is_some() {
                    continue;
                }
                let script = read(&url, self.template_dirs).map_err(|d| {
                    LoadError(vec![diag(
                        src,
                        &field,
                        format!("{}: {}", d.file, d.message),
                    )])
                })?;
                // shift_remove: the entry's other keys keep their order.
                map.shift_remove("file");
                map.insert(Value::from(target), Value::from(script.text));
                self.changed = true;
            }
        }
        Ok(())
    }
}

/// The text of `src` with relative `base:` and `file:` locators made absolute (what
/// `limactl template copy` writes, upstream's `UseAbsLocators`): each locator is replaced
/// where it is, in the form it was written (a string, or a map's `url`), comments kept.
pub fn use_abs_locators(src: &Source) -> Result<String, LoadError> {
    let (_, value) = parse(src)?;
    let mut edits = Vec::new();
    let mut fix = |at: String, item: &Value, field: &str| -> Result<(), LoadError> {
        let (url, path) = match item {
            Value::String(s) => (s.as_str(), at),
            Value::Mapping(m) => match m.get("url").and_then(Value::as_str) {
                Some(u) => (u, format!("{at}.url")),
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        let abs = absolute_locator(url, &src.locator)
            .map_err(|e| LoadError(vec![diag(src, field, e.to_string())]))?;
        if abs != url {
            let quoted = serde_json::to_string(&abs).unwrap_or_default();
            edits.push(format!("{path} = {quoted}"));
        }
        Ok(())
    };
    match value.get("base") {
        Some(Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                fix(format!(".base[{i}]"), item, &format!("base[{i}]"))?;
            }
        }
        Some(item) => fix(".base".into(), item, "base")?,
        None => {}
    }
    for list in ["provision", "probes"] {
        let Some(Value::Sequence(items)) = value.get(list) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            if let Some(file) = item.get("file") {
                fix(
                    format!(".{list}[{i}].file"),
                    file,
                    &format!("{list}[{i}].file"),
                )?;
            }
        }
    }
    if edits.is_empty() {
        return Ok(src.text.clone());
    }
    limayq::edit_yaml(&src.text, &edits.join(" | "))
        .map_err(|e| LoadError(vec![diag(src, "", e.to_string())]))
}

/// Puts the unembedded `bases` back as the document's key number `at`, where the template
/// wrote `base:` (the default base.yaml alone makes it the first key).
fn put_bases_at(value: &mut Value, bases: &[limatype::LocatorWithDigest], at: usize) {
    let Some(map) = value.as_mapping_mut() else {
        return;
    };
    let mut list: Vec<Value> = bases
        .iter()
        .map(|b| match &b.digest {
            None => Value::from(b.url.clone()),
            Some(_) => serde_yaml::to_value(b).unwrap_or_else(|_| Value::from(b.url.clone())),
        })
        .collect();
    // An embedded base's own unembedded bases came in with the merge: they follow ours, as
    // upstream appends the base's list to the template's.
    match map.shift_remove("base") {
        Some(Value::Sequence(more)) => list.extend(more),
        Some(Value::Null) | None => {}
        Some(one) => list.push(one),
    }
    let mut entries: Vec<(Value, Value)> = std::mem::take(map).into_iter().collect();
    entries.insert(
        at.min(entries.len()),
        (Value::from("base"), Value::Sequence(list)),
    );
    *map = entries.into_iter().collect();
}

/// Turns `base:` into a list of locators and removes it from the document.
fn take_bases(value: &mut Value) -> Vec<limatype::LocatorWithDigest> {
    let Some(map) = value.as_mapping_mut() else {
        return Vec::new();
    };
    // shift_remove, not remove (a swap): the keys after `base` keep their order.
    let Some(base) = map.shift_remove("base") else {
        return Vec::new();
    };
    let items = match base {
        Value::Sequence(s) => s,
        Value::Null => Vec::new(),
        other => vec![other],
    };
    items
        .into_iter()
        .filter_map(|item| serde_yaml::from_value(item).ok())
        .collect()
}

/// Rewrites relative `base` and `file` locators of one file against its own location.
fn absolutize(
    value: &mut Value,
    typed: &limatype::LimaYaml,
    src: &Source,
) -> Result<(), LoadError> {
    let fix = |loc: &str, field: &str| {
        absolute_locator(loc, &src.locator)
            .map_err(|e| LoadError(vec![diag(src, field, e.to_string())]))
    };
    if let Some(bases) = &typed.base {
        let mut fixed = Vec::new();
        for (i, b) in bases.iter().enumerate() {
            let mut m = Mapping::new();
            m.insert("url".into(), fix(&b.url, &format!("base[{i}]"))?.into());
            if let Some(d) = &b.digest {
                m.insert("digest".into(), d.clone().into());
            }
            fixed.push(Value::Mapping(m));
        }
        if let Some(map) = value.as_mapping_mut() {
            map.insert("base".into(), Value::Sequence(fixed));
        }
    }
    for list in ["provision", "probes"] {
        let files: Vec<Option<String>> = match list {
            "provision" => typed
                .provision
                .iter()
                .flatten()
                .map(|p| p.file.as_ref().map(|f| f.url.clone()))
                .collect(),
            _ => typed
                .probes
                .iter()
                .flatten()
                .map(|p| p.file.as_ref().map(|f| f.url.clone()))
                .collect(),
        };
        for (i, url) in files.into_iter().enumerate() {
            let Some(url) = url else { continue };
            let abs = fix(&url, &format!("{list}[{i}].file"))?;
            if let Some(item) = value
                .get_mut(list)
                .and_then(|l| l.get_mut(i))
                .and_then(Value::as_mapping_mut)
            {
                match item.get_mut("file") {
                    Some(Value::Mapping(m)) => {
                        m.insert("url".into(), abs.into());
                    }
                    Some(other) => *other = abs.into(),
                    None => {}
                }
            }
        }
    }
    Ok(())
}

fn version_of(v: Option<&Value>) -> Option<(u64, u64, u64)> {
    limavalidate::parse_version(v?.as_str()?)
}

/// Merges `base` into `doc` (the template wins) with Lima's rules; see the module docs.
pub(crate) fn merge_document(doc: &mut Value, base: &Value) {
    let (Some(a), Some(b)) = (doc.as_mapping_mut(), base.as_mapping()) else {
        return;
    };
    // Higher minimum versions win.
    let key = Value::from("minimumLimaVersion");
    if let (Some(av), Some(bv)) = (version_of(a.get(&key)), version_of(b.get(&key))) {
        if bv > av {
            a.insert(key.clone(), b[&key].clone());
        }
    }
    let qemu_min = |m: &Mapping| {
        m.get("vmOpts")
            .and_then(|v| v.get("qemu"))
            .and_then(|q| q.get("minimumVersion"))
            .cloned()
    };
    if let (Some(av), Some(bv)) = (qemu_min(a), qemu_min(b)) {
        if version_of(Some(&bv)) > version_of(Some(&av)) {
            if let Some(q) = a
                .get_mut("vmOpts")
                .and_then(|v| v.get_mut("qemu"))
                .and_then(Value::as_mapping_mut)
            {
                q.insert("minimumVersion".into(), bv);
            }
        }
    }
    let template_has_dns = a
        .get("dns")
        .and_then(Value::as_sequence)
        .is_some_and(|s| !s.is_empty());
    for (k, bv) in b {
        let top = k.as_str().unwrap_or_default();
        // A base's `base:` is there only when it was left unembedded (`template copy
        // --embed`); it is appended to the template's, as upstream's merge does.
        if top == "dns" && template_has_dns {
            continue;
        }
        match a.get_mut(k) {
            None => {
                a.insert(k.clone(), bv.clone());
            }
            Some(av) => merge_value(av, bv, matches!(top, "provision" | "probes")),
        }
    }
    if let Some(Value::Sequence(s)) = a.get_mut("mountTypesUnsupported") {
        let mut seen = Vec::new();
        s.retain(|v| {
            if seen.contains(v) {
                false
            } else {
                seen.push(v.clone());
                true
            }
        });
    }
}

fn merge_value(a: &mut Value, b: &Value, prepend: bool) {
    match (a, b) {
        (Value::Mapping(am), Value::Mapping(bm)) => {
            for (k, bv) in bm {
                match am.get_mut(k) {
                    None => {
                        am.insert(k.clone(), bv.clone());
                    }
                    Some(av) => merge_value(av, bv, prepend),
                }
            }
        }
        (Value::Sequence(aseq), Value::Sequence(bseq)) => {
            if prepend {
                let mut merged = bseq.clone();
                merged.append(aseq);
                *aseq = merged;
            } else {
                aseq.extend(bseq.iter().cloned());
            }
        }
        // Scalars, nulls and mismatched types: the template's value stays.
        _ => {}
    }
}

/// Combines list entries sharing a key (see the module docs). Works on the typed config.
pub(crate) fn combine_list_entries(y: &mut limatype::LimaYaml) {
    if let Some(disks) = &mut y.additional_disks {
        combine(
            disks,
            |d| d.name.clone(),
            |dst, src| {
                if dst.format.is_none() {
                    dst.format = src.format;
                }
                if dst.fs_type.is_none() {
                    dst.fs_type.clone_from(&src.fs_type);
                }
                if dst.fs_args.as_ref().is_none_or(|a| a.is_empty()) {
                    dst.fs_args.clone_from(&src.fs_args);
                }
            },
        );
    }
    if let Some(mounts) = &mut y.mounts {
        combine(
            mounts,
            |m| m.mount_point.clone().unwrap_or_else(|| m.location.clone()),
            |dst, src| {
                fill_none(&mut dst.mount_point, &src.mount_point);
                fill_none(&mut dst.writable, &src.writable);
                let s = src.sshfs.clone().unwrap_or_default();
                let d = dst.sshfs.get_or_insert_with(Default::default);
                fill_none(&mut d.cache, &s.cache);
                fill_none(&mut d.follow_symlinks, &s.follow_symlinks);
                fill_none(&mut d.sftp_driver, &s.sftp_driver);
                let s = src.nine_p.clone().unwrap_or_default();
                let d = dst.nine_p.get_or_insert_with(Default::default);
                fill_none(&mut d.security_model, &s.security_model);
                fill_none(&mut d.protocol_version, &s.protocol_version);
                fill_none(&mut d.msize, &s.msize);
                fill_none(&mut d.cache, &s.cache);
                let s = src.virtiofs.clone().unwrap_or_default();
                let d = dst.virtiofs.get_or_insert_with(Default::default);
                fill_none(&mut d.queue_size, &s.queue_size);
                drop_empty(&mut dst.sshfs);
                drop_empty(&mut dst.nine_p);
                drop_empty(&mut dst.virtiofs);
            },
        );
    }
    if let Some(networks) = &mut y.networks {
        combine(
            networks,
            |n| n.interface.clone().unwrap_or_default(),
            |dst, src| {
                let empty = |s: &Option<String>| s.as_deref().unwrap_or_default().is_empty();
                if empty(&dst.lima) && empty(&dst.socket) {
                    if !empty(&src.lima) {
                        dst.lima.clone_from(&src.lima);
                    }
                    if !empty(&src.socket) {
                        dst.socket.clone_from(&src.socket);
                    }
                }
                if empty(&dst.mac_address) && !empty(&src.mac_address) {
                    dst.mac_address.clone_from(&src.mac_address);
                }
                fill_none(&mut dst.vz_nat, &src.vz_nat);
                fill_none(&mut dst.metric, &src.metric);
            },
        );
    }
}

fn fill_none<T: Clone>(dst: &mut Option<T>, src: &Option<T>) {
    if dst.is_none() {
        dst.clone_from(src);
    }
}

fn drop_empty<T: Default + PartialEq>(v: &mut Option<T>) {
    if v.as_ref().is_some_and(|x| *x == T::default()) {
        *v = None;
    }
}

fn combine<T>(list: &mut Vec<T>, key: impl Fn(&T) -> String, fill: impl Fn(&mut T, &T)) {
    let mut index: Vec<(String, usize)> = Vec::new();
    let mut src = 0;
    while src < list.len() {
        let k = key(&list[src]);
        let targets: Vec<usize> = if k == "*" {
            (0..src).collect()
        } else if let Some((_, i)) = index.iter().find(|(name, _)| *name == k) {
            vec![*i]
        } else {
            if !k.is_empty() {
                index.push((k, src));
            }
            src += 1;
            continue;
        };
        let entry = list.remove(src);
        for dst in targets {
            fill(&mut list[dst], &entry);
        }
    }
}
