//! Verified, resumable downloads from a list of mirrors, and the data-directory rules.
//!
//! Loaders never download: the CLI (`cargo xtask fetch …`) calls [`fetch`] for each
//! [`Resource`] first, and the loaders then read local files. [`fetch`]:
//!
//! 1. returns at once, without touching the network, if the file is already in place
//!    and its checksum matches;
//! 2. in offline mode ([`FetchOptions::offline`], or `BIGBATCH_OFFLINE=1` through
//!    [`FetchOptions::from_env`]) stops there with [`Error::Offline`];
//! 3. otherwise tries each mirror in order, downloading into `<file>.part`. A partial
//!    file left by an earlier attempt is resumed with an HTTP `Range: bytes=N-` request
//!    when the server answers `206 Partial Content`, and restarted when it answers
//!    `200`. A connection dropped mid-body keeps the `.part` file and is retried with
//!    `Range`, up to [`FetchOptions::retries`] times per mirror;
//! 4. verifies the checksum and renames `<file>.part` to `<file>` (atomic on one file
//!    system). A mismatch deletes the `.part` file and moves on to the next mirror;
//! 5. fails with [`Error::AllMirrorsFailed`], listing every mirror and why, if none
//!    worked.
//!
//! Progress is reported through the [`Progress`] trait; the library never prints.

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::error::MirrorFailure;
use crate::file::with_suffix;

/// Environment variable naming the data directory; see [`data_dir`].
pub const DATA_DIR_ENV: &str = "BIGBATCH_DATA_DIR";

/// Environment variable that turns on offline mode when `1` or `true`; see
/// [`FetchOptions::from_env`].
pub const OFFLINE_ENV: &str = "BIGBATCH_OFFLINE";

/// The data directory used when neither a flag nor [`DATA_DIR_ENV`] names one:
/// `data`, relative to the working directory (the repository root for `cargo xtask`).
pub const DEFAULT_DATA_DIR: &str = "data";

/// Resolves the root data directory, in order of precedence:
///
/// 1. `explicit`, e.g. from a `--data-dir` flag;
/// 2. the environment variable `BIGBATCH_DATA_DIR`, if set and non-empty;
/// 3. [`DEFAULT_DATA_DIR`] (`./data`).
///
/// Datasets live in subdirectories, e.g. `data/mnist/` (see
/// [`crate::vision::mnist::Variant::dir_name`]).
///
/// ```
/// use std::path::Path;
/// assert_eq!(bigbatch_data::data_dir(Some(Path::new("/scratch"))), Path::new("/scratch"));
/// ```
pub fn data_dir(explicit: Option<&Path>) -> PathBuf {
    resolve_data_dir(explicit, env::var_os(DATA_DIR_ENV))
}

fn resolve_data_dir(explicit: Option<&Path>, from_env: Option<OsString>) -> PathBuf {
    match (explicit, from_env) {
        (Some(path), _) => path.to_owned(),
        (None, Some(path)) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_DATA_DIR),
    }
}

/// A published checksum: algorithm and lowercase or uppercase hex digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Checksum {
    /// MD5, as torchvision publishes for its datasets.
    Md5(String),
    /// SHA-256.
    Sha256(String),
}

impl Checksum {
    /// The algorithm's name: `md5` or `sha256`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Md5(_) => "md5",
            Checksum::Sha256(_) => "sha256",
        }
    }

    /// The hex digest.
    pub fn hex(&self) -> &str {
        match self {
            Checksum::Md5(hex) | Checksum::Sha256(hex) => hex,
        }
    }

    /// The checksum of `path` with the same algorithm as `self`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read.
    pub fn compute(&self, path: &Path) -> Result<Checksum, Error> {
        Ok(match self {
            Checksum::Md5(_) => Checksum::Md5(md5_file(path)?),
            Checksum::Sha256(_) => Checksum::Sha256(sha256_file(path)?),
        })
    }

    /// Whether two checksums have the same algorithm and digest (hex case ignored).
    pub fn matches(&self, other: &Checksum) -> bool {
        self.algorithm() == other.algorithm() && self.hex().eq_ignore_ascii_case(other.hex())
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

/// Checks that `path` has the checksum `expected`.
///
/// # Errors
///
/// [`Error::Checksum`] naming the file and both digests on a mismatch; [`Error::Io`] if
/// it cannot be read.
pub fn verify(path: &Path, expected: &Checksum) -> Result<(), Error> {
    let actual = expected.compute(path)?;
    if actual.matches(expected) {
        Ok(())
    } else {
        Err(Error::Checksum {
            path: path.to_owned(),
            expected: expected.clone(),
            actual,
        })
    }
}

/// The lowercase hex SHA-256 of a file, for provenance records.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("abc");
/// std::fs::write(&path, "abc")?;
/// assert_eq!(
///     bigbatch_data::sha256_file(&path)?,
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" // FIPS 180-2, B.1
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    hash_file::<Sha256>(path)
}

/// The lowercase hex MD5 of a file.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read.
pub fn md5_file(path: &Path) -> Result<String, Error> {
    hash_file::<Md5>(path)
}

fn hash_file<D: Digest>(path: &Path) -> Result<String, Error> {
    let mut file = File::open(path).map_err(|source| Error::io(path, source))?;
    let mut hasher = D::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(Error::io(path, source)),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// A file to download: its name in the data directory, its checksum, and full URLs to
/// try in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The file name under the target directory, e.g. `train-images-idx3-ubyte.gz`.
    pub file_name: String,
    /// The published checksum of the file as downloaded.
    pub checksum: Checksum,
    /// Full URLs of the file, tried in order.
    pub mirrors: Vec<String>,
}

/// How [`fetch`] may use the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Never touch the network: succeed only if the file is already in place.
    pub offline: bool,
    /// Limit on establishing a connection (default 30 s).
    pub connect_timeout: Duration,
    /// Limit on each read from the network (default 60 s); a stall longer than this
    /// counts as a dropped connection.
    pub read_timeout: Duration,
    /// How many times a dropped transfer is resumed per mirror (default 3).
    pub retries: u32,
    /// Pause before resuming a dropped transfer (default 1 s).
    pub retry_delay: Duration,
    /// Replace a present file that fails the published checksum (default
    /// false: such a file may be a user's own data, so it is left untouched
    /// and [`Error::NotOfficial`] reported).
    pub force: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            offline: false,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            retries: 3,
            retry_delay: Duration::from_secs(1),
            force: false,
        }
    }
}

impl FetchOptions {
    /// The defaults, with [`Self::offline`] set if the environment variable
    /// `BIGBATCH_OFFLINE` is `1`, `true` or `yes` (case-insensitive).
    pub fn from_env() -> Self {
        FetchOptions {
            offline: env::var(OFFLINE_ENV).is_ok_and(|value| is_truthy(&value)),
            ..FetchOptions::default()
        }
    }
}

fn is_truthy(value: &str) -> bool {
    ["1", "true", "yes"]
        .iter()
        .any(|t| value.trim().eq_ignore_ascii_case(t))
}

/// Receives download progress; the CLI implements it with progress bars.
///
/// Every method has a no-op default. Methods take `&self`: use interior mutability.
pub trait Progress {
    /// A transfer of `file` begins; `total_bytes` is the full size if known and
    /// `already` the bytes kept from an earlier, resumed transfer.
    fn start(&self, file: &str, total_bytes: Option<u64>, already: u64) {
        let _ = (file, total_bytes, already);
    }

    /// `bytes` more bytes were written.
    fn advance(&self, bytes: u64) {
        let _ = bytes;
    }

    /// `file` is verified and in place.
    fn finish(&self, file: &str) {
        let _ = file;
    }

    /// A human-readable note: a file already present, a retry, a failed mirror.
    fn message(&self, text: &str) {
        let _ = text;
    }
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Makes `resource` present and verified in `dir`, downloading it if needed; returns
/// its path.
///
/// See the [module documentation](self) for the steps. `dir` is created if needed.
///
/// # Errors
///
/// - [`Error::Offline`] if offline mode is on and the file is missing;
/// - [`Error::Checksum`] if offline mode is on and the file present is corrupt;
/// - [`Error::AllMirrorsFailed`] listing each mirror's error ([`Error::Http`],
///   [`Error::HttpStatus`], [`Error::Interrupted`], [`Error::Checksum`], [`Error::Io`]);
/// - [`Error::Io`] if `dir` cannot be created or the file not moved into place.
///
/// ```no_run
/// use bigbatch_data::download::{fetch, FetchOptions, NoProgress};
/// use bigbatch_data::vision::mnist::{resources, Variant};
///
/// let dir = bigbatch_data::data_dir(None).join("mnist");
/// for resource in resources(Variant::Digits) {
///     fetch(&resource, &dir, &FetchOptions::from_env(), &NoProgress)?;
/// }
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
pub fn fetch(
    resource: &Resource,
    dir: &Path,
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Result<PathBuf, Error> {
    let target = dir.join(&resource.file_name);
    if target.is_file() {
        match verify(&target, &resource.checksum) {
            Ok(()) => {
                progress.message(&format!("{} is present and verified", target.display()));
                return Ok(target);
            }
            Err(Error::Checksum {
                path,
                expected,
                actual,
            }) if !opts.force => {
                return Err(Error::NotOfficial {
                    path,
                    expected,
                    actual,
                });
            }
            Err(error @ Error::Checksum { .. }) if !opts.offline => {
                progress.message(&format!("{error}; replacing it (force)"));
            }
            Err(error) => return Err(error),
        }
    }

    // A complete download whose final rename was interrupted needs no network.
    let part = with_suffix(&target, ".part");
    if part.is_file() && verify(&part, &resource.checksum).is_ok() {
        fs::rename(&part, &target).map_err(|source| Error::io(&target, source))?;
        progress.finish(&resource.file_name);
        return Ok(target);
    }

    if opts.offline {
        return Err(Error::Offline {
            path: target,
            url: resource
                .mirrors
                .first()
                .cloned()
                .unwrap_or_else(|| "(no mirror listed)".to_owned()),
        });
    }

    fs::create_dir_all(dir).map_err(|source| Error::io(dir, source))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_per_read(Some(opts.read_timeout))
        // Checksums are of the bytes as published: ask servers not to re-encode them.
        .accept_encoding("identity")
        .build()
        .into();

    let mut attempts = Vec::with_capacity(resource.mirrors.len());
    for url in &resource.mirrors {
        let mirror = Mirror {
            agent: &agent,
            url,
            part: &part,
            resource,
            opts,
            progress,
        };
        match mirror.download() {
            Ok(()) => {
                fs::rename(&part, &target).map_err(|source| Error::io(&target, source))?;
                progress.finish(&resource.file_name);
                return Ok(target);
            }
            Err(error) => {
                progress.message(&format!("{url} failed: {error}"));
                attempts.push(MirrorFailure {
                    url: url.clone(),
                    error,
                });
            }
        }
    }
    Err(Error::AllMirrorsFailed {
        file: resource.file_name.clone(),
        attempts,
    })
}

/// One mirror's attempt at filling the `.part` file.
struct Mirror<'a> {
    agent: &'a ureq::Agent,
    url: &'a str,
    part: &'a Path,
    resource: &'a Resource,
    opts: &'a FetchOptions,
    progress: &'a dyn Progress,
}

/// How one HTTP transfer ended. `resumed`: whether it appended to earlier bytes.
enum Transfer {
    /// The body was received in full.
    Complete { resumed: bool },
    /// The body stopped early; the bytes received so far are in the `.part` file.
    Dropped { resumed: bool, error: io::Error },
    /// The server cannot serve the requested range (the `.part` file is too long).
    RangeNotSatisfiable,
}

impl Mirror<'_> {
    /// Fills the `.part` file with a verified copy, resuming dropped transfers.
    fn download(&self) -> Result<(), Error> {
        // Bytes kept from before this mirror (another mirror, an earlier run) might not
        // belong to this file: if the result fails its checksum, retry once from zero.
        let mut stale = part_len(self.part)? > 0;
        let mut drops = 0;
        loop {
            match self.transfer(part_len(self.part)?)? {
                Transfer::Complete { resumed } => stale &= resumed,
                Transfer::Dropped { resumed, error } => {
                    stale &= resumed;
                    drops += 1;
                    let received_bytes = part_len(self.part)?;
                    if drops > self.opts.retries {
                        return Err(Error::Interrupted {
                            url: self.url.to_owned(),
                            attempts: drops,
                            received_bytes,
                            source: error,
                        });
                    }
                    self.progress.message(&format!(
                        "{} dropped after {received_bytes} bytes ({error}); resuming",
                        self.url
                    ));
                    thread::sleep(self.opts.retry_delay);
                    continue;
                }
                Transfer::RangeNotSatisfiable => {
                    // The `.part` file is at least as long as the whole file, so it is
                    // not a prefix of it: start again, without a range this time.
                    remove_part(self.part)?;
                    stale = false;
                    continue;
                }
            }
            match verify(self.part, &self.resource.checksum) {
                Err(Error::Checksum { .. }) if stale => {
                    self.progress
                        .message("resumed download failed its checksum; restarting from zero");
                    remove_part(self.part)?;
                    stale = false;
                }
                Err(error @ Error::Checksum { .. }) => {
                    remove_part(self.part)?;
                    return Err(error);
                }
                result => return result,
            }
        }
    }

    /// One GET, appending to the `.part` file if it holds `have > 0` bytes and the
    /// server honours the range.
    fn transfer(&self, have: u64) -> Result<Transfer, Error> {
        let mut request = self.agent.get(self.url);
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        let response = request.call().map_err(|source| Error::Http {
            url: self.url.to_owned(),
            source: Box::new(source),
        })?;
        let status = response.status().as_u16();
        let content_range = response
            .headers()
            .get("content-range")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_content_range);
        let length = response.body().content_length();
        let (resumed, total) = match status {
            206 if have > 0 && content_range.is_some_and(|(start, _)| start == have) => {
                let total = content_range
                    .and_then(|(_, total)| total)
                    .or_else(|| length.map(|l| l + have));
                (true, total)
            }
            200 => (false, length),
            416 if have > 0 => return Ok(Transfer::RangeNotSatisfiable),
            _ => {
                return Err(Error::HttpStatus {
                    url: self.url.to_owned(),
                    status,
                });
            }
        };

        let mut file = if resumed {
            OpenOptions::new().append(true).open(self.part)
        } else {
            File::create(self.part)
        }
        .map_err(|source| Error::io(self.part, source))?;
        let mut written = if resumed { have } else { 0 };
        self.progress
            .start(&self.resource.file_name, total, written);

        let mut body = response.into_body().into_reader();
        let mut buffer = vec![0u8; 1 << 16];
        let ended = loop {
            match body.read(&mut buffer) {
                Ok(0) => break None,
                Ok(n) => {
                    file.write_all(&buffer[..n])
                        .map_err(|source| Error::io(self.part, source))?;
                    written += n as u64;
                    self.progress.advance(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        file.sync_all()
            .map_err(|source| Error::io(self.part, source))?;
        let ended = ended.or_else(|| {
            total.filter(|&t| written < t).map(|t| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {written} of {t} bytes"),
                )
            })
        });
        Ok(match ended {
            Some(error) => Transfer::Dropped { resumed, error },
            None => Transfer::Complete { resumed },
        })
    }
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`) into `(START, TOTAL)`.
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = range.split_once('/')?;
    let (start, _end) = span.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

/// Length of the `.part` file, 0 if absent.
fn part_len(part: &Path) -> Result<u64, Error> {
    match fs::metadata(part) {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(Error::io(part, source)),
    }
}

fn remove_part(part: &Path) -> Result<(), Error> {
    match fs::remove_file(part) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(part, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_precedence() {
        let flag = Path::new("/flag");
        assert_eq!(resolve_data_dir(Some(flag), Some("/env".into())), flag);
        assert_eq!(
            resolve_data_dir(None, Some("/env".into())),
            Path::new("/env")
        );
        assert_eq!(resolve_data_dir(None, Some("".into())), Path::new("data"));
        assert_eq!(resolve_data_dir(None, None), Path::new("data"));
    }

    #[test]
    fn offline_flag_values() {
        for yes in ["1", "true", "TRUE", " yes "] {
            assert!(is_truthy(yes), "{yes}");
        }
        for no in ["", "0", "false", "no", "off"] {
            assert!(!is_truthy(no), "{no}");
        }
    }

    #[test]
    fn checksums_of_known_vectors() -> Result<(), Error> {
        // RFC 1321 appendix A.5 and FIPS 180-2 appendix B.1, message "abc".
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("abc");
        fs::write(&path, "abc").map_err(|e| Error::io(&path, e))?;
        assert_eq!(md5_file(&path)?, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            sha256_file(&path)?,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        verify(
            &path,
            &Checksum::Md5("900150983CD24FB0D6963F7D28E17F72".to_owned()),
        )?;
        let wrong = Checksum::Sha256("00".repeat(32));
        let error = verify(&path, &wrong).expect_err("wrong digest");
        assert!(
            matches!(error, Error::Checksum { ref actual, .. } if actual.hex().starts_with("ba7816bf"))
        );
        assert!(
            error
                .to_string()
                .contains("abc: checksum mismatch: expected sha256:0000")
        );
        Ok(())
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
