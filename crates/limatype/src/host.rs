//! The host a config is filled and checked for: [`Os`] and [`Arch`] in Lima's spellings, and
//! [`HostFacts`], the one description of a host that defaults, validation and drivers share.
//! Plain data: detecting the running host's facts is `limadefaults::detect_host`'s job.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An operating system, spelt as in Lima (`Linux`, `Darwin`, `FreeBSD`, `Windows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Os {
    Linux,
    Darwin,
    FreeBSD,
    Windows,
}

/// A CPU architecture, spelt as in Lima (`x86_64`, `aarch64`, `armv7l`, `ppc64le`, `riscv64`,
/// `s390x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    Aarch64,
    Armv7l,
    Ppc64le,
    Riscv64,
    S390x,
}

/// A text that is not one of Lima's OS names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an OS (one of Linux, Darwin, FreeBSD, Windows)")]
pub struct ParseOsError {
    /// The text as given.
    pub text: String,
}

/// A text that is not one of Lima's arch names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an arch (one of x86_64, aarch64, armv7l, ppc64le, riscv64, s390x)")]
pub struct ParseArchError {
    /// The text as given.
    pub text: String,
}

impl Os {
    /// Every OS, in the order of [`crate::OS_TYPES`].
    pub const ALL: [Os; 4] = [Os::Linux, Os::Darwin, Os::FreeBSD, Os::Windows];

    pub const fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "Linux",
            Os::Darwin => "Darwin",
            Os::FreeBSD => "FreeBSD",
            Os::Windows => "Windows",
        }
    }

    /// The OS this program was built for (and so runs on).
    pub const fn host() -> Os {
        if cfg!(target_os = "macos") {
            Os::Darwin
        } else if cfg!(target_os = "windows") {
            Os::Windows
        } else if cfg!(target_os = "freebsd") {
            Os::FreeBSD
        } else {
            // Lima knows no other host OS; Linux's rules are the closest for other Unixes.
            Os::Linux
        }
    }
}

impl Arch {
    /// Every arch, in the order of [`crate::ARCH_TYPES`].
    pub const ALL: [Arch; 6] = [
        Arch::X86_64,
        Arch::Aarch64,
        Arch::Armv7l,
        Arch::Ppc64le,
        Arch::Riscv64,
        Arch::S390x,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Armv7l => "armv7l",
            Arch::Ppc64le => "ppc64le",
            Arch::Riscv64 => "riscv64",
            Arch::S390x => "s390x",
        }
    }

    /// The arch this program was built for (and so runs on).
    ///
    /// # Panics
    /// On a target arch Lima has no name for (limactl is built for none of them).
    pub const fn host() -> Arch {
        if cfg!(target_arch = "x86_64") {
            Arch::X86_64
        } else if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else if cfg!(target_arch = "arm") {
            Arch::Armv7l
        } else if cfg!(target_arch = "powerpc64") {
            Arch::Ppc64le
        } else if cfg!(target_arch = "riscv64") {
            Arch::Riscv64
        } else if cfg!(target_arch = "s390x") {
            Arch::S390x
        } else {
            panic!("limatype: this target arch has no name in Lima")
        }
    }
}

impl FromStr for Os {
    type Err = ParseOsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Os::ALL
            .into_iter()
            .find(|o| o.as_str() == text)
            .ok_or_else(|| ParseOsError { text: text.into() })
    }
}

impl FromStr for Arch {
    type Err = ParseArchError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Arch::ALL
            .into_iter()
            .find(|a| a.as_str() == text)
            .ok_or_else(|| ParseArchError { text: text.into() })
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Os {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Os {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What defaults, validation and drivers know about the host: gathered once
/// (`limadefaults::detect_host`) so filling a config stays a pure function of it. Tests and
/// "as if on another host" checks build one by hand or with [`HostFacts::pretend`].
///
/// Not serialized: only `os` and `arch` cross the driver protocol (its `HostInfo` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub os: Os,
    pub arch: Arch,
    /// CPUs available to this process (0 when unknown).
    pub cpus: u32,
    /// Physical memory (0 when unknown).
    pub memory: crate::ByteSize,
    /// Login name of the host user.
    pub user_name: String,
    /// The user's full name (GECOS), Lima's `user.comment` default.
    pub user_comment: String,
    pub uid: u32,
    /// The host user's home directory (for `~` in mount locations and `{{.Home}}`).
    pub home: String,
    /// IANA zone name, or "" when unknown.
    pub timezone: String,
    /// `/etc/machine-id` (or "" if absent): makes generated MAC addresses host-specific.
    pub machine_id: String,
    /// `$LIMA_HOME`; an instance's directory is `<lima_home>/<name>`.
    pub lima_home: PathBuf,
    /// `$TMPDIR` or `/tmp` (`{{.TempDir}}`).
    pub temp_dir: String,
}

impl HostFacts {
    /// A host that is only an OS and an arch (every other fact empty or zero): for checking a
    /// config as if on another host, and for tests.
    pub fn pretend(os: Os, arch: Arch) -> Self {
        HostFacts {
            os,
            arch,
            cpus: 0,
            memory: crate::ByteSize(0),
            user_name: String::new(),
            user_comment: String::new(),
            uid: 0,
            home: String::new(),
            timezone: String::new(),
            machine_id: String::new(),
            lima_home: PathBuf::new(),
            temp_dir: String::new(),
        }
    }

    /// Whether this host has the OS and arch this program runs on: only then may a driver
    /// look at the machine (binaries, firmware, the macOS version) to judge a config.
    pub fn is_this_machine(&self) -> bool {
        self.os == Os::host() && self.arch == Arch::host()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_type_lists() {
        let os: Vec<&str> = Os::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(os, crate::OS_TYPES);
        let arch: Vec<&str> = Arch::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(arch, crate::ARCH_TYPES);
        for o in Os::ALL {
            assert_eq!(o.to_string().parse::<Os>(), Ok(o));
            assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{o}\""));
            let back: Os = serde_json::from_str(&format!("\"{o}\"")).unwrap();
            assert_eq!(back, o);
        }
        for a in Arch::ALL {
            assert_eq!(a.to_string().parse::<Arch>(), Ok(a));
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
            let back: Arch = serde_json::from_str(&format!("\"{a}\"")).unwrap();
            assert_eq!(back, a);
        }
    }

    #[test]
    fn unknown_names_are_refused_saying_what_is_known() {
        let e = "darwin".parse::<Os>().unwrap_err();
        assert_eq!(e.text, "darwin");
        assert!(e.to_string().contains("Linux, Darwin"), "{e}");
        let e = "amd64".parse::<Arch>().unwrap_err();
        assert!(e.to_string().contains("\"amd64\" is not an arch"), "{e}");
        assert!(serde_json::from_str::<Arch>("\"arm64\"").is_err());
    }

    #[test]
    fn this_machine() {
        assert_eq!(
            Os::host().as_str(),
            match std::env::consts::OS {
                "macos" => "Darwin",
                "windows" => "Windows",
                "freebsd" => "FreeBSD",
                _ => "Linux",
            }
        );
        let here = HostFacts::pretend(Os::host(), Arch::host());
        assert!(here.is_this_machine());
        let other_os = if Os::host() == Os::Windows {
            Os::Linux
        } else {
            Os::Windows
        };
        assert!(!HostFacts::pretend(other_os, Arch::host()).is_this_machine());
        assert_eq!(here.cpus, 0);
        assert!(here.user_name.is_empty() && here.lima_home.as_os_str().is_empty());
    }
}
