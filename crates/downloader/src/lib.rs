//! `downloader` — layer 7.0: fetches images and other files named by a path, `file://` or
//! `http(s)://` location into a destination, with a cache laid out as Lima's
//! (`<cache>/download/by-url-sha256/<sha256 of url>/{data,url,<algo>.digest,time,type}`),
//! digest checks (a local file's once, while it is unchanged: `by-local-sha256`), optional decompression (.gz, .xz, .zst, .bz2) and progress output.
//!
//! Blocking: async callers should use `tokio::task::spawn_blocking`.

mod decompress;
mod digest;
mod progress;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use decompress::Compression;
pub use digest::{Algorithm, Digest};
pub use progress::ProgressMode;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("invalid digest {digest:?}: {reason}")]
    BadDigest {
        digest: String,
        reason: &'static str,
    },
    #[error("digest mismatch for {location}: expected {expected}, got {actual}")]
    DigestMismatch {
        location: String,
        expected: String,
        actual: String,
    },
    #[error("{location}: file:// needs an absolute path, got {path:?}")]
    RelativeFileUrl { location: String, path: String },
    #[error("{location}: unsupported scheme (use a path, file://, http:// or https://)")]
    UnsupportedScheme { location: String },
    #[error("downloading {url}: {message}")]
    Http { url: String, message: String },
    #[error("downloading {url}: the connection ended after {got} of {expected} bytes")]
    Truncated {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("decompressing {location} ({format}): {source}")]
    Decompress {
        location: String,
        format: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot find a cache directory: set LIMA_CACHE_DIR, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a download did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fetched from the network (or copied from a local file).
    Downloaded,
    /// Served from the cache.
    UsedCache,
    /// The destination already existed; nothing was done (and no digest checked), as in Lima.
    Skipped,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// The cache entry's `data` file, for remote locations with a cache.
    pub cache_path: Option<PathBuf>,
    pub validated_digest: bool,
}

/// One download.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// A path (`~` expanded), `file:///abs/path`, or an `http(s)://` URL.
    pub location: &'a str,
    /// Where to put the file; `None` only fills the cache.
    pub dest: Option<&'a Path>,
    /// `sha256:<hex>` or `sha512:<hex>`.
    pub digest: Option<&'a str>,
    /// Decompress into `dest` by the location's extension, else by magic bytes. Lima asks for
    /// it for images, kernels and firmware, not for initrds (often gzip the kernel reads).
    pub decompress: bool,
    /// Shown in progress output instead of the location.
    pub description: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct Downloader {
    /// The Lima cache root (entries live under `download/`); `None` disables caching.
    cache_root: Option<PathBuf>,
    progress: ProgressMode,
    connect_timeout: Duration,
}

/// `$LIMA_CACHE_DIR`, else `$XDG_CACHE_HOME/lima`, else `~/.cache/lima`.
pub fn default_cache_root() -> Result<PathBuf, DownloadError> {
    let from_env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = from_env("LIMA_CACHE_DIR") {
        return Ok(d);
    }
    if let Some(d) = from_env("XDG_CACHE_HOME") {
        return Ok(d.join("lima"));
    }
    from_env("HOME")
        .map(|h| h.join(".cache").join("lima"))
        .ok_or(DownloadError::NoCacheDir)
}

/// The cache key of a URL: hex sha256 of the URL string (as Lima).
pub fn cache_key(url: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(url.as_bytes()))
}

fn is_local(location: &str) -> bool {
    !location.contains("://") || location.starts_with("file://")
}

fn local_path(location: &str) -> Result<PathBuf, DownloadError> {
    if let Some(p) = location.strip_prefix("file://") {
        if !p.starts_with('/') {
            return Err(DownloadError::RelativeFileUrl {
                location: location.to_string(),
                path: p.to_string(),
            });
        }
        return Ok(PathBuf::from(p));
    }
    if let Some(rest) = location.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return Ok(PathBuf::from(home).join(rest));
        }
    }
    Ok(PathBuf::from(location))
}

/// A unique temporary name next to `path` (same directory, so rename is atomic).
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Removes the file on drop unless disarmed: a failed or interrupted step leaves nothing.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("armed")
    }
    fn persist(mut self, to: &Path) -> Result<(), DownloadError> {
        let from = self.0.take().expect("armed");
        fs::rename(&from, to).map_err(|e| {
            let _ = fs::remove_file(&from);
            DownloadError::Io {
                path: to.to_path_buf(),
                source: e,
            }
        })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl Downloader {
    /// A downloader caching under `cache_root` (the Lima cache dir, e.g. `~/.cache/lima`).
    pub fn new(cache_root: PathBuf) -> Self {
        Self {
            cache_root: Some(cache_root),
            progress: ProgressMode::Auto,
            connect_timeout: Duration::from_secs(30),
        }
    }

    /// Caching under [`default_cache_root`].
    pub fn with_default_cache() -> Result<Self, DownloadError> {
        Ok(Self::new(default_cache_root()?))
    }

    /// No cache: every remote download goes to the network.
    pub fn without_cache() -> Self {
        Self {
            cache_root: None,
            progress: ProgressMode::Auto,
            connect_timeout: Duration::from_secs(30),
        }
    }

    pub fn progress(mut self, mode: ProgressMode) -> Self {
        self.progress = mode;
        self
    }

    /// `<cache>/download`, which [`Downloader::prune`] removes.
    pub fn download_dir(&self) -> Option<PathBuf> {
        self.cache_root.as_ref().map(|r| r.join("download"))
    }

    /// The cache entry directory of a URL.
    pub fn entry_dir(&self, url: &str) -> Option<PathBuf> {
        self.download_dir()
            .map(|d| d.join("by-url-sha256").join(cache_key(url)))
    }

    /// The cached `data` file of a remote location, if present (and matching `digest`);
    /// never touches the network.
    pub fn cached(
        &self,
        location: &str,
        digest: Option<&str>,
    ) -> Result<Option<PathBuf>, DownloadError> {
        let digest = digest.map(Digest::parse).transpose()?;
        match self.entry_dir(location) {
            Some(entry) if !is_local(location) && entry.join("data").is_file() => match digest {
                None => Ok(Some(entry.join("data"))),
                Some(d) => Ok(self
                    .cache_hit(&entry, Some(&d))?
                    .then(|| entry.join("data"))),
            },
            _ => Ok(None),
        }
    }

    /// Removes the cache entries of every URL but `keep`'s (`limactl prune --keep-referred`);
    /// returns the removed entries' directories.
    pub fn prune_except<'a>(
        &self,
        keep: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<PathBuf>, DownloadError> {
        let Some(dir) = self.download_dir().map(|d| d.join("by-url-sha256")) else {
            return Ok(Vec::new());
        };
        let keep: std::collections::HashSet<String> = keep.into_iter().map(cache_key).collect();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                tracing::debug!("keeping cache entry {name}");
                continue;
            }
            let path = entry.path();
            let gone = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            gone.map_err(io_err(&path))?;
            removed.push(path);
        }
        Ok(removed)
    }

    /// Empties the download cache (`limactl prune`).
    pub fn prune(&self) -> Result<(), DownloadError> {
        if let Some(dir) = self.download_dir() {
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&dir)(e)),
            }
        }
        Ok(())
    }

    /// The file a location names, verified against `digest`, without copying it anywhere: the
    /// cache entry's `data` for a URL (downloaded when missing), the file itself for a local
    /// path. For large files read in place (the nerdctl archive the seed carries).
    pub fn fetch_in_place(
        &self,
        location: &str,
        digest: Option<&str>,
        description: Option<&str>,
    ) -> Result<PathBuf, DownloadError> {
        let outcome = self.download(&Request {
            location,
            dest: None,
            digest,
            decompress: false,
            description,
        })?;
        match outcome.cache_path {
            Some(p) => Ok(p),
            None if is_local(location) => local_path(location),
            None => Err(DownloadError::NoCacheDir),
        }
    }

    pub fn download(&self, req: &Request<'_>) -> Result<Outcome, DownloadError> {
        let digest = req.digest.map(Digest::parse).transpose()?;
        if let Some(dest) = req.dest {
            if dest.exists() {
                return Ok(Outcome {
                    status: Status::Skipped,
                    cache_path: None,
                    validated_digest: false,
                });
            }
            if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
        }
        let describe = req.description.unwrap_or(req.location);

        if is_local(req.location) {
            let src = local_path(req.location)?;
            if let Some(d) = &digest {
                self.check_local(&src, req.location, d)?;
            }
            if let Some(dest) = req.dest {
                self.install(&src, dest, req, describe)?;
            } else if !src.exists() {
                return Err(io_err(&src)(io::ErrorKind::NotFound.into()));
            }
            return Ok(Outcome {
                status: Status::Downloaded,
                cache_path: None,
                validated_digest: digest.is_some(),
            });
        }

        if !(req.location.starts_with("http://") || req.location.starts_with("https://")) {
            return Err(DownloadError::UnsupportedScheme {
                location: req.location.to_string(),
            });
        }

        let Some(entry) = self.entry_dir(req.location) else {
            // No cache: download next to the destination, verify, then move into place.
            let dest = req.dest.ok_or(DownloadError::NoCacheDir)?;
            let tmp = TempFile(Some(temp_path(dest)));
            self.fetch(req.location, tmp.path(), digest.as_ref(), describe)?;
            if req.decompress {
                self.install(tmp.path(), dest, req, describe)?;
            } else {
                tmp.persist(dest)?;
            }
            return Ok(Outcome {
                status: Status::Downloaded,
                cache_path: None,
                validated_digest: digest.is_some(),
            });
        };

        create_private_dir(&entry)?;
        let data = entry.join("data");
        let status = if self.cache_hit(&entry, digest.as_ref())? {
            tracing::debug!("using cached {} for {}", data.display(), req.location);
            Status::UsedCache
        } else {
            let tmp = TempFile(Some(temp_path(&data)));
            let meta = self.fetch(req.location, tmp.path(), digest.as_ref(), describe)?;
            write_small(&entry.join("url"), req.location)?;
            if let Some(d) = &digest {
                write_small(&entry.join(d.algorithm.digest_file()), &d.to_string())?;
            }
            if let Some(t) = meta.last_modified {
                write_small(&entry.join("time"), &t)?;
            }
            if let Some(t) = meta.content_type {
                write_small(&entry.join("type"), &t)?;
            }
            // `data` appears last and atomically: only a complete, verified file is a hit.
            tmp.persist(&data)?;
            Status::Downloaded
        };
        if let Some(dest) = req.dest {
            self.install(&data, dest, req, describe)?;
        }
        Ok(Outcome {
            status,
            cache_path: Some(data),
            validated_digest: digest.is_some(),
        })
    }

    /// Checks a local file's digest once: after a match, a record under
    /// `<cache>/download/by-local-sha256/<sha256 of the path>/<algo>.digest` keeps the digest
    /// with the file's device, inode, size and mtime; while those stay the same, the record
    /// stands for the check (hashing a multi-GiB image costs seconds at every start).
    fn check_local(&self, src: &Path, location: &str, d: &Digest) -> Result<(), DownloadError> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(src).map_err(io_err(src))?;
        let stamp = format!(
            "{} {} {} {}.{:09} {d}\n",
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        let record = self.download_dir().map(|dir| {
            dir.join("by-local-sha256")
                .join(cache_key(&src.to_string_lossy()))
                .join(d.algorithm.digest_file())
        });
        if let Some(r) = &record {
            if fs::read_to_string(r).is_ok_and(|s| s == stamp) {
                tracing::debug!("{} was verified before ({d})", src.display());
                return Ok(());
            }
        }
        let actual = d.algorithm.of_file(src)?;
        d.check(location, &actual)?;
        if let Some(r) = &record {
            // Only a saving: a cache that cannot be written means hashing again next time.
            let written = r
                .parent()
                .map_or(Ok(()), create_private_dir)
                .and_then(|()| write_small(r, &stamp));
            if let Err(e) = written {
                tracing::debug!("not recording the digest of {}: {e}", src.display());
            }
        }
        Ok(())
    }

    /// A cache entry counts only if `data` exists and, when a digest is expected, matches it
    /// (recorded digest file first; otherwise the data is hashed and the record written).
    fn cache_hit(&self, entry: &Path, digest: Option<&Digest>) -> Result<bool, DownloadError> {
        let data = entry.join("data");
        if !data.is_file() {
            return Ok(false);
        }
        let Some(d) = digest else {
            return Ok(!self.changed_upstream(entry));
        };
        let record = entry.join(d.algorithm.digest_file());
        if let Ok(recorded) = fs::read_to_string(&record) {
            if recorded.trim().eq_ignore_ascii_case(&d.to_string()) {
                return Ok(true);
            }
        }
        let actual = d.algorithm.of_file(&data)?;
        if actual.eq_ignore_ascii_case(&d.hex) {
            write_small(&record, &d.to_string())?;
            return Ok(true);
        }
        tracing::info!(
            "cached {} does not match {d}; downloading again",
            data.display()
        );
        Ok(false)
    }

    /// For entries without a digest (e.g. a "latest" image): whether the server's
    /// Last-Modified differs from the recorded one. Unknown (no record, HEAD failed) counts
    /// as unchanged, so an offline host still uses its cache.
    fn changed_upstream(&self, entry: &Path) -> bool {
        let (Ok(url), Ok(recorded)) = (
            fs::read_to_string(entry.join("url")),
            fs::read_to_string(entry.join("time")),
        ) else {
            return false;
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(true)
            .build()
            .into();
        let remote = match agent.head(&url).call() {
            Ok(resp) => resp
                .headers()
                .get("last-modified")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            Err(e) => {
                tracing::info!("cannot check {url} for changes ({e}); using the cache");
                return false;
            }
        };
        match remote {
            Some(remote) if remote.trim() != recorded.trim() => {
                tracing::info!(
                    "{url} changed (Last-Modified {recorded:?} -> {remote:?}); downloading again"
                );
                true
            }
            _ => false,
        }
    }

    /// GETs `url` into `tmp`, hashing on the way; errors (and leaves `tmp` to its owner to
    /// remove) on HTTP errors, truncation or digest mismatch.
    fn fetch(
        &self,
        url: &str,
        tmp: &Path,
        digest: Option<&Digest>,
        describe: &str,
    ) -> Result<HttpMeta, DownloadError> {
        let http = |message: String| DownloadError::Http {
            url: url.to_string(),
            message,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(self.connect_timeout))
            .http_status_as_error(true)
            .build()
            .into();
        let resp = agent.get(url).call().map_err(|e| http(e.to_string()))?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let expected_len = header("content-length").and_then(|v| v.parse::<u64>().ok());
        let meta = HttpMeta {
            last_modified: header("last-modified"),
            content_type: header("content-type"),
        };
        let mut body = resp.into_body().into_with_config().limit(u64::MAX).reader();
        let mut out = private_file(tmp)?;
        let mut hasher = digest.map(|d| d.algorithm.hasher());
        let mut bar = progress::Progress::start(self.progress, describe, expected_len);
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bar.fail();
                    return Err(match expected_len {
                        Some(expected) => DownloadError::Truncated {
                            url: url.to_string(),
                            got,
                            expected,
                        },
                        None => http(e.to_string()),
                    });
                }
            };
            out.write_all(&buf[..n]).map_err(io_err(tmp))?;
            if let Some(h) = hasher.as_mut() {
                h.update(&buf[..n]);
            }
            got += n as u64;
            bar.advance(n as u64);
        }
        if let Some(expected) = expected_len.filter(|e| *e != got) {
            bar.fail();
            return Err(DownloadError::Truncated {
                url: url.to_string(),
                got,
                expected,
            });
        }
        out.sync_all().map_err(io_err(tmp))?;
        if let (Some(d), Some(h)) = (digest, hasher) {
            if let Err(e) = d.check(url, &h.finish()) {
                bar.fail();
                return Err(e);
            }
        }
        bar.finish(got);
        Ok(meta)
    }

    /// Puts `src` at `dest` (decompressing if asked), through a temporary file.
    fn install(
        &self,
        src: &Path,
        dest: &Path,
        req: &Request<'_>,
        describe: &str,
    ) -> Result<(), DownloadError> {
        let tmp = TempFile(Some(temp_path(dest)));
        let format = if req.decompress {
            Compression::detect(req.location, src)?
        } else {
            None
        };
        match format {
            Some(format) => {
                let input = fs::File::open(src).map_err(io_err(src))?;
                let out = fs::File::create(tmp.path()).map_err(io_err(tmp.path()))?;
                let mut bar = progress::Progress::start(
                    self.progress,
                    &format!("decompressing {describe}"),
                    None,
                );
                let mut w = io::BufWriter::new(out);
                let n = format
                    .decompress(io::BufReader::new(input), &mut w)
                    .and_then(|n| w.flush().map(|_| n))
                    .map_err(|source| DownloadError::Decompress {
                        location: req.location.to_string(),
                        format: format.name(),
                        source,
                    })?;
                bar.finish(n);
            }
            None => {
                fs::copy(src, tmp.path()).map_err(io_err(src))?;
            }
        }
        tmp.persist(dest)
    }
}

struct HttpMeta {
    last_modified: Option<String>,
    content_type: Option<String>,
}

fn create_private_dir(dir: &Path) -> Result<(), DownloadError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

fn private_file(path: &Path) -> Result<fs::File, DownloadError> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))
}

/// Small metadata files are written atomically too.
fn write_small(path: &Path, text: &str) -> Result<(), DownloadError> {
    let tmp = TempFile(Some(temp_path(path)));
    let mut f = private_file(tmp.path())?;
    f.write_all(text.as_bytes()).map_err(io_err(tmp.path()))?;
    drop(f);
    tmp.persist(path)
}
