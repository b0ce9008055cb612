//! TEST FIXTURE: the `testfake` driver as an external driver executable, for drivergrpc's own
//! tests and `cargo xtask bench drivers`. Not a real driver.

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    drivergrpc::serve_main(std::sync::Arc::new(
        drivergrpc::conformance::testfake::TestFake::new(),
    ))
}

#[cfg(not(unix))]
fn main() -> std::process::ExitCode {
    eprintln!("lima-driver-testfake: external drivers need unix sockets");
    std::process::ExitCode::FAILURE
}
