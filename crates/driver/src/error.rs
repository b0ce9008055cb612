//! The one error type every driver call returns. Its kind and message both cross the gRPC
//! boundary unchanged, so callers may branch on the kind whatever the driver's form.

use std::fmt;

/// What went wrong, coarsely: enough for a caller to decide (retry, tell the user to fix the
/// config, pick another driver) without parsing the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The config cannot be run by this driver (bad value, wrong arch, unsupported mount type).
    InvalidConfig,
    /// The driver does not implement this call (e.g. snapshots, GUI).
    Unsupported,
    /// Something named by the call does not exist (snapshot tag, instance file).
    NotFound,
    /// Something the call would create exists already.
    AlreadyExists,
    /// The call needs an earlier step first (e.g. `configure` before `create`).
    FailedPrecondition,
    /// The driver (or what it drives, e.g. the hypervisor binary) cannot be reached: an
    /// external driver that died, a missing qemu binary.
    Unavailable,
    /// The call took too long.
    Timeout,
    /// The call was cancelled.
    Cancelled,
    /// Anything else: a bug or an unexpected host failure.
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::InvalidConfig,
        ErrorKind::Unsupported,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::FailedPrecondition,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::Cancelled,
        ErrorKind::Internal,
    ];

    /// Stable spelling, used on the wire and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::FailedPrecondition => "failed_precondition",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }

    /// Inverse of [`ErrorKind::as_str`]; `None` for a spelling this version does not know.
    pub fn parse(s: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A driver failure: a kind for programs, a message for people. `Display` is the message
/// alone, so it reads the same whether the driver is internal or external.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DriverError {
    pub kind: ErrorKind,
    pub message: String,
}

impl DriverError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        DriverError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FailedPrecondition, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

pub type Result<T, E = DriverError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_spelling_round_trips_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
            assert!(seen.insert(k.as_str()), "duplicate spelling {k}");
        }
        assert_eq!(ErrorKind::parse("no_such_kind"), None);
    }

    #[test]
    fn display_is_the_message_alone() {
        let e = DriverError::invalid_config("vmType \"vz\" needs macOS");
        assert_eq!(e.to_string(), "vmType \"vz\" needs macOS");
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
    }
}
