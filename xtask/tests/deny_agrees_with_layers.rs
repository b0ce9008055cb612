//! deny.toml's `[bans] deny` wrappers must say exactly what the layer table says, so that
//! cargo-deny and `cargo xtask check-layers` enforce the same rules.

#[allow(dead_code)]
#[path = "../src/layers.rs"]
mod layers;

#[allow(dead_code)]
#[path = "../src/layer_rules.rs"]
mod layer_rules;

use std::collections::{BTreeMap, BTreeSet};

fn deny_toml() -> toml::Table {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deny.toml");
    let text = std::fs::read_to_string(&path).expect("reading deny.toml");
    text.parse().expect("deny.toml is valid TOML")
}

/// `name -> wrappers` for every `deny` entry that has a `wrappers` list.
fn deny_wrappers(config: &toml::Table) -> BTreeMap<String, BTreeSet<String>> {
    let entries = config["bans"]["deny"]
        .as_array()
        .expect("[bans] deny is a list");
    let mut out = BTreeMap::new();
    for entry in entries {
        let Some(table) = entry.as_table() else {
            continue;
        };
        let Some(wrappers) = table.get("wrappers") else {
            continue;
        };
        let name = table["name"].as_str().expect("deny entry name").to_string();
        let wrappers: BTreeSet<String> = wrappers
            .as_array()
            .expect("wrappers is a list")
            .iter()
            .map(|w| w.as_str().expect("wrapper is a string").to_string())
            .collect();
        assert!(
            out.insert(name.clone(), wrappers).is_none(),
            "deny.toml lists {name} twice"
        );
    }
    out
}

#[test]
fn every_table_crate_has_the_wrappers_the_rules_allow() {
    let declared = deny_wrappers(&deny_toml());
    let mut mismatches = Vec::new();
    for row in layers::LAYERS {
        let mut expected: BTreeSet<String> = layer_rules::allowed_dependents(row)
            .into_iter()
            .map(String::from)
            .collect();
        // cargo-deny reads an empty list as "ban the crate itself"; a crate nothing may use
        // lists only itself instead.
        if expected.is_empty() {
            expected.insert(row.crate_name.to_string());
        }
        match declared.get(row.crate_name) {
            None => mismatches.push(format!("{}: no deny entry", row.crate_name)),
            Some(found) if *found != expected => mismatches.push(format!(
                "{}: deny.toml allows {:?} but layers.rs allows {:?}",
                row.crate_name, found, expected
            )),
            Some(_) => {}
        }
    }
    for name in declared.keys() {
        if layer_rules::row(name).is_none() {
            mismatches.push(format!(
                "{name}: has wrappers in deny.toml but no layer row"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "deny.toml disagrees with xtask/src/layers.rs (regenerate its list with \
         `cargo xtask check-layers --print-deny-bans`):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn dev_dependencies_stay_in_the_bans_graph() {
    // check-layers counts dev-dependencies; cargo-deny must see them too.
    let config = deny_toml();
    let exclude_dev = config
        .get("graph")
        .and_then(|g| g.get("exclude-dev"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    assert!(!exclude_dev, "deny.toml must not set [graph] exclude-dev");
}
