//! Both enforcers must refuse a forbidden edge: copy the workspace (manifests and sources, no
//! target dirs) to a temp dir, add the edge there, and run `xtask check-layers` and
//! `cargo deny check bans` against the copy.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Copies the workspace's source files (git's tracked and untracked-but-not-ignored files, so no
/// build output, images or disks) to a temp dir.
fn copy_workspace() -> tempfile::TempDir {
    let root = workspace_root();
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output();
    let Ok(listed) = listed.map_err(|_| ()).and_then(|o| {
        if o.status.success() {
            Ok(o.stdout)
        } else {
            Err(())
        }
    }) else {
        return walk_copy_workspace();
    };
    let tmp = tempfile::tempdir().unwrap();
    for path in listed.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = Path::new(std::str::from_utf8(path).expect("UTF-8 path"));
        let from = root.join(path);
        // Listed but deleted in the work tree, or not a plain file.
        if !from.is_file() || from.is_symlink() {
            continue;
        }
        let to = tmp.path().join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    tmp
}

/// Without git: copies the tree, skipping build output, VCS data and big files.
fn walk_copy_workspace() -> tempfile::TempDir {
    fn copy_dir(from: &Path, to: &Path, top: bool) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry.file_type().unwrap();
            let skip = name == ".git"
                || name == "target"
                || (top && (name.starts_with("target-") || name == "_output"));
            if skip || kind.is_symlink() {
                continue;
            }
            let dest = to.join(&*name);
            if kind.is_dir() {
                copy_dir(&entry.path(), &dest, false);
            } else if entry.metadata().unwrap().len() <= 1 << 20 {
                std::fs::copy(entry.path(), dest).unwrap();
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&workspace_root(), tmp.path(), true);
    tmp
}

/// Makes sure `crates/<name>` exists in the copy (a planned crate may not be written yet):
/// an empty library with the workspace's package fields.
fn ensure_crate(ws: &Path, name: &str) {
    let dir = ws.join("crates").join(name);
    if dir.join("Cargo.toml").exists() {
        return;
    }
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion.workspace = true\nedition.workspace = true\n\
             license.workspace = true\npublish.workspace = true\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), "//! Test fixture.\n").unwrap();
}

/// Adds `to` as a path dependency of `from` in the given section ("dependencies",
/// "dev-dependencies", "build-dependencies").
fn add_dependency(ws: &Path, from: &str, to: &str, section: &str) {
    let manifest = ws.join("crates").join(from).join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let line = format!("{to} = {{ path = \"../{to}\" }}\n");
    let header = format!("[{section}]\n");
    let text = match text.find(&header) {
        Some(at) => {
            let at = at + header.len();
            format!("{}{line}{}", &text[..at], &text[at..])
        }
        None => format!("{}\n{header}{line}", text.trim_end()),
    };
    std::fs::write(&manifest, text).unwrap();
}

struct Outcome {
    success: bool,
    output: String,
}

fn run(mut cmd: Command) -> Outcome {
    let out = cmd.output().expect("running command");
    Outcome {
        success: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn check_layers(ws: &Path) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("check-layers")
        .arg("--manifest-path")
        .arg(ws.join("Cargo.toml"));
    run(cmd)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

fn cargo_deny_installed() -> bool {
    Command::new(cargo())
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn deny_bans(ws: &Path) -> Outcome {
    let mut cmd = Command::new(cargo());
    cmd.arg("deny")
        .arg("--manifest-path")
        .arg(ws.join("Cargo.toml"))
        .arg("--config")
        .arg(ws.join("deny.toml"))
        .args(["--offline", "--color", "never"])
        .args(["check", "--allow", "unused-wrapper", "bans"])
        .current_dir(ws);
    run(cmd)
}

fn assert_fails_naming(outcome: &Outcome, tool: &str, needles: &[&str]) {
    assert!(
        !outcome.success,
        "{tool} accepted a forbidden edge:\n{}",
        outcome.output
    );
    for needle in needles {
        assert!(
            outcome.output.contains(needle),
            "{tool} output does not mention {needle:?}:\n{}",
            outcome.output
        );
    }
}

#[test]
fn guest_crate_using_a_host_crate_is_refused_by_both() {
    let ws = copy_workspace();
    ensure_crate(ws.path(), "guestagent");

    // store never depends on guestagent, so this edge cannot close a cycle cargo would refuse
    // (and it has a library target, so cargo does not drop the edge as it does for limactl).
    // Control: the untouched copy must not report this edge.
    let before = check_layers(ws.path());
    assert!(
        !before.output.contains("guestagent -> store"),
        "{}",
        before.output
    );

    add_dependency(ws.path(), "guestagent", "store", "dependencies");
    assert_fails_naming(
        &check_layers(ws.path()),
        "check-layers",
        &[
            "guestagent -> store (normal): a crate may only use crates of a strictly lower layer",
            "guestagent -> store (normal): a guest crate may not depend on host-side crates",
        ],
    );

    if !cargo_deny_installed() {
        eprintln!("SKIPPED the cargo-deny half: cargo-deny is not installed (CI installs it)");
        return;
    }
    assert_fails_naming(
        &deny_bans(ws.path()),
        "cargo deny",
        &[
            "direct parent 'guestagent = 0.0.0' of banned crate 'store = 0.0.0'",
            "crate 'store = 0.0.0' is explicitly banned",
        ],
    );
}

#[test]
fn driver_using_the_registry_is_refused_by_both_even_as_a_dev_dependency() {
    // A dev-dependency, so the edge cannot form a cycle cargo would reject if the real
    // registry already depends on qemu.
    let ws = copy_workspace();
    ensure_crate(ws.path(), "qemu");
    ensure_crate(ws.path(), "registry");
    add_dependency(ws.path(), "qemu", "registry", "dev-dependencies");

    assert_fails_naming(
        &check_layers(ws.path()),
        "check-layers",
        &["qemu -> registry (dev): a driver may not depend on registry, hostagent, limactl"],
    );

    if !cargo_deny_installed() {
        eprintln!("SKIPPED the cargo-deny half: cargo-deny is not installed (CI installs it)");
        return;
    }
    assert_fails_naming(
        &deny_bans(ws.path()),
        "cargo deny",
        &[
            "direct parent 'qemu = 0.0.0' of banned crate 'registry = 0.0.0'",
            "crate 'registry = 0.0.0' is explicitly banned",
        ],
    );
}

#[test]
fn upward_edge_that_closes_a_cycle_is_named_by_check_layers() {
    // limactl already uses limatype; cargo itself would refuse to resolve this, which is why
    // only check-layers (it reads declared dependencies without resolving) is asked.
    let ws = copy_workspace();
    add_dependency(ws.path(), "limatype", "limactl", "dependencies");
    assert_fails_naming(
        &check_layers(ws.path()),
        "check-layers",
        &[
            "limatype -> limactl (normal): a crate may only use crates of a strictly lower layer (limatype is layer 1, limactl is layer 8)",
            "dependency cycle among workspace crates",
        ],
    );
}

#[test]
fn crate_missing_from_the_table_is_named() {
    let ws = copy_workspace();
    ensure_crate(ws.path(), "mysterycrate");
    assert_fails_naming(
        &check_layers(ws.path()),
        "check-layers",
        &["mysterycrate: workspace crate is missing from the layer table"],
    );
}
