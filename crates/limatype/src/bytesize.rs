//! [`ByteSize`]: the one byte-size type (`memory`, `disk`, `9p.msize`), parsed and printed the
//! way upstream Lima does through docker/go-units (`RAMInBytes`, `BytesSize`).

use std::fmt;
use std::str::FromStr;

/// A size in bytes. Parses `4GiB`, `4G`, `4gb`, `1.5GiB`, `512 MiB`, `1024` (go-units
/// `RAMInBytes`: binary multipliers `K M G T P`, optional `i`/`iB`/`B`, case-insensitive,
/// one optional space before the unit, decimals allowed, a plain number is bytes); prints
/// as go-units `BytesSize` (4 significant digits, binary unit: `4GiB`, `1.5GiB`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// A text that is not a byte size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a size such as \"4GiB\", \"512MiB\" or \"1024\"")]
pub struct ParseByteSizeError {
    /// The text as given.
    pub text: String,
}

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse(text).map(ByteSize).ok_or_else(|| ParseByteSizeError {
            text: text.to_string(),
        })
    }
}

fn parse(text: &str) -> Option<u64> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    // go-units' grammar is `\d+(\.\d+)*`: digits on both sides of a dot.
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let mut chars = unit.chars();
    let shift = match chars.next() {
        None => 0,
        Some('b') if chars.as_str().is_empty() => 0,
        Some('b') => return None,
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        Some(_) => return None,
    };
    if !matches!(chars.as_str(), "" | "i" | "b" | "ib") {
        return None;
    }
    let bytes = value * (1u64 << shift) as f64;
    // `as u64` saturates; refuse instead of silently clamping a huge size.
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        let int_digits = if value < 1.0 {
            1
        } else {
            value.log10().floor() as usize + 1
        };
        let decimals = 4usize.saturating_sub(int_digits);
        let mut s = format!("{value:.decimals$}");
        if s.contains('.') {
            s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        write!(f, "{s}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<u64> {
        s.parse::<ByteSize>().ok().map(ByteSize::bytes)
    }

    /// The inputs the four former parsers (limavalidate, qemu, store, cidata) were tested with.
    #[test]
    fn accepts_what_the_old_parsers_accepted() {
        // limavalidate::ram_in_bytes
        assert_eq!(p("4GiB"), Some(4 << 30));
        assert_eq!(p("1.5g"), Some(1536 << 20));
        assert_eq!(p("512 MiB"), Some(512 << 20));
        assert_eq!(p("100"), Some(100));
        // store::parse_bytes
        assert_eq!(p("4G"), Some(4 << 30));
        assert_eq!(p("100 GiB"), Some(100 << 30));
        assert_eq!(p("512MiB"), Some(512 << 20));
        assert_eq!(p("1.5GiB"), Some(3 << 29));
        assert_eq!(p("1024"), Some(1024));
        // cidata::parse_size
        assert_eq!(p("128KiB"), Some(131072));
        assert_eq!(p("4096"), Some(4096));
        assert_eq!(p("1 MiB"), Some(1 << 20));
    }

    #[test]
    fn units_and_spellings() {
        for (text, want) in [
            ("1b", 1),
            ("1B", 1),
            ("1k", 1 << 10),
            ("1Ki", 1 << 10),
            ("1KB", 1 << 10),
            ("1kib", 1 << 10),
            ("1m", 1 << 20),
            ("1MB", 1 << 20),
            ("2t", 2 << 40),
            ("2TiB", 2 << 40),
            ("1P", 1 << 50),
            ("1PiB", 1 << 50),
            ("0.5k", 512),
            ("1.25GiB", 1280 << 20),
            ("  8GiB\n", 8 << 30),
            ("0", 0),
        ] {
            assert_eq!(p(text), Some(want), "{text:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_size() {
        for text in [
            "",
            " ",
            "lots",
            "GiB",
            "4XB",
            "4GiBs",
            "4 G B",
            "4  GiB",
            "4kbb",
            "-1",
            "1.",
            ".5",
            "1.2.3",
            "4E",
            "99999999999999999999999P",
            // Overflow is an error, not a saturated u64::MAX.
            "99999999999999999999999b",
            "99999999999999999999999",
            "99999999999PiB",
            "1bb",
        ] {
            assert_eq!(p(text), None, "{text:?}");
        }
    }

    #[test]
    fn error_names_the_text() {
        let e = "lots".parse::<ByteSize>().unwrap_err();
        assert_eq!(e.text, "lots");
        assert!(e.to_string().contains("\"lots\""), "{e}");
    }

    /// go-units `BytesSize` (formerly `limadefaults::bytes_size`, and store's table format).
    #[test]
    fn displays_like_go_units() {
        assert_eq!(ByteSize(4 << 30).to_string(), "4GiB");
        assert_eq!(ByteSize(1536 << 20).to_string(), "1.5GiB");
        assert_eq!(ByteSize(123).to_string(), "123B");
        assert_eq!(ByteSize(0).to_string(), "0B");
        assert_eq!(ByteSize(100 << 30).to_string(), "100GiB");
        assert_eq!(ByteSize(3 << 29).to_string(), "1.5GiB");
        assert_eq!(ByteSize(512).to_string(), "512B");
        for s in ["4GiB", "1.5GiB", "128KiB", "100GiB"] {
            assert_eq!(s.parse::<ByteSize>().unwrap().to_string(), s);
        }
    }
}
