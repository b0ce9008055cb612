//! Version numbers drivers compare against the host (macOS releases, helper tools).

/// A `major.minor.patch` version (missing parts are 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        parts
            .next()
            .is_none()
            .then_some(Version(major, minor, patch))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The macOS version of this host, from SystemVersion.plist; `None` on other hosts.
pub fn host_macos_version() -> Option<Version> {
    #[cfg(target_os = "macos")]
    {
        let plist =
            std::fs::read_to_string("/System/Library/CoreServices/SystemVersion.plist").ok()?;
        let rest = &plist[plist.find("<key>ProductVersion</key>")?..];
        let start = rest.find("<string>")? + "<string>".len();
        let end = rest[start..].find("</string>")? + start;
        Version::parse(&rest[start..end])
    }
    #[cfg(not(target_os = "macos"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!(Version::parse("13.4.1"), Some(Version(13, 4, 1)));
        assert_eq!(Version::parse("26"), Some(Version(26, 0, 0)));
        assert_eq!(Version::parse("14.x"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert!(Version(15, 5, 0) > Version(15, 4, 9));
        assert_eq!(Version(1, 2, 1).to_string(), "1.2.1");
        if !cfg!(target_os = "macos") {
            assert_eq!(host_macos_version(), None);
        }
    }
}
