//! Loading an instance's config, once per process: `limaload` composes `base:`, fills the
//! defaults and validates; the driver's own filling comes after, in [`crate::open`].

use std::path::Path;

use limatype::{filenames, Filled};

use crate::Result;

/// The text to store as the instance's `lima.yaml` (templates and bases embedded) and the
/// filled, validated config, for a new instance `name` made from `locator`.
pub fn load_locator(locator: &str, name: &str) -> Result<(String, Filled)> {
    let mut opts = limaload::LoadOptions::detect();
    opts.name = Some(name.to_string());
    let loaded = limaload::load(locator, &opts)?;
    Ok((loaded.embedded.text, loaded.config))
}

/// The filled, validated config of `text`, an instance's `lima.yaml` as it would be stored
/// (bases already embedded); `display` names it in diagnostics.
pub fn load_stored_text(text: &str, display: &str, name: &str) -> Result<Filled> {
    let mut opts = limaload::LoadOptions::detect();
    opts.name = Some(name.to_string());
    opts.use_default_base = false;
    Ok(limaload::load_text(text, display, &opts)?.config)
}

/// The filled, validated config of the existing instance in `dir`.
pub fn load_instance(dir: &Path, name: &str) -> Result<Filled> {
    let mut opts = limaload::LoadOptions::detect();
    opts.name = Some(name.to_string());
    // `_config/base.yaml` was embedded when the instance was created.
    opts.use_default_base = false;
    let path = dir.join(filenames::LIMA_YAML);
    Ok(limaload::load(&path.display().to_string(), &opts)?.config)
}

/// `text` with a top-level `vmType: NAME` added, so that the driver chosen at create is the
/// one every later command sees (and `limactl list` can show it without asking drivers).
/// `None` when the text already has a vmType or the line cannot be added safely (flow-style
/// YAML): the resolution then simply happens again at start.
pub fn record_vm_type(text: &str, vm_type: &str) -> Option<String> {
    let before: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    let map = before.as_mapping()?;
    if map.contains_key("vmType") {
        return None;
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "# Chosen by limactl create (the config did not name a vmType).\nvmType: {vm_type}\n"
    ));
    // Keep it only if it means exactly the old config plus the vmType.
    let after: serde_yaml::Value = serde_yaml::from_str(&out).ok()?;
    let mut expected = map.clone();
    expected.insert("vmType".into(), vm_type.into());
    (after.as_mapping() == Some(&expected)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_type_is_appended_to_block_yaml_only() {
        let text = "# mine\ncpus: 2\nimages:\n- location: /x.img\n";
        let out = record_vm_type(text, "testfake").unwrap();
        assert!(out.starts_with(text), "{out}");
        let v: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(v["vmType"], "testfake");
        assert_eq!(v["cpus"], 2);
        // No trailing newline, flow style, or an existing vmType.
        assert!(record_vm_type("cpus: 2", "qemu")
            .unwrap()
            .ends_with("\nvmType: qemu\n"));
        assert_eq!(record_vm_type("{cpus: 2}", "qemu"), None);
        assert_eq!(record_vm_type("vmType: vz\n", "qemu"), None);
        // A document that does not end at top level (an open block scalar) is left alone.
        assert_eq!(record_vm_type("message: |\n  hi\n  there", "qemu"), None);
    }
}
