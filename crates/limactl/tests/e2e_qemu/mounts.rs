//! Host directories in the guest through the qemu driver's virtiofs devices (one `virtiofsd`
//! per mount): a file made on the host reads the same in the guest, a file written in the
//! guest on a writable mount reads the same on the host, and a read-only mount refuses
//! writes in the guest. (9p needs a guest kernel with 9p modules; the local image's cloud
//! kernel has virtiofs only.)

use std::process::Stdio;

use sha2::{Digest, Sha256};

use super::*;

/// The two host directories of an instance: one writable, one read-only.
pub struct Shares {
    pub writable: PathBuf,
    pub read_only: PathBuf,
    /// The SHA-256 of `read_only/host.bin`, made before the instance starts.
    host_file_sum: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes the directories and the host's file, and adds them as virtiofs mounts to the
/// instance's yaml.
pub fn add_mounts(env: &Env, v: &mut serde_yaml::Value, tag: &str) -> Shares {
    let writable = env.home.path().join(format!("_share_rw_{tag}"));
    let read_only = env.home.path().join(format!("_share_ro_{tag}"));
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
    let mounts: serde_yaml::Value = serde_yaml::from_str(&format!(
        "- location: \"{}\"\n  writable: true\n- location: \"{}\"\n",
        writable.display(),
        read_only.display()
    ))
    .unwrap();
    let m = v.as_mapping_mut().unwrap();
    m.insert("mountType".into(), "virtiofs".into());
    m.insert("mounts".into(), mounts);
    Shares {
        writable,
        read_only,
        host_file_sum: sha256_hex(&content),
    }
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

/// The checks, on a running instance whose yaml got [`add_mounts`].
pub fn check(env: &Env, name: &str, shares: &Shares) {
    // Host to guest.
    let out = guest_sh(
        env,
        name,
        &format!("sha256sum {}/host.bin", quoted(&shares.read_only)),
    );
    assert!(
        out.status.success(),
        "reading the host's file in the guest: {}",
        String::from_utf8_lossy(&out.stderr)
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
        String::from_utf8_lossy(&out.stderr)
    );
    let guest_sum = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let on_host = std::fs::read(shares.writable.join("guest.bin")).unwrap();
    assert_eq!(on_host.len(), 3_000_000);
    assert_eq!(sha256_hex(&on_host), guest_sum, "the host read other bytes");
    eprintln!("virtiofs mounts: host->guest and guest->host SHA-256 equal, read-only enforced");
}
