//! Host directories in the guest, for each mount type (9p and virtiofs devices of the qemu
//! driver, reverse-sshfs by the host agent): a file made on the host reads the same in the
//! guest, a file written in the guest on a writable mount reads the same on the host, a
//! read-only mount refuses writes in the guest, and the `~` mount (the user's home, here a
//! temporary HOME) shows the host's home. One directory has a space in its name.

use std::process::Stdio;

use sha2::{Digest, Sha256};

use super::*;

/// The host directories of an instance: one writable, one read-only, and the fake home.
pub struct Shares {
    pub writable: PathBuf,
    pub read_only: PathBuf,
    /// HOME for limactl (mounted as `~`), with a marker file.
    home: PathBuf,
    /// The SHA-256 of `read_only/host.bin`, made before the instance starts.
    host_file_sum: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A file name beyond ASCII, with a space.
const UNICODE_NAME: &str = "ünïcødé ✓.txt";
/// Where the read-only directory's `sub` is mounted as well (a mount of a path under another
/// mount).
const NESTED_MOUNT_POINT: &str = "/mnt/lima-e2e-nested";

/// A temporary HOME for every limactl the test runs, so the `~` mount is known content.
pub fn fake_home(env: &mut Env, tag: &str) -> PathBuf {
    let home = env.home.path().join(format!("_home_{tag}"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("marker"), format!("home of {tag}\n")).unwrap();
    env.extra_env
        .push(("HOME".into(), home.display().to_string()));
    home
}

/// Makes the directories and the host's file, and adds them (and `~`) as mounts of
/// `mount_type` to the instance's yaml; `home` is from [`fake_home`].
pub fn add_mounts(
    env: &Env,
    v: &mut serde_yaml::Value,
    tag: &str,
    mount_type: &str,
    home: PathBuf,
) -> Shares {
    let writable = env.home.path().join(format!("_share_rw_{tag}"));
    let read_only = env.home.path().join(format!("_share ro_{tag}"));
    // Open to every user: the tests run as root here, and the guest user is not root, so
    // only the mount options can make the read-only one refuse writes.
    use std::os::unix::fs::PermissionsExt;
    for dir in [&writable, &read_only] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let content: Vec<u8> = (0..(1 << 20))
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(read_only.join("host.bin"), &content).unwrap();
    // A unicode name, a symlink inside the mount, and a directory mounted on its own too,
    // holding a symlink that leads out of it.
    std::fs::write(read_only.join(UNICODE_NAME), "unicode\n").unwrap();
    std::os::unix::fs::symlink("host.bin", read_only.join("link.bin")).unwrap();
    std::fs::create_dir_all(read_only.join("sub")).unwrap();
    std::fs::write(read_only.join("sub/nested.txt"), "nested\n").unwrap();
    std::os::unix::fs::symlink("../host.bin", read_only.join("sub/out.bin")).unwrap();
    let mounts: serde_yaml::Value = serde_yaml::from_str(&format!(
        "- location: \"~\"\n- location: \"{}\"\n  writable: true\n- location: \"{}\"\n\
         - location: \"{}/sub\"\n  mountPoint: {NESTED_MOUNT_POINT}\n",
        writable.display(),
        read_only.display(),
        read_only.display(),
    ))
    .unwrap();
    let m = v.as_mapping_mut().unwrap();
    // Left unset for virtiofs: the qemu driver's default on a Linux host with virtiofsd.
    if mount_type != "virtiofs" {
        m.insert("mountType".into(), mount_type.into());
    }
    m.insert("mountInotify".into(), true.into());
    m.insert("mounts".into(), mounts);
    Shares {
        writable,
        read_only,
        home,
        host_file_sum: sha256_hex(&content),
    }
}

/// Changes the mount type of a stopped instance (its lima.yaml); the next start uses it.
pub fn switch_type(env: &Env, name: &str, mount_type: &str) {
    let path = env.dir(name).join("lima.yaml");
    let mut v: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v.as_mapping_mut()
        .unwrap()
        .insert("mountType".into(), mount_type.into());
    std::fs::write(&path, serde_yaml::to_string(&v).unwrap()).unwrap();
}

fn guest_sh(env: &Env, name: &str, script: &str) -> Output {
    env.command(&["shell", name, "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn quoted(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// The checks, on a running instance whose yaml got [`add_mounts`]; `mount_type` is the one
/// it runs with now (the file system type the guest must show).
pub fn check(env: &Env, name: &str, shares: &Shares, mount_type: &str) {
    let fs_type = match mount_type {
        "reverse-sshfs" => "fuse.sshfs",
        other => other,
    };
    // Every mount is there, with the type asked for.
    let out = guest_sh(env, name, "cat /proc/mounts");
    let table = String::from_utf8_lossy(&out.stdout);
    for dir in [&shares.home, &shares.writable, &shares.read_only] {
        let escaped = dir.display().to_string().replace(' ', "\\040");
        assert!(
            table
                .lines()
                .any(|l| l.split(' ').nth(1) == Some(escaped.as_str())
                    && l.split(' ').nth(2) == Some(fs_type)),
            "{} is not a {fs_type} mount in the guest:\n{table}",
            dir.display()
        );
    }
    assert!(
        table
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(NESTED_MOUNT_POINT)),
        "{NESTED_MOUNT_POINT} is not mounted:\n{table}"
    );
    // Names beyond ASCII, a symlink inside the mount; the nested mount shows its directory,
    // and neither `..` nor a symlink leads from it to the host directory around it.
    let ro = quoted(&shares.read_only);
    let out = guest_sh(
        env,
        name,
        &format!(
            "cat {ro}/'{UNICODE_NAME}' && readlink {ro}/link.bin && sha256sum < {ro}/link.bin \
             && cat {NESTED_MOUNT_POINT}/nested.txt \
             && ! test -e {NESTED_MOUNT_POINT}/out.bin && ! test -e {NESTED_MOUNT_POINT}/../host.bin \
             && echo contained"
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "unicode\nhost.bin\n{}  -\nnested\ncontained\n",
            shares.host_file_sum
        ),
        "paths in the mounts: {}",
        common::stderr_text(&out.stderr)
    );
    // `~` is the host's home, read-only by default.
    let out = guest_sh(
        env,
        name,
        &format!(
            "cat {0}/marker && ! touch {0}/guest-was-here 2>/dev/null",
            quoted(&shares.home)
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(shares.home.join("marker")).unwrap(),
        "the ~ mount: {}",
        common::stderr_text(&out.stderr)
    );
    assert!(out.status.success(), "the ~ mount is writable");
    assert!(!shares.home.join("guest-was-here").exists());

    // Host to guest.
    let out = guest_sh(
        env,
        name,
        &format!("sha256sum {}/host.bin", quoted(&shares.read_only)),
    );
    assert!(
        out.status.success(),
        "reading the host's file in the guest: {}",
        common::stderr_text(&out.stderr)
    );
    let guest_sum = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        guest_sum.split_whitespace().next(),
        Some(shares.host_file_sum.as_str()),
        "the guest read other bytes than the host wrote"
    );

    // Read-only is enforced in the guest.
    let out = guest_sh(
        env,
        name,
        &format!("echo x > {}/new.txt", quoted(&shares.read_only)),
    );
    assert!(
        !out.status.success(),
        "a write to a read-only mount succeeded"
    );
    assert!(!shares.read_only.join("new.txt").exists());

    // Guest to host, on the writable mount.
    let out = guest_sh(
        env,
        name,
        &format!(
            "head -c 3000000 /dev/urandom > {0}/guest.bin && sync && sha256sum {0}/guest.bin",
            quoted(&shares.writable)
        ),
    );
    assert!(
        out.status.success(),
        "writing in the guest: {}",
        common::stderr_text(&out.stderr)
    );
    let guest_sum = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let file = shares.writable.join("guest.bin");
    let on_host = std::fs::read(&file).unwrap();
    assert_eq!(on_host.len(), 3_000_000);
    assert_eq!(sha256_hex(&on_host), guest_sum, "the host read other bytes");
    // Owned by the host user; but qemu (9p) and virtiofsd run as root pass the guest's uid
    // through (as upstream's do).
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&file).unwrap().uid();
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    if mount_type == "reverse-sshfs" || me != 0 {
        assert_eq!(
            owner, me,
            "{mount_type}: the guest's file is not the host user's"
        );
    }
    std::fs::remove_file(&file).unwrap();
    host_change_raises_inotify_in_guest(env, name, &shares.writable);
    eprintln!(
        "{mount_type} mounts: host->guest and guest->host SHA-256 equal, read-only enforced, \
         ~ is the host's home, host writes raise inotify events in the guest"
    );
}

/// Watches a directory with inotify in the guest (python3 and libc's inotify through ctypes;
/// the image has no inotify-tools) and prints the first event.
const INOTIFY_WATCH_PY: &str = r#"
import ctypes, os, select, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
IN_MODIFY, IN_ATTRIB, IN_CREATE = 0x2, 0x4, 0x100
if libc.inotify_add_watch(fd, sys.argv[1].encode(), IN_MODIFY | IN_ATTRIB | IN_CREATE) < 0:
    sys.exit("inotify_add_watch failed")
print("ready", flush=True)
if not select.select([fd], [], [], 60)[0]:
    sys.exit("no event in 60 s")
buf = os.read(fd, 4096)
_, mask, _, n = struct.unpack_from("iIII", buf)
print("event", hex(mask), buf[16:16 + n].rstrip(b"\0").decode(), flush=True)
"#;

/// `mountInotify`: a file written on the host raises an inotify event in the guest.
fn host_change_raises_inotify_in_guest(env: &Env, name: &str, dir: &Path) {
    use std::io::BufRead;
    let mut watch = env
        .command(&[
            "shell",
            name,
            "python3",
            "-c",
            INOTIFY_WATCH_PY,
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let started = Instant::now();
    std::fs::write(dir.join("changed-on-host.txt"), "new").unwrap();
    let event = lines.next().unwrap().unwrap();
    assert!(
        event.starts_with("event ") && event.ends_with(" changed-on-host.txt"),
        "{event:?}"
    );
    eprintln!(
        "inotify in the guest {:?} after the host's write: {event}",
        started.elapsed()
    );
    assert!(watch.wait().unwrap().success());
    std::fs::remove_file(dir.join("changed-on-host.txt")).unwrap();
}

/// A mount the guest cannot make fails `limactl start` (exit 1) naming the mount and giving
/// the guest's own error, and leaves the instance stopped.
pub fn failing_mount_fails_start(env: &Env, image_yaml: &Path, mount_type: &str) {
    let name = "e2e-badmount";
    let dir = env.home.path().join("_share_bad");
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = edited_yaml(env, image_yaml, |v| {
        let m = v.as_mapping_mut().unwrap();
        m.insert("mountType".into(), mount_type.into());
        let mounts = format!(
            "- location: \"{}\"\n  mountPoint: /proc/lima-no-such-dir\n",
            dir.display()
        );
        m.insert("mounts".into(), serde_yaml::from_str(&mounts).unwrap());
    });
    let out = env.limactl(&[
        "start",
        "--name",
        name,
        "--tty=false",
        yaml.to_str().unwrap(),
    ]);
    let err = common::stderr_text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/proc/lima-no-such-dir") && err.contains("mounts must be mounted"),
        "the error must name the mount and the requirement: {err}"
    );
    assert!(
        err.contains("does not exist") || err.contains("No such file"),
        "the error must carry the guest's reason: {err}"
    );
    assert_eq!(env.status_str(name), "Stopped");
    env.ok(&["delete", "-f", name]);
}
