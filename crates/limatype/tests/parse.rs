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
