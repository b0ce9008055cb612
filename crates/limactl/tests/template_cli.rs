//! `limactl template ...` as a user runs it: exit codes and `FILE:LINE: FIELD: message` lines.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn limactl(args: &[&str], lima_home: &Path) -> Output {
    let templates =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../limaload/tests/fixtures/templates");
    Command::new(env!("CARGO_BIN_EXE_limactl"))
        .args(args)
        .env("LIMA_HOME", lima_home)
        .env("LIMA_TEMPLATES_PATH", templates)
        .output()
        .unwrap()
}

fn bad(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../limaload/tests/bad")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn validate_ok_exits_zero() {
    let home = tempfile::tempdir().unwrap();
    let out = limactl(&["template", "validate", "template:tiny"], home.path());
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn validate_bad_files_prints_file_line_field_and_exits_one() {
    let home = tempfile::tempdir().unwrap();
    let cases = [
        ("unknown-key.yaml", "3: cpu: unknown field `cpu`"),
        ("memory-lots.yaml", "3: memory: must be a size"),
        (
            "reversed-range.yaml",
            "5: portForwards[1].guestPortRange: is reversed",
        ),
        ("wrong-type-cpus.yaml", "3: cpus: invalid type"),
        ("zero-cpus.yaml", "3: cpus: must be at least 1"),
    ];
    let files: Vec<String> = cases.iter().map(|(f, _)| bad(f)).collect();
    let mut args = vec!["template", "validate", "template:tiny"];
    args.extend(files.iter().map(String::as_str));
    let out = limactl(&args, home.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = common::stderr_text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    for ((_, want), file) in cases.iter().zip(&files) {
        assert!(
            stderr.contains(&format!("{file}:{want}")),
            "missing {file}:{want} in\n{stderr}"
        );
    }
    assert!(stderr.contains("template:tiny: OK"), "{stderr}");
}

#[test]
fn binary_input_fails_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("junk.yaml");
    std::fs::write(&f, [0xff_u8, 0xfe, 0, 1, 2, 3, 0x80]).unwrap();
    let out = limactl(&["template", "validate", f.to_str().unwrap()], home.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = common::stderr_text(&out.stderr);
    assert!(
        stderr.contains("junk.yaml") && stderr.contains("UTF-8"),
        "{stderr}"
    );
}

#[test]
fn list_and_copy() {
    let home = tempfile::tempdir().unwrap();
    let out = limactl(&["template", "list"], home.path());
    assert!(out.status.success());
    let names = String::from_utf8_lossy(&out.stdout);
    assert!(names.lines().any(|l| l == "tiny"), "{names}");
    assert!(!names.contains("_images"), "{names}");

    let dest = home.path().join("copy.yaml");
    let out = limactl(
        &[
            "template",
            "copy",
            "--fill",
            "template:tiny",
            dest.to_str().unwrap(),
        ],
        home.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let filled = std::fs::read_to_string(&dest).unwrap();
    assert!(
        filled.contains("tiny-amd64.img") && filled.contains("disk: 100GiB"),
        "{filled}"
    );
    assert!(!filled.contains("base:"), "{filled}");

    let out = limactl(&["template", "copy", "template:tiny", "-"], home.path());
    assert!(String::from_utf8_lossy(&out.stdout).contains("base: template:_images/tiny"));

    let out = limactl(
        &["template", "copy", "template:../../etc/passwd"],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn version() {
    let home = tempfile::tempdir().unwrap();
    let out = limactl(&["--version"], home.path());
    let want = format!("compatible with Lima {}", limatype::LIMA_COMPAT_VERSION);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&want), "{stdout:?} should say {want:?}");
}

/// A template dir with a local base, a script, and a `template:` base; the copy outputs with
/// the temp path replaced by `$DIR`.
fn copy_fixture(flags: &[&str]) -> (Output, String) {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("t");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("s.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(dir.join("b.yaml"), "# the local base\ncpus: 2\n").unwrap();
    std::fs::write(
        dir.join("a.yaml"),
        "# top\nbase:\n- b.yaml\n- template:_images/tiny\nprovision:\n- mode: system\n  file: s.sh\n",
    )
    .unwrap();
    let src = dir.join("a.yaml");
    let mut args = vec!["template", "copy"];
    args.extend(flags);
    args.push(src.to_str().unwrap());
    let out = limactl(&args, home.path());
    let stdout =
        String::from_utf8_lossy(&out.stdout).replace(home.path().to_str().unwrap(), "$DIR");
    (out, stdout)
}

#[test]
fn copy_default_makes_locators_absolute() {
    let (out, stdout) = copy_fixture(&[]);
    assert!(out.status.success(), "{out:?}");
    insta::assert_snapshot!("copy_default", stdout);
}

#[test]
fn copy_verbatim_keeps_the_bytes() {
    let (out, stdout) = copy_fixture(&["--verbatim"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("# top\nbase:\n- b.yaml\n"), "{stdout}");
    assert!(stdout.contains("  file: s.sh\n"), "{stdout}");
}

#[test]
fn copy_embed_keeps_template_bases() {
    let (out, stdout) = copy_fixture(&["--embed"]);
    assert!(out.status.success(), "{out:?}");
    insta::assert_snapshot!("copy_embed", stdout);
}

#[test]
fn copy_embed_all_embeds_template_bases_too() {
    let (out, stdout) = copy_fixture(&["--embed-all"]);
    assert!(out.status.success(), "{out:?}");
    insta::assert_snapshot!("copy_embed_all", stdout);
}

#[test]
fn copy_verbatim_with_embed_fails() {
    for flag in ["--embed", "--embed-all", "--fill"] {
        let (out, stdout) = copy_fixture(&["--verbatim", flag]);
        assert_eq!(out.status.code(), Some(1), "{flag}");
        assert!(stdout.is_empty(), "{stdout}");
        let stderr = common::stderr_text(&out.stderr);
        assert!(
            stderr
                .contains("--verbatim cannot be used with any of --embed, --embed-all, or --fill"),
            "{stderr}"
        );
    }
}

#[test]
fn copy_embed_refuses_a_local_base_after_a_template_one() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("c.yaml");
    std::fs::write(home.path().join("b.yaml"), "cpus: 2\n").unwrap();
    std::fs::write(&f, "base:\n- template:_images/tiny\n- b.yaml\n").unwrap();
    let out = limactl(
        &["template", "copy", "--embed", f.to_str().unwrap()],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = common::stderr_text(&out.stderr);
    assert!(
        stderr.contains("cannot embed template")
            && stderr.contains("after not embedding \"template:_images/tiny\""),
        "{stderr}"
    );
}

#[test]
fn copy_missing_template_names_the_file() {
    let home = tempfile::tempdir().unwrap();
    let dest = home.path().join("out.yaml");
    let out = limactl(
        &[
            "template",
            "copy",
            "template:nosuch",
            dest.to_str().unwrap(),
        ],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = common::stderr_text(&out.stderr);
    assert!(
        stderr.contains("template `nosuch.yaml` not found"),
        "{stderr}"
    );
    assert!(!dest.exists(), "nothing half-done");
}

#[test]
fn url_prints_the_resolved_locator() {
    let home = tempfile::tempdir().unwrap();
    for (arg, want) in [
        ("template:default", "template:default\n"),
        ("./my.yaml", "./my.yaml\n"),
        ("https://example.com/x.yaml", "https://example.com/x.yaml\n"),
        ("template://_images/ubuntu", "template:_images/ubuntu\n"),
    ] {
        let out = limactl(&["template", "url", arg], home.path());
        assert!(out.status.success(), "{arg}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{arg}");
    }
    let out = limactl(&["template", "url", "template://x"], home.path());
    assert!(common::stderr_text(&out.stderr).contains("should be written `template:x`"));
}

/// A `github:` locator when GitHub cannot be reached (a proxy nothing listens on, so the test
/// never touches the network): exit code 1 and an error naming the locator, from `template
/// url` and from `create` alike.
#[test]
fn github_locator_unreachable_names_the_locator() {
    let home = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for args in [
        &["template", "url", "github:lima-vm/lima"][..],
        &[
            "create",
            "--tty=false",
            "--name",
            "gh",
            "github:lima-vm/lima/templates/default@master",
        ][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_limactl"))
            .args(args)
            .env("LIMA_HOME", home.path())
            .env("HTTPS_PROXY", &proxy)
            .env("https_proxy", &proxy)
            .env("ALL_PROXY", &proxy)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap();
        let err = common::stderr_text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        let locator = args.last().unwrap();
        assert!(
            err.contains(&format!("resolving `{locator}`")),
            "{args:?}: {err}"
        );
        assert!(!home.path().join("gh").join("lima.yaml").exists());
    }
}

/// The bundled `templates/` (not the test fixtures).
fn bundled(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    Command::new(env!("CARGO_BIN_EXE_limactl"))
        .args(args)
        .env("LIMA_HOME", home.path())
        .env("LIMA_TEMPLATES_PATH", templates)
        .output()
        .unwrap()
}

#[test]
fn bundled_alpine_embed_keeps_its_template_bases_and_comments() {
    let out = bundled(&["template", "copy", "--embed", "template:alpine"]);
    assert!(out.status.success(), "{out:?}");
    insta::assert_snapshot!("bundled_alpine_embed", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn bundled_alpine_embed_all_inlines_its_bases() {
    let out = bundled(&["template", "copy", "--embed-all", "template:alpine", "-"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("base:"), "{stdout}");
    insta::assert_snapshot!("bundled_alpine_embed_all", stdout);
}

#[test]
fn copy_of_an_empty_file_fails_in_every_mode() {
    let home = tempfile::tempdir().unwrap();
    let f = home.path().join("empty.yaml");
    std::fs::write(&f, "").unwrap();
    let f = f.to_str().unwrap();
    for mode in [&[][..], &["--embed"], &["--fill"], &["--verbatim"]] {
        let mut args = vec!["template", "copy"];
        args.extend(mode);
        args.push(f);
        let out = limactl(&args, home.path());
        assert_eq!(out.status.code(), Some(1), "{mode:?}");
        let stderr = common::stderr_text(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "don't know how to interpret `{f}` as a template locator"
            )),
            "{mode:?}: {stderr}"
        );
    }
}
