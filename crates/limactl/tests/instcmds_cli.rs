//! `clone`, `rename`, `factory-reset` and `edit` in a text editor, through the real binary,
//! with instances made by `limactl create` on the `testfake` driver (no VM is booted). Each
//! failure is checked to leave the files on disk as they were.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::LIMACTL;

struct Env {
    tmp: tempfile::TempDir,
    home: PathBuf,
    drivers: PathBuf,
    yaml: PathBuf,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let drivers = common::testfake_drivers_dir(tmp.path());
        let yaml = tmp.path().join("fake.yaml");
        std::fs::write(
            &yaml,
            "# mine\nvmType: testfake\nimages:\n- location: https://example.invalid/image.img\n",
        )
        .unwrap();
        Env {
            home: tmp.path().join("home"),
            drivers,
            yaml,
            tmp,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(LIMACTL);
        c.args(args)
            .env("LIMA_HOME", &self.home)
            .env("LIMA_DRIVERS_PATH", &self.drivers)
            .env("XDG_CONFIG_HOME", self.tmp.path().join("config"))
            .env("LIMA_CACHE_DIR", self.tmp.path().join("cache"))
            .env("LIMA_TEMPLATES_PATH", self.tmp.path().join("templates"))
            .env_remove("LIMA_LOG")
            .env_remove("VISUAL")
            .env_remove("EDITOR")
            // lima.REJECTED.yaml lands here.
            .current_dir(self.tmp.path())
            .stdin(Stdio::null());
        c
    }

    /// Runs, expects `code`, returns stderr.
    fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        let err = common::stderr_text(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "limactl {args:?}:\n{err}");
        err
    }

    fn create(&self, name: &str) {
        self.expect(
            0,
            &[
                "create",
                "--tty=false",
                "--name",
                name,
                self.yaml.to_str().unwrap(),
            ],
        );
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.home.join(name)
    }

    /// An executable script in the temp dir.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

/// Every file under `dir` (relative path → content), to compare before and after.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel + "/", vec![]);
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// An instance directory with what a run leaves: disks, logs, pid files, sockets, the TPM
/// state, the vz identifier.
fn add_run_files(dir: &Path) {
    for (f, content) in [
        ("diffdisk", "disk data"),
        ("basedisk", "base"),
        ("ha.stderr.log", "log"),
        ("ha.pid", "999999"),
        ("ssh.sock", ""),
        ("vz-identifier", "machine-id"),
        ("cidata.iso", "seed"),
    ] {
        std::fs::write(dir.join(f), content).unwrap();
    }
    std::fs::create_dir(dir.join("swtpm")).unwrap();
    std::fs::write(dir.join("swtpm/state"), "tpm").unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/kept"), "k").unwrap();
    std::fs::write(dir.join("sub/x.sock"), "").unwrap();
}

#[test]
fn clone_copies_what_upstream_copies_with_the_edit_flags() {
    let env = Env::new();
    env.create("a");
    add_run_files(&env.dir("a"));
    env.expect(0, &["protect", "a"]);
    let before = snapshot(&env.dir("a"));
    env.expect(
        0,
        &[
            "clone",
            "a",
            "b",
            "--cpus",
            "3",
            "--set",
            ".memory = \"3GiB\"",
        ],
    );
    // The source is untouched (its lock file aside, which clone takes).
    let mut after = snapshot(&env.dir("a"));
    after.remove("instance.lock");
    let mut before_nolock = before.clone();
    before_nolock.remove("instance.lock");
    assert_eq!(before_nolock, after);
    let b = env.dir("b");
    assert_eq!(
        names(&b),
        [
            "basedisk",
            "cidata.iso",
            "diffdisk",
            "ha.stderr.log",
            "lima-version",
            "lima.yaml",
            "sub",
            "vz-identifier"
        ]
    );
    assert_eq!(names(&b.join("sub")), ["kept"]);
    assert_eq!(std::fs::read(b.join("diffdisk")).unwrap(), b"disk data");
    assert_eq!(std::fs::read(b.join("vz-identifier")).unwrap(), b"");
    let yaml = std::fs::read_to_string(b.join("lima.yaml")).unwrap();
    assert!(yaml.starts_with("# mine\n"), "{yaml}");
    assert!(yaml.contains("cpus: 3"), "{yaml}");
    assert!(yaml.contains("memory: 3GiB"), "{yaml}");
    let mode = std::fs::metadata(&b).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    // The new instance is a stopped, unprotected one.
    let out = env.cmd(&["list", "--json"]).output().unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    let line = list.lines().find(|l| l.contains("\"name\":\"b\"")).unwrap();
    assert!(line.contains("\"status\":\"Stopped\""), "{line}");
    assert!(line.contains("\"cpus\":3"), "{line}");
    assert!(!line.contains("\"protected\":true"), "{line}");
    // Nothing but the two instances in LIMA_HOME (no staging directory left).
    assert_eq!(names(&env.home), ["a", "b"]);
}

#[test]
fn clone_and_rename_refuse_bad_input_and_change_nothing() {
    let env = Env::new();
    env.create("a");
    env.create("b");
    let before = snapshot(&env.home);
    let cases: &[(&[&str], &str)] = &[
        (&["clone", "a", "b"], "instance \"b\" already exists"),
        (&["rename", "a", "b"], "instance \"b\" already exists"),
        (
            &["clone", "a", "a"],
            "new instance name \"a\" must be different from \"a\"",
        ),
        (&["clone", "nope", "c"], "instance \"nope\" not found"),
        (&["rename", "nope", "c"], "instance \"nope\" not found"),
        (&["clone", "a", "../c"], "invalid instance name \"../c\""),
        (&["rename", "a", "c_"], "invalid instance name \"c_\""),
        (
            &["clone", "a", "c", "--set", ".cpus = \"many\""],
            "cpus: invalid type",
        ),
        (&["rename", "a", "c", "--cpus=-1"], "cpus"),
        (
            &["clone", "a", "c", "--set", ".cpus ="],
            "invalid yq expression",
        ),
    ];
    for (args, want) in cases {
        let err = env.expect(1, args);
        assert!(err.contains(want), "{args:?}: {err}");
        let mut now = snapshot(&env.home);
        now.retain(|k, _| !k.ends_with("instance.lock"));
        let mut was = before.clone();
        was.retain(|k, _| !k.ends_with("instance.lock"));
        assert_eq!(was, now, "{args:?} changed files");
    }
    // Usage errors.
    env.expect(1, &["clone", "a"]);
    env.expect(1, &["rename", "a", "b", "c"]);
    // A name whose socket path would not fit UNIX_PATH_MAX.
    let long = "x".repeat(76);
    let err = env.expect(1, &["clone", "a", &long]);
    assert!(err.contains("too long"), "{err}");
    assert!(err.contains("UNIX_PATH_MAX="), "{err}");
    assert!(!env.dir(&long).exists());
}

#[test]
fn rename_moves_the_instance_and_refuses_a_protected_or_running_one() {
    let env = Env::new();
    env.create("a");
    add_run_files(&env.dir("a"));
    env.expect(0, &["protect", "a"]);
    let before = snapshot(&env.dir("a"));
    let err = env.expect(1, &["rename", "a", "b"]);
    assert!(
        err.contains("instance \"a\" is protected to prohibit accidental rename"),
        "{err}"
    );
    assert!(err.contains("limactl unprotect"), "{err}");
    assert!(!env.dir("b").exists());
    assert_eq!(before, snapshot(&env.dir("a")));
    env.expect(0, &["unprotect", "a"]);

    // A running instance (a live process in its pid files) is refused by both.
    // (Its cwd is the instance directory: that is how a pid is told to be the instance's.)
    let child = Command::new("sleep")
        .arg("60")
        .current_dir(env.dir("a"))
        .spawn()
        .unwrap();
    std::fs::write(env.dir("a").join("ha.pid"), format!("{}\n", child.id())).unwrap();
    for verb in ["clone", "rename"] {
        let err = env.expect(1, &[verb, "a", "b"]);
        assert!(
            err.contains(&format!("cannot {verb} a running instance \"a\"")),
            "{err}"
        );
        assert!(!env.dir("b").exists());
    }
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::write(env.dir("a").join("ha.pid"), "999999").unwrap();

    env.expect(0, &["rename", "a", "b", "--memory", "2"]);
    assert!(!env.dir("a").exists());
    let b = env.dir("b");
    let got = names(&b);
    for gone in ["ha.pid", "ssh.sock", "swtpm", "protected"] {
        assert!(!got.contains(&gone.to_string()), "{gone} moved: {got:?}");
    }
    for kept in ["diffdisk", "basedisk", "ha.stderr.log", "lima.yaml", "sub"] {
        assert!(got.contains(&kept.to_string()), "{kept} lost: {got:?}");
    }
    assert_eq!(names(&b.join("sub")), ["kept"]);
    assert_eq!(std::fs::read(b.join("vz-identifier")).unwrap(), b"");
    let yaml = std::fs::read_to_string(b.join("lima.yaml")).unwrap();
    assert!(yaml.contains("memory: 2GiB"), "{yaml}");
    assert_eq!(names(&env.home), ["b"]);
    let out = env.cmd(&["list", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "b\n");
}

#[test]
fn factory_reset_keeps_the_configs_only() {
    let env = Env::new();
    env.create("a");
    let dir = env.dir("a");
    add_run_files(&dir);
    std::fs::write(dir.join("extra.yml"), "x: 1\n").unwrap();
    let yaml = std::fs::read(dir.join("lima.yaml")).unwrap();
    env.expect(0, &["protect", "a"]);
    let before = snapshot(&dir);
    let err = env.expect(1, &["factory-reset", "a"]);
    assert!(
        err.contains("instance \"a\" is protected to prohibit accidental factory-reset"),
        "{err}"
    );
    assert_eq!(before, snapshot(&dir));
    env.expect(0, &["unprotect", "a"]);

    let err = env.expect(0, &["factory-reset", "a"]);
    assert!(err.contains("Removing"), "{err}");
    assert!(err.contains("has been factory reset"), "{err}");
    assert_eq!(
        names(&dir),
        [
            "extra.yml",
            "instance.lock",
            "lima-version",
            "lima.yaml",
            "vz-identifier"
        ]
    );
    assert_eq!(std::fs::read(dir.join("lima.yaml")).unwrap(), yaml);
    assert_eq!(
        std::fs::read(dir.join("vz-identifier")).unwrap(),
        b"machine-id"
    );
    // Still an instance, stopped.
    let out = env.cmd(&["list", "--json"]).output().unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(list.contains("\"status\":\"Stopped\""), "{list}");

    // A missing instance is not an error (upstream); `default` is the default.
    let err = env.expect(0, &["factory-reset", "nope"]);
    assert!(err.contains("Instance \"nope\" not found"), "{err}");
    let err = env.expect(0, &["factory-reset"]);
    assert!(err.contains("Instance \"default\" not found"), "{err}");
    env.expect(1, &["factory-reset", "../x"]);
}

#[test]
fn edit_opens_the_editor_and_validates_before_saving() {
    let env = Env::new();
    env.create("a");
    let path = env.dir("a").join("lima.yaml");
    let original = std::fs::read_to_string(&path).unwrap();
    // The editor sees upstream's header, then the config; it changes cpus.
    let seen = env.tmp.path().join("seen.yaml");
    let editor = env.script(
        "ed.sh",
        &format!(
            "#!/bin/sh\ncp \"$1\" {}\nsed -i 's/^vmType: testfake$/vmType: testfake\\ncpus: 5/' \"$1\"\n",
            seen.display()
        ),
    );
    let err = {
        let out = env
            .cmd(&["edit", "a", "--tty"])
            .env("EDITOR", &editor)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        common::stderr_text(&out.stderr).into_owned()
    };
    assert!(err.contains("Instance \"a\" configuration edited"), "{err}");
    let shown = std::fs::read_to_string(&seen).unwrap();
    assert!(
        shown.starts_with(
            "# Please edit the following configuration for Lima instance `a`\n\
             # and an empty file will abort the edit.\n\n"
        ),
        "{shown}"
    );
    assert!(shown.ends_with(&original), "{shown}");
    let edited = std::fs::read_to_string(&path).unwrap();
    assert!(edited.contains("cpus: 5"), "{edited}");
    assert!(!edited.contains("Please edit"), "{edited}");

    // VISUAL wins over EDITOR.
    let visual = env.script(
        "visual.sh",
        "#!/bin/sh\nsed -i 's/cpus: 5/cpus: 6/' \"$1\"\n",
    );
    let out = env
        .cmd(&["edit", "a", "--tty"])
        .env("EDITOR", &editor)
        .env("VISUAL", &visual)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&path).unwrap().contains("cpus: 6"));

    let run = |script: &str| {
        let ed = env.script("e.sh", script);
        let out = env
            .cmd(&["edit", "a", "--tty"])
            .env("EDITOR", &ed)
            .output()
            .unwrap();
        (
            out.status.code(),
            common::stderr_text(&out.stderr).into_owned(),
        )
    };
    let before = std::fs::read(&path).unwrap();
    // Unchanged: nothing written.
    let (code, err) = run("#!/bin/sh\ntrue\n");
    assert_eq!(code, Some(0));
    assert!(
        err.contains("Aborting, no changes made to the instance"),
        "{err}"
    );
    // Emptied: an abort.
    let (code, err) = run("#!/bin/sh\n: > \"$1\"\n");
    assert_eq!(code, Some(0));
    assert!(
        err.contains("Aborting, as requested by saving the file with empty content"),
        "{err}"
    );
    // Invalid: an error, the file unchanged, the buffer kept as lima.REJECTED.yaml.
    let (code, err) = run("#!/bin/sh\nsed -i 's/cpus: 6/cpus: many/' \"$1\"\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("the YAML is invalid, saved the buffer as lima.REJECTED.yaml"),
        "{err}"
    );
    assert!(err.contains("cpus"), "{err}");
    let rejected = std::fs::read_to_string(env.tmp.path().join("lima.REJECTED.yaml")).unwrap();
    assert!(rejected.contains("cpus: many"), "{rejected}");
    // Rejected by the driver side (no such driver): the same.
    let (code, err) = run("#!/bin/sh\nsed -i 's/^vmType: testfake$/vmType: nope/' \"$1\"\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("saved the buffer as lima.REJECTED.yaml: unknown vmType"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A failing editor: an error naming it, nothing written.
    let (code, err) = run("#!/bin/sh\nexit 3\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("could not execute editor"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // No editor to be found.
    let out = env
        .cmd(&["edit", "a", "--tty"])
        .env("EDITOR", "/nonexistent/editor")
        .env("PATH", env.tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr_text(&out.stderr);
    assert!(
        err.contains("could not detect a text editor binary, try setting $EDITOR"),
        "{err}"
    );

    // --tty=false and no flags: an empty edit, as upstream; the editor is not run.
    let marker = env.tmp.path().join("ran");
    let ed = env.script("m.sh", &format!("#!/bin/sh\ntouch {}\n", marker.display()));
    let out = env
        .cmd(&["edit", "a", "--tty=false"])
        .env("EDITOR", &ed)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(common::stderr_text(&out.stderr).contains("empty content"));
    assert!(!marker.exists());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn edit_opens_the_editor_on_a_template_file() {
    let env = Env::new();
    let f = env.tmp.path().join("t.yaml");
    std::fs::copy(&env.yaml, &f).unwrap();
    let ed = env.script("e.sh", "#!/bin/sh\necho 'cpus: 7' >> \"$1\"\n");
    let out = env
        .cmd(&["edit", f.to_str().unwrap(), "--tty"])
        .env("EDITOR", &ed)
        .output()
        .unwrap();
    let err = common::stderr_text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.ends_with("cpus: 7\n"), "{text}");
    assert!(!text.contains("Please edit"), "{text}");
}

#[test]
fn clone_start_starts_the_new_instance() {
    let env = Env::new();
    // An image that cannot be fetched: the start fails there, after the clone is done.
    let missing = env.tmp.path().join("no-such-image.img");
    let yaml = env.tmp.path().join("local.yaml");
    std::fs::write(
        &yaml,
        format!(
            "vmType: testfake\nimages:\n- location: {}\n",
            missing.display()
        ),
    )
    .unwrap();
    env.expect(
        0,
        &[
            "create",
            "--tty=false",
            "--name",
            "a",
            yaml.to_str().unwrap(),
        ],
    );
    env.expect(0, &["clone", "a", "b", "--start=false"]);
    assert!(env.dir("b").join("lima.yaml").exists());
    let err = env.expect(1, &["clone", "a", "c", "--start"]);
    assert!(err.contains("no-such-image.img"), "{err}");
    // The clone stays (as upstream: the start is a separate step).
    assert!(env.dir("c").join("lima.yaml").exists());
    assert!(env.dir("a").join("lima.yaml").exists());
    // edit --start goes the same way.
    let err = env.expect(1, &["edit", "b", "--cpus", "3", "--start"]);
    assert!(err.contains("configuration edited"), "{err}");
    assert!(err.contains("no-such-image.img"), "{err}");
}
