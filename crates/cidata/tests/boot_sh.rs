//! `boot.sh`: it parses as POSIX sh, and its guest agent section (between `# BEGIN guestagent`
//! and `# END guestagent`) run with `sh` in a scratch directory (the unit directory and the
//! systemd marker moved there, `systemctl` a fake that records its arguments) installs the
//! binary, writes `lima-guestagent.service` and enables and starts it — restarting it only
//! when the binary or the unit changed — and without systemd only installs the binary.
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
                "#!/bin/sh\necho \"$*\" >>'{}'\n",
                root.join("systemctl.log").display()
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
    assert_eq!(
        calls,
        [
            "daemon-reload",
            "enable --now lima-guestagent.service",
            "restart lima-guestagent.service"
        ]
    );
    assert!(!s.p("units/lima-guestagent.service.new").exists());
    assert!(!s.p("prefix/bin/lima-guestagent.new").exists());

    // The next boot, nothing changed: enabled and started if need be, not restarted.
    assert_eq!(
        s.run(true),
        ["daemon-reload", "enable --now lima-guestagent.service"]
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
