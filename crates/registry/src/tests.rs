//! Unit tests of the registry: discovery, precedence, resolution and its errors.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use driver::{
    Arch, Driver, ErrorKind, ErrorStream, HostFacts, Info, InstanceConfig, LimaYaml, Os,
    Result as DResult,
};

use super::*;

/// A driver that accepts configs only on `host_os`, and fills `mountType` when unset.
struct Fake {
    name: String,
    host_os: &'static str,
}

#[async_trait]
impl Driver for Fake {
    async fn info(&self) -> DResult<Info> {
        Ok(Info {
            name: self.name.clone(),
            ..Default::default()
        })
    }
    async fn configure(&self, _instance: InstanceConfig) -> DResult<()> {
        Ok(())
    }
    async fn fill_config(&self, config: &mut LimaYaml, _ctx: &ConfigContext) -> DResult<()> {
        config.mount_type.get_or_insert_with(|| "9p".into());
        Ok(())
    }
    async fn accept_config(&self, config: &LimaYaml, ctx: &ConfigContext) -> DResult<()> {
        if config.vm_type.as_deref() != Some(self.name.as_str()) {
            return Err(DriverError::invalid_config("vmType not filled"));
        }
        if ctx.host.os.as_str() != self.host_os {
            return Err(DriverError::invalid_config(format!(
                "{} needs {}; this host is {}",
                self.name, self.host_os, ctx.host.os
            )));
        }
        Ok(())
    }
    async fn validate(&self) -> DResult<()> {
        Ok(())
    }
    async fn create(&self) -> DResult<()> {
        Ok(())
    }
    async fn create_disk(&self) -> DResult<()> {
        Ok(())
    }
    async fn start(&self) -> DResult<ErrorStream> {
        Ok(Box::pin(futures::stream::empty()))
    }
    async fn stop(&self) -> DResult<()> {
        Ok(())
    }
    async fn delete(&self) -> DResult<()> {
        Ok(())
    }
}

fn internal(name: &'static str, host_os: &'static str) -> Internal {
    Internal::new(name, move || {
        Arc::new(Fake {
            name: name.into(),
            host_os,
        })
    })
}

/// Records which executables were started; `broken` ones fail to start.
#[derive(Default)]
struct FakeConnector {
    started: Mutex<Vec<String>>,
    count: AtomicUsize,
    broken: Vec<&'static str>,
}

#[async_trait]
impl Connector for FakeConnector {
    async fn connect(&self, name: &str, path: &Path) -> DResult<Connected> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.started
            .lock()
            .unwrap()
            .push(path.display().to_string());
        if self.broken.contains(&name) {
            return Err(DriverError::unavailable(format!(
                "{} exited before opening its socket",
                path.display()
            )));
        }
        Ok(Connected {
            driver: Arc::new(Fake {
                name: name.to_string(),
                host_os: "Linux",
            }),
            protocol_version: "1.0".into(),
        })
    }
}

fn ext(name: &str) -> ExternalFile {
    ExternalFile {
        name: name.into(),
        path: PathBuf::from(format!("/drivers/lima-driver-{name}")),
    }
}

fn ctx(os: Os) -> ConfigContext {
    ConfigContext::for_host(HostFacts::pretend(os, Arch::Aarch64))
}

fn registry(
    internal_: Vec<Internal>,
    external: Vec<ExternalFile>,
) -> (Registry, Arc<FakeConnector>) {
    let conn = Arc::new(FakeConnector {
        broken: vec!["broken"],
        ..Default::default()
    });
    (
        Registry::from_parts(internal_, external, conn.clone()),
        conn,
    )
}

#[test]
fn internal_wins_and_listing_starts_nothing() {
    let (reg, conn) = registry(
        vec![internal("qemu", "Linux")],
        vec![ext("qemu"), ext("vz"), ext("vz")],
    );
    assert_eq!(
        reg.list(),
        vec![
            Entry {
                name: "qemu".into(),
                location: Location::Internal
            },
            Entry {
                name: "vz".into(),
                location: Location::External("/drivers/lima-driver-vz".into())
            },
        ]
    );
    assert_eq!(reg.location("qemu"), Some(Location::Internal));
    assert_eq!(reg.location("nope"), None);
    assert_eq!(conn.count.load(Ordering::SeqCst), 0);
}

/// `config` with the defaults filled (as the instance flow hands it to the registry).
fn filled(config: LimaYaml) -> limatype::Filled {
    let host = HostFacts::pretend(Os::Linux, Arch::X86_64);
    limadefaults::fill_in_memory(&config, &host, "t").unwrap()
}

#[tokio::test]
async fn unknown_vm_type_lists_available_drivers() {
    let (reg, conn) = registry(vec![internal("qemu", "Linux")], vec![ext("vz")]);
    let cfg = LimaYaml {
        vm_type: Some("hyperv".into()),
        ..Default::default()
    };
    let err = reg
        .resolve(&filled(cfg.clone()), &ctx(Os::Linux))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::UnknownDriver { .. }), "{msg}");
    assert!(msg.contains("\"hyperv\""), "{msg}");
    assert!(msg.contains("qemu, vz"), "{msg}");
    assert_eq!(conn.count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn explicit_vm_type_is_checked_against_that_driver_only() {
    let (reg, conn) = registry(
        vec![internal("qemu", "Linux"), internal("vz", "Darwin")],
        vec![ext("krunkit")],
    );
    let cfg = LimaYaml {
        vm_type: Some("vz".into()),
        ..Default::default()
    };
    let err = reg
        .resolve(&filled(cfg.clone()), &ctx(Os::Linux))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    match &err {
        RegistryError::Driver { name, error, .. } => {
            assert_eq!(name, "vz");
            assert_eq!(error.kind, ErrorKind::InvalidConfig);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(msg.contains("vz needs Darwin; this host is Linux"), "{msg}");
    assert!(!msg.contains("qemu"), "{msg}");
    assert_eq!(conn.count.load(Ordering::SeqCst), 0);

    let ok = reg
        .resolve(&filled(cfg.clone()), &ctx(Os::Darwin))
        .await
        .unwrap();
    assert_eq!(ok.name, "vz");
    assert_eq!(
        ok.config.mount_type,
        Some(limatype::MountType::NineP),
        "fill_config ran"
    );
}

#[tokio::test]
async fn no_vm_type_tries_host_preference_order() {
    let (reg, _) = registry(
        vec![internal("qemu", "Darwin"), internal("vz", "Darwin")],
        vec![],
    );
    let r = reg
        .resolve(&filled(LimaYaml::default()), &ctx(Os::Darwin))
        .await
        .unwrap();
    assert_eq!(r.name, "vz");
    assert_eq!(r.config.vm_type.as_deref(), Some("vz"));
    assert_eq!(r.location, Location::Internal);

    // vz refuses (needs "Linux" here): qemu, second in macOS's order, is chosen.
    let (reg, _) = registry(
        vec![internal("qemu", "Darwin"), internal("vz", "Linux")],
        vec![],
    );
    let r = reg
        .resolve(&filled(LimaYaml::default()), &ctx(Os::Darwin))
        .await
        .unwrap();
    assert_eq!(r.name, "qemu");
}

#[tokio::test]
async fn none_accepting_gives_each_reason() {
    let (reg, _) = registry(
        vec![internal("qemu", "Linux"), internal("vz", "Linux")],
        vec![ext("broken")],
    );
    let err = reg
        .resolve(&filled(LimaYaml::default()), &ctx(Os::Darwin))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::NoneAccepted { .. }), "{msg}");
    assert!(msg.contains("tried vz, qemu"), "{msg}");
    assert!(
        msg.contains("  vz: vz needs Linux; this host is Darwin"),
        "{msg}"
    );
    assert!(
        msg.contains("  qemu: qemu needs Linux; this host is Darwin"),
        "{msg}"
    );
}

#[tokio::test]
async fn drivers_outside_the_preference_are_not_auto_chosen() {
    let (reg, conn) = registry(vec![internal("krunkit", "Linux")], vec![ext("other")]);
    let err = reg
        .resolve(&filled(LimaYaml::default()), &ctx(Os::Linux))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(msg.contains("preferred drivers (qemu)"), "{msg}");
    assert!(msg.contains("available: krunkit, other"), "{msg}");
    assert_eq!(conn.count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn external_drivers_start_lazily_and_failures_name_the_file() {
    let (reg, conn) = registry(
        vec![internal("vz", "Darwin")],
        vec![ext("qemu"), ext("broken")],
    );
    // Resolving on Linux needs qemu only: the broken driver is never started.
    let r = reg
        .resolve(&filled(LimaYaml::default()), &ctx(Os::Linux))
        .await
        .unwrap();
    assert_eq!(r.name, "qemu");
    assert_eq!(
        r.location,
        Location::External("/drivers/lima-driver-qemu".into())
    );
    assert_eq!(
        *conn.started.lock().unwrap(),
        vec!["/drivers/lima-driver-qemu".to_string()]
    );

    let err = reg.driver("broken").await.err().unwrap().to_string();
    assert!(
        err.contains("driver \"broken\": /drivers/lima-driver-broken exited"),
        "{err}"
    );
    assert!(err.contains("exited before opening its socket"), "{err}");
    // The other drivers still work.
    assert!(reg.driver("vz").await.is_ok());
}

#[tokio::test]
async fn connect_reports_protocol_version_of_external_only() {
    let (reg, _) = registry(vec![internal("vz", "Darwin")], vec![ext("qemu")]);
    let (c, loc) = reg.connect("qemu").await.unwrap();
    assert_eq!(c.protocol_version, "1.0");
    assert!(matches!(loc, Location::External(_)));
    let (c, loc) = reg.connect("vz").await.unwrap();
    assert_eq!(c.protocol_version, "");
    assert_eq!(loc, Location::Internal);
}

#[test]
fn disabling_internal_drivers() {
    let all = || vec![internal("qemu", "Linux"), internal("vz", "Darwin")];
    let names = |v: Vec<Internal>| v.into_iter().map(|d| d.name).collect::<Vec<_>>();
    assert_eq!(names(filter_disabled(all(), "")), vec!["qemu", "vz"]);
    assert_eq!(names(filter_disabled(all(), " qemu ,x")), vec!["vz"]);
    assert!(filter_disabled(all(), "all").is_empty());

    // A disabled internal driver gives way to the external one.
    let conn = Arc::new(FakeConnector::default());
    let reg = Registry::from_parts(filter_disabled(all(), "qemu"), vec![ext("qemu")], conn);
    assert_eq!(
        reg.location("qemu"),
        Some(Location::External("/drivers/lima-driver-qemu".into()))
    );
}

#[test]
fn preference_orders() {
    assert_eq!(preferred_order(Os::Darwin), ["vz", "qemu"]);
    assert_eq!(preferred_order(Os::Linux), ["qemu"]);
    assert_eq!(preferred_order(Os::Windows), ["qemu", "wsl2"]);
    assert_eq!(preferred_order(Os::FreeBSD), ["qemu"]);
}

/// The real connector on executables that are not drivers: a clear error naming the file,
/// quickly, and the registry keeps working.
#[cfg(unix)]
#[tokio::test]
async fn grpc_connector_reports_broken_executables() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let mk = |name: &str, body: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        ExternalFile {
            name: name.trim_start_matches("lima-driver-").into(),
            path: p,
        }
    };
    let crash = mk("lima-driver-crash", "echo oops >&2; exit 3");
    let garbage = mk("lima-driver-garbage", "echo hello world; sleep 5");
    let reg = Registry::from_parts(
        vec![internal("qemu", "Linux")],
        vec![crash.clone(), garbage.clone()],
        Arc::new(GrpcConnector),
    );
    let started = std::time::Instant::now();
    for f in [&crash, &garbage] {
        let err = reg.driver(&f.name).await.err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains(&f.path.display().to_string()), "{msg}");
        match err {
            RegistryError::Driver { error, .. } => {
                assert_eq!(error.kind, ErrorKind::Unavailable, "{msg}")
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(reg.driver("qemu").await.is_ok());
}
