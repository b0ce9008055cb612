//! The conformance kit run on the test fixture driver, in both forms, plus the kit's own
//! failure detection and a driver killed in the middle of a call.
#![cfg(unix)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use driver::{
    ConfigContext, Driver, ErrorKind, ErrorStream, Info, InstanceConfig, LimaYaml, Result,
};
use drivergrpc::conformance::{self, testfake, ConformanceConfig};
use drivergrpc::ExternalDriver;

const BIN: &str = env!("CARGO_BIN_EXE_lima-driver-testfake");

fn config() -> ConformanceConfig {
    let yaml = |s: &str| serde_yaml::from_str::<LimaYaml>(s).unwrap();
    ConformanceConfig {
        configs: vec![
            ("empty".into(), LimaYaml::default()),
            ("virtiofs".into(), yaml("mountType: virtiofs\n")),
            ("qemu".into(), yaml("vmType: qemu\n")),
            ("riscv".into(), yaml("arch: riscv64\ncpus: 3\n")),
        ],
        instance_config: yaml("cpus: 4\nmemory: 2GiB\n"),
        lifecycle: true,
        start_stream_window: Duration::from_secs(1),
        ..Default::default()
    }
}

#[test]
fn testfake_conforms_in_both_forms() {
    let report = conformance::check(testfake::TestFake::new, BIN, &config());
    let all: String = report
        .external
        .iter()
        .map(|s| format!("{}: {}\n", s.call, s.outcome))
        .collect();
    println!("{all}");
    // The suite really exercised errors of many kinds across the wire, not only successes.
    for kind in [
        "invalid_config",
        "failed_precondition",
        "not_found",
        "already_exists",
        "unsupported",
    ] {
        assert!(
            all.contains(&format!("err[{kind}]")),
            "no {kind} error in:\n{all}"
        );
    }
    for msg in testfake::START_STREAM_ERRORS {
        assert!(
            all.contains(msg),
            "start stream error {msg:?} missing in:\n{all}"
        );
    }
    assert!(
        all.contains("mountType: testfake does not support \"virtiofs\""),
        "{all}"
    );
    assert!(all.contains("$DIR/ga.sock"), "{all}");
}

/// A driver that answers one call differently from the binary: the kit must notice.
struct Deviant(testfake::TestFake);

#[async_trait]
impl Driver for Deviant {
    async fn info(&self) -> Result<Info> {
        self.0.info().await
    }
    async fn configure(&self, i: InstanceConfig) -> Result<()> {
        self.0.configure(i).await
    }
    async fn accept_config(&self, c: &LimaYaml, ctx: &ConfigContext) -> Result<()> {
        self.0.accept_config(c, ctx).await
    }
    async fn validate(&self) -> Result<()> {
        self.0.validate().await
    }
    async fn create(&self) -> Result<()> {
        self.0.create().await
    }
    async fn create_disk(&self) -> Result<()> {
        self.0.create_disk().await
    }
    async fn start(&self) -> Result<ErrorStream> {
        self.0.start().await
    }
    async fn stop(&self) -> Result<()> {
        self.0.stop().await
    }
    async fn delete(&self) -> Result<()> {
        self.0.delete().await
    }
    async fn ssh_address(&self) -> Result<String> {
        Ok("127.0.0.2".into())
    }
}

#[test]
fn the_kit_reports_a_difference_between_the_forms() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(conformance::run(
        Arc::new(Deviant(testfake::TestFake::new())),
        BIN.as_ref(),
        &config(),
    ));
    assert!(!report.passed());
    let text = report.failures.join("\n");
    assert!(text.contains("ssh_address differs"), "{text}");
    assert!(text.contains("127.0.0.2"), "{text}");
    // Fill hooks were left at the trait default: they differ too, and are named.
    assert!(text.contains("fill_config empty on"), "{text}");
}

#[tokio::test]
async fn a_driver_killed_during_a_call_gives_a_clean_error() {
    let d = Arc::new(ExternalDriver::spawn(BIN).await.unwrap());
    let pid = d.pid().unwrap();
    let call = {
        let d = d.clone();
        tokio::spawn(async move { d.change_display_password(testfake::HANG_PASSWORD).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !call.is_finished(),
        "the fixture call should hang until the kill"
    );
    let t = Instant::now();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let err = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("no hang")
        .unwrap()
        .unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("change_display_password"), "{err}");
    assert!(err.message.contains("testfake"), "{err}");
    assert!(err.message.contains("signal 9"), "{err}");
    assert_eq!(d.exit_status().as_deref(), Some("killed by signal 9"));
}

#[tokio::test]
async fn start_stream_errors_arrive_in_order_then_end() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let d = ExternalDriver::spawn(BIN).await.unwrap();
    d.configure(InstanceConfig {
        name: "s".into(),
        dir: dir.path().to_path_buf(),
        config: limadefaults::fill_in_memory(
            &driver::LimaYaml::default(),
            &limadefaults::detect_host(),
            "s",
        )
        .unwrap(),
        ssh_local_port: 0,
    })
    .await
    .unwrap();
    let err = match d.start().await {
        Ok(_) => panic!("start before create_disk must fail"),
        Err(e) => e,
    };
    assert_eq!(err.kind, ErrorKind::FailedPrecondition);
    d.create().await.unwrap();
    d.create_disk().await.unwrap();
    let errors: Vec<_> = d.start().await.unwrap().collect().await;
    let msgs: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(msgs, testfake::START_STREAM_ERRORS);
    assert_eq!(errors[0].kind, ErrorKind::Internal);
    assert_eq!(errors[1].kind, ErrorKind::Unavailable);
}
