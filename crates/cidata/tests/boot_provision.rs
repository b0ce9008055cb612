//! `boot.sh`'s provisioning sections run with `sh` in a scratch directory: the `dependency`
//! scripts (`# BEGIN dependency` .. `# END dependency`) run in order and a failing one fails
//! the boot's code; a `yq` step (`# BEGIN yq` .. `# END yq`) runs the seed's guest agent (a
//! fake printing the new text, with the arguments it got) and installs its output at the
//! step's path with the step's mode; a failed edit leaves the file as it was.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const BOOT_SH: &str = include_str!("../scripts/boot.sh");

fn section(name: &str) -> &'static str {
    let start = BOOT_SH
        .find(&format!("# BEGIN {name}\n"))
        .expect("BEGIN marker");
    let end = BOOT_SH
        .find(&format!("# END {name}\n"))
        .expect("END marker");
    &BOOT_SH[start..end]
}

fn exe(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs a section with MNT=`mnt`; returns (success, stdout).
fn run(section: &str, mnt: &Path, env: &[(String, String)]) -> (bool, String) {
    let script = format!(
        "set -eu\nMNT='{}'\nCODE=0\nlog() {{ echo \"LOG $*\"; }}\n\
         run() {{ if ! \"$@\"; then echo \"FAILED $*\"; CODE=1; fi; }}\n{section}\nexit \"$CODE\"\n",
        mnt.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn dependency_scripts_run_in_order_and_a_failure_fails_the_boot() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let log = dir.path().join("order.log");
    exe(
        &mnt.join("provision.dependency/00000000"),
        &format!("#!/bin/sh\necho first >>'{}'\n", log.display()),
    );
    exe(
        &mnt.join("provision.dependency/00000002"),
        &format!("#!/bin/sh\necho second >>'{}'\n", log.display()),
    );
    let (ok, out) = run(section("dependency"), &mnt, &[]);
    assert!(ok, "{out}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nsecond\n");

    exe(
        &mnt.join("provision.dependency/00000003"),
        "#!/bin/sh\nexit 3\n",
    );
    let (ok, out) = run(section("dependency"), &mnt, &[]);
    assert!(!ok && out.contains("FAILED"), "{out}");
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn yq_step_installs_the_agents_output_with_owner_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let target = dir.path().join("etc/app/config.yaml");
    // The fake agent prints its arguments, so the test sees what boot.sh asked for.
    exe(
        &mnt.join("lima-guestagent"),
        "#!/bin/sh\n[ \"$(cat \"$5\")\" = '.a = 1' ] || exit 9\necho \"args: $*\"\n",
    );
    std::fs::create_dir_all(mnt.join("provision.yq")).unwrap();
    std::fs::write(mnt.join("provision.yq/00000004"), ".a = 1").unwrap();
    let prefix = "LIMA_CIDATA_YQ_PROVISION_00000004";
    let env = vec![
        (format!("{prefix}_PATH"), target.display().to_string()),
        (
            format!("{prefix}_OWNER"),
            format!("{}:{}", id("-un"), id("-gn")),
        ),
        (format!("{prefix}_PERMISSIONS"), "600".to_string()),
        (format!("{prefix}_FORMAT"), "auto".to_string()),
    ];
    let (ok, out) = run(section("yq"), &mnt, &env);
    assert!(ok, "{out}");
    let written = std::fs::read_to_string(&target).unwrap();
    assert_eq!(
        written,
        format!(
            "args: yq --format auto --from-file {} {}\n",
            mnt.join("provision.yq/00000004").display(),
            target.display()
        )
    );
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A failing edit: the boot fails, the file stays as it was.
    exe(
        &mnt.join("lima-guestagent"),
        "#!/bin/sh\necho partial\nexit 1\n",
    );
    let (ok, out) = run(section("yq"), &mnt, &env);
    assert!(!ok && out.contains("FAILED yq_step"), "{out}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), written);
}
