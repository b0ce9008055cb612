//! Seed content and the ISO image. Image checks use `isoinfo` (Debian package `genisoimage`)
//! and `blkid` (util-linux) and are skipped with a message when those tools are missing.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use cidata::{build_seed, CidataError, Content, IsoBuilder, SeedInput};
use limatype::{Filled, LimaYaml};

const CONFIG: &str = r#"
vmType: qemu
mountType: 9p
user:
  name: alice
  uid: 501
  home: /home/alice.linux
  shell: /bin/zsh
  comment: "Alice \"A\" Example"
mounts:
- location: /Users/alice
  mountPoint: /Users/alice
  writable: true
  9p:
    msize: 128KiB
dns: [10.0.2.3, 1.1.1.1]
timezone: Europe/Berlin
env:
  FOO: bar baz
param:
  GREETING: hello
provision:
- mode: system
  script: |
    #!/bin/sh
    echo system
- mode: user
  script: |
    #!/bin/sh
    echo user
- mode: boot
  script: |
    echo "early $PARAM_GREETING"
- mode: data
  path: /etc/motd
  content: hi
  owner: alice
containerd:
  system: false
  user: true
caCerts:
  certs:
  - |
    -----BEGIN CERTIFICATE-----
    MIIB
    -----END CERTIFICATE-----
"#;

fn config() -> LimaYaml {
    serde_yaml::from_str(CONFIG).unwrap()
}

/// `cfg` with the defaults filled for a Linux x86_64 host, as the instance flow hands it over.
fn filled(cfg: &LimaYaml) -> Filled {
    let host = limatype::HostFacts::pretend(limatype::Os::Linux, limatype::Arch::X86_64);
    limadefaults::fill_in_memory(cfg, &host, "default").unwrap()
}

fn scripts() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        (
            "10-driver.sh".to_string(),
            b"#!/bin/sh\necho driver\n".to_vec(),
        ),
        (
            "05-first.sh".to_string(),
            b"#!/bin/sh\necho first\n".to_vec(),
        ),
    ])
}

fn input<'a>(
    cfg: &'a Filled,
    keys: &'a [String],
    scripts: &'a BTreeMap<String, Vec<u8>>,
    agent: Option<&'a Path>,
) -> SeedInput<'a> {
    SeedInput {
        instance_name: "default",
        instance_id: "iid-1700000000".into(),
        config: cfg,
        ssh_public_keys: keys,
        boot_scripts: scripts,
        guest_agent: agent,
        nic_mac: Some("52:55:55:AA:BB:CC".into()),
        host_proxy_env: BTreeMap::new(),
        // The config asks for containerd.user: any file stands in for the archive here
        // (boot_containerd.rs tests a real one).
        containerd_archive: Some(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/Cargo.toml"
        ))),
        dns_local_ports: None,
    }
}

fn keys() -> Vec<String> {
    vec!["ssh-ed25519 AAAAC3Nza alice@host".to_string()]
}

#[test]
fn user_data_snapshot() {
    let (cfg, keys, scripts) = (config(), keys(), scripts());
    let seed = build_seed(&input(&filled(&cfg), &keys, &scripts, None)).unwrap();
    let ud = seed.text("user-data").unwrap();
    assert!(ud.starts_with("#cloud-config\n"));
    // Must parse back as YAML with the fields cloud-init reads.
    let v: serde_yaml::Value = serde_yaml::from_str(ud).unwrap();
    assert_eq!(v["users"][0]["name"].as_str(), Some("alice"));
    assert_eq!(v["users"][0]["uid"].as_i64(), Some(501));
    assert_eq!(v["users"][0]["gecos"].as_str(), Some("Alice \"A\" Example"));
    assert_eq!(
        v["users"][0]["ssh_authorized_keys"][0].as_str(),
        Some("ssh-ed25519 AAAAC3Nza alice@host")
    );
    assert_eq!(v["hostname"].as_str(), Some("lima-default"));
    assert_eq!(v["manage_etc_hosts"].as_str(), Some("localhost"));
    assert_eq!(v["timezone"].as_str(), Some("Europe/Berlin"));
    let mount = &v["mounts"][0];
    assert_eq!(mount[1].as_str(), Some("/Users/alice"));
    assert_eq!(
        mount[3].as_str(),
        Some("rw,trans=virtio,version=9p2000.L,msize=131072,cache=mmap,nofail")
    );
    assert_eq!(
        mount[0].as_str().unwrap(),
        cidata::mount_tag("/Users/alice", "/Users/alice")
    );
    assert!(v["bootcmd"][0]
        .as_str()
        .unwrap()
        .contains("PARAM_GREETING=hello\nLIMA_PARAMS_EOF\necho \"early $PARAM_GREETING\""));
    insta::assert_snapshot!("user_data", ud);
}

#[test]
fn other_files() {
    let (cfg, keys, scripts) = (config(), keys(), scripts());
    let seed = build_seed(&input(&filled(&cfg), &keys, &scripts, None)).unwrap();
    assert_eq!(
        seed.text("meta-data").unwrap(),
        "instance-id: iid-1700000000\nlocal-hostname: lima-default\n"
    );
    let nc: serde_yaml::Value = serde_yaml::from_str(seed.text("network-config").unwrap()).unwrap();
    assert_eq!(nc["version"].as_u64(), Some(2));
    assert_eq!(
        nc["ethernets"]["eth0"]["match"]["macaddress"].as_str(),
        Some("52:55:55:aa:bb:cc")
    );
    assert_eq!(nc["ethernets"]["eth0"]["dhcp4"].as_bool(), Some(true));
    let env = seed.text("lima.env").unwrap();
    for line in [
        "LIMA_CIDATA_USER=alice",
        "LIMA_CIDATA_UID=501",
        "LIMA_CIDATA_HOME=/home/alice.linux",
        "LIMA_CIDATA_IID=iid-1700000000",
        "LIMA_CIDATA_CONTAINERD_USER=1",
        "LIMA_CIDATA_CONTAINERD_SYSTEM=",
        "LIMA_CIDATA_MOUNTS_0_MOUNTPOINT=/Users/alice",
        "LIMA_CIDATA_DATAFILE_00000003_PATH=/etc/motd",
        "LIMA_CIDATA_DATAFILE_00000003_OWNER=alice:alice",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from\n{env}");
    }
    assert_eq!(seed.text("param.env").unwrap(), "PARAM_GREETING=hello\n");
    assert_eq!(seed.text("etc_environment").unwrap(), "FOO=bar baz\n");
    assert_eq!(
        seed.text("provision.system/00000000").unwrap(),
        "#!/bin/sh\necho system\n"
    );
    assert_eq!(
        seed.text("provision.user/00000001").unwrap(),
        "#!/bin/sh\necho user\n"
    );
    assert_eq!(seed.text("provision.data/00000003").unwrap(), "hi");
    let paths: Vec<&str> = seed.paths().collect();
    assert!(paths.contains(&"boot/05-first.sh") && paths.contains(&"boot/10-driver.sh"));
    assert!(seed
        .text("boot.sh")
        .unwrap()
        .contains("/run/lima-boot-done"));
    assert!(!paths.contains(&"lima-guestagent"));
}

/// `additionalDisks` in lima.env, with the device each has in the guest (virtio disks after
/// the boot disk `vda`).
#[test]
fn disks_in_lima_env() {
    let cfg: LimaYaml = serde_yaml::from_str(
        "additionalDisks:\n- data\n- name: scratch\n  format: false\n  fsType: xfs\n  fsArgs: [-m, 'crc=1']\n",
    )
    .unwrap();
    let (keys, scripts) = (keys(), scripts());
    let seed = build_seed(&input(&filled(&cfg), &keys, &scripts, None)).unwrap();
    let disks: Vec<&str> = seed
        .text("lima.env")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("LIMA_CIDATA_DISK"))
        .collect();
    insta::assert_snapshot!("lima_env_disks", disks.join("\n"));
    let none = build_seed(&input(&filled(&LimaYaml::default()), &keys, &scripts, None)).unwrap();
    assert!(none
        .text("lima.env")
        .unwrap()
        .contains("\nLIMA_CIDATA_DISKS=0\n"));
}

#[test]
fn disk_devices_are_named_as_linux_names_virtio_disks() {
    let names: Vec<String> = [0, 1, 24, 25, 26, 50, 51, 700, 701]
        .into_iter()
        .map(cidata::disk_device)
        .collect();
    assert_eq!(
        names,
        ["vdb", "vdc", "vdz", "vdaa", "vdab", "vdaz", "vdba", "vdzz", "vdaaa"]
    );
}

#[test]
fn network_config_without_mac_matches_by_name() {
    let (cfg, keys, scripts) = (LimaYaml::default(), keys(), scripts());
    let f = filled(&cfg);
    let mut i = input(&f, &keys, &scripts, None);
    i.nic_mac = None;
    let seed = build_seed(&i).unwrap();
    let nc: serde_yaml::Value = serde_yaml::from_str(seed.text("network-config").unwrap()).unwrap();
    assert_eq!(
        nc["ethernets"]["lima0"]["match"]["name"].as_str(),
        Some("e*")
    );
    // No mounts, dns or timezone configured: those keys are left out.
    let ud: serde_yaml::Value = serde_yaml::from_str(seed.text("user-data").unwrap()).unwrap();
    assert!(ud.get("mounts").is_none() && ud.get("timezone").is_none());
    assert!(ud.get("resolv_conf").is_none());
}

#[test]
fn missing_guest_agent_names_file_and_dir() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("lima-guestagent.Linux-x86_64");
    let (cfg, keys, scripts) = (config(), keys(), scripts());
    let err = build_seed(&input(&filled(&cfg), &keys, &scripts, Some(&agent))).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CidataError::GuestAgentMissing { .. }));
    assert!(msg.contains("lima-guestagent.Linux-x86_64"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[test]
fn missing_ca_cert_file_is_named() {
    let mut cfg = config();
    cfg.ca_certs.as_mut().unwrap().files = Some(vec!["/nonexistent/ca.pem".into()]);
    let (keys, scripts) = (keys(), scripts());
    let msg = build_seed(&input(&filled(&cfg), &keys, &scripts, None))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("/nonexistent/ca.pem") && msg.contains("caCerts.files"),
        "{msg}"
    );
}

#[test]
fn bad_inputs_are_rejected_with_the_field() {
    let (keys, mut scripts) = (keys(), scripts());
    let cfg = config();
    scripts.insert("no-suffix".into(), vec![]);
    let msg = build_seed(&input(&filled(&cfg), &keys, &scripts, None))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no-suffix"), "{msg}");

    let scripts = self::scripts();
    let mut cfg = config();
    cfg.param
        .as_mut()
        .unwrap()
        .insert("BAD KEY".into(), "x".into());
    let msg = build_seed(&input(&filled(&cfg), &keys, &scripts, None))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("param.BAD KEY"), "{msg}");

    // (After the defaults, which would fill the script in: cidata still refuses it.)
    let mut y = filled(&config()).into_yaml();
    y.provision.as_mut().unwrap()[0].script = None;
    let cfg = Filled::try_from(y).unwrap();
    let msg = build_seed(&input(&cfg, &keys, &scripts, None))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("provision[0].script"), "{msg}");
}

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        eprintln!(
            "SKIPPED: `{tool}` not found (install the Debian package genisoimage / util-linux)"
        );
    }
    found
}

fn isoinfo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("isoinfo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "isoinfo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn iso_lists_and_extracts_with_isoinfo() {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("lima-guestagent");
    // Bigger than one sector and not a multiple of it.
    let agent_bytes: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&agent, &agent_bytes).unwrap();
    let (cfg, keys, scripts) = (config(), keys(), scripts());
    let seed = build_seed(&input(&filled(&cfg), &keys, &scripts, Some(&agent))).unwrap();
    let iso = dir.path().join("cidata.iso");
    seed.write_iso(&iso).unwrap();

    let mode = std::fs::metadata(&iso).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Deterministic: the same seed gives the same bytes.
    let again = dir.path().join("again.iso");
    seed.write_iso(&again).unwrap();
    assert_eq!(std::fs::read(&iso).unwrap(), std::fs::read(&again).unwrap());

    if !have("isoinfo") {
        return;
    }
    let iso_s = iso.to_str().unwrap();
    let d = String::from_utf8(isoinfo(&["-d", "-i", iso_s])).unwrap();
    assert!(d.contains("Volume id: cidata"), "{d}");
    assert!(d.contains("Joliet with UCS level 3 found"), "{d}");

    let listing = String::from_utf8(isoinfo(&["-J", "-f", "-i", iso_s])).unwrap();
    let mut listed: Vec<&str> = listing.lines().collect();
    listed.sort();
    let mut want: Vec<String> = seed.paths().map(|p| format!("/{p}")).collect();
    want.extend(
        [
            "/boot",
            "/provision.data",
            "/provision.system",
            "/provision.user",
        ]
        .map(String::from),
    );
    want.sort();
    assert_eq!(listed, want);

    for path in [
        "user-data",
        "meta-data",
        "network-config",
        "boot/10-driver.sh",
    ] {
        let got = isoinfo(&["-J", "-x", &format!("/{path}"), "-i", iso_s]);
        assert_eq!(got, seed.text(path).unwrap().as_bytes(), "{path}");
    }
    assert_eq!(
        isoinfo(&["-J", "-x", "/lima-guestagent", "-i", iso_s]),
        agent_bytes
    );
    // The plain ISO9660 tree is readable too.
    let plain = String::from_utf8(isoinfo(&["-f", "-i", iso_s])).unwrap();
    assert!(plain.lines().any(|l| l == "/USER_DATA.;1"), "{plain}");
    assert!(
        plain.lines().any(|l| l == "/BOOT/10_DRIVER.SH;1"),
        "{plain}"
    );

    if have("blkid") {
        let out = Command::new("blkid")
            .args(["-p", "-o", "value", "-s", "LABEL", iso_s])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cidata");
    }
}

#[test]
fn many_entries_span_several_directory_sectors() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = IsoBuilder::new("cidata");
    let mut want = Vec::new();
    for i in 0..150 {
        let p = format!("boot/{i:03}-a-script-with-a-rather-long-name.sh");
        b.add(&p, Content::Bytes(format!("echo {i}\n").into_bytes()))
            .unwrap();
        want.push(format!("/{p}"));
    }
    b.add("empty", Content::Bytes(vec![])).unwrap();
    want.push("/boot".into());
    want.push("/empty".into());
    want.sort();
    let iso = dir.path().join("x.iso");
    b.write_to(&mut std::fs::File::create(&iso).unwrap())
        .unwrap();
    if !have("isoinfo") {
        return;
    }
    let iso_s = iso.to_str().unwrap();
    let listing = String::from_utf8(isoinfo(&["-J", "-f", "-i", iso_s])).unwrap();
    let mut listed: Vec<&str> = listing.lines().collect();
    listed.sort();
    assert_eq!(listed, want);
    let got = isoinfo(&[
        "-J",
        "-x",
        "/boot/149-a-script-with-a-rather-long-name.sh",
        "-i",
        iso_s,
    ]);
    assert_eq!(got, b"echo 149\n");
    assert!(isoinfo(&["-J", "-x", "/empty", "-i", iso_s]).is_empty());
}

/// cloud-init reads the files with PyYAML (YAML 1.1): strings that YAML 1.1 would turn into
/// booleans, dates or base-60 integers must still arrive as strings.
#[test]
fn pyyaml_reads_strings_as_strings() {
    let ok = Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: python3 with PyYAML not found (Debian package python3-yaml)");
        return;
    }
    let mut cfg = config();
    cfg.user.as_mut().unwrap().comment = Some("yes".into());
    cfg.timezone = Some("2001-01-01".into());
    let (keys, scripts) = (keys(), scripts());
    let f = filled(&cfg);
    let mut i = input(&f, &keys, &scripts, None);
    i.nic_mac = Some("52:55:55:12:34:56".into());
    let seed = build_seed(&i).unwrap();
    let dir = tempfile::tempdir().unwrap();
    cidata::write_dir(&seed, dir.path()).unwrap();
    let script = r#"
import sys, yaml
ud = yaml.safe_load(open(sys.argv[1] + "/user-data"))
nc = yaml.safe_load(open(sys.argv[1] + "/network-config"))
print(repr(ud["users"][0]["gecos"]), repr(ud["timezone"]), repr(ud["users"][0]["uid"]),
      repr(nc["ethernets"]["eth0"]["match"]["macaddress"]))
"#;
    let out = Command::new("python3")
        .args(["-c", script, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "'yes' '2001-01-01' 501 '52:55:55:12:34:56'"
    );
}

#[test]
fn large_files_are_split_into_extents() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    // 4 KiB extents stand in for the 4 GiB limit of one directory record.
    let mut b = IsoBuilder::new("cidata").with_max_extent(4096);
    b.add("big.bin", Content::Bytes(big.clone())).unwrap();
    b.add("boot/after.sh", Content::Bytes(b"echo after\n".to_vec()))
        .unwrap();
    let iso = dir.path().join("x.iso");
    b.write_to(&mut std::fs::File::create(&iso).unwrap())
        .unwrap();
    if !have("isoinfo") {
        return;
    }
    let iso_s = iso.to_str().unwrap();
    let listing = String::from_utf8(isoinfo(&["-J", "-l", "-i", iso_s])).unwrap();
    // Three records for big.bin: 4096 + 4096 + 1808 bytes.
    let sizes: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("big.bin"))
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    assert_eq!(sizes, ["4096", "4096", "1808"], "{listing}");
    assert_eq!(isoinfo(&["-J", "-x", "/big.bin", "-i", iso_s]), big);
    assert_eq!(
        isoinfo(&["-J", "-x", "/boot/after.sh", "-i", iso_s]),
        b"echo after\n"
    );
}

/// `dependency` and `yq` steps: their seed entries (`provision.<mode>/<index>`, as upstream)
/// and the yq step's variables; `skipDefaultDependencyResolution` counts on dependency steps.
#[test]
fn dependency_and_yq_steps() {
    let cfg: LimaYaml = serde_yaml::from_str(
        r##"
provision:
- mode: dependency
  skipDefaultDependencyResolution: true
  script: |
    #!/bin/sh
    echo dep
- mode: system
  script: "#!/bin/sh\necho sys\n"
- mode: yq
  path: /etc/app/{{.User}}.json
  expression: .user = "{{.User}}"
  owner: "{{.User}}"
- mode: ansible
  playbook: play.yaml
"##,
    )
    .unwrap();
    let (keys, scripts) = (keys(), scripts());
    let seed = build_seed(&input(&filled(&cfg), &keys, &scripts, None)).unwrap();
    let provision: Vec<&str> = seed
        .paths()
        .filter(|p| p.starts_with("provision."))
        .collect();
    insta::assert_debug_snapshot!(provision);
    assert_eq!(
        seed.text("provision.dependency/00000000").unwrap(),
        "#!/bin/sh\necho dep\n"
    );
    let user = filled(&cfg).user.name.clone();
    assert_eq!(
        seed.text("provision.yq/00000002").unwrap(),
        format!(".user = \"{user}\"")
    );
    let env: Vec<String> = seed
        .text("lima.env")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("LIMA_CIDATA_YQ_") || l.contains("DEPENDENCY"))
        .map(|l| l.replace(&user, "USER"))
        .collect();
    insta::assert_debug_snapshot!(env);
}

/// A yq format the guest agent cannot write is refused when the seed is built.
#[test]
fn yq_step_with_an_unsupported_format_is_refused() {
    let cfg: LimaYaml =
        serde_yaml::from_str("provision:\n- mode: yq\n  path: /etc/a.toml\n  expression: .a = 1\n")
            .unwrap();
    let (keys, scripts) = (keys(), scripts());
    let err = build_seed(&input(&filled(&cfg), &keys, &scripts, None)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("provision[0].format") && msg.contains("\"toml\""),
        "{msg}"
    );
}

#[test]
fn proxy_env_and_hosts_in_the_seed() {
    let mut cfg = config();
    cfg.env = Some(BTreeMap::from([("FOO".to_string(), "bar".to_string())]));
    cfg.host_resolver = Some(limatype::HostResolver {
        hosts: Some(BTreeMap::from([
            ("db.test".to_string(), "10.0.0.7".to_string()),
            ("me.test".to_string(), "host.lima.internal".to_string()),
        ])),
        ..Default::default()
    });
    let (keys, scripts) = (keys(), scripts());
    let f = filled(&cfg);
    let mut inp = input(&f, &keys, &scripts, None);
    inp.host_proxy_env = cidata::net::host_proxy_env([
        (
            "http_proxy".to_string(),
            "http://127.0.0.1:3128".to_string(),
        ),
        ("HOME".to_string(), "/home/me".to_string()),
    ]);
    let seed = build_seed(&inp).unwrap();
    insta::assert_snapshot!(seed.text("etc_environment").unwrap(), @r"
    FOO=bar
    HTTP_PROXY=http://192.168.5.2:3128
    http_proxy=http://192.168.5.2:3128
    ");
    insta::assert_snapshot!(seed.text("etc_hosts").unwrap(), @r"
    192.168.5.2	host.lima.internal
    10.0.0.7	db.test
    192.168.5.2	me.test
    ");
    let lima_env = seed.text("lima.env").unwrap();
    assert!(
        lima_env.contains("LIMA_CIDATA_SLIRP_GATEWAY=192.168.5.2\n"),
        "{lima_env}"
    );
    // No DNS server given (hostResolver disabled): ports 0, the hosts above in /etc/hosts.
    assert!(
        lima_env.contains("LIMA_CIDATA_UDP_DNS_LOCAL_PORT=0\nLIMA_CIDATA_TCP_DNS_LOCAL_PORT=0\n"),
        "{lima_env}"
    );

    // With the host agent's DNS server the ports are passed on and the hosts are served by
    // it, not /etc/hosts (host.lima.internal stays there, as upstream's 06-etc-hosts.sh).
    // (The fixture sets `dns`, which turns the DNAT off; clear it here.)
    let mut no_dns_list = cfg.clone();
    no_dns_list.dns = None;
    let f1 = filled(&no_dns_list);
    let mut with_dns = input(&f1, &keys, &scripts, None);
    with_dns.dns_local_ports = Some(cidata::DnsPorts {
        udp: 40053,
        tcp: 40054,
    });
    let seed = build_seed(&with_dns).unwrap();
    let lima_env = seed.text("lima.env").unwrap();
    assert!(
        lima_env.contains(
            "LIMA_CIDATA_UDP_DNS_LOCAL_PORT=40053\nLIMA_CIDATA_TCP_DNS_LOCAL_PORT=40054\n"
        ),
        "{lima_env}"
    );
    assert_eq!(
        seed.text("etc_hosts").unwrap(),
        "192.168.5.2\thost.lima.internal\n"
    );
    // lima.yaml's `dns` names the guest's nameservers: no DNAT to the host agent (upstream).
    let f2 = filled(&cfg);
    let mut inp2 = input(&f2, &keys, &scripts, None);
    inp2.dns_local_ports = with_dns.dns_local_ports;
    let seed = build_seed(&inp2).unwrap();
    assert!(seed
        .text("lima.env")
        .unwrap()
        .contains("LIMA_CIDATA_UDP_DNS_LOCAL_PORT=0\n"));
    assert!(seed.text("etc_hosts").unwrap().contains("db.test"));

    // propagateProxyEnv: false keeps the host's variables out.
    cfg.propagate_proxy_env = Some(false);
    let f = filled(&cfg);
    let mut inp = input(&f, &keys, &scripts, None);
    inp.host_proxy_env = cidata::net::host_proxy_env([(
        "http_proxy".to_string(),
        "http://127.0.0.1:3128".to_string(),
    )]);
    let seed = build_seed(&inp).unwrap();
    assert_eq!(seed.text("etc_environment").unwrap(), "FOO=bar\n");

    // A hosts entry with a blank would add a second name to the line: refused, named.
    cfg.host_resolver = Some(limatype::HostResolver {
        hosts: Some(BTreeMap::from([(
            "a.test".to_string(),
            "1.2.3.4 evil".to_string(),
        )])),
        ..Default::default()
    });
    let f = filled(&cfg);
    let e = build_seed(&input(&f, &keys, &scripts, None)).unwrap_err();
    assert!(e.to_string().contains("hostResolver.hosts.a.test"), "{e}");
}

#[test]
fn containerd_archive_is_carried_only_when_wanted() {
    let mut cfg = config();
    let (keys, scripts) = (keys(), scripts());
    let f = filled(&cfg);
    let seed = build_seed(&input(&f, &keys, &scripts, None)).unwrap();
    assert!(seed.paths().any(|p| p == cidata::CONTAINERD_ARCHIVE));
    let env = seed.text("lima.env").unwrap();
    assert!(
        env.contains("\nLIMA_CIDATA_CONTAINERD_ARCHIVE=nerdctl-full.tgz\n"),
        "{env}"
    );
    // Wanted but not fetched: refused, naming the field.
    let mut inp = input(&f, &keys, &scripts, None);
    inp.containerd_archive = None;
    let e = build_seed(&inp).unwrap_err();
    assert!(e.to_string().starts_with("containerd.archives:"), "{e}");
    // Not wanted: never carried.
    cfg.containerd = Some(limatype::Containerd {
        system: Some(false),
        user: Some(false),
        archives: None,
    });
    let f = filled(&cfg);
    let seed = build_seed(&input(&f, &keys, &scripts, None)).unwrap();
    assert!(!seed.paths().any(|p| p == cidata::CONTAINERD_ARCHIVE));
    assert!(!seed
        .text("lima.env")
        .unwrap()
        .contains("CONTAINERD_ARCHIVE"));
}
