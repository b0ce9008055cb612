//! `cargo xtask check-layers`: checks the workspace's crate graph (from `cargo metadata`)
//! against the declared layer table in `layers.rs`.
//!
//! Normal, build and dev dependencies all count: a lower crate's tests that use a higher crate
//! would tie the lower crate to it just the same, and cargo-deny (which checks the same rules
//! through `deny.toml`) sees dev-dependencies too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::layer_rules::{allowed_dependents, broken_rules, fmt_layer, row};
use crate::layers::{Kind, LAYERS};

#[derive(clap::Args)]
pub struct Args {
    /// The workspace manifest to check (default: this workspace's root Cargo.toml).
    #[arg(long)]
    pub manifest_path: Option<PathBuf>,
    /// Print the `deny` entries of deny.toml's `[bans]` that the layer table implies, and exit.
    #[arg(long)]
    pub print_deny_bans: bool,
}

/// The parts of `cargo metadata --no-deps` output this check reads.
#[derive(Deserialize)]
pub struct Metadata {
    pub packages: Vec<Package>,
    pub workspace_members: Vec<String>,
}

#[derive(Deserialize)]
pub struct Package {
    pub name: String,
    pub id: String,
    pub dependencies: Vec<Dependency>,
}

#[derive(Deserialize)]
pub struct Dependency {
    pub name: String,
    /// `null` for normal dependencies, else "dev" or "build".
    pub kind: Option<String>,
}

/// Workspace crate -> its workspace dependencies -> the kinds of that dependency.
pub type DepGraph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// One offending edge (or crate) and the rule it breaks.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub edge: String,
    pub rule: String,
}

pub fn run(args: Args) -> Result<()> {
    if args.print_deny_bans {
        print!("{}", deny_bans_toml());
        return Ok(());
    }
    if !report(args.manifest_path.as_ref())? {
        std::process::exit(1);
    }
    Ok(())
}

/// Checks the workspace and prints the outcome; `Ok(false)` when there are violations.
pub fn report(manifest_path: Option<&PathBuf>) -> Result<bool> {
    let metadata = read_metadata(manifest_path)?;
    let crates = workspace_crates(&metadata);
    let violations = check(&metadata);
    if violations.is_empty() {
        let edges: usize = crates.values().map(|deps| deps.len()).sum();
        println!(
            "check-layers: OK ({} workspace crates, {} workspace dependency edges, all allowed by xtask/src/layers.rs)",
            crates.len(),
            edges
        );
        return Ok(true);
    }
    eprintln!("check-layers: {} violation(s):", violations.len());
    for v in &violations {
        eprintln!("  {}: {}", v.edge, v.rule);
    }
    eprintln!("The layer table is xtask/src/layers.rs; deny.toml's wrappers must agree with it.");
    Ok(false)
}

/// deny.toml's `deny = [...]` list: each table crate with the crates allowed to use it as its
/// `wrappers`. cargo-deny reads an empty `wrappers` list as a ban of the crate itself, so a
/// crate nothing may use lists only itself (a crate can never depend on itself).
pub fn deny_bans_toml() -> String {
    let mut out = String::from("deny = [\n");
    for layer in LAYERS {
        let mut wrappers = allowed_dependents(layer);
        if wrappers.is_empty() {
            wrappers.push(layer.crate_name);
        }
        let kind = match layer.kind {
            Kind::Host => String::new(),
            Kind::Driver => ", driver".to_string(),
            Kind::Guest => ", guest".to_string(),
            Kind::Shared => ", shared".to_string(),
            Kind::Tooling => ", tooling".to_string(),
        };
        out.push_str(&format!(
            "    # {} (layer {}{kind}): {}\n",
            layer.crate_name,
            fmt_layer(layer.layer),
            layer.owns
        ));
        let quoted: Vec<String> = wrappers.iter().map(|w| format!("\"{w}\"")).collect();
        out.push_str(&format!(
            "    {{ name = \"{}\", wrappers = [{}] }},\n",
            layer.crate_name,
            quoted.join(", ")
        ));
    }
    out.push_str("]\n");
    out
}

fn read_metadata(manifest_path: Option<&PathBuf>) -> Result<Metadata> {
    // `--no-deps` lists only workspace members with their declared dependencies: no resolution,
    // no network, no lock file changes, and fast.
    let mut args: Vec<std::ffi::OsString> = vec![
        "metadata".into(),
        "--format-version".into(),
        "1".into(),
        "--no-deps".into(),
        "--offline".into(),
    ];
    let manifest_path = manifest_path
        .cloned()
        .unwrap_or_else(|| crate::project_root().join("Cargo.toml"));
    args.push("--manifest-path".into());
    args.push(manifest_path.into());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let json = duct::cmd(cargo, args)
        .read()
        .context("running `cargo metadata`")?;
    serde_json::from_str(&json).context("parsing `cargo metadata` output")
}

/// Each workspace crate with its workspace dependencies and their kinds.
pub fn workspace_crates(metadata: &Metadata) -> DepGraph {
    let members: BTreeSet<&str> = metadata
        .workspace_members
        .iter()
        .map(String::as_str)
        .collect();
    let member_packages: Vec<&Package> = metadata
        .packages
        .iter()
        .filter(|p| members.contains(p.id.as_str()))
        .collect();
    let names: BTreeSet<&str> = member_packages.iter().map(|p| p.name.as_str()).collect();
    member_packages
        .iter()
        .map(|p| {
            let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for d in p
                .dependencies
                .iter()
                .filter(|d| names.contains(d.name.as_str()))
            {
                deps.entry(d.name.clone())
                    .or_default()
                    .insert(d.kind.clone().unwrap_or_else(|| "normal".to_string()));
            }
            (p.name.clone(), deps)
        })
        .collect()
}

/// All violations, sorted.
pub fn check(metadata: &Metadata) -> Vec<Violation> {
    let crates = workspace_crates(metadata);
    let mut violations = Vec::new();
    for (name, deps) in &crates {
        let Some(from) = row(name) else {
            violations.push(Violation {
                edge: name.clone(),
                rule: "workspace crate is missing from the layer table".to_string(),
            });
            continue;
        };
        for (dep, kinds) in deps {
            // A dependency missing from the table is reported once, as a crate.
            let Some(to) = row(dep) else { continue };
            let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
            for rule in broken_rules(from, to) {
                violations.push(Violation {
                    edge: format!("{name} -> {dep} ({})", kinds.join(", ")),
                    rule,
                });
            }
        }
    }
    for cycle in cycles(&crates) {
        violations.push(Violation {
            edge: cycle.join(" -> "),
            rule: "dependency cycle among workspace crates".to_string(),
        });
    }
    violations.sort();
    violations
}

/// One representative path for each dependency cycle (each strongly connected component with
/// more than one crate), starting and ending at its alphabetically first crate.
fn cycles(crates: &DepGraph) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut in_reported_cycle: BTreeSet<String> = BTreeSet::new();
    for start in crates.keys() {
        if in_reported_cycle.contains(start) {
            continue;
        }
        if let Some(path) = path_back_to(crates, start) {
            in_reported_cycle.extend(path.iter().cloned());
            found.push(path);
        }
    }
    found
}

/// A path `start -> ... -> start`, if there is one (depth-first, deterministic).
fn path_back_to(crates: &DepGraph, start: &str) -> Option<Vec<String>> {
    let mut visited = BTreeSet::new();
    let mut path = vec![start.to_string()];
    fn walk(
        crates: &DepGraph,
        start: &str,
        current: &str,
        visited: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> bool {
        for dep in crates.get(current).into_iter().flat_map(|d| d.keys()) {
            if dep == start {
                path.push(dep.clone());
                return true;
            }
            if visited.insert(dep.clone()) {
                path.push(dep.clone());
                if walk(crates, start, dep, visited, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(crates, start, start, &mut visited, &mut path).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metadata shaped like `cargo metadata --no-deps`, from `(crate, [(dep, kind)])` rows.
    type Row<'a> = (&'a str, &'a [(&'a str, Option<&'a str>)]);

    fn metadata(rows: &[Row]) -> Metadata {
        let packages = rows
            .iter()
            .map(|(name, deps)| {
                serde_json::json!({
                    "name": name,
                    "id": format!("path+file:///ws/{name}#0.0.0"),
                    "dependencies": deps.iter().map(|(d, kind)| serde_json::json!({
                        "name": d, "kind": kind, "req": "*"
                    })).collect::<Vec<_>>(),
                })
            })
            .collect::<Vec<_>>();
        let members = rows
            .iter()
            .map(|(name, _)| format!("path+file:///ws/{name}#0.0.0"))
            .collect::<Vec<_>>();
        serde_json::from_value(serde_json::json!({
            "packages": packages,
            "workspace_members": members,
        }))
        .unwrap()
    }

    #[test]
    fn clean_graph_passes_and_third_party_deps_are_ignored() {
        let m = metadata(&[
            ("limatype", &[("serde", None)]),
            ("limaload", &[("limatype", None), ("tempfile", Some("dev"))]),
            ("xtask", &[("limaload", None)]),
        ]);
        assert_eq!(check(&m), vec![]);
    }

    #[test]
    fn upward_dev_dependency_is_named_with_its_kind() {
        let m = metadata(&[
            ("limatype", &[("limaload", Some("dev"))]),
            ("limaload", &[("limatype", None)]),
        ]);
        let v = check(&m);
        assert_eq!(v.len(), 2, "{v:?}");
        // Dev-dependency cycles are legal for cargo but still a cycle here.
        assert_eq!(v[0].edge, "limaload -> limatype -> limaload");
        assert_eq!(v[1].edge, "limatype -> limaload (dev)");
        assert!(v[1].rule.contains("strictly lower"));
    }

    #[test]
    fn missing_crate_and_cycle_are_reported() {
        let m = metadata(&[
            ("limatype", &[]),
            ("mystery", &[("limatype", None)]),
            ("store", &[("downloader", None)]),
            ("downloader", &[("store", Some("build"))]),
        ]);
        let v = check(&m);
        assert!(v.contains(&Violation {
            edge: "mystery".into(),
            rule: "workspace crate is missing from the layer table".into()
        }));
        assert!(v
            .iter()
            .any(|v| v.edge.contains("downloader -> store") && v.rule.contains("cycle")));
        assert!(v.iter().any(|v| v.edge == "store -> downloader (normal)"));
        assert!(v.iter().any(|v| v.edge == "downloader -> store (build)"));
    }

    #[test]
    fn driver_edges_name_every_broken_rule() {
        let m = metadata(&[
            ("registry", &[]),
            ("vz", &[]),
            ("qemu", &[("registry", None), ("vz", None)]),
        ]);
        let edges: Vec<String> = check(&m)
            .into_iter()
            .map(|v| format!("{}: {}", v.edge, v.rule))
            .collect();
        assert_eq!(edges.len(), 4, "{edges:#?}");
        assert!(edges.iter().any(
            |e| e.starts_with("qemu -> registry (normal): a driver may not depend on registry")
        ));
        assert!(edges.iter().any(
            |e| e.starts_with("qemu -> vz (normal): a driver may not depend on another driver")
        ));
    }
}
