//! `limactl copy`, `limactl tunnel` and `limactl shell --sync` against a running instance: a
//! file and a directory (`-r`) copied host → guest → host with each backend (scp, rsync: the
//! local image has rsync in the guest) read back byte for byte, a missing file fails, a
//! SOCKS proxy from `tunnel` reaches a server on the host through the guest, and `--sync` is
//! refused on an instance with mounts (upstream's rule; the e2e instances all have mounts).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use super::*;

/// Bytes that compress badly and have every value, so a text-mode mangling would show.
fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A small tree: two files, one in a subdirectory with a space in its name.
fn make_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub dir")).unwrap();
    std::fs::write(dir.join("top.bin"), payload(70_000, 1)).unwrap();
    std::fs::write(dir.join("sub dir/inner.txt"), b"inner\n").unwrap();
}

fn assert_same_tree(a: &Path, b: &Path) {
    for rel in ["top.bin", "sub dir/inner.txt"] {
        let (x, y) = (
            std::fs::read(a.join(rel)).unwrap(),
            std::fs::read(b.join(rel)).unwrap_or_else(|e| panic!("{}: {e}", b.join(rel).display())),
        );
        assert!(
            x == y,
            "{rel} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// Copies a file and a directory into the guest and back with `backend`, and a missing file.
fn round_trip(env: &Env, name: &str, backend: &str) {
    let work = env.home.path().join(format!("_copy_{name}_{backend}"));
    std::fs::create_dir_all(&work).unwrap();
    let file = work.join("file.bin");
    let bytes = payload(300_000, 7);
    std::fs::write(&file, &bytes).unwrap();
    let tree = work.join("tree");
    make_tree(&tree);
    let guest = format!("/tmp/lima-e2e-copy-{backend}");
    env.ok(&["shell", name, "mkdir", "-p", &guest]);
    let b = format!("--backend={backend}");

    env.ok(&[
        "copy",
        &b,
        file.to_str().unwrap(),
        &format!("{name}:{guest}/file.bin"),
    ]);
    let sum = env.ok(&["shell", name, "sha256sum", &format!("{guest}/file.bin")]);
    let back = work.join("file.back");
    env.ok(&[
        "cp",
        &b,
        &format!("{name}:{guest}/file.bin"),
        back.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&back).unwrap() == bytes,
        "{backend}: file changed on the way"
    );
    assert!(!sum.is_empty());

    // To a path that does not exist yet: scp and rsync (with upstream's slashes) agree.
    env.ok(&[
        "copy",
        &b,
        "-r",
        tree.to_str().unwrap(),
        &format!("{name}:{guest}/tree"),
    ]);
    let listed = env.ok(&["shell", name, "ls", &format!("{guest}/tree/sub dir")]);
    assert_eq!(listed.trim(), "inner.txt", "{backend}");
    let tree_back = work.join("tree.back");
    env.ok(&[
        "copy",
        &b,
        "-r",
        &format!("{name}:{guest}/tree"),
        tree_back.to_str().unwrap(),
    ]);
    assert_same_tree(&tree, &tree_back);

    let out = env.limactl(&[
        "copy",
        &b,
        &format!("{name}:{guest}/missing"),
        work.to_str().unwrap(),
    ]);
    // scp exits 1; rsync 23 (partial transfer): both are ours.
    let want = if backend == "scp" { 1 } else { 23 };
    assert_eq!(
        out.status.code(),
        Some(want),
        "{backend}: copy of a missing file"
    );
}

/// Both backends and auto (which picks rsync here: it is on the host and in the guest).
pub fn check(env: &Env, name: &str) {
    round_trip(env, name, "scp");
    let host_rsync = Command::new("rsync").arg("--version").output().is_ok();
    if host_rsync {
        round_trip(env, name, "rsync");
        let file = env.home.path().join(format!("_copy_{name}_auto.txt"));
        std::fs::write(&file, "auto\n").unwrap();
        let out = env.limactl(&[
            "--debug",
            "copy",
            file.to_str().unwrap(),
            &format!("{name}:/tmp/"),
        ]);
        assert!(out.status.success());
        let err = common::stderr_text(&out.stderr);
        assert!(
            err.contains("using copy tool") && err.contains("rsync"),
            "{err}"
        );
    } else {
        eprintln!("rsync is not on this host: only the scp backend was checked");
    }
    let out = env.limactl(&["copy", "nonexistent-e2e:/x", "/tmp/"]);
    assert_eq!(out.status.code(), Some(1));
}

/// A host HTTP server reached through `tunnel`'s SOCKS proxy: the guest connects to the
/// host at the slirp gateway (192.168.5.2 is the host's 127.0.0.1).
pub fn check_tunnel(env: &Env, name: &str, socks_port: u16) {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let http_port = server.local_addr().unwrap().port();
    let serve = std::thread::spawn(move || {
        let (mut c, _) = server.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = c.read(&mut buf).unwrap();
        c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nvia-socks")
            .unwrap();
    });
    let out = env.ok(&["tunnel", "--socks-port", &socks_port.to_string(), name]);
    assert!(
        out.contains(&format!("ALL_PROXY=socks5h://127.0.0.1:{socks_port}")),
        "{out}"
    );
    let reply = socks5_get(socks_port, [192, 168, 5, 2], http_port);
    assert!(reply.ends_with("via-socks"), "{reply}");
    serve.join().unwrap();
    // The forwarding lives in the instance's ssh master (or its own ssh, gone at stop).
    let cfg = env.dir(name).join("ssh.config");
    let _ = Command::new("ssh")
        .args([
            "-F",
            cfg.to_str().unwrap(),
            &format!("lima-{name}"),
            "-O",
            "cancel",
        ])
        .args(["-D", &format!("127.0.0.1:{socks_port}")])
        .stdin(std::process::Stdio::null())
        .output();
}

/// `GET /` through a SOCKS5 proxy (no auth, IPv4 CONNECT), the whole reply as text.
fn socks5_get(socks_port: u16, ip: [u8; 4], port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", socks_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(hello, [5, 0], "SOCKS greeting");
    let mut req = vec![5, 1, 0, 1];
    req.extend(ip);
    req.extend(port.to_be_bytes());
    s.write_all(&req).unwrap();
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).unwrap();
    assert_eq!(rep[1], 0, "SOCKS CONNECT refused: {rep:?}");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// `shell --sync` on an instance with mounts: upstream's refusal, exit 1, nothing run.
pub fn check_sync_refused(env: &Env, name: &str) {
    let dir = env.home.path().join(format!("_sync_{name}/a/b"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = env.limactl(&[
        "shell",
        "--sync",
        dir.to_str().unwrap(),
        name,
        "touch",
        "synced",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr_text(&out.stderr);
    assert!(
        err.contains("cannot use `--sync` when the instance has host mounts configured"),
        "{err}"
    );
    assert!(!dir.join("synced").exists());
}
