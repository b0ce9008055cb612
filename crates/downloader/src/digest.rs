//! `sha256:<hex>` / `sha512:<hex>` digests as written in templates.

use std::fmt;
use std::io::Read;
use std::path::Path;

use crate::{io_err, DownloadError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// The cache entry's record of a verified digest (Lima's name).
    pub fn digest_file(self) -> String {
        format!("{}.digest", self.name())
    }

    pub(crate) fn hasher(self) -> Hasher {
        use sha2::Digest as _;
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Lower-case hex digest of a file.
    pub fn of_file(self, path: &Path) -> Result<String, DownloadError> {
        let mut f = std::fs::File::open(path).map_err(io_err(path))?;
        let mut h = self.hasher();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    }
}

pub(crate) enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }
    pub fn finish(self) -> String {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub algorithm: Algorithm,
    /// Lower-case hex.
    pub hex: String,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, DownloadError> {
        let bad = |reason| DownloadError::BadDigest {
            digest: s.to_string(),
            reason,
        };
        let (algo, hex) = s
            .split_once(':')
            .ok_or_else(|| bad("expected ALGORITHM:HEX, e.g. sha256:…"))?;
        let algorithm = match algo {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(bad("only sha256 and sha512 are supported")),
        };
        if hex.len() != algorithm.hex_len() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("wrong length or not hexadecimal"));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_ascii_lowercase(),
        })
    }

    pub(crate) fn check(&self, location: &str, actual_hex: &str) -> Result<(), DownloadError> {
        if self.hex.eq_ignore_ascii_case(actual_hex) {
            return Ok(());
        }
        Err(DownloadError::DigestMismatch {
            location: location.to_string(),
            expected: self.to_string(),
            actual: format!("{}:{}", self.algorithm.name(), actual_hex),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let d = Digest::parse(&format!("sha256:{}", "AB".repeat(32))).unwrap();
        assert_eq!(d.hex, "ab".repeat(32));
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&format!("md5:{}", "a".repeat(32))).is_err());
        assert!(Digest::parse(&"a".repeat(64)).is_err());
        assert!(Digest::parse(&format!("sha512:{}", "g".repeat(128))).is_err());
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
    }
}
