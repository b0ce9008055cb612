//! The dependency rules derived from the layer table (`layers.rs`), kept free of I/O so that
//! `check-layers`, the `deny.toml` agreement test and the fixture tests all share one copy.

use crate::layers::{Kind, Layer, FORBIDDEN_FOR_DRIVERS, LAYERS};

/// The table row for a crate, if it has one.
pub fn row(crate_name: &str) -> Option<&'static Layer> {
    LAYERS.iter().find(|l| l.crate_name == crate_name)
}

/// Every rule the edge `from -> to` breaks (empty when the edge is allowed). Both crates must
/// be in the table; a crate missing from it is reported separately.
pub fn broken_rules(from: &Layer, to: &Layer) -> Vec<String> {
    let mut broken = Vec::new();
    if to.kind == Kind::Tooling {
        broken.push(format!(
            "nothing may depend on tooling crates ({} is tooling)",
            to.crate_name
        ));
        return broken;
    }
    // Tooling (xtask, fuzz targets) sits outside the layering and may use any library.
    if from.kind == Kind::Tooling {
        return broken;
    }
    if to.layer >= from.layer {
        broken.push(format!(
            "a crate may only use crates of a strictly lower layer ({} is layer {}, {} is layer {})",
            from.crate_name,
            fmt_layer(from.layer),
            to.crate_name,
            fmt_layer(to.layer)
        ));
    }
    if from.kind == Kind::Driver {
        if to.kind == Kind::Driver {
            broken.push("a driver may not depend on another driver".to_string());
        }
        if FORBIDDEN_FOR_DRIVERS.contains(&to.crate_name) {
            broken.push(format!(
                "a driver may not depend on {}",
                FORBIDDEN_FOR_DRIVERS.join(", ")
            ));
        }
    }
    if from.kind == Kind::Guest && !matches!(to.kind, Kind::Guest | Kind::Shared) {
        broken.push(format!(
            "a guest crate may not depend on host-side crates ({} is host-side)",
            to.crate_name
        ));
    }
    broken
}

/// The crates of the table allowed to depend directly on `target`, sorted. This is exactly
/// what `deny.toml` must list as the `wrappers` of `target`.
pub fn allowed_dependents(target: &Layer) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = LAYERS
        .iter()
        .filter(|from| from.crate_name != target.crate_name)
        .filter(|from| broken_rules(from, target).is_empty())
        .map(|from| from.crate_name)
        .collect();
    names.sort_unstable();
    names
}

/// `(7, 1)` prints as `7.1`, `(6, 0)` as `6`.
pub fn fmt_layer(layer: (u8, u8)) -> String {
    match layer {
        (major, 0) => major.to_string(),
        (major, minor) => format!("{major}.{minor}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(from: &str, to: &str) -> Vec<String> {
        broken_rules(row(from).unwrap(), row(to).unwrap())
    }

    #[test]
    fn downward_edges_are_allowed() {
        assert!(rules("limaload", "limatype").is_empty());
        assert!(rules("hostagent", "store").is_empty());
        assert!(rules("qemu", "driver").is_empty());
        assert!(rules("limactl", "hostagent").is_empty());
        assert!(rules("xtask", "limaload").is_empty());
    }

    #[test]
    fn same_or_higher_layer_is_refused() {
        assert_eq!(rules("limatype", "limactl").len(), 1);
        assert_eq!(rules("limadefaults", "limavalidate").len(), 1);
        assert_eq!(rules("store", "downloader").len(), 1);
        assert!(rules("store", "sshutil")[0].contains("7.1"));
        assert!(rules("sshutil", "hostagent")[0].contains("7.2"));
        assert!(
            rules("sshutil", "store").is_empty(),
            "a lower sub-layer is allowed"
        );
    }

    #[test]
    fn driver_rules_are_named() {
        let r = rules("qemu", "vz");
        assert!(r.iter().any(|r| r.contains("another driver")), "{r:?}");
        let r = rules("qemu", "registry");
        assert!(
            r.iter().any(|r| r.contains("may not depend on registry")),
            "{r:?}"
        );
    }

    #[test]
    fn guest_and_tooling_rules_are_named() {
        assert!(rules("guestagent", "limatype")
            .iter()
            .any(|r| r.contains("host-side")));
        assert!(rules("limactl", "xtask")[0].contains("tooling"));
        assert!(rules("limaload-fuzz", "xtask")[0].contains("tooling"));
    }

    #[test]
    fn allowed_dependents_follow_the_rules() {
        let registry = allowed_dependents(row("registry").unwrap());
        assert!(registry.contains(&"hostagent") && registry.contains(&"limactl"));
        assert!(!registry.contains(&"qemu") && !registry.contains(&"store"));
        // Only tooling may use the CLI crate, and nothing may use tooling.
        let limactl = allowed_dependents(row("limactl").unwrap());
        assert_eq!(limactl, vec!["limaload-fuzz", "xtask"]);
        assert!(allowed_dependents(row("xtask").unwrap()).is_empty());
    }
}
