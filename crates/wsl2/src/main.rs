//! `lima-driver-wsl2`: the wsl2 driver as an external driver process (started by limactl,
//! speaking gRPC on the socket limactl names).

fn main() -> std::process::ExitCode {
    drivergrpc::serve_main(std::sync::Arc::new(wsl2::Wsl2Driver::new()))
}
