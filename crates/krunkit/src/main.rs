//! `lima-driver-krunkit`: the krunkit driver as an external driver process (started by limactl,
//! speaking gRPC on the socket limactl names).

fn main() -> std::process::ExitCode {
    drivergrpc::serve_main(std::sync::Arc::new(krunkit::KrunkitDriver::new()))
}
