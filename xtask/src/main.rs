//! `cargo xtask`: all project automation (build, dist, checks, images, benchmarks), in Rust.
//! Not part of the layering: nothing depends on it.

mod bench_boot;
mod bench_drivers;
mod bench_mounts;
mod bench_portfwd;
mod bench_util;
mod build;
mod check_layers;
mod ci;
mod demo;
#[cfg(test)]
mod fields_doc;
mod layer_rules;
mod layers;
mod local_image;
#[cfg(test)]
mod tidy;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build limactl into _output/bin, with the drivers named by --external as
    /// _output/libexec/lima/lima-driver-<name> and every other driver compiled in.
    Build(build::BuildArgs),
    /// Like build, plus share/lima/templates, packed as a relocatable _output/lima-*.tar.gz.
    Dist(build::DistArgs),
    /// Check the workspace's crate dependencies against the declared layer table.
    CheckLayers(check_layers::Args),
    /// Run every CI check: fmt, clippy, check-layers, cargo-deny, (local image), tests.
    Ci(ci::Args),
    /// Boot the local image with limactl and show `limactl shell NAME uname -a`.
    Demo(demo::Args),
    /// Build the offline Debian 12 guest image and its lima.yaml (_output/images/debian-12-local).
    LocalImage(local_image::Args),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Subcommand)]
enum BenchCmd {
    /// `limactl start` to ready vs a bare qemu boot of the same VM.
    Boot(bench_boot::Args),
    /// Per-call latency of a driver: internal (in-process) vs external (gRPC on a socket).
    Drivers(bench_drivers::Args),
    /// Guest→host port forwarding: this project's forwarder (internal and external driver)
    /// vs ssh -L, qemu's hostfwd and the raw virtio-serial channel (iperf3, latency, churn).
    Portfwd(bench_portfwd::Args),
    /// A host directory in the guest through each mountType (9p, virtiofs, reverse-sshfs) vs
    /// the guest's own disk: sequential write and read, small-file metadata, untar.
    Mounts(bench_mounts::Args),
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Build(args) => build::run_build(args),
        Cmd::Dist(args) => build::run_dist(args),
        Cmd::CheckLayers(args) => check_layers::run(args),
        Cmd::Ci(args) => ci::run(args),
        Cmd::Demo(args) => demo::run(args),
        Cmd::LocalImage(args) => local_image::run(args),
        Cmd::Bench(BenchCmd::Boot(args)) => bench_boot::run(args),
        Cmd::Bench(BenchCmd::Drivers(args)) => bench_drivers::run(args),
        Cmd::Bench(BenchCmd::Portfwd(args)) => bench_portfwd::run(args),
        Cmd::Bench(BenchCmd::Mounts(args)) => bench_mounts::run(args),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
