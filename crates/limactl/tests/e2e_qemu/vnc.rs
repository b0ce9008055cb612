//! `video.display: vnc` on the internal case: the host agent set a generated password
//! (`vncpassword`, 0600) and wrote the display qemu picked (`vncdisplay`, 0600); `start` said
//! where to connect; a VNC client reaches the address and is offered VNC authentication.

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
}
