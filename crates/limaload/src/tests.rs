//! Unit tests of the loader: locators, templates, base composition and diagnostics.
use super::*;
use std::fs;

fn host(lima_home: &Path) -> HostFacts {
    HostFacts {
        os: limatype::Os::Linux,
        arch: limatype::Arch::X86_64,
        cpus: 8,
        memory: limatype::ByteSize(16 << 30),
        user_name: "alice".into(),
        user_comment: "Alice".into(),
        uid: 1000,
        home: "/home/alice".into(),
        timezone: "UTC".into(),
        machine_id: "m".into(),
        lima_home: lima_home.to_path_buf(),
        temp_dir: "/tmp".into(),
    }
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = dir.path().join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        Fixture { dir }
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
    fn opts(&self) -> LoadOptions {
        LoadOptions {
            host: host(&self.dir.path().join("home")),
            template_dirs: vec![self.dir.path().join("templates")],
            name: None,
            use_config_files: true,
            use_default_base: true,
        }
    }
}

const IMAGES: &str = "images:\n- location: https://example.com/x86.img\n  arch: x86_64\n- location: https://example.com/arm.img\n  arch: aarch64\n";

#[test]
fn loads_a_template_with_nested_bases() {
    let fx = Fixture::new(&[
        ("templates/_images/distro.yaml", IMAGES),
        (
            "templates/_default/mounts.yaml",
            "mounts:\n- location: \"~\"\n- location: /tmp/lima\n  writable: true\nprovision:\n- script: \"#!/bin/sh\\necho base\"\n",
        ),
        (
            "templates/distro.yaml",
            "minimumLimaVersion: 1.0.0\nbase:\n- template:_images/distro\n- template:_default/mounts\nprovision:\n- script: \"#!/bin/sh\\necho top\"\ncpus: 2\n",
        ),
    ]);
    let loaded = load("template:distro", &fx.opts()).unwrap();
    assert_eq!(loaded.embedded.name, "distro");
    let c = &loaded.config;
    assert_eq!(c.yaml().cpus, Some(2));
    assert_eq!(c.images.as_ref().unwrap().len(), 2);
    assert_eq!(c.mounts.as_ref().unwrap()[0].location, "/home/alice");
    let scripts: Vec<_> = c
        .provision
        .iter()
        .flatten()
        .map(|p| p.script.clone().unwrap())
        .collect();
    assert_eq!(scripts, ["#!/bin/sh\necho base", "#!/bin/sh\necho top"]);
    assert!(
        !loaded.embedded.text.contains("base:"),
        "{}",
        loaded.embedded.text
    );
    // The stored text loads again to the same filled config.
    let again = load_text(
        &loaded.embedded.text,
        "distro.yaml",
        &LoadOptions {
            name: Some("distro".into()),
            ..fx.opts()
        },
    )
    .unwrap();
    assert_eq!(again.config, loaded.config);
}

#[test]
fn template_url_forms_and_relative_bases() {
    let fx = Fixture::new(&[
        ("templates/_images/distro.yaml", IMAGES),
        ("templates/a.yaml", "base: _images/distro.yaml\n"),
        ("proj/base.yaml", IMAGES),
        ("proj/sub/top.yaml", "base: [\"../base.yaml\"]\n"),
        (
            "proj/top2.yaml",
            "base: base.yaml\nprovision:\n- file: hello.sh\n",
        ),
        ("proj/hello.sh", "#!/bin/sh\necho hi\n"),
    ]);
    assert!(load("template://a", &fx.opts()).is_ok());
    assert!(load("template:a", &fx.opts()).is_ok());
    let err = load(&fx.path("proj/sub/top.yaml"), &fx.opts()).unwrap_err();
    assert!(err.to_string().contains("must not contain \"..\""), "{err}");
    assert_eq!(err.0[0].field, "base[0]");
    let ok = load(&format!("file://{}", fx.path("proj/top2.yaml")), &fx.opts()).unwrap();
    assert_eq!(
        ok.config.provision.clone().unwrap()[0].script.as_deref(),
        Some("#!/bin/sh\necho hi\n")
    );
}

#[test]
fn template_traversal_is_refused() {
    let fx = Fixture::new(&[("templates/x.yaml", IMAGES)]);
    for bad in [
        "template:../../etc/passwd",
        "template:/etc/passwd",
        "template:///etc/passwd",
        "template:a/../../x",
    ] {
        let err = load(bad, &fx.opts()).unwrap_err();
        assert!(
            err.to_string().contains("must not contain")
                || err.to_string().contains("must be relative"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn base_cycle_names_the_chain() {
    let fx = Fixture::new(&[
        ("a.yaml", "base: b.yaml\n"),
        ("b.yaml", "base: c.yaml\n"),
        ("c.yaml", "base: a.yaml\n"),
    ]);
    let err = load(&fx.path("a.yaml"), &fx.opts()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("base cycle"), "{msg}");
    let (a, b, c) = (fx.path("a.yaml"), fx.path("b.yaml"), fx.path("c.yaml"));
    assert!(msg.contains(&format!("{a} -> {b} -> {c} -> {a}")), "{msg}");
    assert_eq!(err.0[0].line, Some(1));
    assert_eq!(err.0[0].field, "base[0]");
}

#[test]
fn self_base_is_a_cycle() {
    let fx = Fixture::new(&[("templates/me.yaml", "base: template:me\n")]);
    let err = load("template:me", &fx.opts()).unwrap_err();
    assert!(
        err.to_string().contains("template:me -> template:me"),
        "{err}"
    );
}

#[test]
fn merge_rules() {
    let mut a: serde_yaml::Value = serde_yaml::from_str(
        "cpus: 2\nenv: {A: a}\nmounts: [{location: /a}]\nprovision: [{script: a}]\ndns: [1.1.1.1]\nminimumLimaVersion: 1.0.0\nmountTypesUnsupported: [9p]\n",
    )
    .unwrap();
    let b: serde_yaml::Value = serde_yaml::from_str(
        "cpus: 4\nmemory: 1GiB\nenv: {A: b, B: b}\nmounts: [{location: /b}]\nprovision: [{script: b}]\ndns: [8.8.8.8]\nminimumLimaVersion: 1.1.0\nmountTypesUnsupported: [9p, virtiofs]\n",
    )
    .unwrap();
    embed::merge_document(&mut a, &b);
    let y: LimaYaml = serde_yaml::from_value(a).unwrap();
    assert_eq!(y.cpus, Some(2));
    assert_eq!(y.memory.as_deref(), Some("1GiB"));
    let env = y.env.unwrap();
    assert_eq!((env["A"].as_str(), env["B"].as_str()), ("a", "b"));
    let locs: Vec<_> = y.mounts.unwrap().into_iter().map(|m| m.location).collect();
    assert_eq!(locs, ["/a", "/b"]);
    let scripts: Vec<_> = y
        .provision
        .unwrap()
        .into_iter()
        .map(|p| p.script.unwrap())
        .collect();
    assert_eq!(scripts, ["b", "a"]);
    assert_eq!(y.dns.unwrap(), ["1.1.1.1"]);
    assert_eq!(y.minimum_lima_version.as_deref(), Some("1.1.0"));
    assert_eq!(y.mount_types_unsupported.unwrap(), ["9p", "virtiofs"]);
}

#[test]
fn combine_entries_by_key_and_wildcard() {
    let mut y = LimaYaml::from_yaml(
        "additionalDisks: [data, {name: data, format: false}, {name: '*', fsType: xfs}]\nmounts: [{location: /a}, {location: /a, writable: true}, {location: /b, mountPoint: /c}]\nnetworks: [{interface: e1}, {interface: e1, lima: shared}]\n",
    )
    .unwrap();
    embed::combine_list_entries(&mut y);
    let disks = y.additional_disks.unwrap();
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0].format, Some(false));
    assert_eq!(disks[0].fs_type.as_deref(), Some("xfs"));
    let mounts = y.mounts.unwrap();
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0].writable, Some(true));
    let nets = y.networks.unwrap();
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0].lima.as_deref(), Some("shared"));
}

#[test]
fn config_files_apply_in_order() {
    let fx = Fixture::new(&[
        (
            "home/_config/default.yaml",
            "cpus: 1\nmemory: 1GiB\ndisk: 5GiB\n",
        ),
        ("home/_config/override.yaml", "disk: 7GiB\n"),
        ("x.yaml", &format!("{IMAGES}cpus: 3\n")),
    ]);
    let c = load(&fx.path("x.yaml"), &fx.opts()).unwrap().config;
    assert_eq!(c.yaml().cpus, Some(3));
    assert_eq!(c.yaml().memory.as_deref(), Some("1GiB"));
    assert_eq!(c.yaml().disk.as_deref(), Some("7GiB"));
}

#[test]
fn bad_config_file_names_that_file() {
    let fx = Fixture::new(&[
        ("home/_config/override.yaml", "cpu: 1\n"),
        ("x.yaml", IMAGES),
    ]);
    let err = load(&fx.path("x.yaml"), &fx.opts()).unwrap_err();
    assert!(err.0[0].file.ends_with("override.yaml"), "{err}");
    assert_eq!(err.0[0].field, "cpu");
    assert_eq!(err.0[0].line, Some(1));
}

#[test]
fn validation_lines_point_into_the_top_file() {
    let fx = Fixture::new(&[
        ("templates/_b.yaml", "provision:\n- script: \"#!/bin/sh\"\nportForwards:\n- guestPort: 1000\n"),
        (
            "x.yaml",
            &format!("{IMAGES}base: template:_b\nprovision:\n- mode: bogus\n  script: x\nportForwards:\n- guestPort: 2000\n- guestPortRange: [9, 1]\n"),
        ),
    ]);
    let err = load(&fx.path("x.yaml"), &fx.opts()).unwrap_err();
    let lines: Vec<String> = err.0.iter().map(|d| d.to_string()).collect();
    let file = fx.path("x.yaml");
    assert!(lines.contains(&format!("{file}:8: provision[0].mode: must be one of [\"system\", \"user\", \"boot\", \"dependency\", \"ansible\", \"data\", \"yq\"], got \"bogus\"")), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{file}:12: portForwards[1].guestPortRange:"))),
        "{lines:#?}"
    );
}

#[test]
fn listing_skips_underscore_dirs() {
    let fx = Fixture::new(&[
        ("templates/_images/x.yaml", IMAGES),
        ("templates/docker.yaml", IMAGES),
        ("templates/experimental/foo.yaml", IMAGES),
        ("templates/README.md", "x"),
        ("t2/docker.yaml", IMAGES),
        ("t2/extra.yaml", IMAGES),
    ]);
    let dirs = vec![fx.dir.path().join("templates"), fx.dir.path().join("t2")];
    let names: Vec<_> = list_templates(&dirs)
        .into_iter()
        .map(|(n, p)| (n, p.starts_with(&dirs[0])))
        .collect();
    assert_eq!(
        names,
        [
            ("docker".into(), true),
            ("experimental/foo".into(), true),
            ("extra".into(), false)
        ]
    );
}

#[test]
fn instance_names_from_locators() {
    assert_eq!(instance_name("template:docker").as_deref(), Some("docker"));
    assert_eq!(instance_name("template://k8s").as_deref(), Some("k8s"));
    assert_eq!(
        instance_name("/a/b/ubuntu-24.04.yaml").as_deref(),
        Some("ubuntu-24.04")
    );
    assert_eq!(instance_name("https://x/y/dev.yml").as_deref(), Some("dev"));
    assert_eq!(instance_name("/a/b/.yaml"), None);
}

#[test]
fn default_base_yaml_comes_first() {
    let fx = Fixture::new(&[
        (
            "home/_config/base.yaml",
            "provision:\n- script: \"#!/bin/sh\\necho default-base\"\nmemory: 3GiB\n",
        ),
        (
            "x.yaml",
            &format!("{IMAGES}memory: 2GiB\nprovision:\n- script: \"#!/bin/sh\\necho mine\"\n"),
        ),
    ]);
    let c = load(&fx.path("x.yaml"), &fx.opts()).unwrap().config;
    assert_eq!(c.yaml().memory.as_deref(), Some("2GiB"));
    let scripts: Vec<_> = c
        .provision
        .clone()
        .unwrap()
        .into_iter()
        .map(|p| p.script.unwrap())
        .collect();
    assert_eq!(
        scripts,
        ["#!/bin/sh\necho default-base", "#!/bin/sh\necho mine"]
    );
    let mut no_config = fx.opts();
    no_config.use_default_base = false;
    let c = load(&fx.path("x.yaml"), &no_config).unwrap().config;
    assert_eq!(c.provision.clone().unwrap().len(), 1);
}

#[test]
fn copy_makes_relative_locators_absolute_and_keeps_others_verbatim() {
    let fx = Fixture::new(&[
        (
            "proj/top.yaml",
            "# comment kept?\nbase: base.yaml\nprovision:\n- file: s.sh\n",
        ),
        ("proj/abs.yaml", "# comment kept\nbase: template:x\n"),
    ]);
    let src = read(&fx.path("proj/top.yaml"), &[]).unwrap();
    let out = use_abs_locators(&src).unwrap();
    assert!(out.contains(&fx.path("proj/base.yaml")), "{out}");
    assert!(out.contains(&fx.path("proj/s.sh")), "{out}");
    let src = read(&fx.path("proj/abs.yaml"), &[]).unwrap();
    assert_eq!(use_abs_locators(&src).unwrap(), src.text);
}

#[test]
fn custom_url_schemes_go_through_limactl_url_plugins() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tpl = dir.path().join("webapp.yaml");
    fs::write(&tpl, "cpus: 2\n").unwrap();
    let plugin = |scheme: &str, body: &str| {
        let p = dir.path().join(format!("limactl-url-{scheme}"));
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    };
    // dev:NAME -> short:NAME -> a file path.
    plugin("dev", "echo \"short:$1\"");
    plugin(
        "short",
        &format!("echo \"{}/$1.yaml\"", dir.path().display()),
    );
    plugin("loop", "echo \"loop:$1\"");
    plugin("broken", "echo 'no such bucket' >&2; exit 3");
    plugin("cat", "printf 'cpus: 2\\nSECRET: 1\\n'");
    let dirs = [dir.path().to_path_buf()];

    let got = locator::resolve_custom_scheme("dev:webapp", &dirs).unwrap();
    assert_eq!(got, tpl.display().to_string());
    // Built-in schemes and schemes without a plugin are left alone.
    for plain in [
        "template:ubuntu",
        "https://x/y.yaml",
        "nosuch:thing",
        "./a.yaml",
    ] {
        assert_eq!(locator::resolve_custom_scheme(plain, &dirs).unwrap(), plain);
    }
    let err = locator::resolve_custom_scheme("loop:x", &dirs)
        .unwrap_err()
        .to_string();
    assert!(err.contains("loop:x -> loop:x"), "{err}");
    let err = locator::resolve_custom_scheme("broken:x", &dirs)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no such bucket") && err.contains("exit status: 3"),
        "{err}"
    );
    // A plugin printing a template instead of its locator: the text is not quoted.
    let err = locator::resolve_custom_scheme("cat:x", &dirs)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("printed 2 lines, not one locator") && !err.contains("SECRET"),
        "{err}"
    );
}

/// Parse diagnostics take the field from the deserializer's path; repeated keys from the
/// line index.
#[test]
fn parse_errors_name_field_and_line() {
    let diag = |text: &str| {
        let src = Source {
            locator: "/x.yaml".into(),
            display: "x.yaml".into(),
            text: text.into(),
        };
        let err = embed::parse(&src).unwrap_err();
        let d = &err.0[0];
        (d.field.clone(), d.line, d.message.clone())
    };
    let (field, line, message) = diag("cpus: 1\nportForwards:\n- guestPort: [1]\n");
    assert_eq!(
        (field.as_str(), line),
        ("portForwards[0].guestPort", Some(3))
    );
    assert!(message.starts_with("invalid type: sequence"), "{message}");
    let (field, line, message) = diag("env:\n  A: x\n  A: y\n");
    assert_eq!((field.as_str(), line), ("env.A", Some(3)));
    assert_eq!(message, "duplicate entry with key \"A\"");
    // serde_yaml meets the repeat before a later syntax error: the repeat is reported.
    let (field, line, _) = diag("cpus: 1\ncpus: 2\nmemory: [1\n");
    assert_eq!((field.as_str(), line), ("cpus", Some(2)));
    // A syntax error first: no repeat is known, the field comes from the line.
    let (field, line, _) = diag("cpus: [1\nmemory: 1\nmemory: 2\n");
    assert_ne!(field, "memory");
    assert_ne!(line, Some(3));
}

/// A UTF-8 byte order mark starts some files written on Windows: skipped, as Lima does, in
/// the top file, a `base:` and text given directly.
#[test]
fn a_utf8_bom_is_accepted_in_the_file_and_its_bases() {
    let fx = Fixture::new(&[
        ("b.yaml", &format!("\u{feff}{IMAGES}cpus: 3\n")),
        ("top.yaml", "\u{feff}base: b.yaml\nmemory: 2GiB\n"),
        ("plain.yaml", &format!("\u{feff}# comment\n{IMAGES}")),
    ]);
    let loaded = load(&fx.path("top.yaml"), &fx.opts()).unwrap();
    assert_eq!(loaded.config.yaml().cpus, Some(3));
    assert_eq!(loaded.config.yaml().memory.as_deref(), Some("2GiB"));
    let loaded = load(&fx.path("plain.yaml"), &fx.opts()).unwrap();
    assert!(!loaded.embedded.text.starts_with('\u{feff}'));
    let loaded = load_text(&format!("\u{feff}{IMAGES}"), "stdin.yaml", &fx.opts()).unwrap();
    assert!(loaded.config.images.is_some());
    // Lines still count from the first line.
    let fx = Fixture::new(&[("bad.yaml", &format!("\u{feff}{IMAGES}cpus: x\n"))]);
    let err = load(&fx.path("bad.yaml"), &fx.opts()).unwrap_err();
    assert_eq!((err.0[0].field.as_str(), err.0[0].line), ("cpus", Some(6)));
}

/// A FIFO or a device as the config or as a base is refused at once (opening a FIFO would
/// wait for a writer forever).
#[test]
fn fifos_and_devices_are_not_read() {
    let fx = Fixture::new(&[("top.yaml", "base: fifo.yaml\n")]);
    let fifo = fx.dir.path().join("fifo.yaml");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let opts = fx.opts();
    let (tx, rx) = std::sync::mpsc::channel();
    let (top, fifo_locator) = (fx.path("top.yaml"), fifo.display().to_string());
    std::thread::spawn(move || {
        let direct = load(&fifo_locator, &opts).map(|_| ()).unwrap_err();
        let as_base = load(&top, &opts).map(|_| ()).unwrap_err();
        let device = load("/dev/zero", &opts).map(|_| ()).unwrap_err();
        tx.send((direct, as_base, device)).unwrap();
    });
    let (direct, as_base, device) = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("loading a FIFO blocked");
    let direct = direct.to_string();
    assert!(
        direct.contains("fifo.yaml") && direct.contains("is not a regular file (a FIFO)"),
        "{direct}"
    );
    let as_base = as_base.to_string();
    assert!(
        as_base.contains("top.yaml:1: base[0]")
            && as_base.contains("fifo.yaml: is not a regular file"),
        "{as_base}"
    );
    let device = device.to_string();
    assert!(
        device.contains("/dev/zero: is not a regular file (a device)"),
        "{device}"
    );
}

/// Errors about a file given as a base name its file and line; they do not quote its content
/// (it may be any file, a script or a secret).
#[test]
fn errors_about_a_base_do_not_quote_its_content() {
    let fx = Fixture::new(&[
        ("script.yaml", "#!/bin/sh\necho SECRET_ONE: yes\n"),
        (
            "block.yaml",
            "cpus: 1\nprovision: |\n  #!/bin/sh\n  echo SECRET_TWO\n",
        ),
        (
            "long.yaml",
            "cpus: 1\nuser: SECRET_THREE_and_a_long_long_long_long_long_long_long_long_long_text\n",
        ),
        ("top1.yaml", "base: script.yaml\n"),
        ("top2.yaml", "base: block.yaml\n"),
        ("top3.yaml", "base: long.yaml\n"),
    ]);
    for (top, base, line) in [
        ("top1.yaml", "script.yaml", 2),
        ("top2.yaml", "block.yaml", 2),
        ("top3.yaml", "long.yaml", 2),
    ] {
        let err = load(&fx.path(top), &fx.opts()).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        let d = &err.0[0];
        assert_eq!(
            (d.file.as_str(), d.line),
            (fx.path(base).as_str(), Some(line)),
            "{text}"
        );
    }
    let err = load(&fx.path("top2.yaml"), &fx.opts()).unwrap_err();
    assert_eq!(err.0[0].field, "provision");
    assert!(
        err.0[0]
            .message
            .contains("invalid type: string of 2 lines, expected a sequence"),
        "{err}"
    );
    // Short values and real (misspelled) field names are still quoted.
    let fx = Fixture::new(&[("x.yaml", "cpus: 2\nmemroy: 1\n")]);
    let err = load(&fx.path("x.yaml"), &fx.opts())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `memroy`"), "{err}");
    let fx = Fixture::new(&[("x.yaml", "cpus: two\n")]);
    let err = load(&fx.path("x.yaml"), &fx.opts())
        .unwrap_err()
        .to_string();
    assert!(err.contains("string \"two\""), "{err}");
}

/// The configured values `limactl create` used to accept: each is refused naming its field
/// and line.
#[test]
fn bad_values_are_refused_with_field_and_line() {
    for (text, field, line, words) in [
        (
            "user:\n  name: \"bob\\nx\"\n",
            "user.name",
            2,
            "must be a user name",
        ),
        ("env:\n  \"A B\": x\n", "env.A B", 2, "must match"),
        ("env:\n  A: \"1\\n2\"\n", "env.A", 2, "control character"),
        ("cpus: 9223372036854775807\n", "cpus", 1, "at most 1024"),
        (
            "memory: 8000PiB\n",
            "memory",
            1,
            "more than this host's 16GiB of memory",
        ),
        ("memory: 99999999999PiB\n", "memory", 1, "too large"),
    ] {
        let fx = Fixture::new(&[("x.yaml", &format!("{text}{IMAGES}"))]);
        let err = load(&fx.path("x.yaml"), &fx.opts()).unwrap_err();
        assert!(
            err.0
                .iter()
                .any(|d| d.field == field && d.line == Some(line) && d.message.contains(words)),
            "{text}: {err}"
        );
        assert_eq!(err.0.len(), 1, "{text}: {err}");
    }
}

/// YAML merge keys (`<<: *anchor`) in a base or the top file are resolved before merging:
/// the merged document has no `<<` field left.
#[test]
fn merge_keys_are_resolved_in_bases_too() {
    let with_merge =
        "images:\n- &img {location: /x.img, arch: x86_64}\n- <<: *img\n  arch: aarch64\n";
    let fx = Fixture::new(&[
        ("b.yaml", with_merge),
        ("top.yaml", "base: b.yaml\ncpus: 1\n"),
        ("alone.yaml", with_merge),
    ]);
    for file in ["top.yaml", "alone.yaml"] {
        let loaded = load(&fx.path(file), &fx.opts()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let images = loaded.config.images.clone().unwrap();
        assert_eq!(images.len(), 2, "{file}");
        assert_eq!(images[1].location, "/x.img");
        assert_eq!(images[1].arch.as_deref(), Some("aarch64"));
    }
}

#[test]
fn embed_text_without_embed_all_keeps_template_references() {
    let f = Fixture::new(&[
        ("templates/img.yaml", IMAGES),
        ("templates/hello.sh", "echo template\n"),
        ("local.sh", "echo local\n"),
        ("b.yaml", "cpus: 3\n"),
        (
            "a.yaml",
            "# kept? no: re-serialized\nbase:\n- b.yaml\n- template:img\nprovision:\n- mode: system\n  file: local.sh\n- mode: user\n  file: template:hello.sh\n",
        ),
    ]);
    let mut o = f.opts();
    o.use_default_base = false;
    let text = embed_text(read(&f.path("a.yaml"), &[]).unwrap(), &o, false).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(
        v["base"],
        serde_yaml::from_str::<serde_yaml::Value>("[template:img]").unwrap()
    );
    assert_eq!(v["cpus"], 3);
    assert_eq!(v["provision"][0]["script"], "echo local\n");
    assert_eq!(v["provision"][1]["file"], "template:hello.sh");
    assert!(v.get("images").is_none(), "{text}");

    let all = embed_text(read(&f.path("a.yaml"), &[]).unwrap(), &o, true).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&all).unwrap();
    assert!(v.get("base").is_none(), "{all}");
    assert_eq!(v["provision"][1]["script"], "echo template\n");
    assert_eq!(v["images"][0]["arch"], "x86_64");
}

#[test]
fn embed_text_with_only_template_bases_is_the_text_with_comments() {
    let f = Fixture::new(&[("a.yaml", "# mine\nbase: template:img\ncpus: 1 # one\n")]);
    let mut o = f.opts();
    o.use_default_base = false;
    let text = embed_text(read(&f.path("a.yaml"), &[]).unwrap(), &o, false).unwrap();
    assert_eq!(text, "# mine\nbase: template:img\ncpus: 1 # one\n");
}

#[test]
fn abs_locators_keep_the_written_form() {
    let f = Fixture::new(&[(
        "d/a.yaml",
        "base: b.yaml # the base\nprobes:\n- file:\n    url: p.sh\n",
    )]);
    let src = read(&f.path("d/a.yaml"), &[]).unwrap();
    let text = use_abs_locators(&src).unwrap();
    let dir = f.path("d");
    assert_eq!(
        text,
        format!("base: {dir}/b.yaml # the base\nprobes:\n- file:\n    url: {dir}/p.sh\n")
    );
}

#[test]
fn transform_custom_url_fixes_template_double_slash() {
    assert_eq!(
        transform_custom_url("template://a/b").unwrap(),
        "template:a/b"
    );
    assert_eq!(transform_custom_url("template:x").unwrap(), "template:x");
    assert_eq!(transform_custom_url("./x.yaml").unwrap(), "./x.yaml");
}

/// `github:` locators resolve through [`github::transform`] (here a canned GitHub) until none
/// is left, a redirect to another `github:` locator included; a failure names the locator.
#[test]
fn github_locators_resolve_to_raw_urls() {
    struct Fake;
    impl github::Http for Fake {
        fn get(&self, url: &str, _api: bool) -> Result<(u16, String), github::HttpError> {
            match url {
                "https://raw.githubusercontent.com/o/o/main/k8s.yaml" => {
                    Ok((200, "github:o/k8s\n".into()))
                }
                "https://api.github.com/repos/o/k8s" => {
                    Ok((200, r#"{"default_branch":"main"}"#.into()))
                }
                u if u.starts_with("https://raw.githubusercontent.com/") => {
                    Ok((200, "cpus: 1\n".into()))
                }
                _ => Err(github::HttpError::Read(
                    std::io::ErrorKind::ConnectionRefused.into(),
                )),
            }
        }
    }
    assert_eq!(
        resolve_locator("github:o//k8s@main", &[], &Fake).unwrap(),
        "https://raw.githubusercontent.com/o/k8s/main/.lima.yaml"
    );
    let e = resolve_locator("github:nope/x", &[], &Fake)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("resolving `github:nope/x`: failed to get default branch for nope/x"),
        "{e}"
    );
}

#[test]
fn embedding_keeps_the_templates_key_order() {
    let f = Fixture::new(&[
        ("b.yaml", "cpus: 3\n"),
        (
            "a.yaml",
            "memory: 1GiB\nbase:\n- b.yaml\n- template:img\ndisk: 5GiB\nmessage: hi\n",
        ),
    ]);
    let mut o = f.opts();
    o.use_default_base = false;
    let text = embed_text(read(&f.path("a.yaml"), &[]).unwrap(), &o, false).unwrap();
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '-']))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(
        keys,
        ["memory", "base", "disk", "message", "cpus"],
        "{text}"
    );
}

#[test]
fn embedded_text_has_the_combined_mounts() {
    let f = Fixture::new(&[
        (
            "b.yaml",
            "mounts:\n- location: /elsewhere\n  writable: false\n  mountPoint: /data\n",
        ),
        (
            "a.yaml",
            "cpus: 1\nbase: b.yaml\nmounts:\n- location: /data\n  writable: true\n",
        ),
    ]);
    let mut o = f.opts();
    o.use_default_base = false;
    let text = embed_text(read(&f.path("a.yaml"), &[]).unwrap(), &o, true).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mounts = v["mounts"].as_sequence().unwrap();
    assert_eq!(mounts.len(), 1, "{text}");
    assert_eq!(mounts[0]["writable"], true, "{text}");
    assert_eq!(mounts[0]["location"], "/data", "{text}");
    assert_eq!(mounts[0]["mountPoint"], "/data", "{text}");
}

#[test]
fn a_bases_own_template_bases_follow_the_templates() {
    let f = Fixture::new(&[
        ("b.yaml", "base: template:inner\ncpus: 3\n"),
        (
            "a.yaml",
            "base:\n- b.yaml\n- template:outer\nmemory: 1GiB\n",
        ),
    ]);
    let mut o = f.opts();
    o.use_default_base = false;
    let text = embed_text(read(&f.path("a.yaml"), &[]).unwrap(), &o, false).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(
        v["base"],
        serde_yaml::from_str::<serde_yaml::Value>("[template:outer, template:inner]").unwrap(),
        "{text}"
    );
    assert_eq!(v["cpus"], 3, "{text}");
}
