//! `drivergrpc` — layer 5: external VM drivers over gRPC on a unix socket. It owns the
//! generated code of `proto/driver.proto`, the driver side ([`serve`]: all an external
//! driver's `main` calls), the limactl side ([`ExternalDriver`], which implements
//! [`driver::Driver`] by calling the driver process, and [`probe`]), the process handshake,
//! and (feature `conformance`) the conformance kit every driver runs in both forms.
//!
//! The protocol is described for driver authors at the top of `proto/driver.proto` and in
//! `docs/drivers.md`. A driver process is not trusted to behave: every call has a deadline
//! (a missed one kills the driver), its output is read in bounded memory, and SIGINT/SIGTERM
//! end every driver of the process with their socket directories (`docs/failure-model.md`).

// The transport is a unix socket: on other hosts (Windows) only the protocol types and a
// `serve_main` that explains itself exist for now.
#[cfg(unix)]
mod cleanup;
#[cfg(unix)]
mod client;
mod convert;
#[cfg(unix)]
mod server;

#[cfg(all(unix, feature = "conformance"))]
pub mod conformance;

/// The generated protobuf messages and gRPC stubs of `lima.driver.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("lima.driver.v1");
}

#[cfg(unix)]
pub use cleanup::{end_all_drivers, leave_signals_to_caller, signal_handler_installed};
#[cfg(unix)]
pub use client::{
    driver_name_from_path, parse_timeout, probe, ExternalDriver, Handshake, ParseTimeoutError,
    SpawnError, SpawnOptions, CALL_TIMEOUT_ENV, DEFAULT_CALL_TIMEOUT, DEFAULT_LONG_CALL_TIMEOUT,
    LONG_CALL_TIMEOUT_ENV,
};
pub use convert::{code_for_kind, host_for, kind_for_code, ERROR_KIND_METADATA};
#[cfg(unix)]
pub use server::{
    listen, ready_line, serve, serve_main, DriverService, ServeError, PROTOCOL_ENV, READY_MARKER,
    SOCKET_ENV,
};

use std::fmt;

/// External drivers need unix sockets, which this build does not have yet.
#[cfg(not(unix))]
pub fn serve_main(_driver: driver::DynDriver) -> std::process::ExitCode {
    eprintln!(
        "ERROR external Lima drivers are not supported on this OS yet (they need unix sockets)"
    );
    std::process::ExitCode::FAILURE
}

/// A protocol version `MAJOR.MINOR`: peers of different MAJOR refuse each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProtocolVersion {
    pub major: u32,
    pub minor: u32,
}

/// The protocol this crate speaks (package `lima.driver.v1`).
pub const PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A protocol version that is not `MAJOR.MINOR` (two unsigned integers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol version {text:?} is not MAJOR.MINOR")]
pub struct ParseProtocolVersionError {
    /// The text that was given.
    pub text: String,
}

impl std::str::FromStr for ProtocolVersion {
    type Err = ParseProtocolVersionError;
    fn from_str(s: &str) -> Result<Self, ParseProtocolVersionError> {
        let bad = || ParseProtocolVersionError {
            text: s.to_string(),
        };
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        let num = |p: &str| p.parse::<u32>().map_err(|_| bad());
        Ok(ProtocolVersion {
            major: num(major)?,
            minor: num(minor)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_version_parses_and_prints() {
        let v: ProtocolVersion = "1.7".parse().unwrap();
        assert_eq!(v, ProtocolVersion { major: 1, minor: 7 });
        assert_eq!(v.to_string(), "1.7");
        let e = "1".parse::<ProtocolVersion>().unwrap_err();
        assert_eq!(e.to_string(), r#"protocol version "1" is not MAJOR.MINOR"#);
        assert!("a.b".parse::<ProtocolVersion>().is_err());
        assert!("1.-2".parse::<ProtocolVersion>().is_err());
    }
}
