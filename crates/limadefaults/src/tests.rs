//! Unit tests of the defaults: precedence, host facts, per-field filling.
use super::*;
use std::path::PathBuf;

fn host() -> HostFacts {
    HostFacts {
        os: limatype::Os::Linux,
        arch: limatype::Arch::X86_64,
        cpus: 8,
        memory: limatype::ByteSize(6 << 30),
        user_name: "alice".into(),
        user_comment: "Alice A".into(),
        uid: 1234,
        home: "/home/alice".into(),
        timezone: "Europe/Paris".into(),
        machine_id: "abc".into(),
        lima_home: PathBuf::from("/home/alice/.lima"),
        temp_dir: "/tmp".into(),
    }
}

fn yaml(s: &str) -> LimaYaml {
    LimaYaml::from_yaml(s).unwrap()
}

#[test]
fn builtin_defaults_follow_host_facts() {
    let f = fill(&LimaYaml::default(), None, None, &host(), "dev");
    assert_eq!(f.cpus, Some(4));
    assert_eq!(f.memory.as_deref(), Some("3GiB"));
    assert_eq!(f.disk.as_deref(), Some("100GiB"));
    assert_eq!(f.os.as_deref(), Some("Linux"));
    assert_eq!(f.arch.as_deref(), Some("x86_64"));
    assert_eq!(f.vm_type, None);
    let u = f.user.unwrap();
    assert_eq!(u.name.as_deref(), Some("alice"));
    assert_eq!(u.uid, Some(1234));
    let suffix = if compat_at_least(2, 1) {
        "guest"
    } else {
        "linux"
    };
    assert_eq!(
        u.home.as_deref(),
        Some(format!("/home/alice.{suffix}").as_str())
    );
    assert_eq!(u.shell.as_deref(), Some("/bin/bash"));
    assert_eq!(u.passwordless_sudo, Some(true));
    let ssh = f.ssh.unwrap();
    assert_eq!(ssh.local_port, Some(0));
    assert_eq!(ssh.load_dot_ssh_pub_keys, Some(false));
    assert_eq!(ssh.forward_agent, Some(false));
    assert_eq!(f.containerd.as_ref().unwrap().user, Some(true));
    assert_eq!(f.containerd.as_ref().unwrap().system, Some(false));
    assert_eq!(f.containerd.unwrap().archives.unwrap().len(), 2);
    assert_eq!(f.timezone.as_deref(), Some("Europe/Paris"));
    assert_eq!(f.video.unwrap().display.as_deref(), Some("none"));
    assert_eq!(f.host_resolver.unwrap().enabled, Some(true));
    assert_eq!(f.guest_install_prefix.as_deref(), Some("/usr/local"));
}

#[test]
fn small_hosts_get_smaller_defaults() {
    let mut h = host();
    h.cpus = 2;
    h.memory = limatype::ByteSize(3 << 30);
    let f = fill(&LimaYaml::default(), None, None, &h, "dev");
    assert_eq!(f.cpus, Some(2));
    assert_eq!(f.memory.as_deref(), Some("1.5GiB"));
}

#[test]
fn invalid_or_reserved_host_user_falls_back_to_lima() {
    for bad in [
        "Alice",
        "admin",
        "root",
        "1x",
        "9lives",
        "",
        "a.b",
        "dom\\user",
    ] {
        let mut h = host();
        h.user_name = bad.into();
        let f = fill(&LimaYaml::default(), None, None, &h, "dev");
        assert_eq!(f.user.unwrap().name.as_deref(), Some("lima"), "{bad}");
    }
}

#[test]
fn valid_host_user_names_are_kept() {
    for ok in ["alice", "_svc", "a-b_9"] {
        let mut h = host();
        h.user_name = ok.into();
        let f = fill(&LimaYaml::default(), None, None, &h, "dev");
        assert_eq!(f.user.unwrap().name.as_deref(), Some(ok));
    }
}

#[test]
fn root_host_user_gets_an_ordinary_guest_uid() {
    let mut h = host();
    h.user_name = "root".into();
    h.uid = 0;
    let u = fill(&LimaYaml::default(), None, None, &h, "dev")
        .user
        .unwrap();
    assert_eq!((u.name.as_deref(), u.uid), (Some("lima"), Some(1000)));
}

#[test]
fn scalar_precedence_is_override_config_default() {
    let d = yaml("cpus: 1\nmemory: 1GiB\ndisk: 10GiB\n");
    let y = yaml("cpus: 2\nmemory: 2GiB\n");
    let o = yaml("cpus: 3\n");
    let f = fill(&y, Some(&d), Some(&o), &host(), "dev");
    assert_eq!(f.cpus, Some(3));
    assert_eq!(f.memory.as_deref(), Some("2GiB"));
    assert_eq!(f.disk.as_deref(), Some("10GiB"));
}

#[test]
fn lists_are_o_y_d_and_maps_merge() {
    let d = yaml("env: {A: d, B: d}\nprovision: [{script: d}]\nportForwards: [{guestPort: 1}]\ndns: [1.1.1.1]\n");
    let y = yaml("env: {B: y, C: y}\nprovision: [{script: y}]\nportForwards: [{guestPort: 2}]\n");
    let o = yaml("env: {C: o}\nprovision: [{script: o}]\n");
    let f = fill(&y, Some(&d), Some(&o), &host(), "dev");
    let env = f.env.unwrap();
    assert_eq!(env["A"], "d");
    assert_eq!(env["B"], "y");
    assert_eq!(env["C"], "o");
    let scripts: Vec<_> = f
        .provision
        .unwrap()
        .into_iter()
        .map(|p| p.script.unwrap())
        .collect();
    assert_eq!(scripts, ["o", "y", "d"]);
    let pf = f.port_forwards.unwrap();
    assert_eq!(pf[0].guest_port_range, Some([2, 2]));
    assert_eq!(pf[1].guest_port_range, Some([1, 1]));
    assert_eq!(pf[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(pf[0].proto.as_deref(), Some("any"));
    assert_eq!(f.dns.unwrap(), ["1.1.1.1"]);
}

#[test]
fn mounts_combine_by_mount_point_with_highest_priority_writable() {
    let d = yaml("mounts: [{location: '~'}]\n");
    let y = yaml("mounts: [{location: '~', writable: true}, {location: '/tmp/lima'}]\n");
    let f = fill(&y, Some(&d), None, &host(), "dev");
    let m = f.mounts.unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].location, "/home/alice");
    assert_eq!(m[0].mount_point.as_deref(), Some("/home/alice"));
    assert_eq!(m[0].writable, Some(true));
    assert_eq!(m[0].nine_p.as_ref().unwrap().cache.as_deref(), Some("mmap"));
    assert_eq!(
        m[1].nine_p.as_ref().unwrap().cache.as_deref(),
        Some("fscache")
    );
}

#[test]
fn templates_expand_in_paths() {
    let y = yaml(
        "param: {P: x}\nmounts: [{location: '{{.Dir}}/share', mountPoint: '{{.Home}}/s'}]\nprovision: [{mode: data, path: '/etc/{{.Param.P}}', content: 'hi {{.User}}'}]\n",
    );
    let f = fill(&y, None, None, &host(), "dev");
    let m = &f.mounts.unwrap()[0];
    assert_eq!(m.location, "/home/alice/.lima/dev/share");
    let suffix = if compat_at_least(2, 1) {
        "guest"
    } else {
        "linux"
    };
    assert_eq!(
        m.mount_point.as_deref(),
        Some(format!("/home/alice.{suffix}/s").as_str())
    );
    let p = &f.provision.unwrap()[0];
    assert_eq!(p.path.as_deref(), Some("/etc/x"));
    assert_eq!(p.content.as_deref(), Some("hi alice"));
    assert_eq!(p.owner.as_deref(), Some("root:root"));
    assert_eq!(p.permissions.as_deref(), Some("644"));
    assert_eq!(p.overwrite, Some(true));
}

#[test]
fn networks_get_interface_mac_and_metric() {
    let y = yaml("networks: [{lima: shared}, {socket: /tmp/s, interface: eth9}]\n");
    let o = yaml("networks: [{interface: eth9, metric: 5}]\n");
    let f = fill(&y, None, Some(&o), &host(), "dev");
    let n = f.networks.unwrap();
    assert_eq!(n.len(), 2);
    assert_eq!(n[0].interface.as_deref(), Some("lima0"));
    assert_eq!(n[1].metric, Some(5));
    assert_eq!(n[0].metric, Some(100));
    let mac = n[0].mac_address.as_deref().unwrap();
    assert!(mac.starts_with("52:55:55:") && mac.len() == 17, "{mac}");
    assert_ne!(n[0].mac_address, n[1].mac_address);
}

#[test]
fn plain_mode_drops_mounts_and_dynamic_forwards() {
    let y = yaml("plain: true\nmounts: [{location: /x}]\nportForwards: [{guestPort: 80, static: true}, {guestPort: 81}]\n");
    let f = fill(&y, None, None, &host(), "dev");
    assert_eq!(f.mounts, None);
    assert_eq!(f.port_forwards.unwrap().len(), 1);
    assert_eq!(f.containerd.unwrap().user, Some(false));
}

#[test]
fn darwin_guest_and_riscv_defaults() {
    let f = fill(
        &yaml("os: Darwin\narch: riscv64\n"),
        None,
        None,
        &host(),
        "dev",
    );
    let u = f.user.unwrap();
    assert_eq!(u.home.as_deref(), Some("/Users/alice.guest"));
    assert_eq!(u.shell.as_deref(), Some("/bin/zsh"));
    assert_eq!(u.passwordless_sudo, Some(false));
    assert_eq!(f.containerd.unwrap().user, Some(false));
}

#[test]
fn bytes_size_matches_go_units() {
    assert_eq!(limatype::ByteSize(4 << 30).to_string(), "4GiB");
    assert_eq!(limatype::ByteSize(1536 << 20).to_string(), "1.5GiB");
    assert_eq!(limatype::ByteSize(123).to_string(), "123B");
    assert_eq!(limatype::ByteSize(0).to_string(), "0B");
}

#[test]
fn fill_is_idempotent() {
    let y = yaml("mounts: [{location: '~'}]\nportForwards: [{guestPort: 8080}]\nnetworks: [{lima: shared}]\nprobes: [{script: '#!/bin/sh'}]\n");
    let once = fill(&y, None, None, &host(), "dev");
    let twice = fill(&once, None, None, &host(), "dev");
    assert_eq!(once, twice);
}

#[test]
fn detect_reads_this_host() {
    let h = detect_host();
    assert!(h.cpus >= 1);
    assert!(h.memory.bytes() > 0);
    assert!(h.is_this_machine());
    assert!(!h.user_name.is_empty());
    assert!(h.lima_home.is_absolute() || std::env::var_os("LIMA_HOME").is_some());
    // SAFETY: getuid cannot fail.
    assert_eq!(h.uid, unsafe { libc::getuid() });
}

#[test]
fn cpus_default_is_min_4_host_cpus() {
    assert_eq!(default_cpus_for(0), 1);
    assert_eq!(default_cpus_for(2), 2);
    assert_eq!(default_cpus_for(16), 4);
    assert!((1..=4).contains(&default_cpus_here()));
}

#[test]
fn memory_default_is_min_4gib_half_host() {
    assert_eq!(default_memory_bytes_for(16 << 30), 4 << 30);
    assert_eq!(default_memory_bytes_for(2 << 30), 1 << 30);
    let here: limatype::ByteSize = default_memory_here().parse().unwrap();
    assert!(here.bytes() <= 4 << 30);
}

#[test]
fn mount_tag_is_upstreams_hash_of_location_and_mount_point() {
    // Lima: fmt.Sprintf("lima-%x", sha256.Sum256([]byte(location+":"+mountPoint))[0:8]).
    assert_eq!(
        mount_tag("/Users/alice", "/Users/alice"),
        "lima-7f44ea287ede93be"
    );
    assert_ne!(mount_tag("/a", "/b"), mount_tag("/a", "/c"));
    // qemu's 9p mount_tag and virtiofs tags must stay short.
    assert_eq!(mount_tag("/x", "/y").len(), 21);
}
