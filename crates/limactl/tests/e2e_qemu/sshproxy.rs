//! `ssh.loadDotSSHPubKeys`, `propagateProxyEnv` and `hostResolver.hosts` in a running guest: a
//! key generated into the fake HOME's `~/.ssh` logs in with plain `ssh -i` (no Lima config),
//! the host's `ftp_proxy` on localhost shows in the guest's environment pointed at the host's
//! address (`192.168.5.2`; ftp so nothing in the guest actually uses it), and
//! `host.lima.internal` and the `hostResolver.hosts` entries resolve with `getent hosts`.
//! hostResolver is on (the default), so those entries come from the host agent's DNS server,
//! not /etc/hosts: a raw UDP query (dnsq.py) to slirp's DNS, 192.168.5.3:53, which the boot
//! script DNATs to the host agent, answers them.

use super::*;

/// The key's file name under `~/.ssh`.
const KEY: &str = "id_e2e_dotssh";
const PROXY: &str = "http://localhost:2121";
const PROXY_IN_GUEST: &str = "http://192.168.5.2:2121";

/// Before `create`: the key pair in `home/.ssh`, the proxy variable in limactl's environment
/// and the config switches in the yaml.
pub fn setup(env: &mut Env, home: &Path, v: &mut serde_yaml::Value) {
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let key = ssh.join(KEY);
    if !key.exists() {
        let st = Command::new("ssh-keygen")
            .args(["-t", "ed25519", "-q", "-N", "", "-C", "e2e", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(st.success(), "ssh-keygen failed");
    }
    env.extra_env.push(("ftp_proxy".into(), PROXY.into()));
    let m = v.as_mapping_mut().unwrap();
    let yaml = |s: &str| serde_yaml::from_str::<serde_yaml::Value>(s).unwrap();
    m.insert("ssh".into(), yaml("loadDotSSHPubKeys: true\n"));
    m.insert("propagateProxyEnv".into(), true.into());
    m.insert(
        "hostResolver".into(),
        yaml("hosts:\n  e2e-static.test: 192.0.2.7\n  e2e-host.test: host.lima.internal\n"),
    );
}

/// While the instance runs.
pub fn check(env: &Env, name: &str, home: &Path) {
    // ssh.config offers the key too.
    let config = std::fs::read_to_string(env.dir(name).join("ssh.config")).unwrap();
    let key = home.join(".ssh").join(KEY);
    assert!(
        config.contains(&format!("IdentityFile \"{}\"", key.display())),
        "{config}"
    );
    // Plain ssh with only that key: it is authorized in the guest.
    let user = env.ok(&["shell", name, "id", "-un"]).trim().to_string();
    let port = env.status(name).unwrap()["sshLocalPort"].as_u64().unwrap();
    let out = Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(&key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-p",
            &port.to_string(),
            &format!("{user}@127.0.0.1"),
            "echo dotssh-ok",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "dotssh-ok",
        "plain ssh -i {}: {}",
        key.display(),
        String::from_utf8_lossy(&out.stderr)
    );

    // propagateProxyEnv: both cases, localhost rewritten.
    let envs = env.ok(&["shell", name, "env"]);
    for var in ["ftp_proxy", "FTP_PROXY"] {
        assert!(
            envs.lines().any(|l| l == format!("{var}={PROXY_IN_GUEST}")),
            "{var} not in the guest's env:\n{envs}"
        );
    }

    // host.lima.internal and hostResolver.hosts.
    for (host, want) in [
        ("host.lima.internal", "192.168.5.2"),
        ("e2e-static.test", "192.0.2.7"),
        ("e2e-host.test", "192.168.5.2"),
    ] {
        let out = env.ok(&["shell", name, "getent", "hosts", host]);
        assert!(
            out.split_whitespace().next() == Some(want),
            "getent hosts {host}: {out:?}"
        );
    }

    // Through DNS, not /etc/hosts (which keeps only host.lima.internal).
    let etc_hosts = env.ok(&["shell", name, "cat", "/etc/hosts"]);
    assert!(!etc_hosts.contains("e2e-static.test"), "{etc_hosts}");
    let script = home.join("dnsq.py");
    std::fs::write(&script, include_str!("dnsq.py")).unwrap();
    env.ok(&[
        "copy",
        script.to_str().unwrap(),
        &format!("{name}:/tmp/lima-e2e-dnsq.py"),
    ]);
    let own = format!("lima-{name}");
    for (host, want) in [
        ("e2e-static.test", "192.0.2.7\nrcode=0\n"),
        ("e2e-host.test", "192.168.5.2\nrcode=0\n"),
        (own.as_str(), "192.168.5.15\nrcode=0\n"),
    ] {
        let out = env.ok(&[
            "shell",
            name,
            "python3",
            "/tmp/lima-e2e-dnsq.py",
            "192.168.5.3",
            host,
        ]);
        assert_eq!(out, want, "raw DNS query for {host}");
    }
}
