//! The declared layer table: the single source of truth for which workspace crate may depend
//! on which. `cargo xtask check-layers` checks `cargo metadata` against it, and `deny.toml`'s
//! `wrappers` lists must agree with it (a test checks that they do).

/// What a crate is, beyond its layer number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Ordinary host-side library or binary.
    Host,
    /// A VM driver: may not depend on another driver, the registry, the host agent or limactl.
    Driver,
    /// Runs inside the guest: may depend on no host-side crate (only layer-1 types).
    Guest,
    /// A layer-1 library with no workspace deps used on both sides: guest crates may use it
    /// (`limayq`: the guest agent runs `yq` provisioning steps with it, as upstream's does).
    Shared,
    /// Build tooling (xtask, fuzz): outside the layering, but nothing may depend on it.
    Tooling,
}

pub struct Layer {
    pub crate_name: &'static str,
    /// (layer, sub-layer): a dependency must sort strictly lower. Sub-layers order the
    /// host-side services of layer 7 (the host agent uses the others).
    pub layer: (u8, u8),
    pub kind: Kind,
    pub owns: &'static str,
}

/// Layers bottom up; a crate may use only crates of a strictly lower (layer, sub-layer).
/// Written for the planned crates too, so a new crate only needs its row to exist.
pub const LAYERS: &[Layer] = &[
    Layer {
        crate_name: "limatype",
        layer: (1, 0),
        kind: Kind::Host,
        owns: "lima.yaml and instance types, well-known file names",
    },
    Layer {
        crate_name: "osutil",
        layer: (1, 0),
        kind: Kind::Host,
        owns: "small host facts: executable files, live processes",
    },
    Layer {
        crate_name: "limayq",
        layer: (1, 0),
        kind: Kind::Shared,
        owns: "yq expressions over YAML/JSON (jaq), edit flags, comment-keeping lima.yaml edits",
    },
    Layer {
        crate_name: "limadefaults",
        layer: (2, 0),
        kind: Kind::Host,
        owns: "default values and their precedence",
    },
    Layer {
        crate_name: "limavalidate",
        layer: (2, 0),
        kind: Kind::Host,
        owns: "driver-independent validation",
    },
    Layer {
        crate_name: "limaload",
        layer: (3, 0),
        kind: Kind::Host,
        owns: "locators, templates, base: composition, then defaults and validation",
    },
    Layer {
        crate_name: "driver",
        layer: (4, 0),
        kind: Kind::Host,
        owns: "the Driver trait, Info, capability flags",
    },
    Layer {
        crate_name: "drivergrpc",
        layer: (5, 0),
        kind: Kind::Host,
        owns: "gRPC server and client for external drivers, handshake, conformance kit",
    },
    Layer {
        crate_name: "qemu",
        layer: (6, 0),
        kind: Kind::Driver,
        owns: "the QEMU driver",
    },
    Layer {
        crate_name: "vz",
        layer: (6, 0),
        kind: Kind::Driver,
        owns: "the macOS Virtualization.framework driver",
    },
    Layer {
        crate_name: "wsl2",
        layer: (6, 0),
        kind: Kind::Driver,
        owns: "the Windows WSL2 driver",
    },
    Layer {
        crate_name: "krunkit",
        layer: (6, 0),
        kind: Kind::Driver,
        owns: "the krunkit (libkrun) driver",
    },
    Layer {
        crate_name: "registry",
        layer: (7, 0),
        kind: Kind::Host,
        owns: "internal and external driver discovery",
    },
    Layer {
        crate_name: "downloader",
        layer: (7, 0),
        kind: Kind::Host,
        owns: "image downloads, cache, digests",
    },
    Layer {
        crate_name: "cidata",
        layer: (7, 0),
        kind: Kind::Host,
        owns: "the cloud-init NoCloud seed ISO",
    },
    Layer {
        crate_name: "store",
        layer: (7, 0),
        kind: Kind::Host,
        owns: "the instance store under $LIMA_HOME",
    },
    Layer {
        crate_name: "sshutil",
        layer: (7, 1),
        kind: Kind::Host,
        owns: "SSH keys, ssh.config and the OpenSSH client",
    },
    Layer {
        crate_name: "portfwd",
        layer: (7, 0),
        kind: Kind::Host,
        owns: "port forwarding",
    },
    Layer {
        crate_name: "hostdns",
        layer: (7, 0),
        kind: Kind::Host,
        owns: "the host agent's DNS server for hostResolver",
    },
    Layer {
        crate_name: "hostagent",
        layer: (7, 2),
        kind: Kind::Host,
        owns: "the per-instance host agent",
    },
    Layer {
        crate_name: "instance",
        layer: (7, 3),
        kind: Kind::Host,
        owns: "one instance's flow: create, start, stop, delete, inspect",
    },
    Layer {
        crate_name: "limactl",
        layer: (8, 0),
        kind: Kind::Host,
        owns: "the CLI",
    },
    Layer {
        crate_name: "gamux",
        layer: (1, 0),
        kind: Kind::Guest,
        owns: "the guest agent's wire protocol: framed streams multiplexed over one byte channel",
    },
    Layer {
        crate_name: "guestagent",
        layer: (1, 1),
        kind: Kind::Guest,
        owns: "the agent inside the VM",
    },
    Layer {
        crate_name: "xtask",
        layer: (0, 0),
        kind: Kind::Tooling,
        owns: "build, dist, checks, images, benchmarks",
    },
    Layer {
        crate_name: "limaload-fuzz",
        layer: (0, 0),
        kind: Kind::Tooling,
        owns: "cargo-fuzz targets",
    },
];

/// The VM drivers (`Kind::Driver` rows), in table order: the one list every other place that
/// names the drivers derives from or is checked against (`KNOWN_DRIVERS` of `cargo xtask
/// build`; limactl's `driver-<name>` features and `registry::Internal` lines, checked by the
/// tidy test).
pub const DRIVERS: &[&str] = &driver_names::<{ count_drivers() }>();

const fn count_drivers() -> usize {
    let (mut i, mut n) = (0, 0);
    while i < LAYERS.len() {
        if matches!(LAYERS[i].kind, Kind::Driver) {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn driver_names<const N: usize>() -> [&'static str; N] {
    let mut out = [""; N];
    let (mut i, mut n) = (0, 0);
    while i < LAYERS.len() {
        if matches!(LAYERS[i].kind, Kind::Driver) {
            out[n] = LAYERS[i].crate_name;
            n += 1;
        }
        i += 1;
    }
    out
}

/// Crates that drivers must never reach, whatever their layer.
pub const FORBIDDEN_FOR_DRIVERS: &[&str] = &["registry", "hostagent", "limactl"];
