//! `boot.sh`: it parses as POSIX sh, and its guest agent section (between `# BEGIN guestagent`
//! and `# END guestagent`) run with `sh` in a scratch directory (the unit directory and the
//! systemd marker moved there, `systemctl` a fake that records its arguments) installs the
//! binary, writes `lima-guestagent.service` and enables and starts it — restarting it only
//! when the binary or the unit changed and it was running — and without systemd only installs the binary. Its
//! disk section (`# BEGIN disks` .. `# END disks`) runs the same way with `/dev` and `/mnt`
//! moved to the scratch directory and every tool it calls (sfdisk, mkfs.*, mount, growpart,
//! resize2fs, blkid, ...) a fake that records its arguments: a new disk is partitioned,
//! formatted and mounted, a formatted one only mounted, a failure fails the boot's code.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BOOT_SH: &str = include_str!("../scripts/boot.sh");

#[test]
fn boot_sh_parses() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("boot.sh");
    std::fs::write(&script, BOOT_SH).unwrap();
    let out = Command::new("sh").arg("-n").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The guest agent section of boot.sh.
fn section() -> &'static str {
    let start = BOOT_SH.find("# BEGIN guestagent\n").expect("BEGIN marker");
    let end = BOOT_SH.find("# END guestagent\n").expect("END marker");
    &BOOT_SH[start..end]
}

struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for d in ["mnt", "prefix", "units", "run-systemd", "fakebin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let fake = root.join("fakebin/systemctl");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$*\" >>'{log}'\n\
                 case \"$1\" in\n\
                 is-active) [ -e '{active}' ] ;;\n\
                 enable|start|restart) touch '{active}' ;;\n\
                 esac\n",
                log = root.join("systemctl.log").display(),
                active = root.join("systemctl.active").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch { _dir: dir, root }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Runs the section; returns the systemctl calls it made (and clears the log).
    fn run(&self, systemd: bool) -> Vec<String> {
        let systemd_dir = if systemd {
            self.p("run-systemd")
        } else {
            self.p("no-such-dir")
        };
        let body = section()
            .replace(
                "GA_UNIT_DIR=/etc/systemd/system\n",
                &format!("GA_UNIT_DIR='{}'\n", self.p("units").display()),
            )
            .replace(
                "GA_SYSTEMD_RUN=/run/systemd/system\n",
                &format!("GA_SYSTEMD_RUN='{}'\n", systemd_dir.display()),
            );
        assert!(!body.contains("/etc/systemd") && !body.contains("/run/systemd"));
        let script = format!(
            "set -eu\nMNT='{mnt}'\nCODE=0\nlog() {{ echo \"LOG $*\"; }}\n\
             run() {{ if ! \"$@\"; then echo \"FAILED $*\"; CODE=1; fi; }}\n{body}\nexit \"$CODE\"\n",
            mnt = self.p("mnt").display()
        );
        let path = format!(
            "{}:{}",
            self.p("fakebin").display(),
            std::env::var("PATH").unwrap()
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", path)
            .env(
                "LIMA_CIDATA_GUEST_INSTALL_PREFIX",
                self.p("prefix").display().to_string(),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log = self.p("systemctl.log");
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        calls.lines().map(str::to_string).collect()
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn installs_writes_the_unit_and_starts_it_restarting_only_on_change() {
    let s = Scratch::new();
    std::fs::write(s.p("mnt/lima-guestagent"), "agent v1").unwrap();

    let calls = s.run(true);
    let bin = s.p("prefix/bin/lima-guestagent");
    assert_eq!(std::fs::read_to_string(&bin).unwrap(), "agent v1");
    assert_eq!(mode(&bin), 0o755);
    let unit = std::fs::read_to_string(s.p("units/lima-guestagent.service")).unwrap();
    assert!(
        unit.contains(&format!("\nExecStart={} daemon\n", bin.display())),
        "{unit}"
    );
    for line in [
        "\nRestart=always\n",
        "\nRestartSec=1\n",
        "\nWantedBy=multi-user.target\n",
    ] {
        assert!(unit.contains(line), "{line:?} in {unit}");
    }
    // Started once (not started, then restarted at once).
    assert_eq!(
        calls,
        [
            "daemon-reload",
            "is-active --quiet lima-guestagent.service",
            "enable --now lima-guestagent.service",
        ]
    );
    assert!(!s.p("units/lima-guestagent.service.new").exists());
    assert!(!s.p("prefix/bin/lima-guestagent.new").exists());

    // The next boot, nothing changed: enabled and started if need be, not restarted, and
    // no daemon-reload.
    assert_eq!(
        s.run(true),
        [
            "is-active --quiet lima-guestagent.service",
            "enable --now lima-guestagent.service"
        ]
    );

    // A new binary in the seed: replaced, and the running agent restarted.
    std::fs::write(s.p("mnt/lima-guestagent"), "agent v2").unwrap();
    assert_eq!(
        s.run(true).last().map(String::as_str),
        Some("restart lima-guestagent.service")
    );
    assert_eq!(std::fs::read_to_string(&bin).unwrap(), "agent v2");
}

#[test]
fn without_systemd_it_only_installs() {
    let s = Scratch::new();
    std::fs::write(s.p("mnt/lima-guestagent"), "agent").unwrap();
    assert!(s.run(false).is_empty());
    assert!(s.p("prefix/bin/lima-guestagent").is_file());
    assert!(!s.p("units/lima-guestagent.service").exists());
}

// ------------------------------------------------------------------------------------------
// The disk section.

/// The disk section of boot.sh.
fn disk_section() -> &'static str {
    let start = BOOT_SH.find("# BEGIN disks\n").expect("BEGIN disks marker");
    let end = BOOT_SH.find("# END disks\n").expect("END disks marker");
    &BOOT_SH[start..end]
}

/// The tools the disk section may call. Each fake appends `NAME ARGS` to `calls.log` (sfdisk
/// also its stdin), and fails when `fail-NAME` exists. `mkfs.*` and `mkswap` leave what udev
/// and a real file system would: `dev/disk/by-label/LABEL` and `PART.fs`, which `blkid`
/// reports as a file system.
const DISK_TOOLS: &[&str] = &[
    "sfdisk",
    "mkfs.ext4",
    "mkfs.xfs",
    "mkswap",
    "swapon",
    "mount",
    "growpart",
    "resize2fs",
    "xfs_growfs",
    "btrfs",
    "blkid",
];

struct DiskScratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl DiskScratch {
    fn new(devices: &[&str]) -> DiskScratch {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for d in ["dev/disk/by-label", "mnt", "fakebin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for dev in devices {
            std::fs::write(root.join("dev").join(dev), "").unwrap();
        }
        let log = root.join("calls.log");
        for tool in DISK_TOOLS {
            let body = match *tool {
                "sfdisk" => format!("echo \"sfdisk $* <$(cat)\" >>'{}'\n", log.display()),
                "blkid" => "[ -e \"$1.fs\" ] && echo \"$1: UUID=\\\"x\\\" TYPE=\\\"ext4\\\"\" && exit 0\nexit 2\n"
                    .to_string(),
                t if t.starts_with("mkfs.") || t == "mkswap" => format!(
                    "echo \"{t} $*\" >>'{log}'\n\
                     while [ $# -gt 1 ]; do [ \"$1\" = -L ] && label=$2; shift; done\n\
                     touch '{dev}/disk/by-label/'\"$label\" \"$1.fs\"\n",
                    log = log.display(),
                    dev = root.join("dev").display()
                ),
                t => format!("echo \"{t} $*\" >>'{}'\n", log.display()),
            };
            let fake = root.join("fakebin").join(tool);
            std::fs::write(
                &fake,
                format!(
                    "#!/bin/sh\n[ -e '{}' ] && exit 2\n{body}",
                    root.join(format!("fail-{tool}")).display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        DiskScratch { _dir: dir, root }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Runs the section with `env` (lima.env's disk variables); returns whether it succeeded,
    /// its output and the tool calls it made (scratch paths shown as `DEV` and `MNT`; the log
    /// is cleared).
    fn run(&self, env: &[(&str, &str)]) -> (bool, String, Vec<String>) {
        let body = disk_section()
            .replace(
                "DISK_DEV=/dev\n",
                &format!("DISK_DEV='{}'\n", self.p("dev").display()),
            )
            .replace(
                "DISK_MNT=/mnt\n",
                &format!("DISK_MNT='{}'\n", self.p("mnt").display()),
            );
        let script = format!(
            "set -eu\nCODE=0\nlog() {{ echo \"LOG $*\"; }}\n\
             run() {{ if ! \"$@\"; then echo \"FAILED $*\"; CODE=1; fi; }}\n{body}\nexit \"$CODE\"\n"
        );
        // Only the fakes and the basics: a real mkfs or mount must never be reached.
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.p("fakebin").display()),
            )
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let log = self.p("calls.log");
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        let (dev, mnt) = (
            self.p("dev").display().to_string(),
            self.p("mnt").display().to_string(),
        );
        let calls = calls
            .lines()
            .map(|l| l.replace(&dev, "DEV").replace(&mnt, "MNT"))
            .collect();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), output, calls)
    }
}

/// lima.env's variables for disks given as (name, device, format, fsType, fsArgs).
fn disk_env(disks: &[(&str, &str, &str, &str, &str)]) -> Vec<(String, String)> {
    let mut v = vec![("LIMA_CIDATA_DISKS".to_string(), disks.len().to_string())];
    for (i, (name, device, format, fstype, fsargs)) in disks.iter().enumerate() {
        for (key, value) in [
            ("NAME", name),
            ("DEVICE", device),
            ("FORMAT", format),
            ("FSTYPE", fstype),
            ("FSARGS", fsargs),
        ] {
            v.push((format!("LIMA_CIDATA_DISK_{i}_{key}"), value.to_string()));
        }
    }
    v
}

fn env_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn new_disk_is_partitioned_formatted_mounted_then_only_mounted() {
    let s = DiskScratch::new(&["vdb", "vdc"]);
    let env = disk_env(&[
        ("data", "vdb", "true", "", "-m 0"),
        ("keep", "vdc", "false", "ext4", ""),
    ]);
    let (ok, out, calls) = s.run(&env_refs(&env));
    assert!(ok, "{out}");
    assert_eq!(
        calls,
        [
            "sfdisk --label gpt DEV/vdb <type=linux",
            "mkfs.ext4 -m 0 -L lima-data DEV/vdb1",
            "mount -t ext4 DEV/vdb1 MNT/lima-data",
            "growpart DEV/vdb 1",
            "resize2fs DEV/vdb1",
            // `format: false`: the user's own file system, never touched.
            "mount -t ext4 DEV/vdc1 MNT/lima-keep",
            "growpart DEV/vdc 1",
            "resize2fs DEV/vdc1",
        ],
        "{out}"
    );
    assert!(s.p("mnt/lima-data").is_dir() && s.p("mnt/lima-keep").is_dir());

    // The next boot: formatted already, so only mounted (and grown).
    let (ok, out, calls) = s.run(&env_refs(&env));
    assert!(ok, "{out}");
    assert_eq!(
        calls,
        [
            "mount -t ext4 DEV/vdb1 MNT/lima-data",
            "growpart DEV/vdb 1",
            "resize2fs DEV/vdb1",
            "mount -t ext4 DEV/vdc1 MNT/lima-keep",
            "growpart DEV/vdc 1",
            "resize2fs DEV/vdc1",
        ]
    );
}

#[test]
fn a_file_system_without_its_full_label_is_not_formatted_again() {
    // ext4 labels hold 16 bytes: `lima-` and a long name are cut short, so no
    // by-label/lima-NAME link ever appears for it.
    let s = DiskScratch::new(&["vdb"]);
    std::fs::write(s.p("dev/vdb1.fs"), "").unwrap();
    let env = disk_env(&[("a-rather-long-disk-name", "vdb", "true", "", "")]);
    let (ok, out, calls) = s.run(&env_refs(&env));
    assert!(ok, "{out}");
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("sfdisk") || c.starts_with("mkfs")),
        "{calls:?}"
    );
    assert_eq!(
        calls[0],
        "mount -t ext4 DEV/vdb1 MNT/lima-a-rather-long-disk-name"
    );
}

#[test]
fn fs_type_args_and_swap() {
    let s = DiskScratch::new(&["vdb", "vdc"]);
    let env = disk_env(&[
        ("x", "vdb", "true", "xfs", "-f"),
        ("sw", "vdc", "true", "swap", ""),
    ]);
    let (ok, out, calls) = s.run(&env_refs(&env));
    assert!(ok, "{out}");
    assert_eq!(
        calls,
        [
            "sfdisk --label gpt DEV/vdb <type=linux",
            "mkfs.xfs -f -L lima-x DEV/vdb1",
            "mount -t xfs DEV/vdb1 MNT/lima-x",
            "growpart DEV/vdb 1",
            "xfs_growfs MNT/lima-x",
            "sfdisk --label gpt DEV/vdc <type=swap",
            "mkswap -L lima-sw DEV/vdc1",
            "swapon DEV/vdc1",
        ]
    );
    assert!(!s.p("mnt/lima-sw").exists());
}

#[test]
fn failures_fail_the_boot_but_the_other_disks_are_still_set_up() {
    let s = DiskScratch::new(&["vdb", "vdd"]);
    std::fs::write(s.p("fail-mkfs.ext4"), "").unwrap();
    let env = disk_env(&[
        ("bad", "vdb", "true", "", ""),
        ("absent", "vdc", "true", "", ""),
        ("good", "vdd", "false", "", ""),
    ]);
    let (ok, out, calls) = s.run(&env_refs(&env));
    assert!(!ok, "a failed disk must fail the boot: {out}");
    assert!(out.contains("FAILED setup_disk 0"), "{out}");
    assert!(
        out.contains("FAILED setup_disk 1") && out.contains("no device"),
        "{out}"
    );
    assert!(
        !calls.iter().any(|c| c.contains("lima-bad")),
        "mounted after a failed mkfs: {calls:?}"
    );
    assert!(calls.contains(&"mount -t ext4 DEV/vdd1 MNT/lima-good".to_string()));

    // Growing is best effort: a failing growpart or resize2fs fails nothing.
    let s = DiskScratch::new(&["vdb"]);
    std::fs::write(s.p("fail-growpart"), "").unwrap();
    std::fs::write(s.p("fail-resize2fs"), "").unwrap();
    let (ok, out, _) = s.run(&env_refs(&disk_env(&[("d", "vdb", "true", "", "")])));
    assert!(ok, "{out}");
    assert!(out.contains("could not grow"), "{out}");
}

#[test]
fn no_disks_no_calls() {
    let s = DiskScratch::new(&[]);
    let (ok, out, calls) = s.run(&[]);
    assert!(ok && calls.is_empty(), "{out} {calls:?}");
}

/// The `/etc/hosts` section: the seed's lines in a `# BEGIN lima` block, replaced (not
/// appended again) on the next boot, the file's other lines kept.
#[test]
fn etc_hosts_block_is_replaced_on_every_boot() {
    let start = BOOT_SH.find("# BEGIN hosts\n").expect("BEGIN marker");
    let end = BOOT_SH.find("# END hosts\n").expect("END marker");
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1\tlocalhost\n").unwrap();
    let body = BOOT_SH[start..end].replace(
        "ETC_HOSTS=/etc/hosts\n",
        &format!("ETC_HOSTS='{}'\n", hosts.display()),
    );
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let boot = |lines: &str| {
        std::fs::write(mnt.join("etc_hosts"), lines).unwrap();
        let script = format!("set -eu\nMNT='{}'\n{body}", mnt.display());
        let st = Command::new("sh").arg("-c").arg(&script).status().unwrap();
        assert!(st.success());
        std::fs::read_to_string(&hosts).unwrap()
    };
    boot("192.168.5.2\thost.lima.internal\n");
    let after = boot("192.168.5.2\thost.lima.internal\n10.0.0.7\tdb.test\n");
    assert_eq!(
        after,
        "127.0.0.1\tlocalhost\n# BEGIN lima\n192.168.5.2\thost.lima.internal\n\
         10.0.0.7\tdb.test\n# END lima\n"
    );
}

/// The hostResolver section (`# BEGIN dns`): with the DNS ports set, a fake `iptables` sees
/// the LIMADNS chain made and hooked into PREROUTING and OUTPUT (only when missing), flushed,
/// and the UDP and TCP DNAT rules from slirp's DNS to the gateway's ports; with ports 0 it is
/// never called; without iptables the boot's code is 1 and the log says why.
#[test]
fn dns_section_dnats_slirp_dns_to_the_host_agent() {
    let start = BOOT_SH.find("# BEGIN dns\n").expect("BEGIN marker");
    let end = BOOT_SH.find("# END dns\n").expect("END marker");
    let body = &BOOT_SH[start..end];
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("iptables.log");
    // `--list` fails until a chain was made, as on a fresh boot.
    let fake = format!(
        "#!/bin/sh\necho \"$*\" >>'{log}'\ncase \"$*\" in *--list*) grep -q new-chain '{log}' ;; esac\n",
        log = log.display()
    );
    std::fs::write(bin.join("iptables"), fake).unwrap();
    std::fs::set_permissions(bin.join("iptables"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |path: &str, udp: u16, tcp: u16| {
        let script = format!(
            "set -eu\nPATH='{path}'\nCODE=0\nlog() {{ echo \"LIMA| $*\"; }}\n\
             run() {{ if ! \"$@\"; then log \"WARNING: failed: $*\"; CODE=1; fi; }}\n\
             LIMA_CIDATA_SLIRP_DNS=192.168.5.3\nLIMA_CIDATA_SLIRP_GATEWAY=192.168.5.2\n\
             LIMA_CIDATA_UDP_DNS_LOCAL_PORT={udp}\nLIMA_CIDATA_TCP_DNS_LOCAL_PORT={tcp}\n\
             {body}\nexit $CODE\n"
        );
        Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap()
    };
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = run(&path, 0, 0);
    assert!(out.status.success());
    assert!(!log.exists(), "iptables called with ports 0");

    for _ in 0..2 {
        let out = run(&path, 40053, 40054);
        assert!(out.status.success(), "{out:?}");
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    let rules = |proto: &str, port: u16| {
        format!(
            "--table nat --append LIMADNS --destination 192.168.5.3 --protocol {proto} --dport 53 \
             --jump DNAT --to-destination 192.168.5.2:{port}"
        )
    };
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        vec![
            "--table nat -n --list LIMADNS".to_string(),
            "--table nat --new-chain LIMADNS".into(),
            "--table nat --insert PREROUTING 1 --jump LIMADNS".into(),
            "--table nat --insert OUTPUT 1 --jump LIMADNS".into(),
            "--table nat --flush LIMADNS".into(),
            rules("udp", 40053),
            rules("tcp", 40054),
            // The second boot: the chain is there, only its rules are written again.
            "--table nat -n --list LIMADNS".into(),
            "--table nat --flush LIMADNS".into(),
            rules("udp", 40053),
            rules("tcp", 40054),
        ]
    );

    // No iptables in the guest: a failed step with a message naming the fix.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run(&empty.display().to_string(), 40053, 40054);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("iptables is not installed"), "{stdout}");
}

/// The `/run/host-services` section: the directory is made mode 0700 and owned by the user
/// (here the test's own user), so the host agent can link the forwarded SSH agent socket into
/// it without sudo; a second boot keeps it so.
#[test]
fn host_services_dir_is_the_users() {
    use std::os::unix::fs::MetadataExt;
    let start = BOOT_SH
        .find("# BEGIN hostservices\n")
        .expect("BEGIN marker");
    let end = BOOT_SH.find("# END hostservices\n").expect("END marker");
    let dir = tempfile::tempdir().unwrap();
    let hs = dir.path().join("run/host-services");
    let body = BOOT_SH[start..end].replace(
        "HOST_SERVICES=/run/host-services\n",
        &format!("HOST_SERVICES='{}'\n", hs.display()),
    );
    assert_ne!(body, &BOOT_SH[start..end], "the path line moved");
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let script = format!("set -eu\nCODE=0\nrun() {{ \"$@\" || CODE=1; }}\n{body}\nexit $CODE\n");
    for _ in 0..2 {
        let st = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("LIMA_CIDATA_USER", &user)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(mode(&hs), 0o700);
        let uid = std::fs::metadata(&hs).unwrap().uid();
        let me = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
        assert_eq!(uid.to_string(), me.trim());
    }
}
