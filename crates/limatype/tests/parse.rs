//! Parsing lima.yaml into limatype: fields, unknown keys and round trips.
use limatype::LimaYaml;

#[test]
fn unknown_key_is_an_error_naming_key_and_line() {
    let err = LimaYaml::from_yaml("cpus: 2\nmemroy: 4GiB\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("memroy"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn unset_and_set_are_distinct() {
    let y = LimaYaml::from_yaml("memory: 4\ncpus: 2\n").unwrap();
    assert_eq!(y.memory.as_deref(), Some("4"));
    assert_eq!(y.cpus, Some(2));
    assert!(y.disk.is_none());
    let y = LimaYaml::from_yaml("").unwrap();
    assert_eq!(y, LimaYaml::default());
}

#[test]
fn base_accepts_string_and_list() {
    let y = LimaYaml::from_yaml("base: template:_images/debian-12\n").unwrap();
    assert_eq!(y.base.unwrap()[0].url, "template:_images/debian-12");
    let y = LimaYaml::from_yaml("base:\n- a.yaml\n- url: b.yaml\n  digest: sha256:00\n").unwrap();
    let b = y.base.unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[1].digest.as_deref(), Some("sha256:00"));
}

#[test]
fn round_trip_keeps_every_set_field() {
    let src = "vmType: qemu\nvmOpts:\n  qemu:\n    cpuType:\n      x86_64: host\n  krunkit:\n    gpu: true\nmounts:\n- location: \"~\"\n  9p:\n    msize: 128KiB\nportForwards:\n- guestPortRange: [1, 65535]\n  hostIP: 0.0.0.0\n  static: true\nadditionalDisks:\n- data\n";
    let y = LimaYaml::from_yaml(src).unwrap();
    let again = LimaYaml::from_yaml(&y.to_yaml()).unwrap();
    assert_eq!(y, again);
    assert_eq!(y.additional_disks.unwrap()[0].name, "data");
    assert!(y.vm_opts.unwrap().other.contains_key("krunkit"));
}

// Go's YAML decoding gives "" for a null map value; Lima templates rely on `KEY:` meaning
// an empty param.
#[test]
fn null_env_and_param_values_are_empty_strings() {
    let y =
        LimaYaml::from_yaml("env:\n  EMPTY:\n  N: 3\nparam:\n  token: null\n  on: true\n").unwrap();
    let env = y.env.unwrap();
    assert_eq!(env["EMPTY"], "");
    assert_eq!(env["N"], "3");
    let param = y.param.unwrap();
    assert_eq!(param["token"], "");
    assert_eq!(param["on"], "true");
    // A null map itself stays "not set".
    let y = LimaYaml::from_yaml("env:\nparam: null\n").unwrap();
    assert!(y.env.is_none() && y.param.is_none());
}

#[test]
fn null_scalar_is_unset_not_empty() {
    let y = LimaYaml::from_yaml("memory: null\ndisk: 0\n").unwrap();
    assert_eq!(y.memory, None);
    assert_eq!(y.disk.as_deref(), Some("0"));
}

#[test]
fn scalar_type_errors_name_field_and_line() {
    for (src, field) in [
        ("cpus: 2\n\nmemory: [1, 2]\n", "memory"),
        ("cpus: 2\n\nenv:\n  A: {b: 1}\n", "env"),
        ("cpus: 2\n\nparam: [x]\n", "param"),
    ] {
        let msg = LimaYaml::from_yaml(src).unwrap_err().to_string();
        assert!(msg.contains(field), "{src:?}: {msg}");
        assert!(
            msg.contains("line 3") || msg.contains("line 4"),
            "{src:?}: {msg}"
        );
    }
}

// Files written by tools (`limactl template copy -` output, editors) may carry document
// markers or consist of comments only.
#[test]
fn document_markers_and_comment_only_files_load() {
    let y = LimaYaml::from_yaml("---\ncpus: 2\n...\n").unwrap();
    assert_eq!(y.cpus, Some(2));
    assert_eq!(
        LimaYaml::from_yaml("# nothing set yet\n").unwrap(),
        LimaYaml::default()
    );
    assert_eq!(
        LimaYaml::from_yaml("---\n# nothing\n").unwrap(),
        LimaYaml::default()
    );
}

// Shapes from the reference template's examples: mapping-form additional disks, data
// provisioning with numeric permissions, `file:` as {url, digest}, numeric 9p msize.
#[test]
fn reference_example_shapes_parse() {
    let src = r#"
additionalDisks:
- name: scratch
  format: true
  fsType: xfs
  fsArgs: ["-L", "scratch"]
mounts:
- location: /srv
  9p:
    msize: 131072
provision:
- mode: data
  path: /etc/x.conf
  content: "k=v\n"
  permissions: 644
  overwrite: false
- mode: user
  file:
    url: ./setup.sh
    digest: sha256:00
probes:
- file: ./probe.sh
firmware:
  images:
  - location: ~/edk2.fd
    vmType: qemu
osOpts:
  Windows:
    virtioWin:
    - location: /tmp/virtio-win.iso
"#;
    let y = LimaYaml::from_yaml(src).unwrap();
    let disk = &y.additional_disks.unwrap()[0];
    assert_eq!(
        disk.fs_args.as_deref(),
        Some(&["-L".to_string(), "scratch".into()][..])
    );
    assert_eq!(
        y.mounts.unwrap()[0]
            .nine_p
            .as_ref()
            .unwrap()
            .msize
            .as_deref(),
        Some("131072")
    );
    let prov = y.provision.unwrap();
    assert_eq!(prov[0].permissions.as_deref(), Some("644"));
    assert_eq!(
        prov[1].file.as_ref().unwrap().digest.as_deref(),
        Some("sha256:00")
    );
    assert_eq!(
        y.probes.unwrap()[0].file.as_ref().unwrap().url,
        "./probe.sh"
    );
}

// Lima's YAML library resolves merge keys; templates may share blocks with anchors.
#[test]
fn merge_keys_and_anchors_resolve() {
    let src = "\
x-common: &common
  mode: system
  script: \"#!/bin/sh\\ntrue\\n\"
provision:
- <<: *common
- <<: *common
  mode: user
cpus: 2
";
    // `x-common` is not a Lima field, so it stays an error even with merge keys...
    let err = LimaYaml::from_yaml(src).unwrap_err().to_string();
    assert!(err.contains("x-common"), "{err}");
    // ...while anchors on a real field and merges of them load.
    let src = "\
mounts:
- &home
  location: \"~\"
  writable: false
- <<: *home
  location: /srv
  writable: true
";
    let mounts = LimaYaml::from_yaml(src).unwrap().mounts.unwrap();
    assert_eq!(mounts[0].writable, Some(false));
    assert_eq!(mounts[1].location, "/srv");
    assert_eq!(mounts[1].writable, Some(true));
    let src =
        "provision:\n- &sys {mode: system, script: \"#!/bin/sh\\n\"}\n- {<<: *sys, mode: user}\n";
    let prov = LimaYaml::from_yaml(src).unwrap().provision.unwrap();
    assert_eq!(prov[1].mode.as_deref(), Some("user"));
    assert_eq!(prov[1].script, prov[0].script);
}

#[test]
fn a_utf8_bom_is_skipped() {
    let y = LimaYaml::from_yaml("\u{feff}cpus: 2\nmemory: 4GiB\n").unwrap();
    assert_eq!(y.cpus, Some(2));
    assert_eq!(
        LimaYaml::from_yaml("\u{feff}").unwrap(),
        LimaYaml::default()
    );
}
