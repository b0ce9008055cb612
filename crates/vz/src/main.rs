//! `lima-driver-vz`: the vz driver as an external driver process (started by limactl,
//! speaking gRPC on the socket limactl names).

fn main() -> std::process::ExitCode {
    drivergrpc::serve_main(std::sync::Arc::new(vz::VzDriver::new()))
}
