//! Checks the bundled `templates/` tree: every file parses as a lima.yaml, every
//! instantiable template reaches disk images through itself or its `base:` chain,
//! pinned images carry well-formed digests, and `default.yaml` documents every field.

use limatype::LimaYaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Templates that must exist (issue 2 lists them).
const REQUIRED: &[&str] = &[
    "default",
    "ubuntu",
    "ubuntu-lts",
    "debian",
    "fedora",
    "alpine",
    "archlinux",
    "centos-stream",
    "rocky",
    "almalinux",
    "opensuse",
    "docker",
    "podman",
    "k3s",
    "k8s",
];

/// Image lists whose distribution publishes only moving names (no dated builds), so no
/// digest can be pinned.
const NO_DATED_BUILDS: &[&str] = &["_images/opensuse-leap-16.yaml"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../templates")
        .canonicalize()
        .expect("templates/ exists at the repository root")
}

/// Every `*.yaml` under `dir`, as paths relative to `root` (symlinks included, not followed
/// for naming).
fn yaml_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

fn all_templates() -> (PathBuf, Vec<PathBuf>) {
    let root = root();
    let mut files = Vec::new();
    yaml_files(&root, &root, &mut files);
    files.sort();
    (root, files)
}

fn load(path: &Path) -> Result<LimaYaml, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    LimaYaml::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn is_hidden(rel: &Path) -> bool {
    rel.components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('_'))
}

/// Resolves a `base:` locator of a bundled template to a file in the tree.
fn resolve_base(root: &Path, from: &Path, locator: &str) -> Result<PathBuf, String> {
    let candidate = if let Some(name) = locator.strip_prefix("template:") {
        let name = if name.ends_with(".yaml") {
            name.to_string()
        } else {
            format!("{name}.yaml")
        };
        root.join(name)
    } else if locator.contains("://") {
        return Err(format!(
            "base `{locator}` is a URL; bundled templates must not need the network to load"
        ));
    } else {
        from.parent().unwrap().join(locator)
    };
    let resolved = candidate
        .canonicalize()
        .map_err(|e| format!("base `{locator}` ({}): {e}", candidate.display()))?;
    if !resolved.starts_with(root) {
        return Err(format!("base `{locator}` resolves outside templates/"));
    }
    Ok(resolved)
}

/// Follows the `base:` chain depth-first; true when some file on it has images.
fn reaches_images(root: &Path, path: &Path, chain: &mut Vec<PathBuf>) -> Result<bool, String> {
    if chain.iter().any(|p| p == path) {
        return Err(format!("base cycle: {chain:?} -> {}", path.display()));
    }
    let y = load(path)?;
    if y.images.as_ref().is_some_and(|i| !i.is_empty()) {
        return Ok(true);
    }
    chain.push(path.to_path_buf());
    let mut found = false;
    for base in y.base.iter().flatten() {
        let base_path = resolve_base(root, path, &base.url)?;
        found |= reaches_images(root, &base_path, chain)?;
    }
    chain.pop();
    Ok(found)
}

#[test]
fn every_template_parses() {
    let (root, files) = all_templates();
    assert!(files.len() >= REQUIRED.len(), "only {files:?}");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|rel| load(&root.join(rel)).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn required_templates_exist() {
    let root = root();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|name| !root.join(format!("{name}.yaml")).is_file())
        .collect();
    assert!(missing.is_empty(), "missing templates: {missing:?}");
}

#[test]
fn symlinks_stay_inside_the_tree() {
    let (root, files) = all_templates();
    for rel in &files {
        let path = root.join(rel);
        if path.symlink_metadata().unwrap().file_type().is_symlink() {
            let target = path
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: dangling symlink: {e}", rel.display()));
            assert!(
                target.starts_with(&root),
                "{} leaves templates/",
                rel.display()
            );
        }
    }
}

#[test]
fn every_template_reaches_images() {
    let (root, files) = all_templates();
    let mut failures = Vec::new();
    for rel in files.iter().filter(|rel| !is_hidden(rel)) {
        match reaches_images(&root, &root.join(rel), &mut Vec::new()) {
            Ok(true) => {}
            Ok(false) => failures.push(format!(
                "{}: no images and no base with images",
                rel.display()
            )),
            Err(e) => failures.push(format!("{}: {e}", rel.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn digest_is_well_formed(digest: &str) -> bool {
    let (algo, hex) = digest.split_once(':').unwrap_or(("", ""));
    let len = match algo {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// For downloaded images: digests are well formed; every arch has a pinned (digest-checked)
/// entry unless the distribution publishes no dated builds; and, since the first matching
/// entry wins, a digest-less fallback never comes before a pinned entry of the same arch
/// and variant.
#[test]
fn downloaded_images_are_pinned() {
    let (root, files) = all_templates();
    let mut failures = Vec::new();
    for rel in &files {
        let y = load(&root.join(rel)).unwrap();
        let Some(images) = y.images else { continue };
        let rel_str = rel.to_string_lossy();
        let mut pinned_archs = BTreeSet::new();
        let mut all_archs = BTreeSet::new();
        // (arch, variant, archVariant) groups that already had a digest-less entry.
        let mut seen_fallback = BTreeSet::new();
        for image in images
            .iter()
            .filter(|i| i.location.starts_with("https://") || i.location.starts_with("http://"))
        {
            let arch = image.arch.clone().unwrap_or_default();
            let group = (
                arch.clone(),
                image.variant.clone(),
                image.arch_variant.clone(),
            );
            all_archs.insert(arch.clone());
            match &image.digest {
                Some(d) => {
                    if !digest_is_well_formed(d) {
                        failures.push(format!("{rel_str}: {}: bad digest `{d}`", image.location));
                    }
                    if seen_fallback.contains(&group) {
                        failures.push(format!(
                            "{rel_str}: {}: pinned entry after a digest-less one for {group:?}",
                            image.location
                        ));
                    }
                    pinned_archs.insert(arch);
                }
                None => {
                    seen_fallback.insert(group);
                }
            }
        }
        let target = root.join(rel).canonicalize().unwrap();
        let target = target
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if !NO_DATED_BUILDS.contains(&target.as_str()) {
            let unpinned: Vec<_> = all_archs.difference(&pinned_archs).collect();
            if !unpinned.is_empty() {
                failures.push(format!(
                    "{rel_str}: no digest-pinned image for {unpinned:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The field names serde expects at a place in the document, read from the error for an
/// unknown key there (so this list cannot drift from the type).
fn expected_fields(yaml_with_bogus_key: &str) -> Vec<String> {
    let err = LimaYaml::from_yaml(yaml_with_bogus_key)
        .expect_err("the bogus key is rejected")
        .to_string();
    // serde words it "expected `a`", "expected `a` or `b`" or "expected one of `a`, `b`, ...".
    let list = err
        .rsplit_once(", expected ")
        .unwrap_or_else(|| panic!("unexpected error text: {err}"))
        .1;
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Keys written in default.yaml, commented out or not, with their indentation-free names.
fn documented_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let t = line.trim_start_matches(['#', ' ', '-']);
            let (key, _) = t.split_once(':')?;
            (!key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric()))
                .then(|| key.to_string())
        })
        .collect()
}

#[test]
fn default_yaml_loads_and_documents_every_field() {
    let path = root().join("default.yaml");
    let y = load(&path).unwrap();
    // A reference, not a configuration: it only picks images/mounts through `base:`
    // and states its minimum version; everything else is left to the defaults.
    let bases: Vec<&str> = y.base.iter().flatten().map(|b| b.url.as_str()).collect();
    assert_eq!(
        bases,
        ["template:_images/ubuntu", "template:_default/mounts"]
    );
    assert!(y.minimum_lima_version.is_some());
    assert_eq!(y.vm_type, None);
    assert_eq!(y.cpus, None);
    assert_eq!(y.memory, None);
    assert_eq!(y.disk, None);
    assert_eq!(y.images, None);
    assert_eq!(y.mounts, None);
    assert_eq!(y.provision, None);
    assert_eq!(y.ssh.unwrap_or_default(), Default::default());
    assert_eq!(y.user.unwrap_or_default(), Default::default());

    let documented = documented_keys(&std::fs::read_to_string(&path).unwrap());
    let places: BTreeMap<&str, &str> = BTreeMap::from([
        ("top level", "bogus: 1\n"),
        ("vmOpts.qemu", "vmOpts: {qemu: {bogus: 1}}\n"),
        ("vmOpts.vz", "vmOpts: {vz: {bogus: 1}}\n"),
        ("rosetta", "rosetta: {bogus: 1}\n"),
        ("images[]", "images: [{location: x, bogus: 1}]\n"),
        (
            "kernel",
            "images: [{location: x, kernel: {location: y, bogus: 1}}]\n",
        ),
        ("mounts[]", "mounts: [{location: x, bogus: 1}]\n"),
        ("sshfs", "mounts: [{location: x, sshfs: {bogus: 1}}]\n"),
        ("9p", "mounts: [{location: x, 9p: {bogus: 1}}]\n"),
        (
            "virtiofs",
            "mounts: [{location: x, virtiofs: {bogus: 1}}]\n",
        ),
        ("ssh", "ssh: {bogus: 1}\n"),
        ("user", "user: {bogus: 1}\n"),
        ("caCerts", "caCerts: {bogus: 1}\n"),
        ("containerd", "containerd: {bogus: 1}\n"),
        ("provision[]", "provision: [{bogus: 1}]\n"),
        ("probes[]", "probes: [{bogus: 1}]\n"),
        ("firmware", "firmware: {bogus: 1}\n"),
        (
            "firmware.images[]",
            "firmware: {images: [{location: x, bogus: 1}]}\n",
        ),
        ("audio", "audio: {bogus: 1}\n"),
        ("video", "video: {bogus: 1}\n"),
        ("video.vnc", "video: {vnc: {bogus: 1}}\n"),
        ("networks[]", "networks: [{bogus: 1}]\n"),
        ("portForwards[]", "portForwards: [{bogus: 1}]\n"),
        ("copyToHost[]", "copyToHost: [{bogus: 1}]\n"),
        ("hostResolver", "hostResolver: {bogus: 1}\n"),
        ("osOpts.Windows", "osOpts: {Windows: {bogus: 1}}\n"),
    ]);
    let mut undocumented = Vec::new();
    for (place, snippet) in places {
        for field in expected_fields(snippet) {
            if !documented.contains(&field) {
                undocumented.push(format!("{place}: {field}"));
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "default.yaml does not mention: {undocumented:?}"
    );
}

/// Lima refuses a template whose params are never referenced; Lima-internal ones
/// (`internal_*`, read by Lima's own cloud-init config) are exempt.
#[test]
fn every_param_is_used() {
    let (root, files) = all_templates();
    let mut unused = Vec::new();
    for rel in &files {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        let y = LimaYaml::from_yaml(&text).unwrap();
        for key in y.param.unwrap_or_default().keys() {
            if key.starts_with("internal_") {
                continue;
            }
            let used = [format!(".Param.{key}"), format!("PARAM_{key}")]
                .iter()
                .any(|r| text.contains(r.as_str()));
            if !used {
                unused.push(format!("{}: {key}", rel.display()));
            }
        }
    }
    assert!(unused.is_empty(), "unused params: {unused:?}");
}
