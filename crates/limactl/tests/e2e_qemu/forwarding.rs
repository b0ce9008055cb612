//! Port forwarding through a real VM (issue 9's cases): servers started in the guest by a
//! small Python script (`GUEST_SERVERS`) on 127.0.0.1 and 0.0.0.0, a UDP echo through the
//! default rule, an `ignore` rule and a remapping rule, a guestSocket → hostSocket forward,
//! 256 MiB both ways with SHA-256 checked on both sides, a server that never reads, the
//! host and guest agents' descriptors, release on close, and forwarding after a reboot.
//! Host ports are `base + n`, distinct per test so instances can run in parallel.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;

use sha2::{Digest, Sha256};

use super::*;

/// Servers for the guest: `python3 SCRIPT MODE ARG`; each touches a ready file once it
/// listens. Modes: echo-lo / echo-any (TCP echo after EOF on 127.0.0.1 / 0.0.0.0), udp
/// (answers "re:" + datagram), unix (echo on a unix socket at ARG), sink (accepts, never
/// reads), big (first byte U: read to EOF and answer the SHA-256 hex; D: send 256 MiB and
/// write its SHA-256 hex to /tmp/e2e-dl.sha).
const GUEST_SERVERS: &str = r#"
import hashlib, os, socket, sys
mode, arg = sys.argv[1], sys.argv[2]
def ready():
    open('/tmp/e2e-ready-' + mode + arg.replace('/', '_'), 'w').close()
if mode == 'udp':
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('127.0.0.1', int(arg)))
    ready()
    while True:
        d, a = s.recvfrom(65535)
        s.sendto(b're:' + d, a)
if mode == 'unix':
    s = socket.socket(socket.AF_UNIX)
    if os.path.exists(arg):
        os.unlink(arg)
    s.bind(arg)
else:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0' if mode == 'echo-any' else '127.0.0.1', int(arg)))
s.listen(64)
ready()
held = []
while True:
    c, _ = s.accept()
    if mode == 'sink':
        held.append(c)
        continue
    if mode == 'big':
        cmd = c.recv(1)
        h = hashlib.sha256()
        if cmd == b'U':
            while True:
                d = c.recv(1 << 20)
                if not d:
                    break
                h.update(d)
            c.sendall(h.hexdigest().encode())
        elif cmd == b'D':
            block = os.urandom(1 << 20)
            for i in range(256):
                b = i.to_bytes(8, 'big') + block[8:]
                h.update(b)
                c.sendall(b)
            open('/tmp/e2e-dl.sha', 'w').write(h.hexdigest())
        c.close()
        continue
    data = b''
    while True:
        d = c.recv(65536)
        if not d:
            break
        data += d
    c.sendall(data)
    c.close()
"#;

const SCRIPT_PATH: &str = "/tmp/lima-e2e-servers.py";
const GUEST_SOCKET: &str = "/tmp/lima-e2e.sock";
/// The guest end of the reverse rule: connections to it reach [`reverse_host_socket`].
const REVERSE_GUEST_SOCKET: &str = "/tmp/lima-e2e-reverse.sock";

/// The host end of the reverse rule (outside the instance dir, which does not exist yet when
/// the rule is written).
fn reverse_host_socket(env: &Env) -> PathBuf {
    env.home.path().join("_rev.sock")
}

/// Host ports for one instance.
#[derive(Clone, Copy)]
pub struct Ports {
    pub base: u16,
}

impl Ports {
    fn echo_lo(self) -> u16 {
        self.base
    }
    fn echo_any(self) -> u16 {
        self.base + 1
    }
    fn udp(self) -> u16 {
        self.base + 2
    }
    fn big(self) -> u16 {
        self.base + 3
    }
    fn sink(self) -> u16 {
        self.base + 4
    }
    fn ignored(self) -> u16 {
        self.base + 5
    }
    fn remapped_guest(self) -> u16 {
        self.base + 6
    }
    fn remapped_host(self) -> u16 {
        self.base + 56
    }
}

/// Adds this module's rules to an instance's lima.yaml: ignore one port, remap another, and
/// forward the guest socket to `{{.Dir}}/sock/e2e.sock`.
pub fn add_rules(env: &Env, v: &mut serde_yaml::Value, ports: Ports) {
    let rules: serde_yaml::Value = serde_yaml::from_str(&format!(
        "- guestPort: {}\n  ignore: true\n\
         - guestPort: {}\n  hostPort: {}\n\
         - guestSocket: {GUEST_SOCKET}\n  hostSocket: \"{{{{.Dir}}}}/sock/e2e.sock\"\n\
         - guestSocket: {REVERSE_GUEST_SOCKET}\n  hostSocket: {}\n  reverse: true\n",
        ports.ignored(),
        ports.remapped_guest(),
        ports.remapped_host(),
        reverse_host_socket(env).display()
    ))
    .unwrap();
    v.as_mapping_mut()
        .unwrap()
        .insert("portForwards".into(), rules);
}

fn install_servers(env: &Env, name: &str) {
    let mut child = env
        .command(&["shell", name, "sh", "-c", &format!("cat > {SCRIPT_PATH}")])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(GUEST_SERVERS.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "installing the servers");
}

/// Starts a guest server and returns once it listens.
fn start_server(env: &Env, name: &str, mode: &str, arg: &str) -> Instant {
    let ready = format!("/tmp/e2e-ready-{mode}{}", arg.replace('/', "_"));
    env.ok(&[
        "shell",
        name,
        "sh",
        "-c",
        &format!(
            "rm -f {ready}; nohup python3 {SCRIPT_PATH} {mode} {arg} >/tmp/e2e-{mode}.log 2>&1 & \
             for i in $(seq 600); do [ -e {ready} ] && exit 0; sleep 0.05; done; \
             cat /tmp/e2e-{mode}.log; exit 1"
        ),
    ]);
    Instant::now()
}

fn echo_tcp(port: u16, msg: &[u8]) -> Option<Vec<u8>> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    c.write_all(msg).ok()?;
    c.shutdown(std::net::Shutdown::Write).ok()?; // the reply must still come back
    let mut out = Vec::new();
    c.read_to_end(&mut out).ok()?;
    Some(out)
}

/// Polls every 20 ms until `f` holds; the time it took.
fn poll(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

fn reachable_after_listen(env: &Env, name: &str, mode: &str, port: u16) -> Duration {
    start_server(env, name, mode, &port.to_string());
    let d = poll(
        &format!("guest {mode} server on host port {port}"),
        Duration::from_secs(20),
        || echo_tcp(port, b"ping").as_deref() == Some(b"ping"),
    );
    eprintln!("{mode} on guest port {port}: reachable on the host {d:?} after it listened");
    d
}

fn ha_log(env: &Env, name: &str) -> String {
    std::fs::read_to_string(env.dir(name).join("ha.stderr.log")).unwrap_or_default()
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn guest_agent_fds(env: &Env, name: &str) -> usize {
    let out = env.ok(&[
        "shell",
        name,
        "sudo",
        "sh",
        "-c",
        "ls /proc/$(pidof lima-guestagent)/fd | wc -l",
    ]);
    out.trim().parse().unwrap()
}

fn udp_ask(port: u16, msg: &[u8]) -> Option<Vec<u8>> {
    let c = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    c.connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    c.send(msg).ok()?;
    let mut buf = vec![0u8; 65536];
    let n = c.recv(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// Every forwarding case on a running instance (whose yaml got [`add_rules`]).
pub fn check(env: &Env, name: &str, ports: Ports) {
    install_servers(env, name);
    let mut delays = vec![
        reachable_after_listen(env, name, "echo-lo", ports.echo_lo()),
        reachable_after_listen(env, name, "echo-any", ports.echo_any()),
    ];
    delays.sort();
    assert!(
        delays[1] < Duration::from_secs(1),
        "guest listeners took {delays:?} to reach the host"
    );
    let log = ha_log(env, name);
    assert!(
        log.contains(&format!(
            "Forwarding TCP from 0.0.0.0:{0} to 127.0.0.1:{0}",
            ports.echo_any()
        )) || log.contains(&format!(
            "Forwarding TCP from 127.0.0.1:{0} to 127.0.0.1:{0}",
            ports.echo_any()
        )),
        "{log}"
    );

    // UDP through the default rule.
    start_server(env, name, "udp", &ports.udp().to_string());
    let d = poll("the guest's udp echo", Duration::from_secs(20), || {
        udp_ask(ports.udp(), b"hello").as_deref() == Some(b"re:hello")
    });
    eprintln!("udp echo answered {d:?} after it listened");
    for i in 0..20 {
        let q = format!("q{i}");
        let a = (0..3).find_map(|_| udp_ask(ports.udp(), q.as_bytes()));
        assert_eq!(a, Some(format!("re:{q}").into_bytes()));
    }
    assert!(
        ha_log(env, name).contains(&format!(
            "Forwarding UDP from 127.0.0.1:{0} to 127.0.0.1:{0}",
            ports.udp()
        )),
        "{}",
        ha_log(env, name)
    );

    // An ignore rule and a remapping rule, as upstream documents them.
    start_server(env, name, "echo-lo", &ports.ignored().to_string());
    start_server(env, name, "echo-lo", &ports.remapped_guest().to_string());
    poll("the remapped port", Duration::from_secs(20), || {
        echo_tcp(ports.remapped_host(), b"r").as_deref() == Some(b"r")
    });
    std::thread::sleep(Duration::from_millis(500));
    for (port, why) in [
        (ports.ignored(), "an ignored guest port"),
        (ports.remapped_guest(), "a port remapped elsewhere"),
    ] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "{why} ({port}) is forwarded on the host"
        );
    }
    let log = ha_log(env, name);
    assert!(
        !log.contains(&format!("from 127.0.0.1:{} ", ports.ignored())),
        "{log}"
    );

    // guestSocket -> hostSocket.
    let host_socket = env.dir(name).join("sock/e2e.sock");
    assert!(host_socket.exists(), "{} is missing", host_socket.display());
    start_server(env, name, "unix", GUEST_SOCKET);
    let mut got = String::new();
    poll("the socket forward", Duration::from_secs(10), || {
        let Ok(mut c) = std::os::unix::net::UnixStream::connect(&host_socket) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
        got.clear();
        c.write_all(b"via unix").is_ok()
            && c.shutdown(std::net::Shutdown::Write).is_ok()
            && c.read_to_string(&mut got).is_ok()
            && got == "via unix"
    });

    // reverse: a host socket served in the guest (over ssh -R).
    let host_end = std::os::unix::net::UnixListener::bind(reverse_host_socket(env)).unwrap();
    let echo = std::thread::spawn(move || {
        let (mut c, _) = host_end.accept().unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        c.write_all(&got).unwrap();
    });
    let client = format!(
        "import socket, time\n\
         for i in range(100):\n\
         \x20   try:\n\
         \x20       s = socket.socket(socket.AF_UNIX); s.connect('{REVERSE_GUEST_SOCKET}'); break\n\
         \x20   except OSError:\n\
         \x20       time.sleep(0.2)\n\
         s.sendall(b'from the guest'); s.shutdown(socket.SHUT_WR)\n\
         print(s.makefile('rb').read().decode())\n"
    );
    let out = env.ok(&["shell", name, "python3", "-c", &client]);
    assert_eq!(out.trim(), "from the guest", "reverse socket forward");
    echo.join().unwrap();

    // Descriptors of both agents before and after many connections.
    let ha = env.pid(name, "ha.pid").unwrap();
    let (ha_before, ga_before) = (fd_count(ha), guest_agent_fds(env, name));

    // 256 MiB each way, SHA-256 checked on both sides.
    start_server(env, name, "big", &ports.big().to_string());
    poll("the big server", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", ports.big())).is_ok()
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", ports.big())).unwrap();
    c.write_all(b"U").unwrap();
    let mut sum = Sha256::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..256 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        sum.update(&block);
        c.write_all(&block).unwrap();
    }
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    c.read_to_string(&mut answer).unwrap();
    let up = t.elapsed();
    assert_eq!(answer, hex(&sum.finalize()), "host to guest SHA-256");
    let t = Instant::now();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", ports.big())).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    c.write_all(b"D").unwrap();
    let mut sum = Sha256::new();
    let mut total = 0usize;
    loop {
        let n = c.read(&mut block).unwrap();
        if n == 0 {
            break;
        }
        sum.update(&block[..n]);
        total += n;
    }
    let down = t.elapsed();
    assert_eq!(total, 256 << 20, "guest to host length");
    let guest_sum = env.ok(&["shell", name, "cat", "/tmp/e2e-dl.sha"]);
    assert_eq!(
        guest_sum.trim(),
        hex(&sum.finalize()),
        "guest to host SHA-256"
    );
    eprintln!(
        "256 MiB host->guest in {up:?} ({:.0} MB/s), guest->host in {down:?} ({:.0} MB/s), SHA-256 equal",
        268.435456 / up.as_secs_f64(),
        268.435456 / down.as_secs_f64()
    );

    // A server that accepts and never reads stalls only its own connection.
    start_server(env, name, "sink", &ports.sink().to_string());
    poll("the sink", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", ports.sink())).is_ok()
    });
    let mut stuck = std::net::TcpStream::connect(("127.0.0.1", ports.sink())).unwrap();
    stuck
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let chunk = vec![1u8; 1 << 20];
    let mut blocked = false;
    for _ in 0..512 {
        if stuck.write_all(&chunk).is_err() {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "512 MiB went into a server that never reads");
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            echo_tcp(ports.echo_lo(), b"other").as_deref(),
            Some(&b"other"[..])
        );
    }
    eprintln!("20 echoes beside a stuck connection in {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(20));
    // Its connection lives as long as the guest server holds it (as a direct one would):
    // the server's end closes it through the tunnel.
    env.ok(&["shell", name, "pkill", "-f", "servers.py sink"]);
    let mut rest = [0u8; 16];
    stuck
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let t = Instant::now();
    let end = stuck.read(&mut rest);
    eprintln!(
        "the stuck connection ended {:?} after its server died: {end:?}",
        t.elapsed()
    );
    assert!(
        matches!(end, Ok(0))
            || end
                .as_ref()
                .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut),
        "the host side of a connection whose guest server died stayed open: {end:?}"
    );
    drop(stuck);

    for _ in 0..200 {
        assert_eq!(echo_tcp(ports.echo_any(), b"x").as_deref(), Some(&b"x"[..]));
    }
    let settle = |what: &str, f: &dyn Fn() -> usize, before: usize| {
        wait_until(what, Duration::from_secs(15), || f() <= before + 2);
    };
    settle("the host agent's descriptors", &|| fd_count(ha), ha_before);
    settle(
        "the guest agent's descriptors",
        &|| guest_agent_fds(env, name),
        ga_before,
    );
    eprintln!(
        "descriptors: host agent {ha_before} -> {}, guest agent {ga_before} -> {}",
        fd_count(ha),
        guest_agent_fds(env, name)
    );

    // The guest's clock set back years (as after a long host sleep) is put right by the
    // guest agent from the host's clock (sent every 10 s).
    env.ok(&["shell", name, "sudo", "date", "-s", "@1000000000"]);
    let d = poll(
        "the guest's clock to be set",
        Duration::from_secs(30),
        || {
            let guest: i64 = env
                .ok(&["shell", name, "date", "+%s"])
                .trim()
                .parse()
                .unwrap();
            let host = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            (guest - host).abs() <= 5
        },
    );
    eprintln!("the guest's clock was set right {d:?} after it was set back");

    // Closing the server releases the host port.
    env.ok(&[
        "shell",
        name,
        "pkill",
        "-f",
        &format!("servers.py echo-lo {}", ports.echo_lo()),
    ]);
    let d = poll("the host port's release", Duration::from_secs(10), || {
        std::net::TcpListener::bind(("127.0.0.1", ports.echo_lo())).is_ok()
    });
    eprintln!("host port released {d:?} after the guest server was killed");
    assert!(d < Duration::from_secs(3), "{d:?}");
}

/// After the VM or the host agent started again: a new guest server is forwarded.
pub fn check_again(env: &Env, name: &str, ports: Ports, why: &str) {
    install_servers(env, name);
    let d = reachable_after_listen(env, name, "echo-lo", ports.echo_lo());
    eprintln!("after {why}: forwarded {d:?} after the server listened");
    env.ok(&["shell", name, "pkill", "-f", SCRIPT_PATH]);
}

/// Reboots the guest from inside and waits for SSH to answer again.
pub fn reboot(env: &Env, name: &str) {
    // Back means a new boot id with the boot scripts done: a loaded host may take a while to
    // go down, and the old system's /run/lima-boot-done must not count.
    const CHECK: &str = "test -e /run/lima-boot-done && cat /proc/sys/kernel/random/boot_id";
    let boot_id = || {
        env.command(&["shell", name, "sh", "-c", CHECK])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let before = boot_id().expect("the guest's boot id before the reboot");
    let _ = env.limactl(&["shell", name, "sudo", "systemctl", "reboot"]);
    wait_until("the guest to come back", Duration::from_secs(400), || {
        boot_id().is_some_and(|id| id != before)
    });
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
