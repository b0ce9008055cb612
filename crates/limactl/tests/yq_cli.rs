//! yq through the real binary: `limactl yq` and the `yq.lima` name, `--set` and the edit
//! flags on `create` and `edit` (recorded in `lima.yaml` with the user's comments kept),
//! `list --yq`/`--filter`, `info --yq`, `template yq`. Instances use the `testfake` driver:
//! nothing boots.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::LIMACTL;

const CONFIG: &str = "# my config\nvmType: testfake # the fake driver\nimages:\n- location: /x/image.img\ncpus: 2 # two is enough\n";

struct Home {
    tmp: tempfile::TempDir,
    drivers: PathBuf,
    yaml: PathBuf,
}

impl Home {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let drivers = common::testfake_drivers_dir(tmp.path());
        let yaml = tmp.path().join("fake.yaml");
        std::fs::write(&yaml, CONFIG).unwrap();
        Home { tmp, drivers, yaml }
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    fn lima_yaml(&self, name: &str) -> String {
        std::fs::read_to_string(self.home().join(name).join("lima.yaml")).unwrap()
    }

    fn run_with(&self, exe: &Path, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(exe)
            .args(args)
            .env("LIMA_HOME", self.home())
            .env("LIMA_DRIVERS_PATH", &self.drivers)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(Path::new(LIMACTL), args, "")
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

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "limactl {args:?} should fail");
        common::stderr_text(&out.stderr).into_owned()
    }
}

#[test]
fn create_records_the_edit_flags_and_set_keeping_comments() {
    let h = Home::new();
    let yaml = h.yaml.to_str().unwrap();
    h.ok(&[
        "create",
        "--name",
        "x",
        "--cpus",
        "3",
        "--set",
        ".memory=\"3GiB\"",
        "--ssh-port",
        "60022",
        yaml,
    ]);
    let text = h.lima_yaml("x");
    assert!(
        text.starts_with("# my config\nvmType: testfake # the fake driver\n"),
        "{text}"
    );
    assert!(text.contains("cpus: 3 # two is enough\n"), "{text}");
    assert!(text.contains("memory: 3GiB\n"), "{text}");
    assert!(text.contains("ssh:\n  localPort: 60022\n"), "{text}");
    // `list` sees the values the instance will run with.
    assert_eq!(h.ok(&["list", "--yq", ".cpus"]), "3\n");
    assert_eq!(h.ok(&["list", "--yq", ".config.memory"]), "3GiB\n");
}

#[test]
fn a_bad_set_or_flag_creates_nothing() {
    let h = Home::new();
    let yaml = h.yaml.to_str().unwrap();
    let err = h.fails(&["create", "--name", "x", "--set", ".cpus = ", yaml]);
    assert!(err.contains("invalid yq expression \".cpus = \""), "{err}");
    let err = h.fails(&["create", "--name", "x", "--set", ".cpus = \"many\"", yaml]);
    assert!(err.contains("cpus"), "{err}");
    let err = h.fails(&["create", "--name", "x", "--network", "bridged", yaml]);
    assert!(err.contains("invalid edit flag --network"), "{err}");
    let err = h.fails(&["create", "--name", "x", "--memory", "lots", yaml]);
    assert!(err.contains("--memory"), "{err}");
    assert!(!h.home().join("x").exists());
}

#[test]
fn create_reads_the_config_from_stdin() {
    let h = Home::new();
    let out = h.run_with(
        Path::new(LIMACTL),
        &["create", "--name", "s", "--cpus", "4", "-"],
        CONFIG,
    );
    assert!(out.status.success(), "{}", common::stderr_text(&out.stderr));
    assert!(h.lima_yaml("s").contains("cpus: 4 # two is enough\n"));
}

#[test]
fn edit_changes_a_stopped_instance_and_keeps_comments() {
    let h = Home::new();
    h.ok(&["create", "--name", "x", h.yaml.to_str().unwrap()]);
    let err = String::from_utf8(
        h.run(&[
            "edit",
            "x",
            "--cpus",
            "5",
            "--set",
            ".disk = \"20GiB\"",
            "--mount-none",
            "-y",
        ])
        .stderr,
    )
    .unwrap();
    assert!(err.contains("configuration edited"), "{err}");
    let text = h.lima_yaml("x");
    assert!(text.contains("cpus: 5 # two is enough\n"), "{text}");
    assert!(text.ends_with("disk: 20GiB\nmounts: null\n"), "{text}");
    // Invalid result: an error naming the field, and the file untouched.
    let err = h.fails(&["edit", "x", "--set", ".cpus = \"many\"", "-y"]);
    assert!(err.contains("cpus"), "{err}");
    assert_eq!(h.lima_yaml("x"), text);
    // No change, no write; create-only flags are not flags of edit.
    let err = common::stderr_text(&h.run(&["edit", "x", "--cpus", "5", "-y"]).stderr).into_owned();
    assert!(err.contains("no changes made"), "{err}");
    assert!(!h.run(&["edit", "x", "--arch", "aarch64"]).status.success());
    let err = h.fails(&["edit", "nope", "--cpus", "1"]);
    assert!(err.contains("\"nope\" does not exist"), "{err}");
}

#[test]
fn edit_a_template_file() {
    let h = Home::new();
    let f = h.yaml.to_str().unwrap();
    h.ok(&["edit", f, "--memory", "2", "--set", ".cpus = 6"]);
    assert_eq!(
        std::fs::read_to_string(&h.yaml).unwrap(),
        CONFIG.replace("cpus: 2", "cpus: 6") + "memory: 2GiB\n"
    );
    let err = h.fails(&["edit", f, "--set", ".images = []"]);
    assert!(err.contains("images"), "{err}");
    assert!(std::fs::read_to_string(&h.yaml)
        .unwrap()
        .contains("cpus: 6"));
}

#[test]
fn list_yq_and_filter() {
    let h = Home::new();
    let yaml = h.yaml.to_str().unwrap();
    h.ok(&["create", "--name", "a", yaml]);
    h.ok(&["create", "--name", "b", "--cpus", "4", yaml]);
    assert_eq!(h.ok(&["list", "--yq", ".name"]), "a\nb\n");
    assert_eq!(h.ok(&["list", "--filter", ".cpus == 4", "-q"]), "b\n");
    assert_eq!(
        h.ok(&["list", "--yq", "{name, cpus}", "-l", ".cpus > 2"]),
        "{\"cpus\":4,\"name\":\"b\"}\n"
    );
    assert_eq!(
        h.ok(&["list", "--yq", ".name", "--format", "yaml"]),
        "a\nb\n"
    );
    let err = h.fails(&["list", "--yq", ".name", "--format", "table"]);
    assert!(
        err.contains("--yq only works with --format json or yaml"),
        "{err}"
    );
}

#[test]
fn info_and_template_yq() {
    let h = Home::new();
    assert_eq!(
        h.ok(&["info", "--yq", ".limaHome"]),
        format!("{}\n", h.home().display())
    );
    let err = h.fails(&["info", "--yq", ".["]);
    assert!(err.contains("invalid yq expression"), "{err}");
    assert_eq!(
        h.ok(&["template", "yq", h.yaml.to_str().unwrap(), ".cpus"]),
        "2\n"
    );
    // Defaults are filled first.
    assert_eq!(
        h.ok(&[
            "template",
            "yq",
            h.yaml.to_str().unwrap(),
            ".ssh.loadDotSSHPubKeys"
        ]),
        "false\n"
    );
}

#[test]
fn limactl_yq_and_the_yq_lima_name() {
    let h = Home::new();
    let out = h.run_with(Path::new(LIMACTL), &["yq", ".a = 2"], "a: 1 # one\nb: x\n");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "a: 2 # one\nb: x\n");
    let out = h.run_with(
        Path::new(LIMACTL),
        &["yq", "-o=json", ".a"],
        "a: [1, \"x\"]\n",
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "[\n  1,\n  \"x\"\n]\n"
    );
    let out = h.run_with(
        Path::new(LIMACTL),
        &["yq", "eval", "-r", "-o", "json", ".b"],
        "b: x\n",
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "x\n");
    // -i keeps the comments of the file.
    let f = h.tmp.path().join("f.yaml");
    std::fs::write(&f, "# top\nx: 1 # c\n").unwrap();
    h.ok(&["yq", "-i", ".x |= . + 1 | .y = \"z\"", f.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "# top\nx: 2 # c\ny: z\n"
    );
    // A bad expression: exit 1, the file untouched.
    let err = h.fails(&["yq", "-i", ".x = ", f.to_str().unwrap()]);
    assert!(err.contains("invalid yq expression"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "# top\nx: 2 # c\ny: z\n"
    );
    // Upstream runs as yq under any name whose part before the first `.` is `yq`.
    let link = h.tmp.path().join("yq.lima");
    std::os::unix::fs::symlink(LIMACTL, &link).unwrap();
    let out = h.run_with(&link, &[".a.b"], "a: {b: 7}\n");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "7\n");
}
