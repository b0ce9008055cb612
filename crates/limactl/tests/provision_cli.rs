//! `provision` modes and `message` through the real binary, on instances made by `limactl
//! create` with the `testfake` driver (nothing boots): `message` is rendered with the
//! instance's template fields (as `list --format '{{.Message}}'` shows it), a message that is
//! not a template makes the instance broken, and a `yq` step in a format the guest cannot
//! write is refused at create with the field named, leaving nothing behind.

mod common;

use std::process::Output;

use common::TestHome;

/// `limactl create` of a testfake instance with `extra` config lines.
fn create(h: &TestHome, name: &str, extra: &str) -> Output {
    let yaml = h.tmp.path().join(format!("{name}.yaml"));
    std::fs::write(
        &yaml,
        format!(
            "vmType: testfake\narch: x86_64\nuser:\n  name: tester\n\
             images:\n- location: /x/image.img\n{extra}"
        ),
    )
    .unwrap();
    h.run(&["create", "--name", name, yaml.to_str().unwrap()])
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
    let h = TestHome::new();
    let extra = format!(
        "{STEPS}message: |\n  name={{{{.Name}}}} dir={{{{.Dir}}}}\n  greeting={{{{.Param.GREETING}}}} user={{{{.Config.User.Name}}}}\n"
    );
    let out = create(&h, "web", &extra);
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
    let h = TestHome::new();
    let out = create(&h, "bad", "message: \"{{.Name\"\n");
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
    let h = TestHome::new();
    let out = create(
        &h,
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
