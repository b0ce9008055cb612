//! `provision` modes and `message` through the real binary, on instances made by `limactl
//! create` with the `testfake` driver (nothing boots): `message` is rendered with the
//! instance's template fields (as `list --format '{{.Message}}'` shows it), a message that is
//! not a template makes the instance broken, and a `yq` step in a format the guest cannot
//! write is refused at create with the field named, leaving nothing behind.

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

    fn create(&self, name: &str, extra: &str) -> Output {
        let yaml = self.tmp.path().join(format!("{name}.yaml"));
        std::fs::write(
            &yaml,
            format!(
                "vmType: testfake\narch: x86_64\nuser:\n  name: tester\n\
                 images:\n- location: /x/image.img\n{extra}"
            ),
        )
        .unwrap();
        self.run(&["create", "--name", name, yaml.to_str().unwrap()])
    }
}

const STEPS: &str = r##"param:
  GREETING: hello
provision:
- mode: dependency
  skipDefaultDependencyResolution: true
  script: "#!/bin/sh\ntrue\n"
- mode: yq
  path: /etc/app/config.yaml
  expression: .greeting = "{{.Param.GREETING}}"
- mode: ansible
  playbook: site.yaml
"##;

#[test]
fn message_is_rendered_with_the_instance_fields() {
    let h = Home::new();
    let extra = format!(
        "{STEPS}message: |\n  name={{{{.Name}}}} dir={{{{.Dir}}}}\n  greeting={{{{.Param.GREETING}}}} user={{{{.Config.User.Name}}}}\n"
    );
    let out = h.create("web", &extra);
    assert!(out.status.success(), "{}", common::stderr_text(&out.stderr));
    let out = h.run(&["list", "web", "--format", "{{.Message}}"]);
    assert!(out.status.success(), "{}", common::stderr_text(&out.stderr));
    let dir = h.home.join("web");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "name=web dir={}\ngreeting=hello user=tester\n",
            dir.display()
        )
    );
}

#[test]
fn a_message_that_is_not_a_template_makes_the_instance_broken() {
    let h = Home::new();
    let out = h.create("bad", "message: \"{{.Name\"\n");
    assert!(out.status.success(), "{}", common::stderr_text(&out.stderr));
    let out = h.run(&["list", "bad", "--format", "{{.Status}} {{.Errors}}"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("Broken ") && text.contains("is not a valid template"),
        "{text}"
    );
}

#[test]
fn yq_step_in_an_unsupported_format_is_refused_at_create() {
    let h = Home::new();
    let out = h.create(
        "toml",
        "provision:\n- mode: yq\n  path: /etc/app.toml\n  expression: .a = 1\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr_text(&out.stderr);
    assert!(
        err.contains("provision[0].format") && err.contains("\"toml\""),
        "{err}"
    );
    assert!(!h.home.join("toml").exists());
}
