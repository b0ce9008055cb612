//! A small ISO9660 writer: a primary volume (upper-case 8.3-style names, for readers that only
//! know plain ISO9660) and a Joliet volume (UCS-2 names, so `user-data` keeps its name; Linux
//! and cloud-init read this one). Both trees point at the same file data; files over 4 GiB are
//! recorded as several extents. Output is a pure function of the inputs: fixed timestamps,
//! names sorted.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;

const SECTOR: usize = 2048;
/// Sectors 0..16 are the system area; descriptors follow.
const FIRST_DESCRIPTOR: u32 = 16;
/// A fixed recording time (2000-01-01 00:00:00 UTC) keeps the image reproducible.
const RECORD_TIME: [u8; 7] = [100, 1, 1, 0, 0, 0, 0];
const VOLUME_TIME: &[u8; 16] = b"2000010100000000";
/// The largest sector-aligned extent a 32-bit length can describe; files beyond it are
/// recorded as several extents (ISO9660 level 3 multi-extent).
const MAX_EXTENT: u64 = 0xFFFF_F800;
/// Joliet directory identifiers are limited to 64 UCS-2 characters.
const JOLIET_MAX_CHARS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("invalid path {path:?} in the image: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("{path:?} is both a file and a directory in the image")]
    Conflict { path: String },
    #[error("reading {file} (for {path:?} in the image): {source}")]
    Source {
        path: String,
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the image: {0}")]
    Write(#[source] io::Error),
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    Bytes(Vec<u8>),
    /// Read when the image is written (for large files such as the guest agent).
    File(PathBuf),
}

#[derive(Debug, Default)]
enum Node {
    #[default]
    Empty,
    Dir(BTreeMap<String, Node>),
    File(usize),
}

/// Collects files by their `/`-separated path and writes them as an ISO image.
#[derive(Debug)]
pub struct IsoBuilder {
    volume_id: String,
    /// Largest extent of one directory record; bigger files get several (multi-extent).
    max_extent: u64,
    root: BTreeMap<String, Node>,
    files: Vec<(String, Content, u64)>,
}

impl IsoBuilder {
    pub fn new(volume_id: &str) -> Self {
        Self {
            volume_id: volume_id.to_string(),
            max_extent: MAX_EXTENT,
            root: BTreeMap::new(),
            files: Vec::new(),
        }
    }

    /// Splits files into extents of at most `bytes` (a multiple of 2048); only for testing the
    /// multi-extent layout without writing 4 GiB.
    #[doc(hidden)]
    pub fn with_max_extent(mut self, bytes: u64) -> Self {
        assert!(bytes > 0 && bytes.is_multiple_of(SECTOR as u64));
        self.max_extent = bytes;
        self
    }

    /// Adds (or replaces) a file; parent directories are implied by the path.
    pub fn add(&mut self, path: &str, content: Content) -> Result<(), IsoError> {
        let size = match &content {
            Content::Bytes(b) => b.len() as u64,
            Content::File(f) => std::fs::metadata(f)
                .map_err(|source| IsoError::Source {
                    path: path.to_string(),
                    file: f.clone(),
                    source,
                })?
                .len(),
        };
        let parts: Vec<&str> = path.split('/').collect();
        for p in &parts {
            if p.is_empty() || *p == "." || *p == ".." {
                return Err(IsoError::BadPath {
                    path: path.to_string(),
                    reason: "empty, `.` or `..` component",
                });
            }
            if p.encode_utf16().count() > JOLIET_MAX_CHARS {
                return Err(IsoError::BadPath {
                    path: path.to_string(),
                    reason: "a component is longer than 64 characters (Joliet limit)",
                });
            }
        }
        let (last, dirs) = parts.split_last().expect("split yields one part");
        let mut cur = &mut self.root;
        for d in dirs {
            let node = cur
                .entry(d.to_string())
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            cur = match node {
                Node::Dir(children) => children,
                _ => {
                    return Err(IsoError::Conflict {
                        path: path.to_string(),
                    })
                }
            };
        }
        if let Some(Node::Dir(_)) = cur.get(*last) {
            return Err(IsoError::Conflict {
                path: path.to_string(),
            });
        }
        self.files.push((path.to_string(), content, size));
        cur.insert(last.to_string(), Node::File(self.files.len() - 1));
        Ok(())
    }

    /// Writes the whole image to `out`.
    pub fn write_to(&self, out: &mut impl Write) -> Result<(), IsoError> {
        let layout = Layout::plan(self);
        layout.write(self, out)
    }
}

/// One directory of the image, in breadth-first order (index 0 is the root).
struct DirInfo {
    parent: usize,
    /// Entries: (name, Some(dir index) or None for a file with its file index).
    entries: Vec<(String, Entry)>,
    name: String,
}

#[derive(Clone, Copy)]
enum Entry {
    Dir(usize),
    File(usize),
}

/// A directory's entries as on-disk identifiers, in the order they are recorded.
type DirNames = Vec<(Vec<u8>, Entry)>;

#[derive(Clone, Copy, PartialEq)]
enum Tree {
    Primary,
    Joliet,
}

struct Layout {
    dirs: Vec<DirInfo>,
    /// Per tree: the on-disk names for each dir's entries, sorted as the tree requires.
    names: [Vec<DirNames>; 2],
    dir_lba: [Vec<u32>; 2],
    dir_size: [Vec<u32>; 2],
    path_table: [Vec<u8>; 2],
    /// LBA of the L and M path tables, per tree.
    path_lba: [(u32, u32); 2],
    file_lba: Vec<u32>,
    total_sectors: u32,
}

fn sectors(bytes: usize) -> u32 {
    bytes.div_ceil(SECTOR) as u32
}

fn tree_index(t: Tree) -> usize {
    match t {
        Tree::Primary => 0,
        Tree::Joliet => 1,
    }
}

/// ISO9660 d-characters, upper case; anything else becomes `_`.
fn primary_component(name: &str, is_dir: bool) -> (String, String) {
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .map(|c| c.to_ascii_uppercase())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(max)
            .collect()
    };
    if is_dir {
        return (clean(name, 31), String::new());
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (clean(stem, 26), clean(ext, 3)),
        _ => (clean(name, 26), String::new()),
    }
}

/// Joliet names carry no `;1` version suffix (as genisoimage writes them).
fn joliet_name(name: &str) -> Vec<u8> {
    name.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
}

impl Layout {
    fn plan(b: &IsoBuilder) -> Layout {
        // Breadth-first directory list, as path tables need.
        let mut dirs = vec![DirInfo {
            parent: 0,
            entries: Vec::new(),
            name: String::new(),
        }];
        let mut queue: Vec<(usize, &BTreeMap<String, Node>)> = vec![(0, &b.root)];
        let mut qi = 0;
        while qi < queue.len() {
            let (idx, children) = queue[qi];
            qi += 1;
            for (name, node) in children {
                match node {
                    Node::Dir(grand) => {
                        dirs.push(DirInfo {
                            parent: idx,
                            entries: Vec::new(),
                            name: name.clone(),
                        });
                        let d = dirs.len() - 1;
                        dirs[idx].entries.push((name.clone(), Entry::Dir(d)));
                        queue.push((d, grand));
                    }
                    Node::File(f) => dirs[idx].entries.push((name.clone(), Entry::File(*f))),
                    Node::Empty => {}
                }
            }
        }

        let names = [Tree::Primary, Tree::Joliet].map(|t| {
            dirs.iter()
                .map(|d| {
                    let mut out: Vec<(Vec<u8>, Entry)> = Vec::new();
                    let mut used = std::collections::BTreeSet::new();
                    for (name, e) in &d.entries {
                        let is_dir = matches!(e, Entry::Dir(_));
                        let id = match t {
                            Tree::Joliet => joliet_name(name),
                            Tree::Primary => {
                                let (stem, ext) = primary_component(name, is_dir);
                                let mut n = 0;
                                loop {
                                    let s = if n == 0 {
                                        stem.clone()
                                    } else {
                                        let suffix = format!("_{n}");
                                        let keep = stem.len().min(26 - suffix.len());
                                        format!("{}{suffix}", &stem[..keep])
                                    };
                                    let full = if is_dir { s } else { format!("{s}.{ext};1") };
                                    if used.insert(full.clone()) {
                                        break full.into_bytes();
                                    }
                                    n += 1;
                                }
                            }
                        };
                        out.push((id, *e));
                    }
                    out.sort_by(|a, b| a.0.cmp(&b.0));
                    out
                })
                .collect::<Vec<_>>()
        });

        // Path tables (L form; the M form has the same size).
        let path_table = [Tree::Primary, Tree::Joliet].map(|t| {
            let mut pt = Vec::new();
            for (i, d) in dirs.iter().enumerate() {
                let id = if i == 0 {
                    vec![0u8]
                } else {
                    match t {
                        Tree::Joliet => joliet_name(&d.name),
                        Tree::Primary => names[0][d.parent]
                            .iter()
                            .find(|(_, e)| matches!(e, Entry::Dir(x) if *x == i))
                            .map(|(n, _)| n.clone())
                            .expect("dir is listed in its parent"),
                    }
                };
                pt.push(id.len() as u8);
                pt.push(0);
                pt.extend([0u8; 4]); // LBA, filled in when written
                pt.extend(((d.parent + 1) as u16).to_le_bytes());
                pt.extend(&id);
                if id.len() % 2 == 1 {
                    pt.push(0);
                }
            }
            pt
        });

        let dir_size = [0, 1].map(|t| {
            names[t]
                .iter()
                .map(|entries| {
                    let mut size = 0usize;
                    let recs = std::iter::once(1usize).chain(std::iter::once(1)).chain(
                        entries.iter().flat_map(|(n, e)| {
                            let k = match e {
                                Entry::File(f) => extents(b.files[*f].2, b.max_extent),
                                Entry::Dir(_) => 1,
                            };
                            std::iter::repeat_n(n.len(), k)
                        }),
                    );
                    for name_len in recs {
                        let rec = record_len(name_len);
                        if size % SECTOR + rec > SECTOR {
                            size = size.div_ceil(SECTOR) * SECTOR;
                        }
                        size += rec;
                    }
                    (sectors(size) as usize * SECTOR) as u32
                })
                .collect::<Vec<u32>>()
        });

        let mut next = FIRST_DESCRIPTOR + 3;
        let mut path_lba = [(0, 0); 2];
        for (t, pt) in path_table.iter().enumerate() {
            let n = sectors(pt.len());
            path_lba[t] = (next, next + n);
            next += 2 * n;
        }
        let dir_lba = [0, 1].map(|t| {
            dir_size[t]
                .iter()
                .map(|s| {
                    let lba = next;
                    next += s / SECTOR as u32;
                    lba
                })
                .collect::<Vec<u32>>()
        });
        let file_lba = b
            .files
            .iter()
            .map(|(_, _, size)| {
                let lba = next;
                next += sectors(*size as usize);
                lba
            })
            .collect();
        Layout {
            dirs,
            names,
            dir_lba,
            dir_size,
            path_table,
            path_lba,
            file_lba,
            total_sectors: next,
        }
    }

    fn write(&self, b: &IsoBuilder, out: &mut impl Write) -> Result<(), IsoError> {
        let mut w = Counted { out, written: 0 };
        w.put(&[0u8; SECTOR * FIRST_DESCRIPTOR as usize])?;
        w.put(&self.volume_descriptor(b, Tree::Primary))?;
        w.put(&self.volume_descriptor(b, Tree::Joliet))?;
        let mut term = [0u8; SECTOR];
        term[0] = 255;
        term[1..6].copy_from_slice(b"CD001");
        term[6] = 1;
        w.put(&term)?;

        for t in [Tree::Primary, Tree::Joliet] {
            let ti = tree_index(t);
            let (l, m) = self.path_tables(ti);
            w.put_padded(&l)?;
            w.put_padded(&m)?;
        }
        for t in [Tree::Primary, Tree::Joliet] {
            for d in 0..self.dirs.len() {
                w.put(&self.directory(b, t, d))?;
            }
        }
        for (i, (path, content, size)) in b.files.iter().enumerate() {
            debug_assert_eq!(w.written, self.file_lba[i] as u64 * SECTOR as u64);
            match content {
                Content::Bytes(bytes) => w.put_padded(bytes)?,
                Content::File(file) => {
                    let err = |source| IsoError::Source {
                        path: path.clone(),
                        file: file.clone(),
                        source,
                    };
                    let f = std::fs::File::open(file).map_err(err)?;
                    // Exactly the size planned, even if the file changed since.
                    let mut r = f.take(*size);
                    let copied = io::copy(&mut r, &mut w).map_err(err)?;
                    if copied != *size {
                        return Err(err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file shrank while the image was written",
                        )));
                    }
                    w.pad()?;
                }
            }
        }
        debug_assert_eq!(w.written, self.total_sectors as u64 * SECTOR as u64);
        w.out.flush().map_err(IsoError::Write)
    }

    fn path_tables(&self, ti: usize) -> (Vec<u8>, Vec<u8>) {
        let mut l = self.path_table[ti].clone();
        let mut m = l.clone();
        let mut pos = 0;
        for d in 0..self.dirs.len() {
            let len = l[pos] as usize;
            let lba = self.dir_lba[ti][d];
            l[pos + 2..pos + 6].copy_from_slice(&lba.to_le_bytes());
            m[pos + 2..pos + 6].copy_from_slice(&lba.to_be_bytes());
            let parent = u16::from_le_bytes([l[pos + 6], l[pos + 7]]);
            m[pos + 6..pos + 8].copy_from_slice(&parent.to_be_bytes());
            pos += 8 + len + len % 2;
        }
        (l, m)
    }

    /// (lba, length, flags) of each record for an entry: one for a directory, one per extent
    /// for a file (all but the last flagged as continued).
    fn entry_records(&self, ti: usize, e: Entry, b: &IsoBuilder) -> Vec<(u32, u32, u8)> {
        match e {
            Entry::Dir(d) => vec![(self.dir_lba[ti][d], self.dir_size[ti][d], FLAG_DIR)],
            Entry::File(f) => {
                let size = b.files[f].2;
                let k = extents(size, b.max_extent);
                (0..k)
                    .map(|i| {
                        let start = i as u64 * b.max_extent;
                        let len = (size - start.min(size)).min(b.max_extent);
                        let lba = self.file_lba[f] + (start / SECTOR as u64) as u32;
                        let flags = if i + 1 < k { FLAG_MULTI_EXTENT } else { 0 };
                        (lba, len as u32, flags)
                    })
                    .collect()
            }
        }
    }

    fn directory(&self, b: &IsoBuilder, t: Tree, d: usize) -> Vec<u8> {
        let ti = tree_index(t);
        let mut buf = Vec::with_capacity(self.dir_size[ti][d] as usize);
        let mut push = |rec: Vec<u8>| {
            if buf.len() % SECTOR + rec.len() > SECTOR {
                buf.resize(buf.len().div_ceil(SECTOR) * SECTOR, 0);
            }
            buf.extend(rec);
        };
        let parent = self.dirs[d].parent;
        push(dir_record(
            &[0],
            self.dir_lba[ti][d],
            self.dir_size[ti][d],
            FLAG_DIR,
        ));
        push(dir_record(
            &[1],
            self.dir_lba[ti][parent],
            self.dir_size[ti][parent],
            FLAG_DIR,
        ));
        for (name, e) in &self.names[ti][d] {
            for (lba, size, flags) in self.entry_records(ti, *e, b) {
                push(dir_record(name, lba, size, flags));
            }
        }
        buf.resize(self.dir_size[ti][d] as usize, 0);
        buf
    }

    fn volume_descriptor(&self, b: &IsoBuilder, t: Tree) -> [u8; SECTOR] {
        let ti = tree_index(t);
        let mut v = [0u8; SECTOR];
        v[0] = if t == Tree::Joliet { 2 } else { 1 };
        v[1..6].copy_from_slice(b"CD001");
        v[6] = 1;
        let text = |v: &mut [u8], at: usize, len: usize, s: &str| match t {
            Tree::Primary => {
                let bytes = s.as_bytes();
                for i in 0..len {
                    v[at + i] = *bytes.get(i).unwrap_or(&b' ');
                }
            }
            Tree::Joliet => {
                let units: Vec<u16> = s.encode_utf16().collect();
                for i in 0..len / 2 {
                    let u = units.get(i).copied().unwrap_or(0x20);
                    v[at + 2 * i..at + 2 * i + 2].copy_from_slice(&u.to_be_bytes());
                }
            }
        };
        text(&mut v, 8, 32, "LINUX");
        text(&mut v, 40, 32, &b.volume_id);
        both32(&mut v[80..88], self.total_sectors);
        if t == Tree::Joliet {
            // UCS-2 level 3.
            v[88..91].copy_from_slice(b"%/E");
        }
        both16(&mut v[120..124], 1);
        both16(&mut v[124..128], 1);
        both16(&mut v[128..132], SECTOR as u16);
        both32(&mut v[132..140], self.path_table[ti].len() as u32);
        let (l, m) = self.path_lba[ti];
        v[140..144].copy_from_slice(&l.to_le_bytes());
        v[148..152].copy_from_slice(&m.to_be_bytes());
        let root = dir_record(&[0], self.dir_lba[ti][0], self.dir_size[ti][0], FLAG_DIR);
        v[156..156 + root.len()].copy_from_slice(&root);
        for (at, len) in [
            (190, 128),
            (318, 128),
            (446, 128),
            (574, 128),
            (702, 37),
            (739, 37),
            (776, 37),
        ] {
            text(&mut v, at, len, "");
        }
        text(&mut v, 574, 128, "LIMA-RS CIDATA");
        for at in [813, 830] {
            v[at..at + 16].copy_from_slice(VOLUME_TIME);
        }
        for at in [847, 864] {
            v[at..at + 16].copy_from_slice(b"0000000000000000");
        }
        v[881] = 1;
        v
    }
}

fn record_len(name_len: usize) -> usize {
    33 + name_len + (name_len + 1) % 2
}

const FLAG_DIR: u8 = 2;
const FLAG_MULTI_EXTENT: u8 = 0x80;

fn extents(size: u64, max_extent: u64) -> usize {
    size.div_ceil(max_extent).max(1) as usize
}

fn dir_record(name: &[u8], lba: u32, size: u32, flags: u8) -> Vec<u8> {
    let len = record_len(name.len());
    let mut r = vec![0u8; len];
    r[0] = len as u8;
    both32(&mut r[2..10], lba);
    both32(&mut r[10..18], size);
    r[18..25].copy_from_slice(&RECORD_TIME);
    r[25] = flags;
    both16(&mut r[28..32], 1);
    r[32] = name.len() as u8;
    r[33..33 + name.len()].copy_from_slice(name);
    r
}

fn both32(dst: &mut [u8], v: u32) {
    dst[..4].copy_from_slice(&v.to_le_bytes());
    dst[4..8].copy_from_slice(&v.to_be_bytes());
}

fn both16(dst: &mut [u8], v: u16) {
    dst[..2].copy_from_slice(&v.to_le_bytes());
    dst[2..4].copy_from_slice(&v.to_be_bytes());
}

struct Counted<'a, W: Write> {
    out: &'a mut W,
    written: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> Counted<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), IsoError> {
        self.write_all(bytes).map_err(IsoError::Write)
    }
    fn pad(&mut self) -> Result<(), IsoError> {
        let rem = (self.written % SECTOR as u64) as usize;
        if rem != 0 {
            self.put(&vec![0u8; SECTOR - rem])?;
        }
        Ok(())
    }
    fn put_padded(&mut self, bytes: &[u8]) -> Result<(), IsoError> {
        self.put(bytes)?;
        self.pad()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_never_cross_a_sector() {
        let mut b = IsoBuilder::new("cidata");
        for i in 0..200 {
            b.add(
                &format!("boot/{i:03}-a-fairly-long-script-name.sh"),
                Content::Bytes(vec![]),
            )
            .unwrap();
        }
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        assert_eq!(out.len() % SECTOR, 0);
        assert_eq!(&out[16 * SECTOR + 1..16 * SECTOR + 6], b"CD001");
        assert_eq!(&out[16 * SECTOR + 40..16 * SECTOR + 46], b"cidata");
    }

    #[test]
    fn rejects_file_dir_conflicts_and_bad_components() {
        let mut b = IsoBuilder::new("cidata");
        b.add("boot/a.sh", Content::Bytes(vec![1])).unwrap();
        assert!(matches!(
            b.add("boot", Content::Bytes(vec![])),
            Err(IsoError::Conflict { .. })
        ));
        assert!(matches!(
            b.add("boot/a.sh/x", Content::Bytes(vec![])),
            Err(IsoError::Conflict { .. })
        ));
        assert!(matches!(
            b.add("a//b", Content::Bytes(vec![])),
            Err(IsoError::BadPath { .. })
        ));
        assert!(matches!(
            b.add("../x", Content::Bytes(vec![])),
            Err(IsoError::BadPath { .. })
        ));
    }

    #[test]
    fn primary_names_are_unique_d_characters() {
        let mut b = IsoBuilder::new("cidata");
        b.add("user-data", Content::Bytes(vec![])).unwrap();
        b.add("user_data", Content::Bytes(vec![])).unwrap();
        let l = Layout::plan(&b);
        let names: Vec<String> = l.names[0][0]
            .iter()
            .map(|(n, _)| String::from_utf8(n.clone()).unwrap())
            .collect();
        assert_eq!(names, vec!["USER_DATA.;1", "USER_DATA_1.;1"]);
    }
}
