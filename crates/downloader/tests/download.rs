//! Downloads against a real HTTP server on 127.0.0.1 (a thread with a TcpListener), local
//! paths and file:// URLs. Compressed fixtures in tests/fixtures were made with the gzip,
//! bzip2, xz and zstd tools from the 70000-byte payload that `payload()` regenerates.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use downloader::{DownloadError, Downloader, ProgressMode, Request, Status};
use sha2::Digest as _;

fn payload() -> Vec<u8> {
    (0..2000)
        .map(|i| format!("lima downloader fixture line {i:05}\n"))
        .collect::<String>()
        .into_bytes()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

#[derive(Clone)]
enum Reply {
    Full(Vec<u8>),
    /// Like `Full`, with this Last-Modified.
    Modified(Vec<u8>, &'static str),
    /// Announces the full length, sends only `cut` bytes, then closes.
    Truncated(Vec<u8>, usize),
}

#[derive(Clone)]
struct Server {
    base: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, h) = (routes.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let mut words = request_line.split_whitespace();
                let head = words.next() == Some("HEAD");
                let path = words.next().unwrap_or("/").to_string();
                let reply = match r.lock().unwrap().get(&path).cloned() {
                    Some(Reply::Full(b)) => {
                        Some(Reply::Modified(b, "Wed, 01 Jan 2025 00:00:00 GMT"))
                    }
                    other => other,
                };
                let _ = match reply {
                    None => stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                    Some(Reply::Modified(body, modified)) => stream
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nLast-Modified: {modified}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| if head { Ok(()) } else { stream.write_all(&body) }),
                    Some(Reply::Full(_)) => unreachable!("mapped above"),
                    Some(Reply::Truncated(body, cut)) => stream
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| stream.write_all(&body[..cut])),
                };
                let _ = stream.flush();
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        Server { base, routes, hits }
    }

    fn serve(&self, path: &str, reply: Reply) -> String {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
        format!("{}{path}", self.base)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn downloader(cache: &Path) -> Downloader {
    Downloader::new(cache.to_path_buf()).progress(ProgressMode::Lines)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn cache_miss_then_hit() {
    let server = Server::start();
    let body = payload();
    let url = server.serve("/images/disk.qcow2", Reply::Full(body.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let d = downloader(&cache);
    let digest = sha256(&body);

    let dest1 = tmp.path().join("a/one");
    let out = d
        .download(&Request {
            location: &url,
            dest: Some(&dest1),
            digest: Some(&digest),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.status, Status::Downloaded);
    assert!(out.validated_digest);
    assert_eq!(std::fs::read(&dest1).unwrap(), body);
    assert_eq!(server.hits(), 1);

    // Lima's layout: <cache>/download/by-url-sha256/<sha256(url)>/...
    let entry = cache
        .join("download/by-url-sha256")
        .join(hex::encode(sha2::Sha256::digest(url.as_bytes())));
    assert_eq!(
        out.cache_path.as_deref(),
        Some(entry.join("data").as_path())
    );
    assert_eq!(
        files_in(&entry),
        ["data", "sha256.digest", "time", "type", "url"]
    );
    assert_eq!(std::fs::read_to_string(entry.join("url")).unwrap(), url);
    assert_eq!(
        std::fs::read_to_string(entry.join("sha256.digest")).unwrap(),
        digest
    );

    let dest2 = tmp.path().join("two");
    let out = d
        .download(&Request {
            location: &url,
            dest: Some(&dest2),
            digest: Some(&digest),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.status, Status::UsedCache);
    assert_eq!(std::fs::read(&dest2).unwrap(), body);
    assert_eq!(server.hits(), 1, "a cache hit must not touch the network");
    assert_eq!(
        d.cached(&url, Some(&digest)).unwrap().as_deref(),
        Some(entry.join("data").as_path())
    );
    assert_eq!(d.cached(&url, Some(&sha256(b"other"))).unwrap(), None);
    assert_eq!(d.cached(&format!("{url}.other"), None).unwrap(), None);
    assert_eq!(server.hits(), 1);

    // An existing destination is left alone.
    let out = d
        .download(&Request {
            location: &url,
            dest: Some(&dest2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.status, Status::Skipped);

    // Cache-only mode, then prune.
    let out = d
        .download(&Request {
            location: &url,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.status, Status::UsedCache);
    d.prune().unwrap();
    assert!(!cache.join("download").exists());
    d.prune().unwrap();
}

#[test]
fn digest_mismatch_leaves_no_cache_entry() {
    let server = Server::start();
    let url = server.serve("/bad.img", Reply::Full(payload()));
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let d = downloader(&cache);
    let wrong = sha256(b"something else");
    let dest = tmp.path().join("dest");
    let err = d
        .download(&Request {
            location: &url,
            dest: Some(&dest),
            digest: Some(&wrong),
            ..Default::default()
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DownloadError::DigestMismatch { .. }), "{msg}");
    assert!(msg.contains(&wrong), "{msg}");
    assert!(msg.contains(&sha256(&payload())), "{msg}");
    assert!(!dest.exists());
    let entry = d.entry_dir(&url).unwrap();
    assert!(
        files_in(&entry).is_empty(),
        "left behind: {:?}",
        files_in(&entry)
    );
    assert!(files_in(tmp.path()).iter().all(|f| !f.ends_with(".tmp")));

    // The next attempt goes to the network again (and still fails).
    assert!(d
        .download(&Request {
            location: &url,
            dest: Some(&dest),
            digest: Some(&wrong),
            ..Default::default()
        })
        .is_err());
    assert_eq!(server.hits(), 2);
}

#[test]
fn interrupted_transfer_is_not_a_cache_hit() {
    let server = Server::start();
    let body = payload();
    let url = server.serve("/cut.img", Reply::Truncated(body.clone(), 5000));
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(&tmp.path().join("cache"));
    let dest = tmp.path().join("dest");
    let req = Request {
        location: &url,
        dest: Some(&dest),
        ..Default::default()
    };
    let err = d.download(&req).unwrap_err();
    assert!(
        matches!(err, DownloadError::Truncated { got, expected: 70000, .. } if got <= 5000),
        "{err}"
    );
    assert!(!dest.exists());
    let entry = d.entry_dir(&url).unwrap();
    assert!(!entry.join("data").exists());
    assert!(files_in(&entry).is_empty(), "{:?}", files_in(&entry));

    // Once the server behaves, the file is fetched again (no digest: only a complete
    // transfer could have made a hit).
    server.serve("/cut.img", Reply::Full(body.clone()));
    let out = d.download(&req).unwrap();
    assert_eq!(out.status, Status::Downloaded);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(server.hits(), 2);
}

#[test]
fn http_errors_name_the_url() {
    let server = Server::start();
    let url = format!("{}/missing.img", server.base);
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(&tmp.path().join("cache"));
    let msg = d
        .download(&Request {
            location: &url,
            dest: Some(&tmp.path().join("x")),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&url) && msg.contains("404"), "{msg}");
    assert!(!d.entry_dir(&url).unwrap().join("data").exists());
}

#[test]
fn decompresses_each_format_over_http_and_locally() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(&tmp.path().join("cache"));
    for ext in ["gz", "bz2", "xz", "zst"] {
        let compressed = fixture(&format!("payload.{ext}"));
        let url = server.serve(&format!("/img.raw.{ext}"), Reply::Full(compressed.clone()));
        let dest = tmp.path().join(format!("http-{ext}"));
        d.download(&Request {
            location: &url,
            dest: Some(&dest),
            digest: Some(&sha256(&compressed)),
            decompress: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), payload(), "{ext} over http");
        // The cache keeps the compressed bytes.
        let data = d.entry_dir(&url).unwrap().join("data");
        assert_eq!(std::fs::read(data).unwrap(), compressed);

        // A local file without a telling extension: detected by magic bytes.
        let local = tmp.path().join(format!("blob-{ext}"));
        std::fs::write(&local, &compressed).unwrap();
        let dest = tmp.path().join(format!("local-{ext}"));
        d.download(&Request {
            location: local.to_str().unwrap(),
            dest: Some(&dest),
            decompress: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), payload(), "{ext} by magic");
    }

    // Without `decompress` the bytes stay as they are.
    let url = format!("{}/img.raw.gz", server.base);
    let dest = tmp.path().join("kept.gz");
    d.download(&Request {
        location: &url,
        dest: Some(&dest),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), fixture("payload.gz"));
}

#[test]
fn corrupt_compressed_data_is_an_error_and_leaves_no_dest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = fixture("payload.xz");
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let src = tmp.path().join("bad.xz");
    std::fs::write(&src, &bad).unwrap();
    let dest = tmp.path().join("out");
    let err = Downloader::without_cache()
        .progress(ProgressMode::Hidden)
        .download(&Request {
            location: src.to_str().unwrap(),
            dest: Some(&dest),
            decompress: true,
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::Decompress { format: "xz", .. }),
        "{err}"
    );
    assert!(!dest.exists());
    assert_eq!(files_in(tmp.path()), ["bad.xz"]);
}

/// A local file is hashed once: while its inode, size and mtime stay, the record stands for
/// the check; a rewritten file is hashed again.
#[test]
fn a_local_files_digest_is_checked_once_while_it_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let src: PathBuf = tmp.path().join("src.img");
    std::fs::write(&src, payload()).unwrap();
    let d = downloader(&tmp.path().join("cache"));
    let good = sha256(&payload());
    let check = |digest: &str| {
        d.download(&Request {
            location: src.to_str().unwrap(),
            digest: Some(digest),
            ..Default::default()
        })
    };
    check(&good).unwrap();
    let records: Vec<PathBuf> = walk(&tmp.path().join("cache/download/by-local-sha256"));
    assert_eq!(records.len(), 1, "{records:?}");
    // Forge the record to name another digest: trusted, so the file was not hashed again.
    let other = sha256(b"other");
    let text = std::fs::read_to_string(&records[0]).unwrap();
    assert!(text.contains(&good), "{text}");
    std::fs::write(&records[0], text.replace(&good, &other)).unwrap();
    check(&other).unwrap();
    // A rewritten file (same size, another mtime) is hashed again and found wrong.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut changed = payload();
    changed[0] ^= 1;
    std::fs::write(&src, &changed).unwrap();
    let e = check(&other).unwrap_err().to_string();
    assert!(e.contains("mismatch"), "{e}");
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn local_paths_and_file_urls_are_digest_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let src: PathBuf = tmp.path().join("src.img");
    std::fs::write(&src, payload()).unwrap();
    let d = downloader(&tmp.path().join("cache"));
    let good256 = sha256(&payload());
    let good512 = format!("sha512:{}", hex::encode(sha2::Sha512::digest(payload())));

    let file_url = format!("file://{}", src.display());
    for (i, (loc, digest)) in [
        (src.to_str().unwrap().to_string(), good256.as_str()),
        (file_url.clone(), good512.as_str()),
    ]
    .into_iter()
    .enumerate()
    {
        let dest = tmp.path().join(format!("dest{i}"));
        let out = d
            .download(&Request {
                location: &loc,
                dest: Some(&dest),
                digest: Some(digest),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(out.status, Status::Downloaded);
        assert!(out.validated_digest);
        assert_eq!(std::fs::read(&dest).unwrap(), payload());
    }
    // Local files are not copied into the cache: only their verified digests are recorded.
    assert!(!tmp.path().join("cache/download/by-url-sha256").exists());
    assert!(tmp.path().join("cache/download/by-local-sha256").is_dir());

    let wrong = sha256(b"nope");
    let dest = tmp.path().join("never");
    let msg = d
        .download(&Request {
            location: &file_url,
            dest: Some(&dest),
            digest: Some(&wrong),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&wrong) && msg.contains(&good256), "{msg}");
    assert!(!dest.exists());

    let msg = d
        .download(&Request {
            location: "file://relative/x.img",
            dest: Some(&dest),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(msg.contains("absolute"), "{msg}");

    let missing = tmp.path().join("missing.img");
    let msg = d
        .download(&Request {
            location: missing.to_str().unwrap(),
            dest: Some(&dest),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");

    let msg = d
        .download(&Request {
            location: "ftp://example.org/x",
            dest: Some(&dest),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(msg.contains("unsupported scheme"), "{msg}");

    let msg = d
        .download(&Request {
            location: src.to_str().unwrap(),
            dest: Some(&dest),
            digest: Some("sha256:xyz"),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(msg.contains("sha256:xyz"), "{msg}");
}

#[test]
fn cache_root_follows_lima_cache_dir() {
    // Each test is its own process under nextest, so setting the variable is contained.
    unsafe { std::env::set_var("LIMA_CACHE_DIR", "/tmp/somewhere") };
    assert_eq!(
        downloader::default_cache_root().unwrap(),
        PathBuf::from("/tmp/somewhere")
    );
    unsafe { std::env::remove_var("LIMA_CACHE_DIR") };
    unsafe { std::env::set_var("XDG_CACHE_HOME", "/tmp/xdg") };
    assert_eq!(
        downloader::default_cache_root().unwrap(),
        PathBuf::from("/tmp/xdg/lima")
    );
    unsafe { std::env::remove_var("XDG_CACHE_HOME") };
    unsafe { std::env::set_var("HOME", "/home/u") };
    assert_eq!(
        downloader::default_cache_root().unwrap(),
        PathBuf::from("/home/u/.cache/lima")
    );
}

#[test]
fn digestless_entries_are_refreshed_when_last_modified_changes() {
    let server = Server::start();
    let url = server.serve(
        "/latest.img",
        Reply::Modified(b"v1".to_vec(), "Mon, 01 Jan 2024 00:00:00 GMT"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(&tmp.path().join("cache"));
    let get = |name: &str| {
        let dest = tmp.path().join(name);
        let out = d
            .download(&Request {
                location: &url,
                dest: Some(&dest),
                ..Default::default()
            })
            .unwrap();
        (out.status, std::fs::read(dest).unwrap())
    };
    assert_eq!(get("a"), (Status::Downloaded, b"v1".to_vec()));
    // Unchanged: one HEAD, no GET.
    assert_eq!(get("b"), (Status::UsedCache, b"v1".to_vec()));
    assert_eq!(server.hits(), 2);
    server.serve(
        "/latest.img",
        Reply::Modified(b"v2".to_vec(), "Tue, 02 Jan 2024 00:00:00 GMT"),
    );
    assert_eq!(get("c"), (Status::Downloaded, b"v2".to_vec()));
    // cached() never asks the server.
    let hits = server.hits();
    assert!(d.cached(&url, None).unwrap().is_some());
    assert_eq!(server.hits(), hits);
}

/// `fetch_in_place`: a URL's file is the cache entry (fetched once, compressed or not: never
/// decompressed), a local file is itself; both digest-checked.
#[test]
fn fetch_in_place_gives_the_cache_entry_or_the_local_file() {
    let server = Server::start();
    let body = payload();
    let url = server.serve("/nerdctl-full.tar.gz", Reply::Full(body.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(&tmp.path().join("cache"));
    let digest = sha256(&body);
    let p = d.fetch_in_place(&url, Some(&digest), None).unwrap();
    assert!(p.starts_with(tmp.path().join("cache")), "{}", p.display());
    assert_eq!(std::fs::read(&p).unwrap(), body);
    let hits = server.hits();
    assert_eq!(d.fetch_in_place(&url, Some(&digest), None).unwrap(), p);
    assert_eq!(server.hits(), hits, "a cache hit fetches nothing");

    let local = tmp.path().join("local.tgz");
    std::fs::write(&local, &body).unwrap();
    let loc = local.to_str().unwrap();
    assert_eq!(d.fetch_in_place(loc, Some(&digest), None).unwrap(), local);
    let wrong = sha256(b"other");
    assert!(d.fetch_in_place(loc, Some(&wrong), None).is_err());
    assert!(d
        .fetch_in_place(tmp.path().join("missing").to_str().unwrap(), None, None)
        .is_err());
}
