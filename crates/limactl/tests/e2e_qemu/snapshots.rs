//! `limactl snapshot` on the shared instance, at the points the lifecycle passes anyway: a
//! file written before the stop, a snapshot taken while stopped (`qemu-img`), listed while
//! running (the monitor), the file changed, the snapshot applied while qemu is dead, and the
//! file's first content back after the next start; the snapshot deleted through the monitor.

use super::*;

const MARK: &str = "/var/tmp/lima-e2e-snapshot-mark";

fn write_mark(env: &Env, name: &str, text: &str) {
    env.ok(&[
        "shell",
        name,
        "sh",
        "-c",
        &format!("echo {text} > {MARK} && sync"),
    ]);
}

fn read_mark(env: &Env, name: &str) -> String {
    env.ok(&["shell", name, "cat", MARK]).trim().to_string()
}

/// Running, before the first stop.
pub fn before_stop(env: &Env, name: &str) {
    write_mark(env, name, "before-snapshot");
}

/// Stopped: the snapshot is taken with `qemu-img` and listed.
pub fn while_stopped(env: &Env, name: &str) {
    env.ok(&["snapshot", "create", name, "--tag", "e2e1"]);
    assert_eq!(env.ok(&["snapshot", "list", name, "-q"]), "e2e1\n");
}

/// Running again: listed through the monitor; then the file is changed.
pub fn after_start(env: &Env, name: &str) {
    let table = env.ok(&["snapshot", "list", name]);
    assert!(table.contains("e2e1"), "monitor list: {table:?}");
    assert_eq!(read_mark(env, name), "before-snapshot");
    write_mark(env, name, "after-snapshot");
}

/// qemu killed: the snapshot is applied to the disk offline.
pub fn while_dead(env: &Env, name: &str) {
    env.ok(&["snapshot", "apply", name, "--tag", "e2e1"]);
}

/// Started after the apply: the disk is the snapshot's; the snapshot is deleted live.
pub fn after_apply(env: &Env, name: &str) {
    assert_eq!(read_mark(env, name), "before-snapshot");
    env.ok(&["snapshot", "delete", name, "--tag", "e2e1"]);
    assert_eq!(env.ok(&["snapshot", "list", name, "-q"]), "");
}
