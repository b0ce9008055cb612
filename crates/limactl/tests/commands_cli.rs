//! The command-line contract through the real binary, with instances made by `limactl create`
//! on the `testfake` driver (no VM): global flags and exit codes, plug-ins, `shell` on a
//! stopped instance, stop/delete of several instances, protect/unprotect, restart, sudoers,
//! autostart (a fake `systemctl`), watch, `prune --keep-referred`, and `copy`, `tunnel` and
//! `shell --sync` with fake `ssh`, `scp` and `rsync` programs.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::LIMACTL;

struct Env {
    tmp: tempfile::TempDir,
    home: PathBuf,
    drivers: PathBuf,
    yaml: PathBuf,
    /// Put first on PATH: fake plug-ins and tools.
    bin: PathBuf,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let drivers = tmp.path().join("drivers");
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&drivers).unwrap();
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(
            common::testfake_driver(),
            drivers.join("lima-driver-testfake"),
        )
        .unwrap();
        let yaml = tmp.path().join("fake.yaml");
        std::fs::write(
            &yaml,
            "vmType: testfake\nimages:\n- location: https://example.invalid/image.img\n",
        )
        .unwrap();
        Env {
            home: tmp.path().join("home"),
            drivers,
            yaml,
            bin,
            tmp,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(LIMACTL);
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.args(args)
            .env("LIMA_HOME", &self.home)
            .env("LIMA_DRIVERS_PATH", &self.drivers)
            .env("XDG_CONFIG_HOME", self.tmp.path().join("config"))
            .env("LIMA_CACHE_DIR", self.tmp.path().join("cache"))
            .env("LIMA_TEMPLATES_PATH", self.tmp.path().join("templates"))
            .env("PATH", path)
            .env_remove("LIMA_LOG")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs, expects `code`, returns (stdout, stderr).
    fn expect(&self, code: i32, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            common::stderr_text(&out.stderr).into_owned(),
        );
        assert_eq!(out.status.code(), Some(code), "limactl {args:?}:\n{o}\n{e}");
        (o, e)
    }

    fn create(&self, name: &str) {
        self.expect(0, &["create", "--name", name, self.yaml.to_str().unwrap()]);
    }

    fn inst_dir(&self, name: &str) -> PathBuf {
        self.home.join(name)
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.bin.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

#[test]
fn usage_errors_exit_1_help_and_version_0() {
    let env = Env::new();
    let (_, err) = env.expect(1, &["--no-such-flag"]);
    assert!(err.contains("--no-such-flag"), "{err}");
    env.expect(1, &["no-such-command"]);
    env.expect(1, &["delete"]);
    env.expect(1, &["list", "--bogus"]);
    let (out, _) = env.expect(0, &["--help"]);
    assert!(out.contains("--log-format"), "{out}");
    assert!(out.contains("--tty"), "{out}");
    env.expect(0, &["--version"]);
    env.expect(0, &["shell", "--help"]);
}

#[test]
fn global_flags() {
    let env = Env::new();
    let (_, err) = env.expect(1, &["--log-format", "xml", "list"]);
    assert!(err.contains("unsupported log-format: `xml`"), "{err}");
    let (_, err) = env.expect(1, &["--log-level", "loud", "list"]);
    assert!(err.contains("not a valid logrus Level: \"loud\""), "{err}");
    let (_, err) = env.expect(1, &["--tty", "--yes", "shell", "x"]);
    assert!(err.contains("cannot use both --tty and --yes"), "{err}");
    // Global flags go after the subcommand too.
    env.expect(0, &["list", "--debug", "--log-level=warn"]);
    // Log lines as logrus writes them when stderr is not a terminal.
    env.create("a");
    let out = env.run(&["protect", "a"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("time=\"")
                && l.ends_with(" level=info msg=\"Protected \\\"a\\\"\"")),
        "{err}"
    );
    let (_, err) = env.expect(0, &["--log-format=json", "protect", "a"]);
    let rec: serde_json::Value = serde_json::from_str(err.lines().next().unwrap()).unwrap();
    assert_eq!(rec["level"], "warning");
    assert_eq!(rec["msg"], "Instance \"a\" is already protected. Skipping.");
    // --log-level=error hides the warning.
    let (_, err) = env.expect(0, &["--log-level", "error", "protect", "a"]);
    assert!(err.is_empty(), "{err}");
    // The final error as a JSON record with --log-format json.
    let (_, err) = env.expect(1, &["--log-format", "json", "stop", "nope"]);
    let rec: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(rec["level"], "fatal");
    assert!(rec["msg"]
        .as_str()
        .unwrap()
        .contains("\"nope\" does not exist"));
}

#[test]
fn plugins_run_with_their_arguments_and_exit_code() {
    let env = Env::new();
    env.script(
        "limactl-hello",
        "#!/bin/sh\n# <limactl-desc>Says hello</limactl-desc>\necho \"hello $*\"\n\
         command -v limactl >/dev/null && echo found-limactl\nexit 7\n",
    );
    env.script("limactl-url-x", "#!/bin/sh\necho url\n");
    let out = env.run(&["--debug", "hello", "--flag", "arg"]);
    assert_eq!(out.status.code(), Some(7));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("hello --flag arg\n"), "{stdout}");
    let (help, _) = env.expect(0, &["--help"]);
    assert!(help.contains("Available Plugins (Experimental):"), "{help}");
    assert!(help.contains("hello  Says hello"), "{help}");
    assert!(!help.contains("url-x"), "{help}");
    // A built-in command wins over a plug-in of the same name.
    env.script("limactl-list", "#!/bin/sh\necho plugin-list\nexit 3\n");
    let (out, _) = env.expect(0, &["list"]);
    assert!(!out.contains("plugin-list"), "{out}");
}

#[test]
fn plugins_in_libexec_beside_limactl() {
    let env = Env::new();
    let prefix = env.tmp.path().join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::fs::create_dir_all(prefix.join("libexec/lima")).unwrap();
    let exe = prefix.join("bin/limactl");
    std::fs::copy(LIMACTL, &exe).unwrap();
    let p = prefix.join("libexec/lima/limactl-side");
    std::fs::write(&p, "#!/bin/sh\necho side\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&exe)
        .arg("side")
        .env("LIMA_HOME", &env.home)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "side\n");
    assert!(out.status.success());
}

#[test]
fn shell_refuses_a_stopped_or_missing_instance() {
    let env = Env::new();
    env.create("a");
    let (_, err) = env.expect(1, &["shell", "a", "uname"]);
    assert!(
        err.contains("instance \"a\" is stopped, run `limactl start a` to start the instance"),
        "{err}"
    );
    let (_, err) = env.expect(1, &["shell", "--start=false", "--workdir", "/tmp", "a"]);
    assert!(err.contains("is stopped"), "{err}");
    let (_, err) = env.expect(1, &["shell", "--instance", "nope", "uname"]);
    assert!(err.contains("instance \"nope\" does not exist"), "{err}");
    let (_, err) = env.expect(1, &["shell"]);
    assert!(err.contains("requires instance name"), "{err}");
    let (_, err) = env.expect(1, &["--yes", "shell", "a", "start"]);
    assert!(err.contains("Perhaps you meant `limactl start`?"), "{err}");
    let (_, err) = env.expect(1, &["shell", "--preserve-env", "a"]);
    assert!(err.contains("is stopped"), "{err}");
}

#[test]
fn stop_and_delete_several() {
    let env = Env::new();
    env.create("a");
    env.create("b");
    // Every instance is tried; all errors reported.
    let (_, err) = env.expect(1, &["stop", "a", "nope", "b"]);
    assert!(err.contains("\"a\" is not running"), "{err}");
    assert!(err.contains("\"nope\" does not exist"), "{err}");
    assert!(err.contains("\"b\" is not running"), "{err}");
    let (_, err) = env.expect(0, &["stop", "-f", "a", "b"]);
    assert_eq!(err.matches("forcibly stopped").count(), 2, "{err}");
    // A missing instance is skipped with a warning, with or without --force.
    let (_, err) = env.expect(0, &["delete", "a", "nope"]);
    assert!(
        err.contains("Ignoring non-existent instance \"nope\""),
        "{err}"
    );
    env.expect(0, &["delete", "--force", "nope"]);
    assert!(!env.inst_dir("a").exists());
    assert!(env.inst_dir("b").exists());
    env.expect(0, &["rm", "b"]);
    assert!(!env.inst_dir("b").exists());
}

#[test]
fn protected_instances_refuse_delete() {
    let env = Env::new();
    env.create("a");
    env.expect(0, &["protect", "a"]);
    let f = env.inst_dir("a").join("protected");
    assert!(f.exists());
    let (out, _) = env.expect(0, &["list", "--json"]);
    assert!(out.contains("\"protected\":true"), "{out}");
    for args in [&["delete", "a"][..], &["delete", "-f", "a"][..]] {
        let (_, err) = env.expect(1, args);
        assert!(
            err.contains(
                "protected to prohibit accidental removal (Hint: use `limactl unprotect`)"
            ),
            "{err}"
        );
        assert!(env.inst_dir("a").join("lima.yaml").exists());
    }
    let (_, err) = env.expect(1, &["protect", "a", "nope"]);
    assert!(err.contains("failed to protect instance \"nope\""), "{err}");
    env.expect(0, &["unprotect", "a"]);
    assert!(!f.exists());
    let (_, err) = env.expect(0, &["unprotect", "a"]);
    assert!(err.contains("isn't protected"), "{err}");
    env.expect(0, &["delete", "a"]);
}

#[test]
fn restart_and_sudoers_refuse_clearly() {
    let env = Env::new();
    env.create("a");
    let (_, err) = env.expect(1, &["restart", "nope"]);
    assert!(err.contains("\"nope\" does not exist"), "{err}");
    let (_, err) = env.expect(1, &["restart", "a"]);
    assert!(err.contains("\"a\" is not running"), "{err}");
    let (_, err) = env.expect(1, &["sudoers"]);
    assert!(
        err.contains("sudoers command is only supported on macOS right now"),
        "{err}"
    );
}

#[test]
fn autostart_writes_and_removes_the_systemd_unit() {
    let env = Env::new();
    let log = env.tmp.path().join("systemctl.log");
    env.script(
        "systemctl",
        &format!("#!/bin/sh\necho \"$*\" >> {}\n", log.display()),
    );
    env.create("a");
    let unit = env.tmp.path().join("config/systemd/user/lima-vm@a.service");
    let (_, err) = env.expect(0, &["autostart", "enable", "a"]);
    assert!(err.contains("has been created"), "{err}");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains(" start %i --foreground\n"), "{text}");
    assert!(text.contains("WantedBy=default.target"), "{text}");
    let (_, err) = env.expect(0, &["start-at-login", "a"]);
    assert!(err.contains("has been updated"), "{err}");
    env.expect(0, &["start-at-login", "--enabled=false", "a"]);
    assert!(!unit.exists());
    let (_, err) = env.expect(0, &["autostart", "disable", "a"]);
    assert!(err.contains("is not registered"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "--user enable lima-vm@a.service\n--user enable lima-vm@a.service\n\
         --user disable lima-vm@a.service\n"
    );
    // Deleting the instance removes its entry.
    env.expect(0, &["autostart", "enable", "a"]);
    env.expect(0, &["delete", "a"]);
    assert!(!unit.exists());
    let (_, err) = env.expect(1, &["autostart", "enable", "nope"]);
    assert!(err.contains("does not exist"), "{err}");
    env.expect(1, &["autostart", "enable", "--condition", "boot", "a"]);
}

#[test]
fn watch_prints_events_as_written() {
    let env = Env::new();
    env.create("a");
    let log = env.inst_dir("a").join("ha.stdout.log");
    std::fs::write(
        &log,
        "{\"time\":\"2026-01-02T03:04:05.000Z\",\"status\":{\"sshLocalPort\":60022}}\n",
    )
    .unwrap();
    let mut child = env
        .cmd(&["watch", "--json", "--history", "a"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20));
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"{\"time\":\"2026-01-02T03:04:06.000Z\",\"status\":{\"running\":true}}\n")
        .unwrap();
    let second = rx.recv_timeout(Duration::from_secs(20));
    child.kill().unwrap();
    child.wait().unwrap();
    let first: serde_json::Value = serde_json::from_str(&first.unwrap()).unwrap();
    assert_eq!(first["instance"], "a");
    assert_eq!(first["event"]["status"]["sshLocalPort"], 60022);
    let second: serde_json::Value = serde_json::from_str(&second.unwrap()).unwrap();
    assert_eq!(second["event"]["status"]["running"], true);

    // --verbose: the host agent's log lines too, on stderr, new ones only without --history.
    let ha_log = env.inst_dir("a").join("ha.stderr.log");
    std::fs::write(&ha_log, "old line\n").unwrap();
    let mut child = env
        .cmd(&["watch", "--verbose", "a"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // "Watching for events..." says it has started reading.
    let started = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(started.contains("Watching for events"), "{started}");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&ha_log)
        .unwrap();
    f.write_all(b"time=\"2026-01-02T03:04:07Z\" level=info msg=hello\n")
        .unwrap();
    let line = rx.recv_timeout(Duration::from_secs(20));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        line.unwrap(),
        "a | time=\"2026-01-02T03:04:07Z\" level=info msg=hello"
    );
}

fn cache_entry(cache: &Path, url: &str) -> PathBuf {
    use sha2::Digest;
    let key = hex_string(&sha2::Sha256::digest(url.as_bytes()));
    let d = cache.join("download/by-url-sha256").join(key);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("data"), b"x").unwrap();
    d
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn prune_keep_referred_keeps_what_instances_and_templates_use() {
    let env = Env::new();
    env.create("a");
    let cache = env.tmp.path().join("cache");
    let used = cache_entry(&cache, "https://example.invalid/image.img");
    let unused = cache_entry(&cache, "https://example.invalid/old.img");
    let templates = env.tmp.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("t.yaml"),
        "images:\n- location: https://example.invalid/tmpl.img\n",
    )
    .unwrap();
    let by_template = cache_entry(&cache, "https://example.invalid/tmpl.img");
    env.expect(0, &["prune", "--keep-referred"]);
    assert!(used.exists());
    assert!(by_template.exists());
    assert!(!unused.exists());
    env.expect(0, &["prune"]);
    assert!(!used.exists());
}

/// Makes instance `name` look running (a live process in its directory, named by both pid
/// files) and puts a fake `ssh` on PATH that prints its arguments and exits 5.
fn fake_running(env: &Env, name: &str) -> std::process::Child {
    let dir = env.inst_dir(name);
    let child = Command::new("sleep")
        .arg("120")
        .current_dir(&dir)
        .spawn()
        .unwrap();
    for f in ["ha.pid", "testfake.pid"] {
        std::fs::write(dir.join(f), format!("{}\n", child.id())).unwrap();
    }
    std::fs::write(
        dir.join("ssh.config"),
        "Host lima-a\n  Hostname 127.0.0.1\n",
    )
    .unwrap();
    env.script(
        "ssh",
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\nexit 5\n",
    );
    child
}

#[test]
fn shell_runs_ssh_with_upstreams_remote_command() {
    let env = Env::new();
    env.create("a");
    let mut sleeper = fake_running(&env, "a");
    let (out, _) = env.expect(0, &["list", "--format", "{{.Status}}", "a"]);
    assert_eq!(out.trim(), "Running");
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let out = env.cmd(args).envs(envs.iter().copied()).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
        (out.status.code(), lines)
    };
    // The command's exit code is ours; the script is the last argument, after `--`.
    let (code, args) = run(&["shell", "--workdir", "/w", "a", "ls", "a b"], &[]);
    assert_eq!(code, Some(5));
    assert_eq!(args[args.len() - 2], "--");
    assert_eq!(
        args.last().unwrap(),
        // The filled config's user.shell (default /bin/bash, as upstream's).
        r#"cd /w || exit 1 ; exec /bin/bash -l -c 'ls '"'"'a b'"'"''"#
    );
    assert!(args.iter().any(|a| a == "LogLevel=ERROR"), "{args:?}");
    // No mount shares the host's directories here: upstream's `false` before the shell.
    let (_, args) = run(&["shell", "--shell", "/bin/zsh", "a", "--", "uname"], &[]);
    assert_eq!(args.last().unwrap(), "false ; exec /bin/zsh -l -c uname");
    let (_, args) = run(
        &["shell", "--preserve-env", "--reconnect", "a"],
        &[("FOO", "x y"), ("SSH_AUTH_SOCK", "/s")],
    );
    let script = args.last().unwrap();
    assert!(script.contains("'FOO=x y' "), "{script}");
    assert!(!script.contains("SSH_AUTH_SOCK"), "{script}");
    for blocked in ["PATH=", "HOME="] {
        assert!(
            !script.split(' ').any(|w| w.starts_with(blocked)),
            "{script}"
        );
    }
    let (_, args) = run(
        &["shell", "--preserve-env", "a"],
        &[("LIMA_SHELLENV_BLOCK", "+FOO"), ("FOO", "1")],
    );
    let script = args.last().unwrap();
    assert!(
        !script.split(' ').any(|w| w.starts_with("FOO=")),
        "{script}"
    );
    assert!(script.contains(" LIMA_SHELLENV_BLOCK=+FOO "), "{script}");
    // --sync checks come after the instance's; a shallow directory is refused (rsync
    // --delete must never act on a home), --workdir conflicts with it.
    env.script("rsync", "#!/bin/sh\nexit 0\n");
    let (_, err) = env.expect(1, &["shell", "--sync", "/tmp", "a"]);
    assert!(
        err.contains("expected the depth of the host working directory (`/tmp`) to be at least 4, only got 2"),
        "{err}"
    );
    let (_, err) = env.expect(1, &["shell", "--sync", "/a/b/c/d", "--workdir", "/w", "a"]);
    assert!(
        err.contains("cannot use `--workdir` and `--sync` at the same time"),
        "{err}"
    );
    std::fs::remove_file(env.bin.join("rsync")).unwrap();
    // The `lima` wrapper with the real limactl.
    let lima = Path::new(env!("CARGO_MANIFEST_DIR")).join("wrappers/lima");
    let out = Command::new(&lima)
        .args(["echo", "hi"])
        .env("LIMACTL", LIMACTL)
        .env("LIMA_INSTANCE", "a")
        .env("LIMA_HOME", &env.home)
        .env("LIMA_DRIVERS_PATH", &env.drivers)
        .env(
            "PATH",
            format!("{}:{}", env.bin.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.ends_with(" -l -c 'echo hi'\n"), "{stdout}");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

#[test]
fn copy_and_tunnel_refuse_a_stopped_or_missing_instance() {
    let env = Env::new();
    env.create("a");
    let stopped = "instance `a` is stopped, run `limactl start a` to start the instance";
    let missing =
        "instance `nope` does not exist, run `limactl create nope` to create a new instance";
    for args in [
        &["copy", "a:/etc/os-release", "."][..],
        &["cp", "-r", "./x", "a:/tmp/"],
        &["copy", "--backend=rsync", "a:/x", "."],
        &["tunnel", "a"],
    ] {
        let (_, err) = env.expect(1, args);
        assert!(err.contains(stopped), "{args:?}: {err}");
    }
    for args in [&["copy", "nope:/x", "."][..], &["tunnel", "nope"]] {
        let (_, err) = env.expect(1, args);
        assert!(err.contains(missing), "{args:?}: {err}");
    }
    let (_, err) = env.expect(1, &["copy", "--backend", "ftp", "a:/x", "."]);
    assert!(
        err.contains("invalid backend `ftp`, must be one of: scp, rsync, auto"),
        "{err}"
    );
    let (_, err) = env.expect(1, &["copy", "a:/x"]);
    assert!(err.contains("2 values required"), "{err}");
    let (_, err) = env.expect(1, &["tunnel", "--socks-port", "80", "a"]);
    assert!(err.contains("invalid socks port 80"), "{err}");
    assert!(err.contains("`limactl tunnel` is experimental"), "{err}");
    let (_, err) = env.expect(1, &["tunnel", "--type", "vpn", "a"]);
    assert!(err.contains("unknown tunnel type: `vpn`"), "{err}");
    let (_, err) = env.expect(1, &["shell", "--sync", "/a/b/c/d", "a"]);
    assert!(err.contains("instance \"a\" is stopped"), "{err}");
}

#[test]
fn copy_and_tunnel_run_scp_rsync_and_ssh_as_upstream() {
    let env = Env::new();
    env.create("a");
    let mut sleeper = fake_running(&env, "a");
    std::fs::write(
        env.inst_dir("a").join("ssh.config"),
        "Host lima-a\n  Hostname 127.0.0.1\n  Port 60022\n",
    )
    .unwrap();
    let log = env.tmp.path().join("log");
    // Each fake prints its name and arguments to the log; ssh's exit code is $SSH_RC.
    let fake = |name: &str, tail: &str| {
        env.script(
            name,
            &format!(
                "#!/bin/sh\necho {name} >>'{log}'\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >>'{log}'; done\n\
                 [ \"$1\" = --version ] && echo 'rsync  version 3.2.7  protocol version 31'\n{tail}\n",
                log = log.display()
            ),
        );
    };
    // ssh's remote shell (`... exec ...`) exits $SHELL_RC.
    fake(
        "ssh",
        "case \"$*\" in *' exec '*) exit ${SHELL_RC:-0};; esac\nexit ${SSH_RC:-0}",
    );
    fake("scp", "exit 3");
    let logged = || {
        let s = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        s.lines().map(str::to_string).collect::<Vec<_>>()
    };
    let (user, _) = env.expect(0, &["list", "--format", "{{.Config.User.Name}}", "a"]);
    let user = user.trim().to_string();
    let (home, _) = env.expect(0, &["list", "--format", "{{.Config.User.Home}}", "a"]);
    let home = home.trim().to_string();

    // scp: the instance's options, -3 --, a scp:// URL; scp's exit code is ours.
    env.expect(3, &["copy", "--backend=scp", "-r", "./dir", "a:/tmp/"]);
    let args = logged();
    assert_eq!(args[0], "scp");
    let tail = &args[args.len() - 5..];
    assert_eq!(
        tail,
        [
            "-r",
            "-3",
            "--",
            "./dir",
            &format!("scp://{user}@127.0.0.1:60022//tmp/")
        ]
    );
    assert_eq!(args[args.len() - 6], "-q");
    assert!(
        args.iter().any(|a| a.starts_with("ControlPath=")),
        "{args:?}"
    );

    // auto: rsync on the host but not in the guest (the check over ssh fails) → scp.
    fake("rsync", "exit 0");
    let out = env
        .cmd(&["copy", "-v", "a:/etc/os-release", "."])
        .env("SSH_RC", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let args = logged();
    assert_eq!(args[0], "ssh");
    assert!(args.contains(&"command -v rsync >/dev/null 2>&1".to_string()));
    assert!(args.contains(&"scp".to_string()), "{args:?}");
    assert!(args.contains(&"-v".to_string()), "{args:?}");
    let out = env
        .cmd(&["copy", "--backend=rsync", "a:/x", "."])
        .env("SSH_RC", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr_text(&out.stderr).contains("rsync not available on guest(s)"));
    logged();

    // auto with rsync in the guest: rsync -a -q -e 'ssh ...' -- USER@ADDR:PATH .
    env.expect(0, &["copy", "a:/x", "."]);
    let args = logged();
    let r = args.iter().position(|a| a == "rsync").unwrap();
    assert_eq!(args[r + 1..r + 4], ["-a", "-q", "-e"]);
    assert!(args[r + 4].starts_with("ssh -F /dev/null -o "), "{args:?}");
    assert!(args[r + 4].ends_with(" -p 60022"), "{args:?}");
    assert_eq!(
        args[r + 5..],
        ["--".to_string(), format!("{user}@127.0.0.1:/x"), ".".into()]
    );

    // tunnel: ssh -D in the background, then upstream's hint; ssh's failure is our code.
    let (out, _) = env.expect(0, &["tunnel", "--socks-port", "1080", "a"]);
    assert_eq!(
        out,
        "Set `ALL_PROXY=socks5h://127.0.0.1:1080`, etc.\n\
         The instance can be connected from the host as <http://lima-a.internal> via a web browser.\n"
    );
    let args = logged();
    assert_eq!(
        args[args.len() - 8..],
        [
            "-q",
            "-f",
            "-N",
            "-D",
            "127.0.0.1:1080",
            "-p",
            "60022",
            "127.0.0.1"
        ]
    );
    let out = env
        .cmd(&["tunnel", "a"])
        .env("SSH_RC", "255")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(out.stdout.is_empty());
    logged();

    // shell --sync: mkdir in the guest, rsync in, the command, rsync back (no tty), rm.
    let proj = env.tmp.path().join("w/proj");
    std::fs::create_dir_all(&proj).unwrap();
    let proj_s = proj.to_str().unwrap();
    env.expect(0, &["--tty=false", "shell", "--sync", proj_s, "a", "true"]);
    let args = logged();
    let guest_dir = format!("{home}{proj_s}");
    let mkdir = args
        .iter()
        .position(|a| a.starts_with("mkdir -p "))
        .unwrap();
    let rsyncs: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(_, a)| *a == "rsync")
        .map(|(i, _)| i)
        .collect();
    // `rsync --version` (3.2.7: paths not quoted), then in, then back.
    assert_eq!(rsyncs.len(), 3, "{args:?}");
    assert!(mkdir < rsyncs[1]);
    let into = &args[rsyncs[1]..];
    assert!(into.contains(&"--delete".to_string()));
    assert!(into.contains(&format!("{proj_s}/")), "{into:?}");
    assert!(
        into.contains(&format!("{user}@127.0.0.1:{guest_dir}/")),
        "{into:?}"
    );
    let script = args
        .iter()
        .find(|a| a.starts_with("cd ") && a.contains("exec"))
        .unwrap();
    assert!(script.starts_with(&format!("cd {guest_dir} ;")), "{script}");
    let back = &args[rsyncs[2]..];
    assert!(
        back.contains(&format!("{user}@127.0.0.1:{guest_dir}/")),
        "{back:?}"
    );
    assert!(args.last().unwrap().starts_with("rm -rf "), "{args:?}");
    // A failing command: its exit code is ours, no sync back, the guest copy stays.
    let out = env
        .cmd(&["--tty=false", "shell", "--sync", proj_s, "a", "false"])
        .env("SHELL_RC", "7")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let args = logged();
    assert_eq!(args.iter().filter(|a| *a == "rsync").count(), 2, "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("rm -rf")), "{args:?}");

    // --tty: the dry run's counts and a question; "2" (No) copies nothing back.
    env.script(
        "rsync",
        &format!(
            "#!/bin/sh\necho rsync \"$@\" >>'{log}'\n\
             [ \"$1\" = --version ] && echo 'rsync  version 3.2.7  protocol version 31'\n\
             case \"$*\" in *--dry-run*) echo '>f+++++++++ proj/new.txt'; echo '*deleting   proj/old.txt';; esac\nexit 0\n",
            log = log.display()
        ),
    );
    let mut child = env
        .cmd(&["--tty", "shell", "--sync", proj_s, "a", "true"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"2\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = common::stderr_text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Accept the changes? (added: 1, deleted: 1, modified: 0, metadata: 0)"),
        "{err}"
    );
    assert!(
        err.contains("Skipping syncing back the changes to host."),
        "{err}"
    );
    let lines = logged();
    let rsyncs: Vec<&String> = lines.iter().filter(|l| l.starts_with("rsync ")).collect();
    // --version, in, the dry run; no copy back.
    assert_eq!(rsyncs.len(), 3, "{lines:?}");
    assert!(
        rsyncs[2].contains("--dry-run --itemize-changes -ah --delete"),
        "{lines:?}"
    );
    assert!(lines.last().unwrap().starts_with("rm -rf "), "{lines:?}");
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}
