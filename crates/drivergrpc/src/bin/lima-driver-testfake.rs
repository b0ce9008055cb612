//! TEST FIXTURE: the `testfake` driver as an external driver executable, for drivergrpc's own
//! tests and `cargo xtask bench drivers`. Not a real driver.

fn main() -> std::process::ExitCode {
    drivergrpc::serve_main(std::sync::Arc::new(
        drivergrpc::conformance::testfake::TestFake::new(),
    ))
}
