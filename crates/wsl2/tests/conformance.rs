//! The driver conformance kit on the wsl2 driver: internal (in process) and external (the
//! `lima-driver-wsl2` binary over its socket) must answer every call the same.

use drivergrpc::conformance::{check, ConformanceConfig};
use limatype::LimaYaml;

#[test]
fn conforms_in_both_forms() {
    let yaml = |s: &str| LimaYaml::from_yaml(s).unwrap();
    let cfg = ConformanceConfig {
        configs: vec![
            ("empty".into(), LimaYaml::default()),
            ("tar".into(), yaml("images:\n- location: rootfs.tar.gz\n")),
            ("qcow2".into(), yaml("images:\n- location: disk.qcow2\n")),
            ("9p".into(), yaml("mountType: 9p\n")),
        ],
        lifecycle: true,
        ..Default::default()
    };
    check(
        wsl2::Wsl2Driver::new,
        env!("CARGO_BIN_EXE_lima-driver-wsl2"),
        &cfg,
    );
}
