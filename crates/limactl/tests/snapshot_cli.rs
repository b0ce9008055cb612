//! `limactl snapshot` through the real binary with a temporary `$LIMA_HOME`: a qemu instance
//! made by `limactl create` (never booted) whose `diffdisk` is a real qcow2 made by the real
//! `qemu-img` (skipped with a message where it is missing), so the stopped-VM path runs end
//! to end; the running path is tested in the qemu crate (a real qemu) and the e2e suite.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestHome;

fn qemu_instance(h: &TestHome, name: &str) -> PathBuf {
    let yaml = h.tmp.path().join("q.yaml");
    std::fs::write(
        &yaml,
        "vmType: qemu\nimages:\n- location: https://example.invalid/image.img\nmounts: []\n",
    )
    .unwrap();
    h.ok(&[
        "create",
        "--tty=false",
        "--name",
        name,
        yaml.to_str().unwrap(),
    ]);
    h.home.join(name)
}

#[test]
fn snapshots_of_a_stopped_qemu_instance_with_the_real_qemu_img() {
    if Command::new("qemu-img").arg("--version").output().is_err() {
        eprintln!("SKIPPED: qemu-img is not installed");
        return;
    }
    let h = TestHome::new();
    let dir = qemu_instance(&h, "snap");
    let disk = dir.join("diffdisk");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", disk.to_str().unwrap(), "16M"])
        .status()
        .unwrap();
    assert!(st.success());

    // Upstream's warning on every snapshot command.
    let out = h.run(&["snapshot", "list", "snap"]);
    assert!(out.status.success());
    assert!(common::stderr_text(&out.stderr).contains("`limactl snapshot` is experimental"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");

    h.ok(&["snapshot", "create", "snap", "--tag", "s1"]);
    h.ok(&["snapshot", "create", "snap", "--tag", "s2"]);
    let table = h.ok(&["snapshot", "list", "snap"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(!table.contains("Snapshot list:"), "{table}");
    assert_eq!(h.ok(&["snapshot", "ls", "snap", "-q"]), "s1\ns2\n");
    h.ok(&["snapshot", "apply", "snap", "--tag", "s1"]);
    h.ok(&["snapshot", "del", "snap", "--tag", "s1"]);
    assert_eq!(h.ok(&["snapshot", "list", "snap", "--quiet"]), "s2\n");

    // A tag that does not exist: qemu-img's words, exit 1, the other snapshot kept.
    let err = h.fails(&["snapshot", "load", "snap", "--tag", "s1"]);
    assert!(err.contains("apply_snapshot"), "{err}");
    assert!(err.contains("s1"), "{err}");
    // A tag that would be an option or two words is refused before qemu-img sees it.
    let err = h.fails(&["snapshot", "create", "snap", "--tag=-d"]);
    assert!(err.contains("invalid snapshot tag"), "{err}");
    assert_eq!(h.ok(&["snapshot", "list", "snap", "-q"]), "s2\n");
}

#[test]
fn bad_snapshot_input_exits_1_with_upstreams_words() {
    let h = TestHome::new();
    qemu_instance(&h, "snap");
    let err = h.fails(&["snapshot", "create", "snap"]);
    assert!(err.contains("expected tag"), "{err}");
    let err = h.fails(&["snapshot", "apply", "nosuch", "--tag", "x"]);
    assert!(err.contains("\"nosuch\" does not exist"), "{err}");
    let err = h.fails(&["snapshot", "list", "nosuch"]);
    assert!(err.contains("\"nosuch\" does not exist"), "{err}");
    let err = h.fails(&["snapshot", "create"]);
    assert!(err.contains("INSTANCE"), "{err}");
    // No disk yet (never started): qemu-img's error, nothing created.
    let err = h.fails(&["snapshot", "create", "snap", "--tag", "s1"]);
    assert!(err.contains("qemu-img"), "{err}");
    assert!(!h.home.join("snap/diffdisk").exists());
}
