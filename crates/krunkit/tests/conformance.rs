//! The driver conformance kit on the krunkit driver: internal (in process) and external (the
//! `lima-driver-krunkit` binary over its socket) must answer every call the same.

use drivergrpc::conformance::{check, ConformanceConfig};
use limatype::LimaYaml;

#[test]
fn conforms_in_both_forms() {
    let yaml = |s: &str| LimaYaml::from_yaml(s).unwrap();
    let cfg = ConformanceConfig {
        configs: vec![
            ("empty".into(), LimaYaml::default()),
            ("virtiofs".into(), yaml("mountType: virtiofs\n")),
            ("9p".into(), yaml("mountType: 9p\n")),
            ("nested".into(), yaml("nestedVirtualization: true\n")),
        ],
        lifecycle: true,
        ..Default::default()
    };
    check(
        krunkit::KrunkitDriver::new,
        env!("CARGO_BIN_EXE_lima-driver-krunkit"),
        &cfg,
    );
}
