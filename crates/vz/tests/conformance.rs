//! The driver conformance kit on the vz driver: internal (in process) and external (the
//! `lima-driver-vz` binary over its socket) must answer every call the same.

use drivergrpc::conformance::{check, ConformanceConfig};
use limatype::LimaYaml;

#[test]
fn conforms_in_both_forms() {
    let yaml = |s: &str| LimaYaml::from_yaml(s).unwrap();
    let cfg = ConformanceConfig {
        configs: vec![
            ("empty".into(), LimaYaml::default()),
            ("vz".into(), yaml("vmType: vz\n")),
            ("9p".into(), yaml("mountType: 9p\n")),
            ("x86 on arm".into(), yaml("arch: x86_64\n")),
            (
                "asif".into(),
                yaml("vmOpts:\n  vz:\n    diskImageFormat: asif\n"),
            ),
            ("rosetta".into(), yaml("rosetta:\n  enabled: true\n")),
        ],
        lifecycle: true,
        ..Default::default()
    };
    check(
        vz::VzDriver::new,
        env!("CARGO_BIN_EXE_lima-driver-vz"),
        &cfg,
    );
}
