//! `limactl create --list-drivers` and `limactl info` with internal and external drivers.
//! The external "drivers" here are small scripts: listing must not start them, and `info`
//! must report a broken one without failing the others.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const LIMACTL: &str = env!("CARGO_BIN_EXE_limactl");

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn limactl(home: &Path, drivers: &Path, disable: &str, args: &[&str]) -> String {
    let out = Command::new(LIMACTL)
        .args(args)
        .env("LIMA_HOME", home)
        .env("LIMA_DRIVERS_PATH", drivers)
        .env("LIMA_DISABLE_INTERNAL_DRIVERS", disable)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "limactl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn list_drivers_marks_external_and_starts_none() {
    let tmp = tempfile::tempdir().unwrap();
    let drivers = tmp.path().join("drivers");
    std::fs::create_dir(&drivers).unwrap();
    let marker = tmp.path().join("started");
    // Would leave a marker if it were ever run.
    let touch = format!("touch {}", marker.display());
    script(&drivers, "lima-driver-fake", &touch);
    script(&drivers, "lima-driver-qemu", &touch);
    script(&drivers, "not-a-driver", &touch);

    let out = limactl(tmp.path(), &drivers, "", &["create", "--list-drivers"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"fake (external)"), "{out}");
    // Compiled-in qemu wins over the external file of the same name.
    if cfg!(feature = "driver-qemu") {
        assert!(lines.contains(&"qemu"), "{out}");
    }
    assert!(!out.contains("not-a-driver"), "{out}");

    let out = limactl(tmp.path(), &drivers, "qemu", &["create", "--list-drivers"]);
    assert!(out.lines().any(|l| l == "qemu (external)"), "{out}");
    assert!(!marker.exists(), "listing started a driver");
}

#[test]
fn info_reports_every_driver_and_a_broken_one_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let drivers = tmp.path().join("drivers");
    std::fs::create_dir(&drivers).unwrap();
    script(&drivers, "lima-driver-broken", "echo not a driver; exit 1");
    let out = limactl(tmp.path(), &drivers, "", &["info"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ex = v["vmTypesEx"].as_object().unwrap();
    let broken = &ex["broken"];
    assert_eq!(
        broken["location"],
        drivers.join("lima-driver-broken").display().to_string()
    );
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("is not a Lima driver"),
        "{broken}"
    );
    for (name, d) in ex.iter().filter(|(n, _)| *n != "broken") {
        assert_eq!(d["location"], "internal", "{name}");
        assert_eq!(d["protocolVersion"], v["protocolVersion"], "{name}");
        assert!(d.get("error").is_none(), "{name}: {d}");
    }
    assert_eq!(v["hostOS"], "Linux");
    assert_eq!(
        v["vmTypes"].as_array().unwrap().len(),
        ex.len(),
        "vmTypes and vmTypesEx agree"
    );
}
