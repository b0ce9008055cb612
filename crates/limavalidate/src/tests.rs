//! Unit tests of validation: each rule with a value it accepts and one it refuses.
use super::*;

fn size(s: &str) -> Option<u64> {
    s.parse::<ByteSize>().ok().map(ByteSize::bytes)
}

fn problems(yaml: &str) -> Vec<Problem> {
    let mut text = yaml.to_string();
    if !yaml.contains("images:") {
        text.push_str("images: [{location: /img.qcow2, arch: x86_64}]\n");
    }
    if !yaml.contains("arch:") {
        text.push_str("arch: x86_64\n");
    }
    validate(&LimaYaml::from_yaml(&text).unwrap())
}

fn fields(yaml: &str) -> Vec<String> {
    problems(yaml).into_iter().map(|p| p.field).collect()
}

#[test]
fn minimal_config_is_valid() {
    assert_eq!(problems(""), []);
}

#[test]
fn missing_images() {
    let p = validate(&LimaYaml::default());
    assert_eq!(p[0].field, "images");
}

#[test]
fn reports_every_problem_at_once() {
    let f = fields("cpus: -1\nmemory: lots\ndisk: 10XB\nmountType: nfs\narch: sparc\nos: Plan9\n");
    for want in ["cpus", "memory", "disk", "mountType", "arch", "os"] {
        assert!(f.contains(&want.to_string()), "{want} missing from {f:?}");
    }
}

#[test]
fn port_forward_paths_name_the_rule() {
    let f = fields(
        "portForwards:\n- guestPort: 80\n  guestPortRange: [80, 80]\n  hostPortRange: [80, 80]\n- guestPortRange: [100, 90]\n  hostPortRange: [100, 90]\n- guestPortRange: [1, 70000]\n  hostPortRange: [1, 70000]\n  proto: sctp\n",
    );
    assert!(
        f.contains(&"portForwards[1].guestPortRange".into()),
        "{f:?}"
    );
    assert!(f.contains(&"portForwards[1].hostPortRange".into()), "{f:?}");
    assert!(
        f.contains(&"portForwards[2].guestPortRange[1]".into()),
        "{f:?}"
    );
    assert!(f.contains(&"portForwards[2].proto".into()), "{f:?}");
    assert!(!f.iter().any(|x| x.starts_with("portForwards[0]")), "{f:?}");
}

#[test]
fn mounts_must_be_absolute_and_not_system_paths() {
    let f = fields(
        "mounts: [{location: rel/dir, mountPoint: /etc}, {location: /x, mountPoint: '~/y'}]\n",
    );
    assert_eq!(
        f,
        [
            "mounts[0].location",
            "mounts[0].mountPoint",
            "mounts[1].mountPoint"
        ]
    );
}

#[test]
fn provision_modes_and_data_fields() {
    let f = fields(
        "provision:\n- mode: magic\n  script: x\n- mode: data\n  content: x\n- mode: system\n- mode: data\n  path: /etc/x\n  content: y\n  permissions: '9'\n",
    );
    assert_eq!(
        f,
        [
            "provision[0].mode",
            "provision[1].path",
            "provision[2].script",
            "provision[3].permissions"
        ]
    );
}

#[test]
fn versions_and_sizes() {
    assert_eq!(parse_version("v1.2.3-beta"), Some((1, 2, 3)));
    assert_eq!(parse_version("1.2"), None);
    assert_eq!(parse_version("x"), None);
    assert_eq!(size("4GiB"), Some(4 << 30));
    assert_eq!(size("1.5g"), Some(1536 << 20));
    assert_eq!(size("512 MiB"), Some(512 << 20));
    assert_eq!(size("100"), Some(100));
    assert_eq!(size("lots"), None);
    assert_eq!(size("4GiBs"), None);
    assert_eq!(size(""), None);
    assert_eq!(size("99999999999999999999999P"), None);
    assert_eq!(
        fields("minimumLimaVersion: 99.0.0\n"),
        ["minimumLimaVersion"]
    );
    assert_eq!(fields("minimumLimaVersion: 1.0.0\n"), Vec::<String>::new());
    assert_eq!(
        fields("minimumLimaVersion: banana\n"),
        ["minimumLimaVersion"]
    );
}

#[test]
fn networks_and_digests() {
    let f = fields(
        "networks: [{lima: a, socket: /b}, {}, {lima: x, interface: eth0, macAddress: zz}]\nimages: [{location: /i, arch: x86_64, digest: 'sha256:abc'}]\n",
    );
    assert!(f.contains(&"networks[0].lima".into()), "{f:?}");
    assert!(f.contains(&"networks[1]".into()), "{f:?}");
    assert!(f.contains(&"networks[2].interface".into()), "{f:?}");
    assert!(f.contains(&"networks[2].macAddress".into()), "{f:?}");
    assert!(f.contains(&"images[0].digest".into()), "{f:?}");
}

#[test]
fn raw_checks_catch_zero_cpus() {
    let y = LimaYaml::from_yaml("cpus: 0\n").unwrap();
    assert_eq!(validate_raw(&y)[0].field, "cpus");
    assert_eq!(validate_raw(&LimaYaml::default()), []);
}

#[test]
fn vm_type_must_be_a_driver_name() {
    // Any well-formed name is valid here; the registry says whether the driver exists.
    assert_eq!(fields("vmType: virtual box\n"), ["vmType"]);
    assert_eq!(fields("vmType: ../qemu\n"), ["vmType"]);
    assert_eq!(fields("vmType: ''\n"), ["vmType"]);
    assert_eq!(fields("vmType: virtualbox\n"), Vec::<String>::new());
    assert_eq!(fields("vmType: qemu\n"), Vec::<String>::new());
    let y =
        LimaYaml::from_yaml("vmType: ext\nimages: [{location: /i, arch: x86_64}]\narch: x86_64\n")
            .unwrap();
    assert_eq!(validate(&y), []);
}

#[test]
fn user_names_follow_useradd_rules() {
    for bad in [
        "\"bob\\nx\"",
        "Bob",
        "1bob",
        "bo b",
        "bob$",
        "\"b\\u0000\"",
        "-bob",
        "abcdefghijabcdefghijabcdefghijabc",
    ] {
        let p = problems(&format!("user: {{name: {bad}}}\n"));
        assert_eq!(
            p.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(),
            ["user.name"],
            "{bad}: {p:?}"
        );
    }
    let p = problems("user: {name: \"bob\\nx\"}\n");
    assert!(p[0].message.contains("\"bob\\nx\""), "{p:?}");
    for ok in ["bob", "_b0b-x", "lima", "abcdefghijabcdefghijabcdefghijab"] {
        assert_eq!(
            fields(&format!("user: {{name: {ok}}}\n")),
            Vec::<String>::new(),
            "{ok}"
        );
    }
}

#[test]
fn env_names_are_shell_names_and_values_one_line() {
    for bad in ["\"A B\"", "\"A=B\"", "\"\"", "1A", "\"A-B\"", "\"A\\nB\""] {
        let f = fields(&format!("env: {{{bad}: x}}\n"));
        assert_eq!(f.len(), 1, "{bad}: {f:?}");
        assert!(f[0].starts_with("env."), "{f:?}");
    }
    assert_eq!(fields("env: {A: \"1\\n2\"}\n"), ["env.A"]);
    assert_eq!(fields("env: {A: \"1\\r\"}\n"), ["env.A"]);
    assert_eq!(
        fields("env: {A: 'x y', _B1: \"tab\\there\", c: ''}\n"),
        Vec::<String>::new()
    );
}

#[test]
fn cpus_have_an_upper_bound() {
    let p = problems("cpus: 9223372036854775807\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].field, "cpus");
    assert!(p[0].message.contains("at most 1024"), "{p:?}");
    assert_eq!(fields("cpus: 1024\n"), Vec::<String>::new());
    assert_eq!(fields("cpus: 1025\n"), ["cpus"]);
}

#[test]
fn overflowing_sizes_are_errors_not_wraps() {
    assert_eq!(size("99999999999PiB"), None);
    assert_eq!(size("99999999999999999999999b"), None);
    assert_eq!(size("99999999999999999999999"), None);
    for v in ["99999999999PiB", "99999999999999999999999b", "1e400"] {
        let p = problems(&format!("memory: \"{v}\"\ndisk: \"{v}\"\n"));
        assert_eq!(
            p.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(),
            ["memory", "disk"],
            "{v}: {p:?}"
        );
    }
    let p = problems("memory: 99999999999PiB\n");
    assert!(p[0].message.contains("too large"), "{p:?}");
}

#[test]
fn memory_beyond_the_host_is_refused_with_the_host_figure() {
    let y = |m: &str| LimaYaml::from_yaml(&format!("memory: {m}\n")).unwrap();
    let host = 8u64 << 30;
    let p = validate_for_host(&y("8000PiB"), host);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].field, "memory");
    assert_eq!(
        p[0].message,
        "8000PiB is more than this host's 8GiB of memory"
    );
    assert_eq!(validate_for_host(&y("8GiB"), host), []);
    assert_eq!(validate_for_host(&y("4GiB"), host), []);
    assert_eq!(validate_for_host(&y("9GiB"), host).len(), 1);
    // Unknown host memory: nothing to compare with. Unparsable sizes are `validate`'s.
    assert_eq!(validate_for_host(&y("8000PiB"), 0), []);
    assert_eq!(validate_for_host(&y("lots"), host), []);
    assert_eq!(validate_for_host(&LimaYaml::default(), host), []);
}
