//! The instance store as an unlucky user meets it, through the real binary: an existing
//! `$LIMA_HOME` left as the user made it, directories a killed `create` left behind, and
//! `list` while instances are being deleted. Instances use the `testfake` driver: no VM.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::LIMACTL;

struct Home {
    _tmp: tempfile::TempDir,
    home: std::path::PathBuf,
    drivers: std::path::PathBuf,
    yaml: std::path::PathBuf,
}

impl Home {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let drivers = common::testfake_drivers_dir(tmp.path());
        let yaml = tmp.path().join("fake.yaml");
        std::fs::write(
            &yaml,
            "vmType: testfake\nimages:\n- location: /x/image.img\n",
        )
        .unwrap();
        Home {
            home: tmp.path().join("home"),
            drivers,
            yaml,
            _tmp: tmp,
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

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "limactl {args:?}: {}",
            common::stderr_text(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn create(&self, name: &str) {
        self.ok(&["create", "--name", name, self.yaml.to_str().unwrap()]);
    }

    fn list_json(&self) -> Vec<serde_json::Value> {
        self.ok(&["list", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// An existing `$LIMA_HOME` keeps its mode (a shared, sticky directory stays so); a missing
/// one is created owner-only.
#[test]
fn lima_home_is_left_as_the_user_made_it() {
    let h = Home::new();
    std::fs::create_dir(&h.home).unwrap();
    std::fs::set_permissions(&h.home, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = h.run(&["create", "--name", "a", h.yaml.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr_text(&out.stderr));
    assert_eq!(mode(&h.home), 0o1777, "an existing LIMA_HOME was chmod-ed");
    assert!(
        common::stderr_text(&out.stderr).contains("writable by everyone"),
        "no warning about a world-writable LIMA_HOME: {}",
        common::stderr_text(&out.stderr)
    );
    assert_eq!(mode(&h.home.join("a")), 0o700);

    let fresh = Home::new();
    fresh.create("b");
    assert_eq!(mode(&fresh.home), 0o700);
}

/// What a create killed midway leaves is listed as Broken, `delete` removes it, and a create
/// of the same name takes over a directory holding only its lock and temp files.
#[test]
fn half_created_instance_is_listed_deleted_and_recreated() {
    let h = Home::new();
    h.create("keep");
    for name in ["half", "other"] {
        let dir = h.home.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("instance.lock"), "").unwrap();
        std::fs::write(dir.join("lima.4242.tmp"), "cpus: 1\n").unwrap();
    }
    std::fs::write(h.home.join("other/notes.txt"), "mine").unwrap();

    let list = h.list_json();
    let names: Vec<&str> = list.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["half", "keep", "other"]);
    assert_eq!(list[0]["status"], "Broken", "{}", list[0]);

    // Taken over: only the lock and a temp file were there.
    h.create("half");
    assert!(
        !h.home.join("half/lima.4242.tmp").exists(),
        "stale temp file kept"
    );
    assert_eq!(h.list_json()[0]["status"], "Stopped");

    // Something else is there: not overwritten, and the error says how to go on.
    let out = h.run(&["create", "--name", "other", h.yaml.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr_text(&out.stderr);
    assert!(err.contains("limactl delete other"), "{err}");
    assert_eq!(
        std::fs::read_to_string(h.home.join("other/notes.txt")).unwrap(),
        "mine"
    );

    h.ok(&["delete", "other"]);
    assert!(!h.home.join("other").exists());
}

/// `list` while instances are deleted under it never fails: a deleted instance is skipped.
#[test]
fn list_survives_concurrent_deletes() {
    let h = Home::new();
    let names: Vec<String> = (0..12).map(|i| format!("vm{i}")).collect();
    for n in &names {
        h.create(n);
    }
    let deleter = {
        let (home, drivers, names) = (h.home.clone(), h.drivers.clone(), names.clone());
        std::thread::spawn(move || {
            for n in names {
                let st = Command::new(LIMACTL)
                    .args(["delete", &n])
                    .env("LIMA_HOME", &home)
                    .env("LIMA_DRIVERS_PATH", &drivers)
                    .output()
                    .unwrap();
                assert!(st.status.success(), "{}", common::stderr_text(&st.stderr));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut runs = 0;
    while !deleter.is_finished() && Instant::now() < deadline {
        let out = h.run(&["list", "--json"]);
        assert!(
            out.status.success(),
            "list failed during deletes (run {runs}): {}",
            common::stderr_text(&out.stderr)
        );
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_ne!(
                v["status"], "Broken",
                "a deleted instance showed up half: {v}"
            );
        }
        runs += 1;
    }
    deleter.join().unwrap();
    assert!(runs > 0);
    assert!(h.list_json().is_empty());
}
