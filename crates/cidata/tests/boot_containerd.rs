//! boot.sh's containerd section (`# BEGIN containerd` .. `# END containerd`), run with `sh` in
//! a scratch directory: the install prefix, `/etc` and `/run` moved there, `systemctl`,
//! `sudo` and `loginctl` fakes that record their arguments, and a small nerdctl-full-style
//! archive (`bin/nerdctl`, `bin/containerd-rootless-setuptool.sh`,
//! `lib/systemd/system/containerd.service`) built by the test with `tar`.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BOOT_SH: &str = include_str!("../scripts/boot.sh");

fn section() -> &'static str {
    let start = BOOT_SH.find("# BEGIN containerd\n").expect("BEGIN marker");
    let end = BOOT_SH.find("# END containerd\n").expect("END marker");
    &BOOT_SH[start..end]
}

fn write_exe(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let s = Scratch { _dir: dir, root };
        for d in ["mnt", "prefix", "etc", "run/user/1000/systemd", "home"] {
            std::fs::create_dir_all(s.p(d)).unwrap();
        }
        // The user's systemd instance is up.
        std::fs::write(s.p("run/user/1000/systemd/private"), "").unwrap();
        let log = s.p("calls.log");
        for tool in ["systemctl", "loginctl"] {
            write_exe(
                &s.p(&format!("fakebin/{tool}")),
                &format!("#!/bin/sh\necho \"{tool} $*\" >>'{}'\n", log.display()),
            );
        }
        // sudo -iu USER VAR=... CMD ARGS: record, then run CMD with the variables.
        write_exe(
            &s.p("fakebin/sudo"),
            &format!(
                "#!/bin/sh\nshift 2\necho \"sudo $*\" >>'{}'\nexec env \"$@\"\n",
                log.display()
            ),
        );
        s.archive("v1");
        s
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `mnt/nerdctl-full.tgz` in the release archive's layout, its nerdctl saying `version`.
    fn archive(&self, version: &str) {
        let tree = self.p(&format!("tree-{version}"));
        let log = self.p("calls.log");
        write_exe(
            &tree.join("bin/nerdctl"),
            &format!("#!/bin/sh\necho \"# nerdctl {version} $*\"\n"),
        );
        write_exe(
            &tree.join("bin/containerd-rootless-setuptool.sh"),
            &format!(
                "#!/bin/sh\necho \"setuptool $* ns=${{CONTAINERD_NAMESPACE:-}}\" >>'{}'\n",
                log.display()
            ),
        );
        std::fs::create_dir_all(tree.join("lib/systemd/system")).unwrap();
        std::fs::write(
            tree.join("lib/systemd/system/containerd.service"),
            "[Service]\n",
        )
        .unwrap();
        let st = Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .arg("-czf")
            .arg(self.p("mnt/nerdctl-full.tgz"))
            .args(["bin", "lib"])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Runs the section with containerd `system` and/or `user`; returns the recorded calls.
    fn run(&self, system: bool, user: bool) -> Vec<String> {
        let script = format!(
            "set -eu\nMNT='{mnt}'\nCODE=0\nlog() {{ echo \"LOG $*\"; }}\n\
             run() {{ if ! \"$@\"; then echo \"FAILED $*\"; CODE=1; fi; }}\n{body}\nexit \"$CODE\"\n",
            mnt = self.p("mnt").display(),
            body = section()
        );
        let path = format!(
            "{}:{}",
            self.p("fakebin").display(),
            std::env::var("PATH").unwrap()
        );
        let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let flag = |b: bool| if b { "1" } else { "" };
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", path)
            .env("LIMA_CIDATA_GUEST_INSTALL_PREFIX", self.p("prefix"))
            .env("LIMA_CIDATA_CONTAINERD_ARCHIVE", "nerdctl-full.tgz")
            .env("LIMA_CIDATA_CONTAINERD_SYSTEM", flag(system))
            .env("LIMA_CIDATA_CONTAINERD_USER", flag(user))
            .env("LIMA_CIDATA_USER", me)
            .env("LIMA_CIDATA_UID", "1000")
            .env("LIMA_CIDATA_HOME", self.p("home"))
            .env("CTD_ETC", self.p("etc"))
            .env("CTD_RUN", self.p("run"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.contains("FAILED"),
            "stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = self.p("calls.log");
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        calls.lines().map(str::to_string).collect()
    }
}

#[test]
fn system_containerd_is_unpacked_configured_and_started() {
    let s = Scratch::new();
    let calls = s.run(true, false);
    assert!(s.p("prefix/bin/nerdctl").exists());
    assert!(s.p("prefix/lib/systemd/system/containerd.service").exists());
    let completion = std::fs::read_to_string(s.p("etc/bash_completion.d/nerdctl")).unwrap();
    assert_eq!(completion, "# nerdctl v1 completion bash\n");
    let cfg = std::fs::read_to_string(s.p("etc/containerd/config.toml")).unwrap();
    assert!(cfg.contains("[proxy_plugins.\"stargz\"]"), "{cfg}");
    assert!(s.p("etc/buildkit/buildkitd.toml").exists());
    assert_eq!(
        calls,
        [
            "systemctl daemon-reload",
            "systemctl enable --now containerd buildkit stargz-snapshotter"
        ]
    );

    // Next boot, same archive: not unpacked again, services enabled again.
    std::fs::write(s.p("etc/bash_completion.d/nerdctl"), "kept").unwrap();
    let calls = s.run(true, false);
    assert_eq!(
        std::fs::read_to_string(s.p("etc/bash_completion.d/nerdctl")).unwrap(),
        "kept"
    );
    assert_eq!(calls.len(), 2, "{calls:?}");

    // A newer archive: the services are stopped, then the new one unpacked.
    s.archive("v2");
    let calls = s.run(true, false);
    assert_eq!(
        calls[0],
        "systemctl disable --now containerd buildkit stargz-snapshotter"
    );
    assert_eq!(
        std::fs::read_to_string(s.p("etc/bash_completion.d/nerdctl")).unwrap(),
        "# nerdctl v2 completion bash\n"
    );
}

#[test]
fn user_containerd_is_installed_rootless_once() {
    let s = Scratch::new();
    let calls = s.run(false, true);
    let cfg = std::fs::read_to_string(s.p("home/.config/containerd/config.toml")).unwrap();
    assert!(
        cfg.contains("/run/user/1000/containerd-fuse-overlayfs.sock"),
        "{cfg}"
    );
    assert!(
        !s.p("etc/containerd/config.toml").exists(),
        "no rootful config"
    );
    let setup: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("setuptool"))
        .collect();
    assert_eq!(
        setup,
        [
            "setuptool install ns=",
            "setuptool install-buildkit-containerd ns=default",
            "setuptool install-stargz ns="
        ]
    );
    assert!(calls
        .iter()
        .any(|c| c.starts_with("loginctl enable-linger")));
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("sudo XDG_RUNTIME_DIR=") && c.ends_with("install")),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.contains("enable --now containerd")));

    // Installed already (the unit exists): not set up again.
    std::fs::create_dir_all(s.p("home/.config/systemd/user")).unwrap();
    std::fs::write(s.p("home/.config/systemd/user/containerd.service"), "").unwrap();
    let calls = s.run(false, true);
    assert_eq!(calls, ["systemctl daemon-reload"]);
}

#[test]
fn a_missing_archive_fails_the_boot_code() {
    let s = Scratch::new();
    std::fs::remove_file(s.p("mnt/nerdctl-full.tgz")).unwrap();
    let script = format!(
        "set -eu\nMNT='{}'\nCODE=0\nlog() {{ echo \"LOG $*\"; }}\n\
         run() {{ if ! \"$@\"; then echo \"FAILED $*\"; CODE=1; fi; }}\n{}\nexit \"$CODE\"\n",
        s.p("mnt").display(),
        section()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("LIMA_CIDATA_CONTAINERD_USER", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the seed has no"));
}
