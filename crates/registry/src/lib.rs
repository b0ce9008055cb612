//! `registry` — layer 7.0: which VM drivers this limactl has, and which one runs a config.
//! Internal drivers are registered explicitly by the caller (limactl compiles them in by cargo
//! feature `driver-<name>`); external ones are `lima-driver-<name>` executables found in
//! `$LIMA_DRIVERS_PATH` and in `<prefix>/libexec/lima/` (see [`discovery`]). An internal
//! driver wins over an external one of the same name. External drivers are started only when a
//! caller asks for one ([`Registry::driver`], [`Registry::resolve`]): listing spawns nothing.

pub mod discovery;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use driver::{ConfigContext, DriverError, DynDriver, Filled, Os};

pub use discovery::ExternalFile;

/// Names of internal drivers to leave out (comma-separated), so that an external driver of the
/// same name is used instead; `all` leaves out every internal driver. For tests of external
/// drivers with a limactl that has them compiled in.
pub const DISABLE_INTERNAL_ENV: &str = "LIMA_DISABLE_INTERNAL_DRIVERS";

/// The drivers tried, in order, when a config has no `vmType` (as in Lima: vz on macOS, qemu
/// elsewhere; qemu also covers what the first choice refuses, e.g. a non-native arch on
/// macOS). A driver not listed here is used only when named by `vmType`.
pub fn preferred_order(os: Os) -> &'static [&'static str] {
    match os {
        Os::Darwin => &["vz", "qemu"],
        Os::Windows => &["qemu", "wsl2"],
        Os::Linux | Os::FreeBSD => &["qemu"],
    }
}

/// Makes a fresh, unconfigured driver object (one per instance: `configure` binds it).
pub type Factory = Arc<dyn Fn() -> DynDriver + Send + Sync>;

/// An internal driver as registered by the caller.
#[derive(Clone)]
pub struct Internal {
    pub name: String,
    pub factory: Factory,
}

impl Internal {
    pub fn new(name: &str, factory: impl Fn() -> DynDriver + Send + Sync + 'static) -> Self {
        Self {
            name: name.to_string(),
            factory: Arc::new(factory),
        }
    }
}

/// An external driver, started and handshaken.
pub struct Connected {
    pub driver: DynDriver,
    /// The protocol version the driver announced in its handshake.
    pub protocol_version: String,
}

/// Starts an external driver executable and speaks to it (`drivergrpc` in limactl; a fake in
/// tests). Errors say which executable failed and why, and come within seconds.
#[async_trait]
pub trait Connector: Send + Sync {
    async fn connect(&self, name: &str, path: &Path) -> driver::Result<Connected>;
}

/// The real connector: starts the executable with `drivergrpc` (ready line, handshake,
/// protocol major check, stderr into our log tagged with the driver's name).
pub struct GrpcConnector;

#[async_trait]
impl Connector for GrpcConnector {
    async fn connect(&self, _name: &str, path: &Path) -> driver::Result<Connected> {
        let d = drivergrpc::ExternalDriver::spawn(path).await?;
        let protocol_version = d.handshake().protocol.to_string();
        Ok(Connected {
            driver: Arc::new(d),
            protocol_version,
        })
    }
}

/// Where a driver comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Internal,
    External(PathBuf),
}

impl Location {
    /// `internal`, or the executable's path (as `limactl info` shows it).
    pub fn describe(&self) -> String {
        match self {
            Location::Internal => "internal".to_string(),
            Location::External(p) => p.display().to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub location: Location,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown vmType {name:?}; available drivers: {}", list_or_none(.available))]
    UnknownDriver {
        name: String,
        available: Vec<String>,
    },
    /// A driver failed to start (external) or refused the config; the message is the driver's.
    /// (`error` is not a `#[source]`: the message already includes it.)
    #[error("{}", driver_failure(.name, .location, .error))]
    Driver {
        name: String,
        location: Location,
        error: DriverError,
    },
    #[error(
        "no driver can run this config on this host (tried {}):\n{}",
        .reasons.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
        .reasons.iter().map(|(n, r)| format!("  {n}: {r}")).collect::<Vec<_>>().join("\n")
    )]
    NoneAccepted { reasons: Vec<(String, String)> },
    #[error(
        "no driver for this host: none of the preferred drivers ({}) is available (available: {}); set vmType",
        .preferred.join(", "),
        list_or_none(.available)
    )]
    NoPreferred {
        preferred: Vec<String>,
        available: Vec<String>,
    },
}

/// `driver "NAME" (LOCATION): MESSAGE`, without repeating a path the message already names.
fn driver_failure(name: &str, location: &Location, error: &DriverError) -> String {
    match location {
        Location::External(p) if error.message.contains(&p.display().to_string()) => {
            format!("driver {name:?}: {error}")
        }
        _ => format!("driver {name:?} ({}): {error}", location.describe()),
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// The driver chosen for a config.
pub struct Resolved {
    pub name: String,
    pub location: Location,
    pub driver: DynDriver,
    /// The config after the driver's `fill_config`, with `vmType` set to `name`.
    pub config: Filled,
}

/// The drivers of this process: internal ones given by the caller plus external ones found on
/// disk.
pub struct Registry {
    internal: BTreeMap<String, Factory>,
    external: BTreeMap<String, PathBuf>,
    connector: Arc<dyn Connector>,
}

impl Registry {
    /// Internal drivers as given (minus those disabled by [`DISABLE_INTERNAL_ENV`]), external
    /// ones from this process's one-time discovery, started with [`GrpcConnector`].
    pub fn new(internal: Vec<Internal>) -> Self {
        Self::with_connector(internal, Arc::new(GrpcConnector))
    }

    /// Like [`Registry::new`] with another way to start external drivers.
    pub fn with_connector(internal: Vec<Internal>, connector: Arc<dyn Connector>) -> Self {
        let disabled = std::env::var(DISABLE_INTERNAL_ENV).unwrap_or_default();
        let internal = filter_disabled(internal, &disabled);
        Self::from_parts(internal, discovery::discovered().to_vec(), connector)
    }

    /// A registry of exactly these drivers (no environment read, no discovery).
    pub fn from_parts(
        internal: Vec<Internal>,
        external: Vec<ExternalFile>,
        connector: Arc<dyn Connector>,
    ) -> Self {
        let mut map = BTreeMap::new();
        for d in internal {
            map.entry(d.name).or_insert(d.factory);
        }
        let mut ext = BTreeMap::new();
        for f in external {
            if map.contains_key(&f.name) {
                tracing::debug!(
                    "driver {:?}: internal, ignoring external {}",
                    f.name,
                    f.path.display()
                );
                continue;
            }
            ext.entry(f.name).or_insert(f.path);
        }
        Self {
            internal: map,
            external: ext,
            connector,
        }
    }

    /// Every driver, sorted by name. Starts nothing.
    pub fn list(&self) -> Vec<Entry> {
        let mut all: Vec<Entry> = self
            .internal
            .keys()
            .map(|n| Entry {
                name: n.clone(),
                location: Location::Internal,
            })
            .chain(self.external.iter().map(|(n, p)| Entry {
                name: n.clone(),
                location: Location::External(p.clone()),
            }))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn names(&self) -> Vec<String> {
        self.list().into_iter().map(|e| e.name).collect()
    }

    pub fn location(&self, name: &str) -> Option<Location> {
        if self.internal.contains_key(name) {
            Some(Location::Internal)
        } else {
            self.external
                .get(name)
                .map(|p| Location::External(p.clone()))
        }
    }

    /// A fresh driver object for `name`: built in process, or an external driver started now.
    pub async fn driver(&self, name: &str) -> Result<(DynDriver, Location), RegistryError> {
        let connected = self.connect(name).await?;
        Ok((connected.0.driver, connected.1))
    }

    /// Like [`Registry::driver`], with the protocol version (`None` for an internal driver,
    /// which speaks no protocol).
    pub async fn connect(&self, name: &str) -> Result<(Connected, Location), RegistryError> {
        if let Some(factory) = self.internal.get(name) {
            return Ok((
                Connected {
                    driver: factory(),
                    protocol_version: String::new(),
                },
                Location::Internal,
            ));
        }
        let Some(path) = self.external.get(name) else {
            return Err(RegistryError::UnknownDriver {
                name: name.to_string(),
                available: self.names(),
            });
        };
        let location = Location::External(path.clone());
        match self.connector.connect(name, path).await {
            Ok(c) => Ok((c, location)),
            Err(error) => Err(RegistryError::Driver {
                name: name.to_string(),
                location,
                error,
            }),
        }
    }

    /// Picks the driver for `config`. An explicit `vmType` is checked against that driver
    /// only; without one, the drivers of the host's [`preferred_order`] that exist are tried
    /// in order and the first whose `fill_config` + `accept_config` pass wins. A driver that
    /// cannot even start counts as refusing, with its error as the reason.
    pub async fn resolve(
        &self,
        config: &Filled,
        ctx: &ConfigContext,
    ) -> Result<Resolved, RegistryError> {
        if let Some(name) = config.vm_type.as_deref().filter(|n| !n.is_empty()) {
            return self.try_driver(name, config, ctx).await;
        }
        let preferred = preferred_order(ctx.host.os);
        let candidates: Vec<&str> = preferred
            .iter()
            .copied()
            .filter(|n| self.location(n).is_some())
            .collect();
        if candidates.is_empty() {
            return Err(RegistryError::NoPreferred {
                preferred: preferred.iter().map(|s| s.to_string()).collect(),
                available: self.names(),
            });
        }
        let mut reasons = Vec::new();
        for name in candidates {
            match self.try_driver(name, config, ctx).await {
                Ok(r) => return Ok(r),
                Err(RegistryError::Driver { error, .. }) => {
                    reasons.push((name.to_string(), error.message))
                }
                Err(other) => reasons.push((name.to_string(), other.to_string())),
            }
        }
        Err(RegistryError::NoneAccepted { reasons })
    }

    async fn try_driver(
        &self,
        name: &str,
        config: &Filled,
        ctx: &ConfigContext,
    ) -> Result<Resolved, RegistryError> {
        let (driver, location) = self.driver(name).await?;
        let fail = |error: DriverError| RegistryError::Driver {
            name: name.to_string(),
            location: location.clone(),
            error,
        };
        let mut yaml = config.yaml().clone();
        if yaml.vm_type.is_none() {
            yaml.vm_type = Some(name.to_string());
        }
        driver.fill_config(&mut yaml, ctx).await.map_err(fail)?;
        driver.accept_config(&yaml, ctx).await.map_err(fail)?;
        // A driver may only set what was unset; one that broke a filled field is refused.
        let filled = Filled::try_from(yaml).map_err(|e| {
            fail(DriverError::invalid_config(format!(
                "after the driver's fill_config: {e}"
            )))
        })?;
        Ok(Resolved {
            name: name.to_string(),
            location,
            driver,
            config: filled,
        })
    }
}

/// Drops the internal drivers named in `disabled` (comma-separated, or `all`).
pub fn filter_disabled(internal: Vec<Internal>, disabled: &str) -> Vec<Internal> {
    let names: Vec<&str> = disabled
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if names.contains(&"all") {
        return Vec::new();
    }
    internal
        .into_iter()
        .filter(|d| !names.contains(&d.name.as_str()))
        .collect()
}

#[cfg(test)]
mod tests;
