//! `limactl create --list-drivers` and `limactl info` with internal and external drivers.
//! The external "drivers" here are small scripts: listing must not start them, and `info`
//! must report a broken one without failing the others.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

mod common;

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
        common::stderr_text(&out.stderr)
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

/// A driver that is not one of ours works by name: listed, accepted by `create` (which
/// records it), shown by `list` with the values the VM would run with; an unknown name fails
/// with exit 1 and the registry's list of drivers.
#[test]
fn third_party_driver_works_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let drivers = tmp.path().join("drivers");
    std::fs::create_dir(&drivers).unwrap();
    let starts = tmp.path().join("starts.log");
    script(
        &drivers,
        "lima-driver-testfake",
        &format!(
            "echo $$ >> '{}'\nexec '{}' \"$@\"",
            starts.display(),
            common::testfake_driver().display()
        ),
    );
    let home = tmp.path().join("home");
    let out = limactl(&home, &drivers, "", &["create", "--list-drivers"]);
    assert!(out.lines().any(|l| l == "testfake (external)"), "{out}");

    // No cpus, memory or disk: list must show the filled defaults, not 0.
    let yaml = tmp.path().join("fake.yaml");
    std::fs::write(
        &yaml,
        "vmType: testfake\nimages:\n- location: /nonexistent/image.img\n",
    )
    .unwrap();
    limactl(
        &home,
        &drivers,
        "",
        &["create", "--name", "fake1", &yaml.display().to_string()],
    );
    let created_starts = std::fs::read_to_string(&starts).unwrap().lines().count();
    assert_eq!(created_starts, 1, "create starts the driver once");

    let out = limactl(&home, &drivers, "", &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["name"], "fake1", "{v}");
    assert_eq!(v["vmType"], "testfake", "{v}");
    assert_eq!(v["status"], "Stopped", "{v}");
    assert!(v["cpus"].as_i64().unwrap() > 0, "{v}");
    assert!(v["memory"].as_i64().unwrap() > 0, "{v}");
    assert!(v["disk"].as_i64().unwrap() > 0, "{v}");
    let listed_starts = std::fs::read_to_string(&starts).unwrap().lines().count();
    assert_eq!(listed_starts, created_starts, "list starts no driver");

    std::fs::write(
        &yaml,
        "vmType: nosuch\nimages:\n- location: /nonexistent/image.img\n",
    )
    .unwrap();
    let out = Command::new(LIMACTL)
        .args(["create", "--name", "nosuch1", &yaml.display().to_string()])
        .env("LIMA_HOME", &home)
        .env("LIMA_DRIVERS_PATH", &drivers)
        .output()
        .unwrap();
    let err = common::stderr_text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unknown vmType \"nosuch\""), "{err}");
    assert!(
        err.contains("testfake"),
        "the error lists the drivers found: {err}"
    );
    assert!(
        !home.join("nosuch1").exists(),
        "a refused create leaves nothing behind"
    );
}
