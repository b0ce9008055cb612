//! Decompression of downloaded images, all in pure Rust (no gzip/xz/zstd/bzip2 binaries).

use std::io::{self, BufRead, Read, Write};
use std::path::Path;

use crate::{io_err, DownloadError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// By the location's extension (query and fragment ignored).
    pub fn from_extension(location: &str) -> Option<Compression> {
        let path = location.split(['?', '#']).next().unwrap_or(location);
        let ext = path.rsplit_once('.').map(|(_, e)| e)?;
        match ext {
            "gz" => Some(Compression::Gzip),
            "bz2" => Some(Compression::Bzip2),
            "xz" => Some(Compression::Xz),
            "zst" => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub fn from_magic(header: &[u8]) -> Option<Compression> {
        if header.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if header.starts_with(b"BZh") {
            Some(Compression::Bzip2)
        } else if header.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Compression::Xz)
        } else if header.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else {
            None
        }
    }

    /// Extension first, then the file's first bytes.
    pub fn detect(location: &str, file: &Path) -> Result<Option<Compression>, DownloadError> {
        if let Some(c) = Self::from_extension(location) {
            return Ok(Some(c));
        }
        let mut header = [0u8; 6];
        let mut f = std::fs::File::open(file).map_err(io_err(file))?;
        let mut n = 0;
        while n < header.len() {
            match f.read(&mut header[n..]).map_err(io_err(file))? {
                0 => break,
                k => n += k,
            }
        }
        Ok(Self::from_magic(&header[..n]))
    }

    /// Streams the decompressed bytes of `input` to `out`; returns how many were written.
    pub fn decompress(self, mut input: impl BufRead, out: &mut impl Write) -> io::Result<u64> {
        match self {
            Compression::Gzip => io::copy(&mut flate2::bufread::MultiGzDecoder::new(input), out),
            Compression::Bzip2 => io::copy(&mut bzip2_rs::DecoderReader::new(input), out),
            Compression::Zstd => {
                let mut d = ruzstd::decoding::StreamingDecoder::new(input)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                io::copy(&mut d, out)
            }
            Compression::Xz => {
                let mut counted = CountingWriter { inner: out, n: 0 };
                lzma_rs::xz_decompress(&mut input, &mut counted)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                Ok(counted.n)
            }
        }
    }
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_and_magic() {
        assert_eq!(
            Compression::from_extension("https://x/a.img.xz?sig=1"),
            Some(Compression::Xz)
        );
        assert_eq!(Compression::from_extension("/a/b.qcow2"), None);
        assert_eq!(
            Compression::from_magic(b"BZh91AY"),
            Some(Compression::Bzip2)
        );
        assert_eq!(Compression::from_magic(b"QFI\xfb"), None);
    }
}
