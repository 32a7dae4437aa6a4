//! Crate-internal file helpers: transparent gzip reading and atomic writes.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::Error;

/// The first two bytes of every gzip stream (RFC 1952).
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file, decompressing it if it starts with the gzip magic bytes
/// (whatever its name).
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read, [`Error::Gzip`] if it looks like gzip but
/// does not decompress (corrupt or truncated stream).
pub(crate) fn read_decompressed(path: &Path) -> Result<Vec<u8>, Error> {
    let bytes = fs::read(path).map_err(|source| Error::io(path, source))?;
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut decoded = Vec::with_capacity(bytes.len().saturating_mul(4));
    GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut decoded)
        .map_err(|source| Error::Gzip {
            path: path.to_owned(),
            source,
        })?;
    Ok(decoded)
}

/// Reads a whole file like [`read_decompressed`], split after its first
/// `head_len` bytes: `(head, rest)`. The rest is read straight into its own
/// buffer, so a caller that keeps only the payload after a header never moves
/// it (a 47 MB MNIST image file is not copied to drop its 16-byte header).
///
/// # Errors
///
/// As [`read_decompressed`].
pub(crate) fn read_decompressed_split(
    path: &Path,
    head_len: usize,
) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let io = |source| Error::io(path, source);
    let mut file = fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut magic = Vec::with_capacity(2);
    (&mut file).take(2).read_to_end(&mut magic).map_err(io)?;
    let gzip = magic == GZIP_MAGIC;
    let mut reader: Box<dyn Read> = if gzip {
        Box::new(GzDecoder::new(std::io::Cursor::new(magic).chain(file)))
    } else {
        Box::new(std::io::Cursor::new(magic).chain(file))
    };
    let fail = |source| {
        if gzip {
            Error::Gzip {
                path: path.to_owned(),
                source,
            }
        } else {
            Error::io(path, source)
        }
    };
    let mut head = Vec::with_capacity(head_len);
    (&mut reader)
        .take(head_len as u64)
        .read_to_end(&mut head)
        .map_err(fail)?;
    let expected = if gzip { size.saturating_mul(4) } else { size };
    let mut rest = Vec::with_capacity(
        usize::try_from(expected)
            .unwrap_or(0)
            .saturating_sub(head_len),
    );
    reader.read_to_end(&mut rest).map_err(fail)?;
    Ok((head, rest))
}

/// `path` with `suffix` appended to its file name: `a/b.gz` + `.part` → `a/b.gz.part`.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically: to a temporary file beside it, flushed to disk,
/// then renamed over `path`. Readers see the old file or the new one, never a mix.
///
/// # Errors
///
/// [`Error::Io`] naming the temporary or final path; the temporary file is removed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let temp = with_suffix(path, &format!(".{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&temp).map_err(|source| Error::io(&temp, source))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|source| Error::io(&temp, source))?;
        fs::rename(&temp, path).map_err(|source| Error::io(path, source))
    })();
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    #[test]
    fn reads_plain_and_gzip_by_magic_not_name() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let plain = dir.path().join("data.gz");
        write_atomic(&plain, b"hello")?;
        assert_eq!(read_decompressed(&plain)?, b"hello");

        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder
            .write_all(b"hello")
            .map_err(|e| Error::io("mem", e))?;
        let packed = encoder.finish().map_err(|e| Error::io("mem", e))?;
        let gzip = dir.path().join("data.raw");
        write_atomic(&gzip, &packed)?;
        assert_eq!(read_decompressed(&gzip)?, b"hello");

        let truncated = dir.path().join("truncated");
        write_atomic(&truncated, &packed[..packed.len() / 2])?;
        let split = read_decompressed_split(&gzip, 2)?;
        assert_eq!(split, (b"he".to_vec(), b"llo".to_vec()));
        assert_eq!(
            read_decompressed_split(&plain, 10)?,
            (b"hello".to_vec(), Vec::new())
        );
        assert!(matches!(
            read_decompressed_split(&truncated, 2),
            Err(Error::Gzip { .. })
        ));
        let error = read_decompressed(&truncated);
        assert!(matches!(error, Err(Error::Gzip { ref path, .. }) if path == &truncated));

        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .map_err(|e| Error::io(dir.path(), e))?
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        Ok(())
    }

    #[test]
    fn with_suffix_appends_to_the_name() {
        assert_eq!(
            with_suffix(Path::new("a/b.gz"), ".part"),
            PathBuf::from("a/b.gz.part")
        );
    }
}
