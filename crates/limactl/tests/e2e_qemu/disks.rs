//! An additional disk through the qemu driver: made with `limactl disk create`, named in
//! `additionalDisks`, formatted and mounted by the guest's boot script on /mnt/lima-DISK, its
//! data kept across a stop and start, locked to the instance while it runs (listed as in use,
//! refused to `disk delete` and to a second instance, which fails before it boots), and
//! released when the instance stops.

use std::process::Stdio;

use sha2::{Digest, Sha256};

use super::*;

/// The file written to the disk in the guest: `lima-disk\n` repeated to 1 MiB.
const FILE: &str = "e2e-disk.bin";
const FILE_BYTES: usize = 1 << 20;

fn expected_sum() -> String {
    let content: Vec<u8> = b"lima-disk\n"
        .iter()
        .copied()
        .cycle()
        .take(FILE_BYTES)
        .collect();
    Sha256::digest(&content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates the disk (1 GiB qcow2) with `limactl disk create`.
pub fn create(env: &Env, name: &str) {
    env.ok(&["disk", "create", name, "--size", "1GiB"]);
    let list = disk_json(env, name);
    assert_eq!(list["format"], "qcow2", "{list}");
    assert_eq!(list["instance"], "", "a new disk is in use: {list}");
}

/// Adds `disk` to the yaml's `additionalDisks` (default format: ext4, formatted on first use).
pub fn add_to_yaml(v: &mut serde_yaml::Value, disk: &str) {
    let m = v.as_mapping_mut().unwrap();
    let disks = m
        .entry("additionalDisks".into())
        .or_insert_with(|| serde_yaml::Value::Sequence(vec![]));
    disks.as_sequence_mut().unwrap().push(disk.into());
}

/// The disk's line of `limactl disk list --json`.
fn disk_json(env: &Env, disk: &str) -> serde_json::Value {
    env.ok(&["disk", "list", "--json", disk])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["name"] == disk)
        .unwrap_or_else(|| panic!("disk {disk} is not listed"))
}

/// `script` as root in the guest (the disk's mount point belongs to root).
fn guest_root_sh(env: &Env, name: &str, script: &str) -> Output {
    let out = env
        .command(&["shell", name, "sudo", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    eprintln!(
        "guest$ {script} -> {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        common::stderr_text(&out.stderr)
    );
    out
}

fn guest_root_ok(env: &Env, name: &str, script: &str) -> String {
    let out = guest_root_sh(env, name, script);
    assert!(out.status.success(), "guest: {script} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The disk is mounted where upstream mounts it, from the first disk after the boot disk, as
/// ext4 labelled lima-DISK.
fn check_mounted(env: &Env, instance: &str, disk: &str) {
    let mnt = format!("/mnt/lima-{disk}");
    let src = guest_root_ok(env, instance, &format!("findmnt -n -o SOURCE,FSTYPE {mnt}"));
    let fields: Vec<&str> = src.split_whitespace().collect();
    assert_eq!(
        fields,
        ["/dev/vdb1", "ext4"],
        "{mnt} is mounted from {src:?}"
    );
    let label = guest_root_ok(env, instance, "blkid -o value -s LABEL /dev/vdb1");
    // ext4 labels hold 16 bytes: a long disk name is cut short.
    let want: String = format!("lima-{disk}").chars().take(16).collect();
    assert_eq!(label.trim(), want);
}

/// The disk is listed as in use by `instance`.
fn check_in_use(env: &Env, instance: &str, disk: &str) {
    let d = disk_json(env, disk);
    assert_eq!(d["instance"], instance, "{d}");
    assert_eq!(
        d["instanceDir"],
        env.dir(instance).display().to_string(),
        "{d}"
    );
    assert_eq!(d["mountPoint"], format!("/mnt/lima-{disk}"), "{d}");
}

/// On the running `instance` (started with [`add_to_yaml`]'s disk): the disk is mounted and
/// in use by it; a file of known content is written there; `disk delete` refuses it; and
/// another instance naming the same disk fails to start before it boots.
pub fn check_running(env: &Env, instance: &str, disk: &str) {
    check_mounted(env, instance, disk);
    check_in_use(env, instance, disk);
    let file = format!("/mnt/lima-{disk}/{FILE}");
    guest_root_ok(
        env,
        instance,
        &format!("yes lima-disk | head -c {FILE_BYTES} >{file} && sync"),
    );
    let sum = guest_root_ok(env, instance, &format!("sha256sum {file}"));
    assert_eq!(sum.split_whitespace().next(), Some(expected_sum().as_str()));

    let out = env.limactl(&["disk", "delete", disk]);
    assert_eq!(out.status.code(), Some(1), "delete of a disk in use");
    let err = common::stderr_text(&out.stderr);
    assert!(
        err.contains(&format!("in use by instance {instance:?}")),
        "{err}"
    );
    assert!(disk_json(env, disk)["dir"].is_string(), "the disk is gone");

    second_instance_is_refused(env, instance, disk);
    // The refused start took nothing from the running instance.
    check_in_use(env, instance, disk);
}

/// A second instance from the same config (so naming the same disk) fails at once: the disk
/// is locked before anything is fetched or booted.
fn second_instance_is_refused(env: &Env, instance: &str, disk: &str) {
    let second = format!("{instance}-2nd");
    let yaml = env.home.path().join(format!("{second}.yaml"));
    std::fs::copy(env.dir(instance).join("lima.yaml"), &yaml).unwrap();
    let started = Instant::now();
    let out = env.limactl(&[
        "start",
        "--name",
        &second,
        "--tty=false",
        yaml.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a second user of the disk started"
    );
    let err = common::stderr_text(&out.stderr);
    assert!(
        err.contains(&format!("could not attach disk {disk:?}"))
            && err.contains(&format!("in use by instance {instance:?}")),
        "unclear error: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the refusal took {:?}",
        started.elapsed()
    );
    for f in ["ha.pid", "qemu.pid", "diffdisk", "cidata.iso"] {
        assert!(
            !env.dir(&second).join(f).exists(),
            "{f} exists: the second instance went too far"
        );
    }
    env.ok(&["delete", &second]);
}

/// After `limactl stop`: the disk is released (listed in use by nobody).
pub fn check_released(env: &Env, disk: &str) {
    let d = disk_json(env, disk);
    assert_eq!(d["instance"], "", "still locked after stop: {d}");
}

/// After `limactl stop` and `start` of `instance`: the disk is mounted again, in use by it
/// again, and the file written by [`check_running`] is there with the same content (the disk
/// was not formatted again).
pub fn check_after_restart(env: &Env, instance: &str, disk: &str) {
    check_mounted(env, instance, disk);
    check_in_use(env, instance, disk);
    let sum = guest_root_ok(env, instance, &format!("sha256sum /mnt/lima-{disk}/{FILE}"));
    assert_eq!(
        sum.split_whitespace().next(),
        Some(expected_sum().as_str()),
        "the file on the disk changed across stop/start"
    );
}
