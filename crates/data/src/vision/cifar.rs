//! CIFAR-10 and CIFAR-100, binary version, read straight from the official `.tar.gz`
//! or from its extracted files.
//!
//! Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images";
//! <https://www.cs.toronto.edu/~kriz/cifar.html>. 50,000 training and 10,000 test
//! images of 3×32×32.
//!
//! Each `.bin` file is a sequence of fixed-size records: the label byte(s), then 3072
//! pixel bytes, the red, green and blue 32×32 planes, each row-major. That is already
//! the `C × H × W` layout of [`ImageClassification`], so records are copied once, from
//! the (decompressed) stream straight into the dataset's buffer.
//!
//! | variant | archive | members | record |
//! |---|---|---|---|
//! | CIFAR-10 | `cifar-10-binary.tar.gz` | `cifar-10-batches-bin/data_batch_{1..5}.bin`, `test_batch.bin` | label, 3072 pixels |
//! | CIFAR-100 | `cifar-100-binary.tar.gz` | `cifar-100-binary/train.bin`, `test.bin` | coarse label, fine label, 3072 pixels |

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::Error;
use crate::dataset::Split;
use crate::download::{Checksum, Resource};
use crate::file::GZIP_MAGIC;
use crate::vision::{ImageClassification, ImageShape};

/// The shape of one image: RGB 32×32.
pub const SHAPE: ImageShape = ImageShape::new(3, 32, 32);

/// CIFAR-10's class names, indexed by label (`batches.meta.txt`).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-100's 20 superclass names, indexed by coarse label (`coarse_label_names.txt`).
pub const CIFAR100_COARSE_CLASSES: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// Which dataset, and for CIFAR-100 which labels.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// CIFAR-10: 10 classes.
    Cifar10,
    /// CIFAR-100 with its 100 fine labels.
    Cifar100Fine,
    /// CIFAR-100 with its 20 coarse (superclass) labels.
    Cifar100Coarse,
}

impl Variant {
    /// Whether this is one of the CIFAR-100 variants.
    pub fn is_cifar100(self) -> bool {
        !matches!(self, Variant::Cifar10)
    }

    /// Number of classes of the chosen labels: 10, 100 or 20.
    pub fn num_classes(self) -> usize {
        match self {
            Variant::Cifar10 => 10,
            Variant::Cifar100Fine => 100,
            Variant::Cifar100Coarse => 20,
        }
    }

    /// The conventional subdirectory of the data directory: `cifar-10` or `cifar-100`.
    pub fn dir_name(self) -> &'static str {
        if self.is_cifar100() {
            "cifar-100"
        } else {
            "cifar-10"
        }
    }

    /// The official archive's file name.
    pub fn archive_name(self) -> &'static str {
        if self.is_cifar100() {
            "cifar-100-binary.tar.gz"
        } else {
            "cifar-10-binary.tar.gz"
        }
    }

    /// The folder inside the archive that holds the `.bin` files.
    pub fn member_dir(self) -> &'static str {
        if self.is_cifar100() {
            "cifar-100-binary"
        } else {
            "cifar-10-batches-bin"
        }
    }

    /// The `.bin` files of `split`, in the order their records are concatenated.
    pub fn files(self, split: Split) -> &'static [&'static str] {
        match (self.is_cifar100(), split) {
            (false, Split::Train) => &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
            (false, Split::Test) => &["test_batch.bin"],
            (true, Split::Train) => &["train.bin"],
            (true, Split::Test) => &["test.bin"],
        }
    }

    /// Label bytes at the start of each record: 1 for CIFAR-10, 2 for CIFAR-100.
    pub fn label_bytes(self) -> usize {
        if self.is_cifar100() { 2 } else { 1 }
    }

    /// Bytes per record: label bytes plus 3072 pixels.
    pub fn record_len(self) -> usize {
        self.label_bytes() + SHAPE.len()
    }
}

/// The official archive of `variant` with its MD5 (from the CIFAR page) and mirrors.
///
/// ```
/// use bigbatch_data::vision::cifar::{resource, Variant};
/// let archive = resource(Variant::Cifar10);
/// assert_eq!(archive.file_name, "cifar-10-binary.tar.gz");
/// assert_eq!(archive.mirrors[0], "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz");
/// ```
pub fn resource(variant: Variant) -> Resource {
    let md5 = if variant.is_cifar100() {
        "03b5dce01913d631647c71ecec9e9cb8"
    } else {
        "c32a1d4ab5d03f1284b67883e8d87530"
    };
    let file_name = variant.archive_name().to_owned();
    Resource {
        mirrors: [
            "https://www.cs.toronto.edu/~kriz/",
            "http://www.cs.toronto.edu/~kriz/",
        ]
        .iter()
        .map(|base| format!("{base}{file_name}"))
        .collect(),
        checksum: Checksum::Md5(md5.to_owned()),
        file_name,
    }
}

/// The records of one split with every label kept: CIFAR-100's coarse and fine labels
/// both, CIFAR-10's single label as `fine`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    /// `N × 3 × 32 × 32` pixels.
    pub pixels: Vec<u8>,
    /// CIFAR-10 labels, or CIFAR-100 fine labels.
    pub fine: Vec<u32>,
    /// CIFAR-100 coarse labels; empty for CIFAR-10.
    pub coarse: Vec<u32>,
}

/// Loads `split` of `variant` from `path`: the `.tar.gz` itself, a directory holding
/// it, a directory holding the extracted member folder (`cifar-10-batches-bin/`), or
/// that folder itself. Extracted files are preferred to an archive beside them.
///
/// # Errors
///
/// As [`read_records`].
///
/// ```no_run
/// use bigbatch_data::{data_dir, vision::cifar, Split};
/// let dir = data_dir(None).join("cifar-10");
/// let train = cifar::load(&dir, cifar::Variant::Cifar10, Split::Train)?;
/// assert_eq!(train.len(), 50_000);
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
pub fn load(path: &Path, variant: Variant, split: Split) -> Result<ImageClassification, Error> {
    let records = read_records(path, variant, split)?;
    let labels = if variant == Variant::Cifar100Coarse {
        records.coarse
    } else {
        records.fine
    };
    ImageClassification::new(SHAPE, records.pixels, labels, variant.num_classes())
}

/// Reads every record of `split`, keeping both label kinds; see [`load`] for `path`.
///
/// # Errors
///
/// - [`Error::MissingFile`] if neither the files nor the archive are found, or the
///   archive lacks a member (named as `<archive>/<member>`);
/// - [`Error::Io`], [`Error::Gzip`] (corrupt compression), [`Error::Archive`]
///   (corrupt tar);
/// - [`Error::Truncated`] if a file's length is not a whole number of records;
/// - [`Error::BadLabel`] for a label outside the variant's classes.
pub fn read_records(path: &Path, variant: Variant, split: Split) -> Result<Records, Error> {
    let files = variant.files(split);
    let mut records = Records {
        pixels: Vec::new(),
        fine: Vec::new(),
        coarse: Vec::new(),
    };
    match locate(path, variant, split)? {
        Source::Archive(archive) => read_archive(&archive, variant, files, &mut records)?,
        Source::Files(paths) => {
            for file_path in paths {
                let file =
                    File::open(&file_path).map_err(|source| missing_or_io(&file_path, source))?;
                let len = file
                    .metadata()
                    .map_err(|source| Error::io(&file_path, source))?
                    .len();
                let mut reader = BufReader::with_capacity(1 << 16, file);
                read_member(&file_path, &mut reader, len, variant, &mut records)
                    .map_err(|error| classify(error, &file_path, &Flags::default()))?;
            }
        }
    }
    Ok(records)
}

/// The files [`load`] reads for `split` of `variant` at `path` (see [`load`]):
/// the archive, or the extracted `.bin` files in record order. For provenance
/// (checksums of exactly what was read).
///
/// # Errors
///
/// [`Error::MissingFile`] if neither the files nor the archive are found.
pub fn source_files(path: &Path, variant: Variant, split: Split) -> Result<Vec<PathBuf>, Error> {
    Ok(match locate(path, variant, split)? {
        Source::Archive(archive) => vec![archive],
        Source::Files(files) => files,
    })
}

/// Where a split's records are read from.
enum Source {
    Archive(PathBuf),
    Files(Vec<PathBuf>),
}

/// Resolves `path` as [`load`] documents: an archive file, extracted files
/// (preferred), or an archive in the directory.
fn locate(path: &Path, variant: Variant, split: Split) -> Result<Source, Error> {
    let files = variant.files(split);
    if path.is_file() {
        return Ok(Source::Archive(path.to_owned()));
    }
    let candidates = [path.join(variant.member_dir()), path.to_owned()];
    if let Some(dir) = candidates.iter().find(|dir| dir.join(files[0]).is_file()) {
        return Ok(Source::Files(
            files.iter().map(|name| dir.join(name)).collect(),
        ));
    }
    let archive = path.join(variant.archive_name());
    if archive.is_file() {
        return Ok(Source::Archive(archive));
    }
    Err(Error::MissingFile {
        path: path.join(variant.member_dir()).join(files[0]),
        hint: format!(
            "neither the extracted files nor {} are in {}; run `cargo xtask fetch {}`",
            variant.archive_name(),
            path.display(),
            variant.dir_name()
        ),
    })
}

fn missing_or_io(path: &Path, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::NotFound {
        Error::MissingFile {
            path: path.to_owned(),
            hint: "the other files of the split are present: re-extract the archive".to_owned(),
        }
    } else {
        Error::io(path, source)
    }
}

/// Which layer of a `.tar.gz` failed.
#[derive(Default)]
struct Flags {
    io: Cell<bool>,
    gzip: Cell<bool>,
}

/// A reader that raises a flag when the reader it wraps fails.
struct Watch<'a, R> {
    inner: R,
    failed: &'a Cell<bool>,
}

impl<R: Read> Read for Watch<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed.set(true))
    }
}

/// An error inside [`read_member`]: either final, or an I/O error to attribute.
enum MemberError {
    Done(Error),
    Read(io::Error),
}

/// Turns an I/O error into the error of the layer that failed.
fn classify(error: MemberError, path: &Path, flags: &Flags) -> Error {
    match error {
        MemberError::Done(error) => error,
        MemberError::Read(source) if flags.io.get() => Error::io(path, source),
        MemberError::Read(source) if flags.gzip.get() => Error::Gzip {
            path: path.to_owned(),
            source,
        },
        MemberError::Read(source) => Error::Archive {
            path: path.to_owned(),
            source,
        },
    }
}

/// Streams the archive (gzip detected by its magic bytes), reading each wanted member.
fn read_archive(
    path: &Path,
    variant: Variant,
    files: &[&str],
    records: &mut Records,
) -> Result<(), Error> {
    let flags = Flags::default();
    let mut file = BufReader::with_capacity(
        1 << 16,
        File::open(path).map_err(|source| Error::io(path, source))?,
    );
    let mut magic = [0u8; 2];
    let is_gzip = file
        .get_mut()
        .read_exact(&mut magic)
        .is_ok_and(|()| magic == GZIP_MAGIC);
    std::io::Seek::rewind(file.get_mut()).map_err(|source| Error::io(path, source))?;
    let raw = Watch {
        inner: file,
        failed: &flags.io,
    };
    let stream: Box<dyn Read + '_> = if is_gzip {
        Box::new(Watch {
            inner: GzDecoder::new(raw),
            failed: &flags.gzip,
        })
    } else {
        Box::new(raw)
    };
    // Members may come in any order; keep each one's records apart until all are read.
    let mut parts: Vec<Option<Records>> = vec![None; files.len()];
    let mut archive = tar::Archive::new(stream);
    let mut data_error = None;
    let mut entries = archive
        .entries()
        .map_err(|e| classify(MemberError::Read(e), path, &flags))?;
    for entry in entries.by_ref() {
        let mut entry = entry.map_err(|e| classify(MemberError::Read(e), path, &flags))?;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let wanted = files.iter().position(|file| {
            let member = format!("{}/{file}", variant.member_dir());
            name.trim_start_matches("./") == member
        });
        let Some(index) = wanted else { continue };
        let member_path = path.join(&name);
        let size = entry.size();
        let mut part = Records {
            pixels: Vec::new(),
            fine: Vec::new(),
            coarse: Vec::new(),
        };
        if let Err(error) = read_member(&member_path, &mut entry, size, variant, &mut part) {
            data_error = Some(classify(error, path, &flags));
            break;
        }
        parts[index] = Some(part);
        if parts.iter().all(Option::is_some) {
            break;
        }
    }
    if data_error.is_none() {
        // Read to the end so that a corrupt or truncated archive is noticed (gzip's
        // CRC and length are checked at the end) even when the members came first.
        io::copy(&mut archive.into_inner(), &mut io::sink())
            .map_err(|e| classify(MemberError::Read(e), path, &flags))?;
    } else if let Some(error) = data_error {
        // Gzip checks its CRC only at the end: garbage from a corrupt stream reads as
        // bad records first. Drain the stream so that corruption is reported as such.
        if !flags.gzip.get() && is_gzip {
            let _ = io::copy(&mut archive.into_inner(), &mut io::sink());
        }
        return Err(match error {
            Error::Truncated { .. } | Error::BadLabel { .. } if flags.gzip.get() => Error::Gzip {
                path: path.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidData, error.to_string()),
            },
            error => error,
        });
    }
    for (part, file) in parts.into_iter().zip(files) {
        let Some(mut part) = part else {
            return Err(Error::MissingFile {
                path: path.join(variant.member_dir()).join(file),
                hint: format!(
                    "the archive lacks this member; fetch {} again",
                    variant.archive_name()
                ),
            });
        };
        if records.pixels.is_empty() {
            *records = part;
        } else {
            records.pixels.append(&mut part.pixels);
            records.fine.append(&mut part.fine);
            records.coarse.append(&mut part.coarse);
        }
    }
    Ok(())
}

/// Reads `len` bytes of records from `reader`, appending them to `records`.
fn read_member(
    path: &Path,
    reader: &mut dyn Read,
    len: u64,
    variant: Variant,
    records: &mut Records,
) -> Result<(), MemberError> {
    let record_len = variant.record_len() as u64;
    if !len.is_multiple_of(record_len) {
        return Err(MemberError::Done(Error::Truncated {
            path: path.to_owned(),
            expected_bytes: len.div_ceil(record_len) * record_len,
            found_bytes: len,
        }));
    }
    let count = usize::try_from(len / record_len).map_err(|_| {
        MemberError::Done(Error::BadDimensions {
            path: path.to_owned(),
            dims: vec![u32::MAX],
        })
    })?;
    let first = records.fine.len();
    let label_bytes = variant.label_bytes();
    let mut label = [0u8; 2];
    // Reserve as the data arrives, so that a lying size cannot force a huge allocation.
    for done in 0..count {
        let start = records.pixels.len();
        if let Err(source) = reader.read_exact(&mut label[..label_bytes]) {
            return Err(short_read(path, source, done as u64 * record_len, len));
        }
        records.pixels.resize(start + SHAPE.len(), 0);
        if let Err(source) = reader.read_exact(&mut records.pixels[start..]) {
            records.pixels.truncate(start);
            let found = done as u64 * record_len + label_bytes as u64;
            return Err(short_read(path, source, found, len));
        }
        let (coarse, fine) = if variant.is_cifar100() {
            (u32::from(label[0]), u32::from(label[1]))
        } else {
            (0, u32::from(label[0]))
        };
        let (fine_classes, coarse_classes) = if variant.is_cifar100() {
            (100, 20)
        } else {
            (10, 1)
        };
        for (value, classes) in [(fine, fine_classes), (coarse, coarse_classes)] {
            if value >= classes {
                return Err(MemberError::Done(Error::BadLabel {
                    path: path.to_owned(),
                    index: first + done,
                    label: value,
                    num_classes: classes as usize,
                }));
            }
        }
        records.fine.push(fine);
        if variant.is_cifar100() {
            records.coarse.push(coarse);
        }
    }
    Ok(())
}

/// An early end of the data is a truncated file; anything else is the stream's error.
fn short_read(
    path: &Path,
    source: io::Error,
    found_bytes: u64,
    expected_bytes: u64,
) -> MemberError {
    if source.kind() == io::ErrorKind::UnexpectedEof {
        MemberError::Done(Error::Truncated {
            path: path.to_owned(),
            expected_bytes,
            found_bytes,
        })
    } else {
        MemberError::Read(source)
    }
}
