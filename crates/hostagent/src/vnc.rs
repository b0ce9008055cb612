//! `video.display: vnc`: once the VM runs, a generated password is set through the driver
//! (`change_display_password`) and written to `vncpassword`, the display (with the port qemu
//! picked from a `to=` range, `display_connection`) to `vncdisplay`, both 0600, and the
//! address is logged as upstream's host agent does. Internal and external drivers alike.

use std::io::Read;
use std::path::Path;

use driver::{Driver, DriverError};
use limatype::filenames;

#[derive(Debug, thiserror::Error)]
pub enum VncError {
    #[error("field `video.vnc.display`: expected HOST:DISPLAY[,OPTIONS] or unix:PATH[,OPTIONS], got {0:?}")]
    BadDisplay(String),
    #[error("generating the VNC password: {0}")]
    Random(#[source] std::io::Error),
    #[error("driver {call}: {source}")]
    Driver {
        call: &'static str,
        #[source]
        source: DriverError,
    },
    #[error("the driver's VNC port {0:?} is not a number")]
    BadPort(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Where `video.vnc.display` listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VncAddr {
    /// `HOST:N` (TCP port 5900+N); `range` when the options have `to=` (qemu picks the port).
    Tcp { host: String, num: u16, range: bool },
    /// `unix:PATH`.
    Unix(String),
}

/// Parses `video.vnc.display` (upstream's default `127.0.0.1:0,to=9`).
pub fn parse_display(display: &str) -> Result<VncAddr, VncError> {
    let bad = || VncError::BadDisplay(display.to_string());
    let (addr, options) = display.split_once(',').unwrap_or((display, ""));
    if let Some(path) = addr.strip_prefix("unix:") {
        return Some(VncAddr::Unix(path.to_string()))
            .filter(|_| !path.is_empty())
            .ok_or_else(bad);
    }
    let (host, num) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(VncAddr::Tcp {
        host: host.to_string(),
        num: num.parse().map_err(|_| bad())?,
        range: options.split(',').any(|o| o.starts_with("to=")),
    })
}

/// `len` letters and digits (no symbols, easy to copy), at least a quarter of them digits as
/// upstream's generator makes them.
pub fn generate_password(len: usize) -> Result<String, VncError> {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(VncError::Random)?;
    let digits = len / 4;
    Ok(bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if i < digits {
                (b'0' + b % 10) as char
            } else {
                LETTERS[*b as usize % LETTERS.len()] as char
            }
        })
        .collect())
}

/// What [`setup`] wrote: the `vncdisplay` text and the URL to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VncInfo {
    pub display: String,
    pub url: String,
}

/// The display text and URL for `addr` once the port is known.
pub fn describe(addr: &VncAddr, port: u16) -> VncInfo {
    match addr {
        VncAddr::Tcp { host, .. } => {
            let h = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            VncInfo {
                display: format!("{h}:{}", port.saturating_sub(5900)),
                url: format!("vnc://{h}:{port}"),
            }
        }
        VncAddr::Unix(path) => VncInfo {
            display: format!("unix:{path}"),
            url: format!("unix:{path}"),
        },
    }
}

/// Sets a new password on the VM's display and writes `vncpassword` and `vncdisplay`.
pub async fn setup(vm: &dyn Driver, dir: &Path, display: &str) -> Result<VncInfo, VncError> {
    let addr = parse_display(display)?;
    let password = generate_password(8)?;
    vm.change_display_password(&password)
        .await
        .map_err(|source| VncError::Driver {
            call: "change_display_password",
            source,
        })?;
    let pwd_file = dir.join(filenames::VNC_PASSWORD_FILE);
    store::write_private_file(&pwd_file, password.as_bytes())?;
    let port = match &addr {
        VncAddr::Tcp { range: true, .. } => {
            let service = vm
                .display_connection()
                .await
                .map_err(|source| VncError::Driver {
                    call: "display_connection",
                    source,
                })?;
            service
                .trim()
                .parse()
                .map_err(|_| VncError::BadPort(service))?
        }
        VncAddr::Tcp { num, .. } => 5900 + num,
        VncAddr::Unix(_) => 0,
    };
    let info = describe(&addr, port);
    let display_file = dir.join(filenames::VNC_DISPLAY_FILE);
    store::write_private_file(&display_file, info.display.as_bytes())?;
    tracing::info!("VNC server running at {} <{}>", info.display, info.url);
    tracing::info!("VNC Display: `{}`", display_file.display());
    tracing::info!("VNC Password: `{}`", pwd_file.display());
    Ok(info)
}

/// Removes `vncdisplay` and `vncpassword` once the VM is gone (as upstream's qemu driver).
pub fn remove_files(dir: &Path) {
    for f in [filenames::VNC_DISPLAY_FILE, filenames::VNC_PASSWORD_FILE] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays() {
        assert_eq!(
            parse_display("127.0.0.1:0,to=9").unwrap(),
            VncAddr::Tcp {
                host: "127.0.0.1".into(),
                num: 0,
                range: true
            }
        );
        assert_eq!(
            parse_display("0.0.0.0:3").unwrap(),
            VncAddr::Tcp {
                host: "0.0.0.0".into(),
                num: 3,
                range: false
            }
        );
        assert_eq!(
            parse_display("unix:/tmp/v.sock,lossy=on").unwrap(),
            VncAddr::Unix("/tmp/v.sock".into())
        );
        for bad in ["", "nonsense", "host:x", "unix:"] {
            let e = parse_display(bad).unwrap_err().to_string();
            assert!(e.contains("video.vnc.display"), "{e}");
        }
    }

    #[test]
    fn described_as_upstream() {
        let a = parse_display("127.0.0.1:0,to=9").unwrap();
        assert_eq!(
            describe(&a, 5902),
            VncInfo {
                display: "127.0.0.1:2".into(),
                url: "vnc://127.0.0.1:5902".into()
            }
        );
        let u = parse_display("unix:/i/vnc.sock").unwrap();
        assert_eq!(describe(&u, 0).display, "unix:/i/vnc.sock");
    }

    #[test]
    fn passwords_are_alphanumeric_and_differ() {
        let a = generate_password(8).unwrap();
        let b = generate_password(8).unwrap();
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert!(a.chars().filter(char::is_ascii_digit).count() >= 2, "{a}");
        assert_ne!(a, b);
    }

    /// A driver with a VNC display: records the password, answers with a port.
    struct Display {
        password: std::sync::Mutex<String>,
        port: &'static str,
    }

    #[async_trait::async_trait]
    impl Driver for Display {
        async fn info(&self) -> driver::Result<driver::Info> {
            Ok(driver::Info::default())
        }
        async fn configure(&self, _: driver::InstanceConfig) -> driver::Result<()> {
            Ok(())
        }
        async fn accept_config(
            &self,
            _: &driver::LimaYaml,
            _: &driver::ConfigContext,
        ) -> driver::Result<()> {
            Ok(())
        }
        async fn validate(&self) -> driver::Result<()> {
            Ok(())
        }
        async fn create(&self) -> driver::Result<()> {
            Ok(())
        }
        async fn create_disk(&self) -> driver::Result<()> {
            Ok(())
        }
        async fn start(&self) -> driver::Result<driver::ErrorStream> {
            Ok(Box::pin(futures::stream::empty()))
        }
        async fn stop(&self) -> driver::Result<()> {
            Ok(())
        }
        async fn delete(&self) -> driver::Result<()> {
            Ok(())
        }
        async fn change_display_password(&self, password: &str) -> driver::Result<()> {
            *self.password.lock().unwrap() = password.to_string();
            Ok(())
        }
        async fn display_connection(&self) -> driver::Result<String> {
            Ok(self.port.to_string())
        }
    }

    #[tokio::test]
    async fn setup_writes_private_files_with_the_drivers_port() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let vm = Display {
            password: Default::default(),
            port: "5903",
        };
        let info = setup(&vm, dir.path(), "127.0.0.1:0,to=9").await.unwrap();
        assert_eq!(info.url, "vnc://127.0.0.1:5903");
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert_eq!(read("vncdisplay"), "127.0.0.1:3");
        assert_eq!(read("vncpassword"), *vm.password.lock().unwrap());
        for f in ["vncdisplay", "vncpassword"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        // Without `to=` the port is the display's own; the driver is not asked.
        let vm = Display {
            password: Default::default(),
            port: "not a port",
        };
        let info = setup(&vm, dir.path(), "127.0.0.1:1").await.unwrap();
        assert_eq!(info.url, "vnc://127.0.0.1:5901");
        let e = setup(&vm, dir.path(), "127.0.0.1:1,to=5")
            .await
            .unwrap_err();
        assert!(matches!(e, VncError::BadPort(_)), "{e}");
        remove_files(dir.path());
        assert!(!dir.path().join("vncpassword").exists());
    }
}
