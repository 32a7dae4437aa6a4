//! The crate's one error type.
//!
//! Every variant that concerns a file names it, so that a message such as
//! `data/mnist/train-labels-idx1-ubyte: truncated: expected 60008 bytes, found 512`
//! tells the user which file to delete or fetch again.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::download::Checksum;
use crate::vision::{ImageShape, SplitSize};

/// Everything that can go wrong while reading, writing or downloading data.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error on a file or directory.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A file's magic number is not the one its format requires.
    #[error("{}: bad magic number: expected {expected:#010x}, found {found:#010x}", path.display())]
    BadMagic {
        /// The offending file.
        path: PathBuf,
        /// The magic number the format requires.
        expected: u32,
        /// The magic number found at the start of the (decompressed) file.
        found: u32,
    },

    /// A file ends before its header says it should.
    #[error(
        "{}: truncated: expected {expected_bytes} bytes, found {found_bytes}",
        path.display()
    )]
    Truncated {
        /// The offending file.
        path: PathBuf,
        /// The length (after decompression) that the header implies.
        expected_bytes: u64,
        /// The length actually found.
        found_bytes: u64,
    },

    /// A file goes on after the end its header announces.
    #[error(
        "{}: {} unexpected trailing bytes: expected {expected_bytes} bytes, found {found_bytes}",
        path.display(),
        found_bytes.saturating_sub(*expected_bytes)
    )]
    TrailingBytes {
        /// The offending file.
        path: PathBuf,
        /// The length (after decompression) that the header implies.
        expected_bytes: u64,
        /// The length actually found.
        found_bytes: u64,
    },

    /// A header declares dimensions whose product does not fit in memory.
    #[error("{}: dimensions {dims:?} are too large", path.display())]
    BadDimensions {
        /// The offending file.
        path: PathBuf,
        /// The dimensions read from the header.
        dims: Vec<u32>,
    },

    /// An images file and its labels file disagree on the number of examples.
    #[error(
        "{} holds {image_count} images but {} holds {label_count} labels",
        images.display(),
        labels.display()
    )]
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// Number of images it holds.
        image_count: usize,
        /// The labels file.
        labels: PathBuf,
        /// Number of labels it holds.
        label_count: usize,
    },

    /// A file holds a label outside `0..num_classes`.
    #[error(
        "{}: label {label} at index {index} is out of range for {num_classes} classes",
        path.display()
    )]
    BadLabel {
        /// The offending file.
        path: PathBuf,
        /// Zero-based index of the example.
        index: usize,
        /// The label found.
        label: u32,
        /// The number of classes the format allows.
        num_classes: usize,
    },

    /// A file starts like gzip but does not decompress.
    #[error("{}: corrupt gzip stream: {source}", path.display())]
    Gzip {
        /// The offending file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },

    /// A tar archive (after gzip decompression) cannot be read.
    #[error("{}: corrupt tar archive: {source}", path.display())]
    Archive {
        /// The offending archive.
        path: PathBuf,
        /// The tar reader's error.
        #[source]
        source: io::Error,
    },

    /// A zlib stream inside a file (a compressed MAT-file variable) does not decompress.
    #[error("{}: corrupt zlib stream: {source}", path.display())]
    Zlib {
        /// The offending file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },

    /// A MAT-file is not a MATLAB v5 file, or lacks what a loader needs.
    #[error("{}: {problem}", path.display())]
    BadMat {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        problem: MatProblem,
    },

    /// An image file cannot be decoded (not a JPEG, corrupt, or truncated).
    #[error("{}: cannot decode image: {source}", path.display())]
    Image {
        /// The offending image.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: Box<image::ImageError>,
    },

    /// A line of a text file (such as a ground-truth list) cannot be parsed.
    #[error("{}:{line}: {text:?} is not {expected}", path.display())]
    BadTextLine {
        /// The offending file.
        path: PathBuf,
        /// One-based line number.
        line: usize,
        /// The line's text.
        text: String,
        /// What the line should hold.
        expected: &'static str,
    },

    /// A directory that should hold images in class subfolders holds none.
    #[error("{} holds no images: {hint}", path.display())]
    EmptyImageFolder {
        /// The directory.
        path: PathBuf,
        /// What the layout should be.
        hint: String,
    },

    /// A worker thread of a [`crate::pipeline::Prefetch`] panicked.
    #[error("a prefetch worker panicked while preparing batch {batch}")]
    WorkerPanicked {
        /// The batch it was preparing.
        batch: usize,
    },

    /// A CSV row cannot be parsed.
    #[error("{}:{line}: {problem}", path.display())]
    BadCsvRow {
        /// The offending file.
        path: PathBuf,
        /// One-based line number.
        line: usize,
        /// What is wrong with the row.
        problem: CsvProblem,
    },

    /// A file's checksum differs from the published one.
    #[error("{}: checksum mismatch: expected {expected}, got {actual}", path.display())]
    Checksum {
        /// The offending file.
        path: PathBuf,
        /// The published checksum.
        expected: Checksum,
        /// The checksum of the file on disk, same algorithm.
        actual: Checksum,
    },

    /// A file is present but is not the published one; it was left untouched.
    #[error(
        "{} is present but is not the published file ({actual}, published {expected}); it may be \
         your own data, so it is left untouched: replace it by fetching with `force` \
         (cargo xtask fetch --force), or keep it and point the data directory at the data you mean",
        path.display()
    )]
    NotOfficial {
        /// The file.
        path: PathBuf,
        /// The published checksum.
        expected: Checksum,
        /// The file's checksum, same algorithm.
        actual: Checksum,
    },

    /// A data file a loader needs is absent.
    #[error("{} not found: {hint}", path.display())]
    MissingFile {
        /// The path that was looked for (without a `.gz` suffix when both were tried).
        path: PathBuf,
        /// How to obtain the file.
        hint: String,
    },

    /// Offline mode is on and a file would have to be downloaded.
    #[error(
        "offline mode: {} is missing or invalid; download it from {url} and put it at that path, \
         or turn offline mode off (BIGBATCH_OFFLINE)",
        path.display()
    )]
    Offline {
        /// Where the file is expected.
        path: PathBuf,
        /// The first mirror it could be downloaded from.
        url: String,
    },

    /// An HTTP request failed below the HTTP layer (DNS, connection, TLS, protocol).
    #[error("request to {url} failed: {source}")]
    Http {
        /// The requested URL.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: Box<ureq::Error>,
    },

    /// A server answered with an unusable HTTP status.
    #[error("{url} answered HTTP {status}")]
    HttpStatus {
        /// The requested URL.
        url: String,
        /// The status code received.
        status: u16,
    },

    /// A download kept being interrupted and the retries ran out.
    #[error(
        "download from {url} interrupted {attempts} times; kept {received_bytes} bytes: {source}"
    )]
    Interrupted {
        /// The requested URL.
        url: String,
        /// How many transfers were attempted.
        attempts: u32,
        /// Bytes kept in the `.part` file.
        received_bytes: u64,
        /// The last transfer's error.
        #[source]
        source: io::Error,
    },

    /// Every mirror of a resource failed.
    #[error(
        "could not fetch {file} from any mirror:{}\nTo proceed without the network: fetch on a \
         connected machine and copy the data directory here, point the data directory \
         (--data-dir, BIGBATCH_DATA_DIR) at a copy, or bring your own digits with \
         `cargo xtask import-mnist-csv`",
        list_failures(attempts)
    )]
    AllMirrorsFailed {
        /// The resource's file name.
        file: String,
        /// One entry per mirror, in the order they were tried.
        attempts: Vec<MirrorFailure>,
    },

    /// In-memory pixels do not match `labels.len() × shape.len()`.
    #[error("{found} pixel bytes for {count} images of shape {shape}: expected {expected}")]
    LengthMismatch {
        /// Number of images (labels).
        count: usize,
        /// Shape of one image.
        shape: ImageShape,
        /// Expected number of pixel bytes.
        expected: usize,
        /// Number of pixel bytes given.
        found: usize,
    },

    /// An in-memory label is outside `0..num_classes`.
    #[error("label {label} at index {index} is out of range for {num_classes} classes")]
    LabelOutOfRange {
        /// Zero-based index of the example.
        index: usize,
        /// The label found.
        label: u32,
        /// The number of classes declared.
        num_classes: usize,
    },

    /// A dataset cannot be stored in a file format.
    #[error(
        "cannot write {count} images of shape {shape} to {}: IDX images are single-channel \
         with every dimension below 2^32",
        path.display()
    )]
    UnsupportedShape {
        /// The file that was to be written.
        path: PathBuf,
        /// Shape of one image.
        shape: ImageShape,
        /// Number of images.
        count: usize,
    },

    /// A split asks for more examples than there are, or a fraction outside `[0, 1]`.
    #[error(
        "cannot hold out {requested} of {len} examples: a count must be at most the length \
         and a fraction in [0, 1]"
    )]
    InvalidSplitSize {
        /// The size asked for.
        requested: SplitSize,
        /// The number of examples.
        len: usize,
    },

    /// Normalisation statistics are unusable.
    #[error(
        "invalid normalisation: mean {mean:?} and std {std:?} must have one entry per channel \
         and std must be positive and finite"
    )]
    InvalidNormalization {
        /// The per-channel means given.
        mean: Vec<f32>,
        /// The per-channel standard deviations given.
        std: Vec<f32>,
    },

    /// A split name is not one of the known splits.
    #[error("unknown split {name:?}: expected \"train\" or \"test\"")]
    UnknownSplit {
        /// The name given.
        name: String,
    },
}

/// Why one mirror failed, as listed by [`Error::AllMirrorsFailed`].
#[derive(Debug)]
pub struct MirrorFailure {
    /// The URL that was tried.
    pub url: String,
    /// What went wrong.
    pub error: Error,
}

impl fmt::Display for MirrorFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.url, self.error)
    }
}

fn list_failures(attempts: &[MirrorFailure]) -> String {
    if attempts.is_empty() {
        return " no mirrors are listed".to_owned();
    }
    attempts
        .iter()
        .map(|attempt| format!("\n  - {attempt}"))
        .collect()
}

/// What is wrong with a CSV row, as reported by [`Error::BadCsvRow`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvProblem {
    /// The row has the wrong number of comma-separated fields.
    #[error("expected {expected} fields, found {found}")]
    FieldCount {
        /// Pixels per image plus one label.
        expected: usize,
        /// Fields found.
        found: usize,
    },
    /// A pixel field is not an integer in `0..=255`.
    #[error("field {column}: {text:?} is not a pixel value in 0..=255")]
    BadPixel {
        /// One-based field number.
        column: usize,
        /// The field's text.
        text: String,
    },
    /// The label field is not an integer in `0..num_classes`.
    #[error("label {text:?} is not a class in 0..{num_classes}")]
    BadLabel {
        /// The field's text.
        text: String,
        /// The number of classes.
        num_classes: usize,
    },
    /// The row is not valid UTF-8.
    #[error("row is not valid UTF-8")]
    NotUtf8,
}

/// What is wrong with a MAT-file, as reported by [`Error::BadMat`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatProblem {
    /// The file does not start with a MATLAB 5.0 header and an `IM`/`MI` endian mark.
    #[error("not a MATLAB v5 MAT-file (v7.3 files are HDF5: re-save them with `save -v7`)")]
    NotMatV5,
    /// A data element is malformed.
    #[error("malformed data element at byte {offset}: {what}")]
    Malformed {
        /// Offset of the element in its (decompressed) stream.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// Elements nest deeper than the reader allows.
    #[error("data elements nest deeper than {limit} levels")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
    },
    /// A variable the loader needs is absent.
    #[error("no variable named {name:?}")]
    MissingVariable {
        /// The variable's name.
        name: String,
    },
    /// A variable has the wrong class or dimensions.
    #[error("variable {name:?} should be {expected}, found {found}")]
    Unexpected {
        /// The variable's name.
        name: String,
        /// What the loader needs.
        expected: String,
        /// What the file holds.
        found: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small_send_and_sync() {
        assert!(
            std::mem::size_of::<Error>() <= 96,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn error_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }

    #[test]
    fn all_mirrors_failed_lists_each_mirror() {
        let error = Error::AllMirrorsFailed {
            file: "a.gz".to_owned(),
            attempts: vec![
                MirrorFailure {
                    url: "http://one/a.gz".to_owned(),
                    error: Error::HttpStatus {
                        url: "http://one/a.gz".to_owned(),
                        status: 404,
                    },
                },
                MirrorFailure {
                    url: "http://two/a.gz".to_owned(),
                    error: Error::HttpStatus {
                        url: "http://two/a.gz".to_owned(),
                        status: 503,
                    },
                },
            ],
        };
        let text = error.to_string();
        assert!(text.starts_with("could not fetch a.gz from any mirror:"));
        assert!(text.contains("\n  - http://one/a.gz: http://one/a.gz answered HTTP 404"));
        assert!(text.contains("\n  - http://two/a.gz: http://two/a.gz answered HTTP 503"));
    }

    #[test]
    fn bad_magic_prints_hex() {
        let error = Error::BadMagic {
            path: PathBuf::from("x/labels"),
            expected: 0x801,
            found: 0x803,
        };
        assert_eq!(
            error.to_string(),
            "x/labels: bad magic number: expected 0x00000801, found 0x00000803"
        );
    }
}
