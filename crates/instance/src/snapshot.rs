//! `limactl snapshot`: the instance opened once, then the driver's snapshot calls (which work
//! on a running or a stopped VM, as the driver decides).

use registry::Registry;

use crate::{open, InstanceError, Result, SshPort};

/// What to do with one snapshot tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOp {
    Create,
    Apply,
    Delete,
}

/// Creates, applies or deletes snapshot `tag` of instance `name`.
pub async fn snapshot(reg: &Registry, name: &str, op: SnapshotOp, tag: &str) -> Result<()> {
    let opened = open(reg, name, SshPort::Unchosen).await?;
    let d = &opened.driver;
    match op {
        SnapshotOp::Create => d
            .create_snapshot(tag)
            .await
            .map_err(opened.call_failed("create_snapshot")),
        SnapshotOp::Apply => d
            .apply_snapshot(tag)
            .await
            .map_err(opened.call_failed("apply_snapshot")),
        SnapshotOp::Delete => d
            .delete_snapshot(tag)
            .await
            .map_err(opened.call_failed("delete_snapshot")),
    }
}

/// The driver's snapshot table of instance `name` (header line first; empty without any).
pub async fn list_snapshots(reg: &Registry, name: &str) -> Result<String> {
    let opened = open(reg, name, SshPort::Unchosen).await?;
    opened
        .driver
        .list_snapshots()
        .await
        .map_err(opened.call_failed("list_snapshots"))
}

/// The tags of a snapshot table as upstream's `snapshot list --quiet` reads it: the second
/// column of every line after the `ID TAG ...` header.
pub fn tags_of(table: &str) -> Result<Vec<String>> {
    let mut tags = Vec::new();
    for (i, line) in table.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if i == 0 {
            if fields.len() > 1 && fields[1] != "TAG" {
                return Err(InstanceError::SnapshotHeader(line.to_string()));
            }
            continue;
        }
        if let Some(tag) = fields.get(1) {
            tags.push(tag.to_string());
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_list_reads_the_tag_column() {
        let table = "ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT\n\
                     1         s1                    0 B 2026-11-30 00:10:00 00:00:00.000          0\n\
                     2         before-up             0 B 2026-11-30 00:11:00 00:00:00.000          0\n";
        assert_eq!(tags_of(table).unwrap(), ["s1", "before-up"]);
        assert!(tags_of("").unwrap().is_empty());
        let e = tags_of("Foo Bar\n1 x\n").unwrap_err();
        assert_eq!(e.to_string(), "unknown header: Foo Bar");
    }
}
