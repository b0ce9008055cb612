//! Tidy: the project's conventions as tests, after rust-analyzer's `xtask/src/tidy.rs`. It runs
//! with the ordinary test command (`cargo nextest run --workspace`, the test step of
//! `cargo xtask ci`), so a convention nobody remembers still fails CI.
//!
//! Each check is a plain function over text (or paths) returning the problems it finds, so a
//! unit test can feed it a bad input and see it fail; the `real_tree` tests run it on the
//! workspace. The checks:
//!
//! - every `.rs` file under `crates/`, `xtask/` and `fuzz/` opens with a `//!` line;
//! - the drivers are named in one place, the layer table (`layers::DRIVERS`), and every other
//!   list agrees with it: limactl's `driver-<name>` features, its `registry::Internal` lines,
//!   the crate table of `docs/architecture.md` (deny.toml's wrappers are checked against the
//!   same table by `xtask/tests/deny_agrees_with_layers.rs`; `KNOWN_DRIVERS` is derived);
//! - no `Result<_, String>` in a library crate's public API;
//! - the pipeline definitions under `ci/` parse as YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

// ------------------------------------------------------------------------------------------
// Every Rust file opens with `//!`.

/// Whether `text` opens with a `//!` line. Leading blank lines are allowed; nothing else (no
/// `//` comment, no `#![attr]`) may come first: the module's doc is the first thing a reader
/// sees.
fn opens_with_module_doc(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("//!"))
}

/// Every `.rs` file under `dirs` (relative to `root`), skipping `target/` directories (build
/// output, including generated code under `OUT_DIR`) and hidden ones; sorted.
fn rust_files(root: &Path, dirs: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for dir in dirs {
        walk(&root.join(dir), &mut out);
    }
    out.sort();
    out
}

// ------------------------------------------------------------------------------------------
// One source of truth for the drivers.

/// Problems with limactl's driver features (`crates/limactl/Cargo.toml`): exactly one
/// `driver-<name>` feature per driver, each `["dep:<name>"]` (the driver crate an optional
/// dependency, so leaving the feature out leaves the crate out).
fn limactl_feature_problems(drivers: &[&str], cargo_toml: &str) -> Vec<String> {
    let manifest: toml::Table = match cargo_toml.parse() {
        Ok(t) => t,
        Err(e) => return vec![format!("crates/limactl/Cargo.toml: not TOML: {e}")],
    };
    let empty = toml::Table::new();
    let features = manifest
        .get("features")
        .and_then(|f| f.as_table())
        .unwrap_or(&empty);
    let mut problems = Vec::new();
    for d in drivers {
        let feature = format!("driver-{d}");
        let expected = toml::Value::Array(vec![toml::Value::String(format!("dep:{d}"))]);
        match features.get(&feature) {
            None => problems.push(format!(
                "crates/limactl/Cargo.toml: no feature `{feature}` for driver {d}"
            )),
            Some(v) if *v != expected => problems.push(format!(
                "crates/limactl/Cargo.toml: feature `{feature}` is {v}, expected [\"dep:{d}\"] \
                 (with `{d}` an optional dependency)"
            )),
            Some(_) => {}
        }
    }
    for name in features.keys() {
        if let Some(d) = name.strip_prefix("driver-") {
            if !drivers.contains(&d) {
                problems.push(format!(
                    "crates/limactl/Cargo.toml: feature `{name}` names no driver of the layer \
                     table (xtask/src/layers.rs)"
                ));
            }
        }
    }
    problems
}

/// Problems with limactl's internal-driver list (`crates/limactl/src/drivers.rs`): one
/// `registry::Internal::new(<name>::NAME` per driver, under `#[cfg(feature = "driver-<name>")]`.
fn limactl_internal_problems(drivers: &[&str], drivers_rs: &str) -> Vec<String> {
    const CALL: &str = "registry::Internal::new(";
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    let lines: Vec<&str> = drivers_rs.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = line.find(CALL) else {
            continue;
        };
        let rest = &line[at + CALL.len()..];
        let Some(name) = rest
            .split("::NAME")
            .next()
            .filter(|_| rest.contains("::NAME"))
        else {
            problems.push(format!(
                "crates/limactl/src/drivers.rs:{}: `{CALL}` without `<driver>::NAME`",
                i + 1
            ));
            continue;
        };
        let name = name.trim().to_string();
        let cfg = format!("#[cfg(feature = \"driver-{name}\")]");
        let above = lines[..i].iter().rev().find(|l| !l.trim().is_empty());
        if above.map(|l| l.trim()) != Some(cfg.as_str()) {
            problems.push(format!(
                "crates/limactl/src/drivers.rs:{}: the {name} line is not under `{cfg}`",
                i + 1
            ));
        }
        *found.entry(name).or_default() += 1;
    }
    for d in drivers {
        match found.get(*d) {
            None => problems.push(format!(
                "crates/limactl/src/drivers.rs: no `{CALL}{d}::NAME, ..)` for driver {d}"
            )),
            Some(n) if *n > 1 => problems.push(format!(
                "crates/limactl/src/drivers.rs: driver {d} is registered {n} times"
            )),
            Some(_) => {}
        }
    }
    for name in found.keys() {
        if !drivers.contains(&name.as_str()) {
            problems.push(format!(
                "crates/limactl/src/drivers.rs: registers {name}, which is no driver of the \
                 layer table (xtask/src/layers.rs)"
            ));
        }
    }
    problems
}

/// A layer as `docs/architecture.md` writes it: `6` is (6, 0), `7.1` is (7, 1).
fn parse_doc_layer(s: &str) -> Option<(u8, u8)> {
    match s.trim().split_once('.') {
        Some((l, sub)) => Some((l.parse().ok()?, sub.parse().ok()?)),
        None => Some((s.trim().parse().ok()?, 0)),
    }
}

/// `crate -> layer` from the `| layer | crate | owns |` table(s) of a markdown file: every
/// backquoted name in the crate cell of a row whose first cell is a layer number.
fn doc_crate_layers(markdown: &str) -> BTreeMap<String, Vec<(u8, u8)>> {
    let mut out: BTreeMap<String, Vec<(u8, u8)>> = BTreeMap::new();
    for line in markdown.lines() {
        let Some(row) = line.trim().strip_prefix('|') else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').collect();
        if cells.len() < 2 {
            continue;
        }
        let Some(layer) = parse_doc_layer(cells[0]) else {
            continue;
        };
        for (i, part) in cells[1].split('`').enumerate() {
            if i % 2 == 1 {
                out.entry(part.to_string()).or_default().push(layer);
            }
        }
    }
    out
}

/// Problems with the crate table of `docs/architecture.md`: every crate of the layer table
/// that has a directory in `crates/` (`existing`) appears there, once, with its layer.
fn architecture_table_problems(
    rows: &[(&str, (u8, u8))],
    existing: &BTreeSet<String>,
    markdown: &str,
) -> Vec<String> {
    let documented = doc_crate_layers(markdown);
    let mut problems = Vec::new();
    for (name, layer) in rows {
        if !existing.contains(*name) {
            continue;
        }
        let want = format!("{}.{}", layer.0, layer.1);
        match documented.get(*name).map(Vec::as_slice) {
            None | Some([]) => problems.push(format!(
                "docs/architecture.md: crate `{name}` (layer {want}) is missing from the table"
            )),
            Some([found]) if found == layer => {}
            Some(found) => problems.push(format!(
                "docs/architecture.md: crate `{name}` is listed with layer(s) {}, but \
                 xtask/src/layers.rs says {want}",
                found
                    .iter()
                    .map(|(l, s)| format!("{l}.{s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    problems
}

// ------------------------------------------------------------------------------------------
// No `Result<_, String>` in a library's public API.

/// What one file says: its public items that carry `Result<_, String>`, and the modules it
/// declares in other files (test modules left out).
#[derive(Debug, Default)]
struct FileScan {
    string_errors: Vec<String>,
    /// `(inline module path, module name, #[path] attribute)` of each `mod name;`.
    child_mods: Vec<(Vec<String>, String, Option<String>)>,
}

/// Finds `Result<T, String>` (any path ending in `Result`, e.g. `std::result::Result`, with
/// `String` or `std::string::String` as its second argument) anywhere in a type.
#[derive(Default)]
struct StringErrFinder {
    found: bool,
}

impl<'ast> Visit<'ast> for StringErrFinder {
    fn visit_type_path(&mut self, tp: &'ast syn::TypePath) {
        if is_result_string(&tp.path) {
            self.found = true;
        }
        syn::visit::visit_type_path(self, tp);
    }
}

fn is_string(ty: &syn::Type) -> bool {
    let syn::Type::Path(tp) = ty else {
        return false;
    };
    let idents: Vec<String> = tp
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let last_plain = tp
        .path
        .segments
        .last()
        .is_some_and(|s| s.arguments.is_none());
    last_plain
        && tp.qself.is_none()
        && matches!(
            idents.iter().map(String::as_str).collect::<Vec<_>>()[..],
            ["String"] | ["std" | "alloc", "string", "String"]
        )
}

fn is_result_string(path: &syn::Path) -> bool {
    let Some(last) = path.segments.last() else {
        return false;
    };
    if last.ident != "Result" {
        return false;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    let types: Vec<&syn::Type> = args
        .args
        .iter()
        .filter_map(|a| match a {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    types.len() == 2 && is_string(types[1])
}

fn sig_has_string_err(sig: &syn::Signature) -> bool {
    let mut f = StringErrFinder::default();
    f.visit_signature(sig);
    f.found
}

fn type_has_string_err(ty: &syn::Type) -> bool {
    let mut f = StringErrFinder::default();
    f.visit_type(ty);
    f.found
}

fn is_pub(vis: &syn::Visibility) -> bool {
    matches!(vis, syn::Visibility::Public(_))
}

/// `#[cfg(test)]`, `#[cfg(all(test, ...))]`: code compiled for tests only.
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        if !a.path().is_ident("cfg") {
            return false;
        }
        let Ok(list) = a.meta.require_list() else {
            return false;
        };
        let tokens = list.tokens.to_string();
        let words: Vec<&str> = tokens
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty())
            .collect();
        words.contains(&"test") && !words.contains(&"not") && !words.contains(&"any")
    })
}

fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| {
        let syn::Meta::NameValue(nv) = &a.meta else {
            return None;
        };
        if !nv.path.is_ident("path") {
            return None;
        }
        match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        }
    })
}

fn type_name(ty: &syn::Type) -> String {
    match ty {
        syn::Type::Path(tp) => tp
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        _ => "_".into(),
    }
}

fn fields_have_string_err(fields: &syn::Fields, only_pub: bool) -> Vec<String> {
    fields
        .iter()
        .enumerate()
        .filter(|(_, f)| !only_pub || is_pub(&f.vis))
        .filter(|(_, f)| type_has_string_err(&f.ty))
        .map(|(i, f)| {
            f.ident
                .as_ref()
                .map_or_else(|| i.to_string(), |id| id.to_string())
        })
        .collect()
}

fn scan_items(items: &[syn::Item], module: &[String], out: &mut FileScan) {
    let prefix = if module.is_empty() {
        String::new()
    } else {
        format!("{}::", module.join("::"))
    };
    let mut flagged = Vec::new();
    let mut flag = |what: String| flagged.push(format!("{prefix}{what}"));
    let mut children = Vec::new();
    for item in items {
        match item {
            syn::Item::Fn(f)
                if is_pub(&f.vis) && !is_test_only(&f.attrs) && sig_has_string_err(&f.sig) =>
            {
                flag(format!("pub fn {}", f.sig.ident));
            }
            syn::Item::Type(t) if is_pub(&t.vis) && type_has_string_err(&t.ty) => {
                flag(format!("pub type {}", t.ident));
            }
            syn::Item::Struct(s) if is_pub(&s.vis) && !is_test_only(&s.attrs) => {
                for field in fields_have_string_err(&s.fields, true) {
                    flag(format!("pub struct {}, field {field}", s.ident));
                }
            }
            syn::Item::Enum(e) if is_pub(&e.vis) && !is_test_only(&e.attrs) => {
                for v in &e.variants {
                    for field in fields_have_string_err(&v.fields, false) {
                        flag(format!("pub enum {}, variant {}.{field}", e.ident, v.ident));
                    }
                }
            }
            syn::Item::Trait(t) if is_pub(&t.vis) && !is_test_only(&t.attrs) => {
                for ti in &t.items {
                    if let syn::TraitItem::Fn(m) = ti {
                        if sig_has_string_err(&m.sig) {
                            flag(format!("pub trait {}, fn {}", t.ident, m.sig.ident));
                        }
                    }
                }
            }
            syn::Item::Impl(imp) if !is_test_only(&imp.attrs) => {
                let self_ty = type_name(&imp.self_ty);
                let trait_name = imp
                    .trait_
                    .as_ref()
                    .and_then(|(_, p, _)| p.segments.last().map(|s| s.ident.to_string()));
                for ii in &imp.items {
                    match ii {
                        // A trait impl's methods are as public as the trait and the type.
                        syn::ImplItem::Fn(m)
                            if (trait_name.is_some() || is_pub(&m.vis))
                                && !is_test_only(&m.attrs)
                                && sig_has_string_err(&m.sig) =>
                        {
                            flag(match &trait_name {
                                Some(t) => format!("impl {t} for {self_ty}, fn {}", m.sig.ident),
                                None => format!("impl {self_ty}, pub fn {}", m.sig.ident),
                            });
                        }
                        // `type Err = String` (FromStr, TryFrom): the same thing spelled
                        // through an associated type.
                        syn::ImplItem::Type(t)
                            if trait_name.is_some()
                                && (t.ident == "Err" || t.ident == "Error")
                                && is_string(&t.ty) =>
                        {
                            flag(format!(
                                "impl {} for {self_ty}, type {} = String",
                                trait_name.as_deref().unwrap_or_default(),
                                t.ident
                            ));
                        }
                        _ => {}
                    }
                }
            }
            syn::Item::Mod(m) if !is_test_only(&m.attrs) => match &m.content {
                Some((_, inner)) => children.push((m.ident.to_string(), inner)),
                None => {
                    out.child_mods
                        .push((module.to_vec(), m.ident.to_string(), path_attr(&m.attrs)))
                }
            },
            _ => {}
        }
    }
    out.string_errors.extend(flagged);
    for (name, inner) in children {
        let mut path = module.to_vec();
        path.push(name);
        scan_items(inner, &path, out);
    }
}

/// Parses one file of a library and lists what its public API carries as `Result<_, String>`
/// (pub fns, inherent pub methods, trait-impl methods, `type Err = String`, pub type aliases,
/// pub traits' methods, pub struct fields, pub enums' fields), skipping `cfg(test)` code.
fn scan_library_file(text: &str) -> Result<FileScan, syn::Error> {
    let file = syn::parse_file(text)?;
    let mut scan = FileScan::default();
    scan_items(&file.items, &[], &mut scan);
    Ok(scan)
}

/// The files of a library crate (`src/lib.rs` and the modules it declares, test modules left
/// out; binaries and tests are not part of it), each with its scan. `read` returns a file's
/// text, `None` when it does not exist.
fn library_scans(
    src: &Path,
    read: &dyn Fn(&Path) -> Option<String>,
) -> Vec<(PathBuf, Result<FileScan, String>)> {
    let mut out = Vec::new();
    let mut todo = vec![(src.join("lib.rs"), src.to_path_buf())];
    while let Some((file, mod_dir)) = todo.pop() {
        let Some(text) = read(&file) else {
            out.push((file, Err("declared but not found".to_string())));
            continue;
        };
        let scan = scan_library_file(&text).map_err(|e| e.to_string());
        if let Ok(scan) = &scan {
            for (inline, name, path) in &scan.child_mods {
                let dir = inline.iter().fold(mod_dir.clone(), |d, m| d.join(m));
                let candidates = match path {
                    Some(p) => vec![(file.parent().unwrap_or(src).join(p), None)],
                    None => vec![
                        (dir.join(format!("{name}.rs")), Some(dir.join(name))),
                        (dir.join(name).join("mod.rs"), Some(dir.join(name))),
                    ],
                };
                let found = candidates
                    .iter()
                    .find(|(f, _)| read(f).is_some())
                    .or(candidates.first())
                    .cloned()
                    .unwrap();
                let child_dir = found
                    .1
                    .unwrap_or_else(|| found.0.parent().unwrap_or(src).to_path_buf());
                todo.push((found.0, child_dir));
            }
        }
        out.push((file, scan));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

// ------------------------------------------------------------------------------------------
// The pipeline definitions parse.

/// Problems with a YAML file under `ci/`: it must parse, and a GitHub Actions workflow (a
/// mapping with `jobs`) must also have `on` and give each job `runs-on` and `steps`.
fn ci_yaml_problems(name: &str, text: &str) -> Vec<String> {
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return vec![format!("{name}: not YAML: {e}")],
    };
    let Some(jobs) = value.get("jobs") else {
        return vec![];
    };
    let mut problems = Vec::new();
    if value.get("on").is_none() {
        problems.push(format!("{name}: a workflow needs `on`"));
    }
    let Some(jobs) = jobs.as_mapping() else {
        return vec![format!("{name}: `jobs` is not a mapping")];
    };
    for (job, body) in jobs {
        let job = job.as_str().unwrap_or("?");
        for key in ["runs-on", "steps"] {
            if body.get(key).is_none() {
                problems.push(format!("{name}: job `{job}` has no `{key}`"));
            }
        }
    }
    problems
}

// ------------------------------------------------------------------------------------------

/// Fails with every problem, one a line, under a heading saying how to fix them.
fn assert_none(problems: Vec<String>, what: &str) {
    assert!(
        problems.is_empty(),
        "{what} ({} problem(s)):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ------------------------------------------------------------------------------------------
// A crate's `lib.rs` names the layer the table gives it.

/// The `(layer, sub-layer)` a `lib.rs` names in its first line (`` `name` — layer 7.2: ``;
/// `layer 6` is `(6, 0)`), if it names one.
fn layer_named(lib_rs: &str) -> Option<(u8, u8)> {
    let first = lib_rs.lines().find(|l| !l.trim().is_empty())?;
    let rest = &first[first.find("layer ")? + "layer ".len()..];
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let number = number.trim_end_matches('.');
    let (major, minor) = number.split_once('.').unwrap_or((number, "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The checks run on this workspace.
mod real_tree {
    use super::*;
    use crate::layers;

    fn root() -> PathBuf {
        crate::project_root()
    }

    fn read(rel: &str) -> String {
        std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    fn rel(path: &Path) -> String {
        path.strip_prefix(root())
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn crate_dirs() -> BTreeSet<String> {
        std::fs::read_dir(root().join("crates"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("Cargo.toml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// docs/architecture.md and the layer table are the map; each `lib.rs` says the same.
    #[test]
    fn each_lib_rs_names_its_layer_as_the_table() {
        let mut problems = Vec::new();
        for l in layers::LAYERS {
            let path = root().join("crates").join(l.crate_name).join("src/lib.rs");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match layer_named(&text) {
                Some(named) if named == l.layer => {}
                named => problems.push(format!(
                    "{}: names layer {named:?}, the table says {:?}",
                    rel(&path),
                    l.layer
                )),
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_rust_file_opens_with_a_module_doc() {
        let files = rust_files(&root(), &["crates", "xtask", "fuzz"]);
        assert!(files.len() > 50, "found only {} .rs files", files.len());
        let problems = files
            .iter()
            .filter(|f| !opens_with_module_doc(&std::fs::read_to_string(f).unwrap_or_default()))
            .map(|f| format!("{}: does not open with a `//!` line", rel(f)))
            .collect();
        assert_none(
            problems,
            "every .rs file opens with `//!` lines saying what it is for",
        );
    }

    #[test]
    fn known_drivers_are_the_layer_table_drivers() {
        let from_table: Vec<&str> = layers::LAYERS
            .iter()
            .filter(|l| l.kind == layers::Kind::Driver)
            .map(|l| l.crate_name)
            .collect();
        assert_eq!(layers::DRIVERS, from_table);
        assert_eq!(crate::build::KNOWN_DRIVERS, from_table);
    }

    #[test]
    fn limactl_features_name_every_driver() {
        assert_none(
            limactl_feature_problems(layers::DRIVERS, &read("crates/limactl/Cargo.toml")),
            "limactl's driver features must match the layer table's drivers",
        );
    }

    #[test]
    fn limactl_registers_every_driver() {
        assert_none(
            limactl_internal_problems(layers::DRIVERS, &read("crates/limactl/src/drivers.rs")),
            "limactl's internal drivers must match the layer table's drivers",
        );
    }

    #[test]
    fn architecture_doc_lists_every_crate_with_its_layer() {
        let rows: Vec<(&str, (u8, u8))> = layers::LAYERS
            .iter()
            .map(|l| (l.crate_name, l.layer))
            .collect();
        assert_none(
            architecture_table_problems(&rows, &crate_dirs(), &read("docs/architecture.md")),
            "docs/architecture.md's crate table must match xtask/src/layers.rs",
        );
    }

    #[test]
    fn no_string_errors_in_library_apis() {
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        let mut problems = Vec::new();
        let mut files = 0;
        for name in crate_dirs() {
            let src = root().join("crates").join(&name).join("src");
            if !src.join("lib.rs").is_file() {
                continue; // a binary-only crate
            }
            for (file, scan) in library_scans(&src, &read) {
                files += 1;
                match scan {
                    Err(e) => problems.push(format!("{}: {e}", rel(&file))),
                    Ok(scan) => problems.extend(
                        scan.string_errors
                            .iter()
                            .map(|what| format!("{}: {what}", rel(&file))),
                    ),
                }
            }
        }
        assert!(files > 30, "scanned only {files} library files");
        assert_none(
            problems,
            "library APIs return typed errors (thiserror), not Result<_, String>",
        );
    }

    #[test]
    fn ci_definitions_parse() {
        let dir = root().join("ci");
        let mut problems = Vec::new();
        let mut seen = 0;
        let mut todo = vec![dir];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    todo.push(path);
                } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                    seen += 1;
                    let text = std::fs::read_to_string(&path).unwrap();
                    problems.extend(ci_yaml_problems(&rel(&path), &text));
                }
            }
        }
        assert!(seen > 0, "no YAML under ci/");
        assert_none(problems, "the pipeline definitions under ci/ must parse");
    }
}

/// Each check fails on a bad input.
mod checks_fail {
    use super::*;

    #[test]
    fn module_doc() {
        assert!(opens_with_module_doc("//! What this is.\nfn f() {}\n"));
        assert!(opens_with_module_doc("\n\n//! After blank lines.\n"));
        assert!(!opens_with_module_doc("fn f() {}\n"));
        assert!(!opens_with_module_doc("// A plain comment.\n//! Doc.\n"));
        assert!(!opens_with_module_doc("#![no_main]\n//! Doc.\n"));
        assert!(!opens_with_module_doc("/// An item doc.\nfn f() {}\n"));
        assert!(!opens_with_module_doc(""));
    }

    #[test]
    fn layer_names() {
        assert_eq!(layer_named("//! `a` — layer 7.2: the x.\n"), Some((7, 2)));
        assert_eq!(layer_named("//! `a` — layer 6: the y.\n"), Some((6, 0)));
        assert_eq!(layer_named("//! `a` — layer 1.\n"), Some((1, 0)));
        assert_eq!(layer_named("//! `a`: no layer named.\n"), None);
    }

    #[test]
    fn rust_files_skip_target() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "crates/a/src/lib.rs",
            "crates/a/target/x.rs",
            "crates/a/README.md",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let files = rust_files(dir.path(), &["crates", "missing"]);
        assert_eq!(files, vec![dir.path().join("crates/a/src/lib.rs")]);
    }

    const DRIVERS: &[&str] = &["qemu", "vz"];

    #[test]
    fn limactl_features() {
        let good = r#"
[features]
default = ["driver-qemu"]
driver-qemu = ["dep:qemu"]
driver-vz = ["dep:vz"]
"#;
        assert_eq!(
            limactl_feature_problems(DRIVERS, good),
            Vec::<String>::new()
        );
        let missing = "[features]\ndriver-qemu = [\"dep:qemu\"]\n";
        let p = limactl_feature_problems(DRIVERS, missing);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("no feature `driver-vz`"), "{p:?}");
        let not_optional = "[features]\ndriver-qemu = []\ndriver-vz = [\"dep:vz\"]\n";
        let p = limactl_feature_problems(DRIVERS, not_optional);
        assert!(p[0].contains("`driver-qemu` is []"), "{p:?}");
        let extra = format!("{good}driver-hyperv = [\"dep:hyperv\"]\n");
        let p = limactl_feature_problems(DRIVERS, &extra);
        assert!(p[0].contains("`driver-hyperv` names no driver"), "{p:?}");
    }

    #[test]
    fn limactl_internal_lines() {
        let good = r#"
    #[cfg(feature = "driver-qemu")]
    v.push(registry::Internal::new(qemu::NAME, || {
        Arc::new(qemu::QemuDriver::new())
    }));
    #[cfg(feature = "driver-vz")]
    v.push(registry::Internal::new(vz::NAME, || Arc::new(vz::VzDriver::new())));
"#;
        assert_eq!(
            limactl_internal_problems(DRIVERS, good),
            Vec::<String>::new()
        );
        let only_qemu = good
            .split("#[cfg(feature = \"driver-vz\")]")
            .next()
            .unwrap();
        let p = limactl_internal_problems(DRIVERS, only_qemu);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("for driver vz"), "{p:?}");
        let wrong_cfg = good.replace("feature = \"driver-vz\"", "feature = \"driver-qemu\"");
        let p = limactl_internal_problems(DRIVERS, &wrong_cfg);
        assert!(p[0].contains("the vz line is not under"), "{p:?}");
        let p = limactl_internal_problems(&["qemu"], good);
        assert!(p[0].contains("registers vz, which is no driver"), "{p:?}");
    }

    #[test]
    fn architecture_table() {
        let md = "\
| layer | crate | owns |
| --- | --- | --- |
| 1 | `limatype` | types |
| 6 | `qemu`, `vz` | drivers |
| 7.1 | `hostagent` | the host agent |
| 7.0 | `portfwd` (planned) | not there yet |
";
        let rows = [
            ("limatype", (1, 0)),
            ("qemu", (6, 0)),
            ("vz", (6, 0)),
            ("hostagent", (7, 1)),
            ("portfwd", (7, 0)),
            ("guestagent", (1, 0)),
        ];
        let existing: BTreeSet<String> = ["limatype", "qemu", "vz", "hostagent"]
            .map(String::from)
            .into();
        assert_eq!(
            architecture_table_problems(&rows, &existing, md),
            Vec::<String>::new()
        );
        // A driver missing from the doc's table.
        let p = architecture_table_problems(&rows, &existing, &md.replace(", `vz`", ""));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("`vz` (layer 6.0) is missing"), "{p:?}");
        // A crate with the wrong layer.
        let p = architecture_table_problems(&rows, &existing, &md.replace("| 7.1 |", "| 7 |"));
        assert!(
            p[0].contains("`hostagent` is listed with layer(s) 7.0"),
            "{p:?}"
        );
        // A crate that now exists must be documented.
        let mut more = existing.clone();
        more.insert("guestagent".into());
        let p = architecture_table_problems(&rows, &more, md);
        assert!(p[0].contains("`guestagent`"), "{p:?}");
    }

    fn flagged(src: &str) -> Vec<String> {
        scan_library_file(src).unwrap().string_errors
    }

    #[test]
    fn string_errors() {
        assert_eq!(
            flagged("pub fn f() -> Result<(), String> { Ok(()) }"),
            ["pub fn f"]
        );
        assert_eq!(
            flagged("pub fn f() -> std::result::Result<u8, std::string::String> { Ok(1) }"),
            ["pub fn f"]
        );
        assert_eq!(
            flagged("pub fn f(g: impl Fn() -> Result<(), String>) {}"),
            ["pub fn f"]
        );
        assert_eq!(
            flagged("pub fn f() -> Option<Vec<Result<u8, String>>> { None }"),
            ["pub fn f"]
        );
        assert_eq!(
            flagged("pub type R<T> = Result<T, String>;"),
            ["pub type R"]
        );
        assert_eq!(
            flagged("pub struct S { pub r: Result<u8, String>, private: Result<u8, String> }"),
            ["pub struct S, field r"]
        );
        assert_eq!(
            flagged("pub enum E { A(Result<u8, String>) }"),
            ["pub enum E, variant A.0"]
        );
        assert_eq!(
            flagged("pub trait T { fn m(&self) -> Result<(), String>; }"),
            ["pub trait T, fn m"]
        );
        assert_eq!(
            flagged("pub struct S; impl S { pub fn m() -> Result<(), String> { Ok(()) } }"),
            ["impl S, pub fn m"]
        );
        assert_eq!(
            flagged(
                "impl std::str::FromStr for V { type Err = String; \
                 fn from_str(s: &str) -> Result<Self, String> { todo!() } }"
            ),
            [
                "impl FromStr for V, type Err = String",
                "impl FromStr for V, fn from_str"
            ]
        );
        assert_eq!(
            flagged("pub mod m { pub fn f() -> Result<(), String> { Ok(()) } }"),
            ["m::pub fn f"]
        );
    }

    #[test]
    fn string_errors_allowed_where_not_public_api() {
        let ok = "
            fn private() -> Result<(), String> { Ok(()) }
            pub(crate) fn crate_only() -> Result<(), String> { Ok(()) }
            pub fn typed() -> Result<(), std::io::Error> { Ok(()) }
            pub fn other_result() -> Result<String, u8> { Ok(String::new()) }
            pub fn body_only() { let _: Result<(), String> = Ok(()); }
            pub struct S { field: Result<u8, String> }
            impl S { fn helper() -> Result<(), String> { Ok(()) } }
            #[cfg(test)]
            mod tests { pub fn f() -> Result<(), String> { Ok(()) } }
            #[cfg(test)]
            pub fn test_helper() -> Result<(), String> { Ok(()) }
        ";
        assert_eq!(flagged(ok), Vec::<String>::new());
    }

    #[test]
    fn library_files_follow_mod_declarations() {
        let files: BTreeMap<PathBuf, &str> = [
            (
                "src/lib.rs",
                "//! L\nmod a;\npub mod b;\n#[cfg(test)]\nmod tests;\nmod inline { mod deep; }\n",
            ),
            ("src/a.rs", "//! A\nmod child;\n"),
            (
                "src/a/child.rs",
                "pub fn bad() -> Result<(), String> { Ok(()) }\n",
            ),
            ("src/b/mod.rs", "pub fn ok() {}\n"),
            (
                "src/tests.rs",
                "pub fn ignored() -> Result<(), String> { Ok(()) }\n",
            ),
            ("src/inline/deep.rs", "pub type R = Result<(), String>;\n"),
            (
                "src/main.rs",
                "pub fn binary() -> Result<(), String> { Ok(()) }\n",
            ),
        ]
        .into_iter()
        .map(|(p, t)| (PathBuf::from(p), t))
        .collect();
        let read = |p: &Path| files.get(p).map(|t| t.to_string());
        let scans = library_scans(Path::new("src"), &read);
        let listed: Vec<String> = scans.iter().map(|(p, _)| p.display().to_string()).collect();
        assert_eq!(
            listed,
            [
                "src/a/child.rs",
                "src/a.rs",
                "src/b/mod.rs",
                "src/inline/deep.rs",
                "src/lib.rs"
            ]
        );
        let flagged: Vec<String> = scans
            .iter()
            .flat_map(|(p, s)| {
                s.as_ref()
                    .unwrap()
                    .string_errors
                    .iter()
                    .map(move |w| format!("{}: {w}", p.display()))
            })
            .collect();
        assert_eq!(
            flagged,
            [
                "src/a/child.rs: pub fn bad",
                "src/inline/deep.rs: pub type R"
            ]
        );
    }

    #[test]
    fn ci_yaml() {
        let good = "on: [push]\njobs:\n  linux:\n    runs-on: ubuntu-latest\n    steps:\n      - run: bash .ci/run\n";
        assert_eq!(ci_yaml_problems("ci.yml", good), Vec::<String>::new());
        let p = ci_yaml_problems("ci.yml", "jobs: [unclosed\n");
        assert!(p[0].contains("not YAML"), "{p:?}");
        let p = ci_yaml_problems("ci.yml", &good.replace("    runs-on: ubuntu-latest\n", ""));
        assert_eq!(p, ["ci.yml: job `linux` has no `runs-on`"]);
    }
}
