//! Byte sizes in the instance table: printed by `limatype::ByteSize` (kept here because
//! `limactl list` calls it with the table's `i64` byte counts).

/// Formats like Lima's table (go-units `BytesSize`): 4 significant digits and a binary unit
/// (`4GiB`, `1.5GiB`). Negative counts (never written by Lima) print as `0B`.
pub fn format_bytes(n: i64) -> String {
    limatype::ByteSize(u64::try_from(n).unwrap_or(0)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format() {
        assert_eq!(format_bytes(4 << 30), "4GiB");
        assert_eq!(format_bytes(100 << 30), "100GiB");
        assert_eq!(format_bytes(3 << 29), "1.5GiB");
        assert_eq!(format_bytes(512), "512B");
    }
}
