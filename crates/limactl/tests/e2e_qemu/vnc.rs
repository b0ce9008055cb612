//! `video.display: vnc` on the internal case: the host agent set a generated password
//! (`vncpassword`, 0600) and wrote the display qemu picked (`vncdisplay`, 0600); `start` said
//! where to connect; a VNC client reaches the address, logs in with the generated password
//! (VNC authentication: DES of the server's challenge) and is refused with a wrong one.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

use super::*;

/// The yaml edit: a VNC display on 127.0.0.1 (upstream's default range).
pub fn add_to_yaml(v: &mut serde_yaml::Value) {
    v["video"]["display"] = "vnc".into();
}

/// While running; `start_output` is the first start's stderr.
pub fn check(env: &Env, name: &str, start_output: &str) {
    let dir = env.dir(name);
    for f in ["vncdisplay", "vncpassword"] {
        let mode = std::fs::metadata(dir.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f} mode {mode:o}");
    }
    let password = std::fs::read_to_string(dir.join("vncpassword")).unwrap();
    assert_eq!(password.len(), 8, "{password:?}");
    let display = std::fs::read_to_string(dir.join("vncdisplay")).unwrap();
    let (host, num) = display.trim().rsplit_once(':').expect("HOST:N");
    let port = 5900 + num.parse::<u16>().expect("display number");
    assert!(
        start_output.contains(&format!("vnc://{host}:{port}")),
        "start did not say where to connect: {start_output}"
    );
    assert_eq!(
        vnc_login(host, port, password.as_bytes()),
        0,
        "the password must work"
    );
    assert_ne!(
        vnc_login(host, port, b"wrongpw!"),
        0,
        "a wrong password must not"
    );
}

/// An RFB 3.8 handshake with VNC authentication; the server's SecurityResult (0: OK).
fn vnc_login(host: &str, port: u16, password: &[u8]) -> u32 {
    use des::cipher::{BlockEncrypt, KeyInit};
    let mut s = std::net::TcpStream::connect((host, port)).expect("VNC port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut version = [0u8; 12];
    s.read_exact(&mut version).unwrap();
    assert!(version.starts_with(b"RFB 003."), "{version:?}");
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut n = [0u8; 1];
    s.read_exact(&mut n).unwrap();
    assert!(n[0] > 0, "no security types offered");
    let mut types = vec![0u8; n[0] as usize];
    s.read_exact(&mut types).unwrap();
    assert!(
        types.contains(&2),
        "VNC authentication (2) not offered: {types:?}"
    );
    s.write_all(&[2]).unwrap();
    let mut challenge = [0u8; 16];
    s.read_exact(&mut challenge).unwrap();
    // The DES key is the password (8 bytes, zero-padded) with each byte's bits reversed.
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password) {
        *k = p.reverse_bits();
    }
    let cipher = des::Des::new_from_slice(&key).unwrap();
    for block in challenge.chunks_mut(8) {
        cipher.encrypt_block(block.into());
    }
    s.write_all(&challenge).unwrap();
    let mut result = [0u8; 4];
    s.read_exact(&mut result).unwrap();
    u32::from_be_bytes(result)
}
