//! The driver conformance kit on the qemu driver: internal (in process) and external (the
//! `lima-driver-qemu` binary over its socket) must answer every call the same.

use drivergrpc::conformance::{check, ConformanceConfig};
use limatype::LimaYaml;

#[test]
fn conforms_in_both_forms() {
    let yaml = |s: &str| LimaYaml::from_yaml(s).unwrap();
    let cfg = ConformanceConfig {
        configs: vec![
            ("empty".into(), LimaYaml::default()),
            ("virtiofs".into(), yaml("mountType: virtiofs\n")),
            (
                "cpuType".into(),
                yaml("cpuType:\n  aarch64: cortex-a72\narch: aarch64\n"),
            ),
            ("riscv".into(), yaml("arch: riscv64\n")),
            ("bad arch".into(), yaml("arch: mips\n")),
        ],
        lifecycle: false,
        ..Default::default()
    };
    check(
        qemu::QemuDriver::new,
        env!("CARGO_BIN_EXE_lima-driver-qemu"),
        &cfg,
    );
}
