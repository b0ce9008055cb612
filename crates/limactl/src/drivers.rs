//! The drivers of this limactl: those compiled in (cargo features `driver-<name>`, all on by
//! default; `cargo xtask build --external a,b` turns some off and ships them as
//! `libexec/lima/lima-driver-<name>` instead) plus external ones the registry discovers.

use std::sync::OnceLock;

/// The internal drivers, by feature.
pub fn internal() -> Vec<registry::Internal> {
    #[allow(unused_mut)]
    let mut v: Vec<registry::Internal> = Vec::new();
    #[cfg(feature = "driver-qemu")]
    v.push(registry::Internal::new(qemu::NAME, || {
        std::sync::Arc::new(qemu::QemuDriver::new())
    }));
    #[cfg(feature = "driver-vz")]
    v.push(registry::Internal::new(vz::NAME, || {
        std::sync::Arc::new(vz::VzDriver::new())
    }));
    #[cfg(feature = "driver-wsl2")]
    v.push(registry::Internal::new(wsl2::NAME, || {
        std::sync::Arc::new(wsl2::Wsl2Driver::new())
    }));
    #[cfg(feature = "driver-krunkit")]
    v.push(registry::Internal::new(krunkit::NAME, || {
        std::sync::Arc::new(krunkit::KrunkitDriver::new())
    }));
    v
}

/// This process's registry (external drivers discovered once, started only when used).
pub fn registry() -> &'static registry::Registry {
    static REGISTRY: OnceLock<registry::Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| registry::Registry::new(internal()))
}
