//! `limactl info`: upstream's `LimaInfo` fields, in its order and with its JSON types.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn info(lima_home: &Path, args: &[&str]) -> Output {
    let drivers = lima_home.join("no-drivers");
    std::fs::create_dir_all(&drivers).unwrap();
    Command::new(common::LIMACTL)
        .arg("info")
        .args(args)
        .env("LIMA_HOME", lima_home)
        .env("LIMA_DRIVERS_PATH", &drivers)
        .env_remove("LIMA_TEMPLATES_PATH")
        .output()
        .unwrap()
}

/// The top-level keys as printed (the text's order, not a sorted map's).
fn printed_keys(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("    \""))
        .filter_map(|l| l.split_once("\":").map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn keys_are_upstreams_in_its_order() {
    let home = tempfile::tempdir().unwrap();
    let out = info(home.path(), &[]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    insta::assert_snapshot!("info_keys", printed_keys(&stdout).join("\n"));
}

#[test]
fn each_field_has_upstreams_type() {
    let home = tempfile::tempdir().unwrap();
    let out = info(home.path(), &[]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["version", "limaHome", "hostOS", "hostArch", "identityFile"] {
        assert!(v[k].is_string(), "{k}: {}", v[k]);
    }
    for k in [
        "templates",
        "vmTypes",
        "shellEnvBlock",
        "plugins",
        "libexecPaths",
        "sharePaths",
    ] {
        assert!(v[k].is_array(), "{k}: {}", v[k]);
    }
    for k in ["defaultTemplate", "vmTypesEx", "guestAgents"] {
        assert!(v[k].is_object(), "{k}: {}", v[k]);
    }
    assert_eq!(v["limaHome"], home.path().display().to_string());
    let t = &v["templates"].as_array().unwrap()[0];
    assert!(t["name"].is_string() && t["location"].is_string(), "{t}");
    assert!(
        v["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "default"),
        "{}",
        v["templates"]
    );
    assert!(v["shellEnvBlock"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "DISPLAY"));
    // The default template is filled: defaults such as cpus and memory are set (not the
    // vmType: as upstream, it is resolved only when an instance is created).
    let d = &v["defaultTemplate"];
    assert!(d["cpus"].is_u64(), "{d}");
    assert!(d["memory"].is_string(), "{d}");
    assert!(d["images"].as_array().is_some_and(|i| !i.is_empty()), "{d}");
    assert!(d.get("base").is_none(), "bases are embedded: {d}");
    for (arch, ga) in v["guestAgents"].as_object().unwrap() {
        assert!(ga["location"].is_string(), "{arch}: {ga}");
    }
}

#[test]
fn default_template_reads_the_config_overrides() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("_config")).unwrap();
    std::fs::write(home.path().join("_config/override.yaml"), "cpus: 7\n").unwrap();
    let out = info(home.path(), &["--yq", ".defaultTemplate.cpus"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "7\n");
}

#[test]
fn a_default_template_that_does_not_load_fails_info() {
    let home = tempfile::tempdir().unwrap();
    let templates = home.path().join("_templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("default.yaml"), "cpus: many\n").unwrap();
    let out = Command::new(common::LIMACTL)
        .arg("info")
        .env("LIMA_HOME", home.path())
        .env("LIMA_TEMPLATES_PATH", &templates)
        .env("LIMA_DRIVERS_PATH", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = common::stderr_text(&out.stderr);
    assert!(
        stderr.contains("template:default") && stderr.contains("cpus"),
        "{stderr}"
    );
}
