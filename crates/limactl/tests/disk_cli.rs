//! `limactl disk` through the real binary with a temporary `$LIMA_HOME` (images made by the
//! real `qemu-img`; skipped with a message where it is missing), and the disk locks of the
//! instance flow without any VM: instances use the `testfake` driver, a lock held by another
//! instance is faked with the `in_use_by` symlink, and a "running" instance is a `sleep` in
//! its directory named by its pid files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::LIMACTL;

struct Home {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    drivers: PathBuf,
    tmp: PathBuf,
    /// `sleep` processes standing in for running instances; killed on drop.
    running: Vec<Child>,
}

impl Drop for Home {
    fn drop(&mut self) {
        for c in &mut self.running {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn have_qemu_img() -> bool {
    let found = Command::new("qemu-img").arg("--version").output().is_ok();
    if !found {
        eprintln!("SKIPPED: qemu-img is not installed");
    }
    found
}

impl Home {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let drivers = common::testfake_drivers_dir(tmp.path());
        Home {
            home: tmp.path().join("home"),
            drivers,
            tmp: tmp.path().to_path_buf(),
            _tmp: tmp,
            running: vec![],
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(LIMACTL)
            .args(args)
            .env("LIMA_HOME", &self.home)
            .env("LIMA_DRIVERS_PATH", &self.drivers)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let err = common::stderr_text(&out.stderr).into_owned();
        assert!(out.status.success(), "limactl {args:?}: {err}");
        (String::from_utf8(out.stdout).unwrap(), err)
    }

    /// Runs a command that must fail with exit code 1; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = common::stderr_text(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "limactl {args:?}: {err}");
        err
    }

    /// A testfake instance using `disks`.
    fn create_instance(&self, name: &str, disks: &[&str]) {
        let yaml = self.tmp.join(format!("{name}.yaml"));
        std::fs::write(
            &yaml,
            format!(
                "vmType: testfake\nimages:\n- location: /nonexistent/image.img\nadditionalDisks: [{}]\n",
                disks.join(", ")
            ),
        )
        .unwrap();
        self.ok(&["create", "--name", name, yaml.to_str().unwrap()]);
    }

    fn disk_dir(&self, name: &str) -> PathBuf {
        self.home.join("_disks").join(name)
    }

    fn in_use_by(&self, disk: &str) -> Option<PathBuf> {
        std::fs::read_link(self.disk_dir(disk).join("in_use_by")).ok()
    }

    /// What `lock_disk` would record for instance `name`.
    fn lock_to(&self, disk: &str, name: &str) {
        std::os::unix::fs::symlink(self.home.join(name), self.disk_dir(disk).join("in_use_by"))
            .unwrap();
    }

    /// Makes instance `name` look running: a process in its directory named by both pid files.
    fn fake_running(&mut self, name: &str) {
        let dir = self.home.join(name);
        let child = Command::new("sleep")
            .arg("120")
            .current_dir(&dir)
            .spawn()
            .unwrap();
        for f in ["ha.pid", "testfake.pid"] {
            std::fs::write(dir.join(f), format!("{}\n", child.id())).unwrap();
        }
        self.running.push(child);
        let list = self.ok(&["list", "--json"]).0;
        assert!(list.contains("\"status\":\"Running\""), "{list}");
    }

    fn disks_json(&self) -> Vec<serde_json::Value> {
        self.ok(&["disk", "list", "--json"])
            .0
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Everything under `_disks`, hidden entries included.
    fn disks_dir_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.home.join("_disks"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn create_list_resize_delete() {
    if !have_qemu_img() {
        return;
    }
    let h = Home::new();
    let (_, err) = h.ok(&["disk", "create", "data", "--size", "1GiB"]);
    assert!(
        err.contains("Creating qcow2 disk \"data\" with size 1GiB"),
        "{err}"
    );
    h.ok(&[
        "disk", "create", "scratch", "--size", "64M", "--format", "raw",
    ]);
    for d in [h.home.join("_disks"), h.disk_dir("data")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    assert!(h.disk_dir("data").join("datadisk").is_file());

    let (table, _) = h.ok(&["disk", "ls"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "SIZE", "FORMAT", "DIR", "IN-USE-BY"]);
    let data_dir = h.disk_dir("data").display().to_string();
    assert_eq!(rows[1], ["data", "1GiB", "qcow2", data_dir.as_str()]);
    assert_eq!(rows[2][..3], ["scratch", "64MiB", "raw"]);

    let json = h.disks_json();
    assert_eq!(json.len(), 2);
    assert_eq!(
        json[0],
        serde_json::json!({
            "name": "data", "size": 1u64 << 30, "format": "qcow2", "dir": data_dir,
            "instance": "", "instanceDir": "", "mountPoint": "/mnt/lima-data"
        })
    );
    // Names narrow the list; an unknown one is a warning.
    let out = h.run(&["disk", "list", "--json", "scratch", "nope"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(common::stderr_text(&out.stderr).contains("No disk matching \"nope\" found"));

    // Grow only.
    let err = h.fails(&["disk", "resize", "data", "--size", "512MiB"]);
    assert!(
        err.contains("Disk shrinking is currently unavailable"),
        "{err}"
    );
    h.ok(&["disk", "resize", "data", "--size", "2GiB"]);
    assert_eq!(h.disks_json()[0]["size"], 2u64 << 30);
    h.ok(&["disk", "resize", "scratch", "--size", "128MiB"]);
    assert_eq!(h.disks_json()[1]["size"], 128u64 << 20);
    assert_eq!(h.disks_json()[1]["format"], "raw");
    let err = h.fails(&["disk", "resize", "nope", "--size", "1G"]);
    assert!(err.contains("disk \"nope\" does not exist"), "{err}");

    // A missing disk is skipped with a warning, as upstream.
    let (_, err) = h.ok(&["disk", "delete", "data", "nope"]);
    assert!(err.contains("Ignoring non-existent disk \"nope\""), "{err}");
    assert!(err.contains("Deleted \"data\""), "{err}");
    h.ok(&["disk", "rm", "scratch"]);
    assert!(h.disks_json().is_empty());
    assert!(h.disks_dir_entries().is_empty());
    let out = h.run(&["disk", "list"]);
    assert!(common::stderr_text(&out.stderr).contains("No disk found"));
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    if !have_qemu_img() {
        return;
    }
    let h = Home::new();
    h.ok(&["disk", "create", "d", "--size", "16M"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["disk", "create", "d", "--size", "1G"],
            "disk \"d\" already exists",
        ),
        (
            &["disk", "create", "../escape", "--size", "1G"],
            "invalid disk name \"../escape\"",
        ),
        (
            &["disk", "create", "a/b", "--size", "1G"],
            "invalid disk name \"a/b\"",
        ),
        (
            &["disk", "create", ".hidden", "--size", "1G"],
            "invalid disk name \".hidden\"",
        ),
        (
            &["disk", "create", "x", "--size", "lots"],
            "--size \"lots\"",
        ),
        (&["disk", "create", "x", "--size", "0"], "larger than 0"),
        (&["disk", "create", "x"], "--size"),
        (
            &["disk", "create", "x", "--size", "1G", "--format", "vmdk"],
            "disk format \"vmdk\" not supported, use `qcow2` or `raw` instead",
        ),
        (&["disk", "resize", "d"], "--size"),
        (
            &["disk", "resize", "../d", "--size", "1G"],
            "invalid disk name",
        ),
        (&["disk", "delete", "../d"], "invalid disk name"),
    ];
    for (args, want) in cases {
        let err = h.fails(args);
        assert!(err.contains(want), "limactl {args:?}: {err}");
    }
    assert_eq!(h.disks_dir_entries(), ["d"], "something was left behind");
    assert!(!h.home.join("escape").exists() && !h.tmp.join("escape").exists());

    // qemu-img itself failing (a size it refuses) leaves nothing either.
    let err = h.fails(&["disk", "create", "huge", "--size", "16000PiB"]);
    assert!(err.contains("qemu-img create"), "{err}");
    assert_eq!(h.disks_dir_entries(), ["d"]);
}

#[test]
fn a_disk_in_use_is_not_deleted_resized_or_unlocked() {
    if !have_qemu_img() {
        return;
    }
    let mut h = Home::new();
    h.ok(&["disk", "create", "d", "--size", "16M"]);
    h.create_instance("a", &["d"]);
    h.lock_to("d", "a");
    let json = h.disks_json();
    assert_eq!(json[0]["instance"], "a");
    assert_eq!(
        json[0]["instanceDir"],
        h.home.join("a").display().to_string()
    );
    let (table, _) = h.ok(&["disk", "list"]);
    assert_eq!(
        table.lines().nth(1).unwrap().split_whitespace().last(),
        Some("a")
    );

    let err = h.fails(&["disk", "delete", "d"]);
    assert!(
        err.contains("cannot delete disk \"d\" in use by instance \"a\""),
        "{err}"
    );
    assert!(h.disk_dir("d").join("datadisk").exists());

    // Locked to a stopped instance (a forced stop's leftover): resize is allowed, as upstream.
    h.ok(&["disk", "resize", "d", "--size", "32M"]);
    h.fake_running("a");
    let err = h.fails(&["disk", "resize", "d", "--size", "64M"]);
    assert!(err.contains("used by running instance \"a\""), "{err}");
    let (_, err) = h.ok(&["disk", "unlock", "d"]);
    assert!(
        err.contains("Cannot unlock disk \"d\" used by running instance \"a\""),
        "{err}"
    );
    assert!(h.in_use_by("d").is_some());

    // Forced: gone even while in use (as upstream).
    h.ok(&["disk", "delete", "-f", "d"]);
    assert!(!h.disk_dir("d").exists());
}

#[test]
fn unlock_and_delete_of_a_disk_named_by_a_stopped_instance() {
    if !have_qemu_img() {
        return;
    }
    let h = Home::new();
    h.ok(&["disk", "create", "d", "--size", "16M"]);
    h.create_instance("a", &["d"]);
    // Locked to an instance that no longer exists: unlock frees it.
    h.lock_to("d", "gone");
    let (_, err) = h.ok(&["disk", "unlock", "d", "nope"]);
    assert!(err.contains("Unlocked disk \"d\""), "{err}");
    assert!(err.contains("Ignoring non-existent disk \"nope\""), "{err}");
    assert_eq!(h.in_use_by("d"), None);
    let (_, err) = h.ok(&["disk", "unlock", "d"]);
    assert!(err.contains("Ignoring unlocked disk \"d\""), "{err}");

    // Named in a's additionalDisks: skipped with a warning unless forced.
    let (_, err) = h.ok(&["disk", "delete", "d"]);
    assert!(
        err.contains("disk is referenced by one or more non-running instances"),
        "{err}"
    );
    assert!(err.contains("limactl disk delete --force d"), "{err}");
    assert!(h.disk_dir("d").exists());
    h.ok(&["disk", "delete", "--force", "d"]);
    assert!(!h.disk_dir("d").exists());
}

/// `start` locks the disks before anything else: one locked by another instance, or a missing
/// one, fails it before any image is fetched or agent started, naming the disk.
#[test]
fn start_fails_before_any_vm_when_a_disk_is_taken_or_missing() {
    if !have_qemu_img() {
        return;
    }
    let h = Home::new();
    h.ok(&["disk", "create", "d", "--size", "16M"]);
    h.ok(&["disk", "create", "e", "--size", "16M"]);
    h.create_instance("a", &["d"]);
    h.create_instance("b", &["e", "d"]);
    h.lock_to("d", "a");

    let started = Instant::now();
    let err = h.fails(&["start", "b"]);
    assert!(
        err.contains("additionalDisks[1]") && err.contains("in use by instance \"a\""),
        "{err}"
    );
    assert!(err.contains("limactl disk unlock d"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let b = h.home.join("b");
    for f in ["ha.pid", "ha.stderr.log", "basedisk", "diffdisk"] {
        assert!(!b.join(f).exists(), "{f} exists: the start went too far");
    }
    // All or none: e, taken first, is released again; d stays a's.
    assert_eq!(h.in_use_by("e"), None);
    assert_eq!(h.in_use_by("d"), Some(h.home.join("a")));

    h.create_instance("c", &["missing"]);
    let err = h.fails(&["start", "c"]);
    assert!(
        err.contains("additionalDisks[0]: disk \"missing\" does not exist")
            && err.contains("limactl disk create missing --size"),
        "{err}"
    );
}

/// The start of the instance the disk is (stale-)locked to takes it again, and releases it
/// when the start fails later (here: its image cannot be fetched).
#[test]
fn a_failed_start_releases_its_disks() {
    if !have_qemu_img() {
        return;
    }
    let h = Home::new();
    h.ok(&["disk", "create", "d", "--size", "16M"]);
    h.create_instance("a", &["d"]);
    h.lock_to("d", "a");
    let err = h.fails(&["start", "a"]);
    assert!(err.contains("/nonexistent/image.img"), "{err}");
    assert!(err.contains("Attaching disk \"d\""), "{err}");
    assert_eq!(
        h.in_use_by("d"),
        None,
        "a failed start kept the disk locked"
    );
}

/// A forced stop, a host agent that exits and a delete each release the instance's disks,
/// and only its own.
#[test]
fn stop_agent_exit_and_delete_release_the_disks() {
    if !have_qemu_img() {
        return;
    }
    let h = Home::new();
    for d in ["d", "other"] {
        h.ok(&["disk", "create", d, "--size", "16M"]);
    }
    h.create_instance("a", &["d"]);
    h.create_instance("b", &["other"]);
    h.lock_to("other", "b");

    h.lock_to("d", "a");
    h.ok(&["stop", "-f", "a"]);
    assert_eq!(h.in_use_by("d"), None, "stop -f");

    // The host agent of a stopped instance fails at once (testfake has no disk yet) and
    // releases the disks as it exits.
    h.lock_to("d", "a");
    let mut agent = Command::new(LIMACTL)
        .args(["hostagent", "a"])
        .env("LIMA_HOME", &h.home)
        .env("LIMA_DRIVERS_PATH", &h.drivers)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = agent.kill();
            panic!("the host agent did not exit");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(h.in_use_by("d"), None, "host agent exit");

    h.lock_to("d", "a");
    h.ok(&["delete", "a"]);
    assert_eq!(h.in_use_by("d"), None, "delete");
    assert_eq!(h.in_use_by("other"), Some(h.home.join("b")));
}
