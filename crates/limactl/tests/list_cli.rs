//! `limactl list`, `show-ssh`, `validate` and `completion` through the real binary, on
//! instances made by `limactl create` with the `testfake` driver (nothing boots) and on
//! hand-made broken directories. Outputs are insta snapshots with the temp dir as `$TMP`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::LIMACTL;

struct Home {
    tmp: tempfile::TempDir,
    home: PathBuf,
    drivers: PathBuf,
}

impl Home {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let drivers = common::testfake_drivers_dir(tmp.path());
        Home {
            home: tmp.path().join("home"),
            drivers,
            tmp,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(LIMACTL)
            .args(args)
            .env("LIMA_HOME", &self.home)
            .env("LIMA_DRIVERS_PATH", &self.drivers)
            .env("HOME", self.tmp.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// Stdout of a successful run, the temp dir replaced by `$TMP`.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "limactl {args:?}: {}",
            common::stderr_text(&out.stderr)
        );
        self.scrub(&out.stdout)
    }

    fn scrub(&self, bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).replace(self.tmp.path().to_str().unwrap(), "$TMP")
    }

    fn create(&self, name: &str, cpus: u32) {
        let yaml = self.tmp.path().join(format!("{name}.yaml"));
        std::fs::write(
            &yaml,
            format!(
                "vmType: testfake\narch: x86_64\ncpus: {cpus}\nmemory: 2GiB\ndisk: 10GiB\n\
                 user:\n  name: tester\nimages:\n- location: /x/image.img\n"
            ),
        )
        .unwrap();
        self.ok(&["create", "--name", name, yaml.to_str().unwrap()]);
    }
}

#[test]
fn table_and_formats() {
    let h = Home::new();
    h.create("vm2", 2);
    h.create("vm1", 1);
    // Sorted by name; DIR shortened to ~ (HOME is the temp dir).
    insta::assert_snapshot!("table", h.ok(&["list"]));
    // In the order named.
    let named = h.ok(&["list", "-q", "vm2", "vm1"]);
    assert_eq!(named, "vm2\nvm1\n");
    insta::assert_snapshot!(
        "template",
        h.ok(&[
            "list",
            "--format",
            "{{.Name}} {{.Status}} {{.VMType}} {{.Arch}} {{.CPUs}} {{.Memory}} {{.Disk}} \
             {{.SSHLocalPort}} {{.HostAgentPID}} {{.DriverPID}} {{.Protected}} {{.Config.CPUs}} \
             {{.Config.User.Name}} {{.Dir}} {{.LimaHome}} {{.IdentityFile}} {{.SSHConfigFile}}",
        ])
    );
    let json = h.ok(&["list", "--json", "vm1"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["name"], "vm1");
    assert_eq!(v["cpus"], 1);
    assert_eq!(v["memory"], 2u64 << 30);
    assert_eq!(json, h.ok(&["list", "--format", "json", "vm1"]));
    assert_eq!(json, h.ok(&["list", "--format", "{{json .}}", "vm1"]));
    let yaml = h.ok(&["list", "--format", "yaml", "vm1"]);
    assert!(yaml.starts_with("---\nname: vm1\n"), "{yaml}");
    assert!(yaml.contains("\nHostArch: "), "{yaml}");
    insta::assert_snapshot!("fields", h.ok(&["list", "--list-fields"]));
}

#[test]
fn bad_flags_and_templates_fail_cleanly() {
    let h = Home::new();
    h.create("vm1", 1);
    for (args, msg) in [
        (
            &["list", "--json", "--format", "yaml"][..],
            "option --json conflicts with option --format",
        ),
        (
            &["list", "-q", "--format", "json"][..],
            "option --quiet can only be used with '--format table'",
        ),
        (
            &["list", "--list-fields", "--format", "json"][..],
            "option --list-fields conflicts with option --format",
        ),
        (
            &["list", "--format", "{{.Nope}}"][..],
            "can't evaluate field Nope",
        ),
        (
            &["list", "--format", "{{if .Name}}"][..],
            "invalid go template",
        ),
        (
            &["show-ssh", "--format", "url", "vm1"][..],
            "unknown format: `url`",
        ),
        (&["completion", "tcsh"][..], "unsupported shell \"tcsh\""),
        (&["show-ssh", "nope"][..], "instance `nope` does not exist"),
    ] {
        let out = h.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = common::stderr_text(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn missing_broken_and_empty() {
    let h = Home::new();
    // No instance at all: a warning, exit 0, nothing on stdout.
    std::fs::create_dir_all(&h.home).unwrap();
    let out = h.run(&["list"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(common::stderr_text(&out.stderr)
        .contains("No instance found. Run `limactl create` to create an instance."));

    h.create("vm1", 1);
    // A directory without lima.yaml is listed as Broken, with a warning naming it.
    std::fs::create_dir(h.home.join("half")).unwrap();
    let out = h.run(&["list"]);
    assert!(out.status.success());
    let table = h.scrub(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("half ") && l.contains("Broken")),
        "{table}"
    );
    let err = common::stderr_text(&out.stderr);
    assert!(
        err.contains("instance `half` has errors") && err.contains("lima.yaml"),
        "{err}"
    );

    // An unknown name: warned, the rest still listed, exit 1.
    let out = h.run(&["list", "nope", "vm1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(h.scrub(&out.stdout).contains("vm1"));
    assert!(common::stderr_text(&out.stderr).contains("No instance matching nope found."));
    let out = h.run(&["list", "-q", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn show_ssh_formats() {
    let h = Home::new();
    h.create("vm1", 1);
    insta::assert_snapshot!(
        "show_ssh_config",
        h.ok(&["show-ssh", "--format", "config", "vm1"])
    );
    let cmd = h.ok(&["show-ssh", "vm1"]);
    assert!(cmd.starts_with("ssh -o 'IdentityFile=\""), "{cmd}");
    assert!(
        cmd.trim_end()
            .ends_with("-o Hostname=127.0.0.1 -o Port=0 lima-vm1"),
        "{cmd}"
    );
    let opts = h.ok(&["show-ssh", "-f", "options", "vm1"]);
    assert!(opts.lines().any(|l| l == "User=tester"), "{opts}");
}

/// The `ssh` section reaches show-ssh: `~/.ssh` keys with `loadDotSSHPubKeys` (a `.pub`
/// without its private key left out), the forwarding switches that are on and only those.
#[test]
fn show_ssh_follows_the_ssh_section() {
    let h = Home::new();
    let dot_ssh = h.tmp.path().join(".ssh");
    std::fs::create_dir_all(&dot_ssh).unwrap();
    std::fs::write(dot_ssh.join("id_x"), "PRIVATE").unwrap();
    std::fs::write(dot_ssh.join("id_x.pub"), "ssh-ed25519 AAAA x\n").unwrap();
    std::fs::write(dot_ssh.join("lonely.pub"), "ssh-ed25519 AAAA y\n").unwrap();
    let yaml = h.tmp.path().join("fwd.yaml");
    std::fs::write(
        &yaml,
        "vmType: testfake\narch: x86_64\nuser:\n  name: tester\nimages:\n- location: /x/image.img\n\
         ssh:\n  loadDotSSHPubKeys: true\n  forwardAgent: true\n  forwardX11: true\n",
    )
    .unwrap();
    h.ok(&["create", "--name", "fwd", yaml.to_str().unwrap()]);
    let opts = h.ok(&["show-ssh", "-f", "options", "fwd"]);
    let lines: Vec<&str> = opts.lines().collect();
    for want in [
        "IdentityFile=\"$TMP/.ssh/id_x\"",
        "ForwardAgent=yes",
        "ForwardX11=yes",
    ] {
        assert!(lines.contains(&want), "{want} missing in\n{opts}");
    }
    assert!(!opts.contains("lonely"), "{opts}");
    assert!(!opts.contains("ForwardX11Trusted"), "{opts}");

    h.create("plain", 1);
    let opts = h.ok(&["show-ssh", "-f", "options", "plain"]);
    assert!(
        !opts.contains(".ssh/id_x") && !opts.contains("Forward"),
        "{opts}"
    );
}

#[test]
fn validate_and_completion() {
    let h = Home::new();
    let good = h.tmp.path().join("good.yaml");
    std::fs::write(&good, "images:\n- location: /x/image.img\n").unwrap();
    let bad = h.tmp.path().join("bad.yaml");
    std::fs::write(&bad, "cpus: many\n").unwrap();
    let out = h.run(&["validate", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr_text(&out.stderr));
    let out = h.run(&["validate", "--fill", good.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cpus:"));
    let out = h.run(&["validate", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr_text(&out.stderr).contains("cpus"));

    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = h.ok(&["completion", shell]);
        assert!(
            script.contains("show-ssh") && script.contains("list"),
            "{shell}"
        );
    }
}
