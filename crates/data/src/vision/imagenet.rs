//! ImageNet (ILSVRC-2012) classification, from files the user places: it cannot be
//! downloaded without an account at <https://image-net.org>.
//!
//! Russakovsky et al. (2015), "ImageNet Large Scale Visual Recognition Challenge".
//! 1,281,167 training and 50,000 validation images of 1000 classes (WordNet IDs such
//! as `n01440764`), labelled by their index in sorted WNID order, as torchvision does.
//!
//! # Layout
//!
//! ```text
//! <dir>/train/<wnid>/*.JPEG            # ILSVRC2012_img_train.tar, each class tar extracted
//! <dir>/val/<wnid>/*.JPEG              # either: validation sorted into class folders
//! <dir>/val/ILSVRC2012_val_*.JPEG      # or: ILSVRC2012_img_val.tar extracted flat, with
//! <dir>/ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt
//! <dir>/ILSVRC2012_devkit_t12/data/meta.mat          # from ILSVRC2012_devkit_t12.tar.gz
//! ```
//!
//! In the flat layout, line `k` of the ground truth is the 1-based `ILSVRC2012_ID` of
//! the `k`-th validation image in file-name order, and the devkit's `meta.mat`
//! (struct array `synsets`, fields `ILSVRC2012_ID` and `WNID`) maps IDs to WNIDs.
//! [`validate`] checks what was placed and lists every problem.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::error::MatProblem;
use crate::vision::Normalization;
use crate::vision::image_folder::{ImageFolder, sorted_jpegs, sorted_subdirs};
use crate::vision::mat::read_mat;

/// Number of classes.
pub const NUM_CLASSES: usize = 1000;
/// Number of training images.
pub const TRAIN_IMAGES: usize = 1_281_167;
/// Number of validation images (50 per class).
pub const VAL_IMAGES: usize = 50_000;
/// The ground-truth file's name in the devkit.
pub const GROUND_TRUTH: &str = "ILSVRC2012_validation_ground_truth.txt";
/// The devkit folder (from `ILSVRC2012_devkit_t12.tar.gz`).
pub const DEVKIT_DATA: &str = "ILSVRC2012_devkit_t12/data";

/// How to obtain and place ImageNet, for error messages.
pub const HOW_TO_PLACE: &str = "ImageNet cannot be downloaded automatically: get \
    ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz from \
    https://image-net.org (account required), extract the training tar into <dir>/train \
    with each class tar extracted into <dir>/train/<wnid>/, the validation tar into \
    <dir>/val/, and the devkit into <dir>/";

/// The ImageNet normalisation: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
pub fn normalization() -> Normalization {
    Normalization::imagenet()
}

/// The training split: `dir/train/<wnid>/*.JPEG`.
///
/// # Errors
///
/// As [`ImageFolder::open`], with [`HOW_TO_PLACE`] as the hint if `dir/train` is missing.
pub fn train(dir: &Path) -> Result<ImageFolder, Error> {
    let path = dir.join("train");
    if !path.is_dir() {
        return Err(Error::MissingFile {
            path,
            hint: HOW_TO_PLACE.to_owned(),
        });
    }
    ImageFolder::open(&path)
}

/// The validation split, labelled in the training split's class order (sorted WNIDs).
///
/// Uses `dir/val/<wnid>/` folders if there are any, else the flat `dir/val/*.JPEG`
/// with the devkit's ground truth and `meta.mat` (looked for in [`DEVKIT_DATA`] and in
/// `dir` itself).
///
/// # Errors
///
/// [`Error::MissingFile`] if `dir/val` or a devkit file is missing;
/// [`Error::CountMismatch`] if the ground truth does not have one line per image;
/// the errors of [`read_ground_truth`] and [`read_devkit_wnids`].
pub fn val(dir: &Path) -> Result<ImageFolder, Error> {
    let val_dir = dir.join("val");
    if !val_dir.is_dir() {
        return Err(Error::MissingFile {
            path: val_dir,
            hint: HOW_TO_PLACE.to_owned(),
        });
    }
    if !sorted_subdirs(&val_dir)?.is_empty() {
        return ImageFolder::open(&val_dir);
    }
    let truth_path = devkit_file(dir, GROUND_TRUTH)?;
    let meta_path = devkit_file(dir, "meta.mat")?;
    let ids = read_ground_truth(&truth_path)?;
    let wnids = read_devkit_wnids(&meta_path)?;
    let images = sorted_jpegs(&val_dir)?;
    if images.len() != ids.len() {
        return Err(Error::CountMismatch {
            images: val_dir,
            image_count: images.len(),
            labels: truth_path,
            label_count: ids.len(),
        });
    }
    let mut classes = wnids.clone();
    classes.sort();
    let label_of: HashMap<&str, u32> = classes
        .iter()
        .enumerate()
        .map(|(i, wnid)| (wnid.as_str(), i as u32))
        .collect();
    let mut samples = Vec::with_capacity(images.len());
    for (index, (image, id)) in images.into_iter().zip(ids).enumerate() {
        let label = (id as usize)
            .checked_sub(1)
            .and_then(|i| wnids.get(i))
            .and_then(|wnid| label_of.get(wnid.as_str()))
            .ok_or_else(|| Error::BadLabel {
                path: truth_path.clone(),
                index,
                label: id,
                num_classes: wnids.len(),
            })?;
        samples.push((image, *label));
    }
    ImageFolder::from_samples(classes, samples)
}

/// `dir/ILSVRC2012_devkit_t12/data/<name>`, else `dir/<name>`.
fn devkit_file(dir: &Path, name: &str) -> Result<PathBuf, Error> {
    let nested = dir.join(DEVKIT_DATA).join(name);
    let flat = dir.join(name);
    if nested.is_file() {
        Ok(nested)
    } else if flat.is_file() {
        Ok(flat)
    } else {
        Err(Error::MissingFile {
            path: nested,
            hint: format!(
                "the flat val/ layout needs the devkit: extract ILSVRC2012_devkit_t12.tar.gz \
                 into {}, or sort val/ into <wnid>/ folders",
                dir.display()
            ),
        })
    }
}

/// Reads the devkit's ground truth: one 1-based `ILSVRC2012_ID` per line.
///
/// # Errors
///
/// [`Error::Io`]; [`Error::BadTextLine`] for a line that is not an integer in
/// `1..=1000`.
pub fn read_ground_truth(path: &Path) -> Result<Vec<u32>, Error> {
    let bytes = fs::read(path).map_err(|source| Error::io(path, source))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut ids = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let id = line
            .parse::<u32>()
            .ok()
            .filter(|id| (1..=NUM_CLASSES as u32).contains(id))
            .ok_or_else(|| Error::BadTextLine {
                path: path.to_owned(),
                line: number + 1,
                text: line.to_owned(),
                expected: "an ILSVRC2012_ID in 1..=1000",
            })?;
        ids.push(id);
    }
    Ok(ids)
}

/// Reads the class WNIDs from the devkit's `meta.mat`, indexed by `ILSVRC2012_ID − 1`.
///
/// The classes are the leaf synsets (`num_children == 0`; the real file's 860 inner
/// nodes of the hierarchy follow them with IDs 1001–1860). Their IDs must be exactly
/// `1..=K` (K = 1000 for ILSVRC-2012).
///
/// # Errors
///
/// The errors of [`read_mat`]; [`Error::BadMat`] if `synsets` is missing, is not a
/// struct array with `ILSVRC2012_ID`, `WNID` and `num_children`, or its leaf IDs are
/// not `1..=K` each once.
pub fn read_devkit_wnids(path: &Path) -> Result<Vec<String>, Error> {
    let variables = read_mat(path)?;
    let bad = |problem| Error::BadMat {
        path: path.to_owned(),
        problem,
    };
    let synsets = variables
        .iter()
        .find(|v| v.name == "synsets")
        .ok_or_else(|| {
            bad(MatProblem::MissingVariable {
                name: "synsets".to_owned(),
            })
        })?;
    let unexpected = |found: String| {
        bad(MatProblem::Unexpected {
            name: "synsets".to_owned(),
            expected: "a struct array whose leaf ILSVRC2012_IDs are 1..=K, each with a WNID"
                .to_owned(),
            found,
        })
    };
    let number = |index: usize, field: &str| {
        synsets
            .field(index, field)
            .and_then(|a| a.to_f64())
            .and_then(|v| v.first().copied())
    };
    let mut leaves = Vec::new();
    for index in 0..synsets.len() {
        let id = number(index, "ILSVRC2012_ID");
        let children = number(index, "num_children");
        let wnid = synsets.field(index, "WNID").and_then(|a| a.as_str());
        let (Some(id), Some(children), Some(wnid)) = (id, children, wnid) else {
            return Err(unexpected(synsets.describe()));
        };
        if children == 0.0 {
            leaves.push((id, wnid.to_owned()));
        }
    }
    leaves.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (k, (id, _)) in leaves.iter().enumerate() {
        if *id != (k + 1) as f64 {
            return Err(unexpected(format!(
                "leaf ILSVRC2012_ID {id} at position {}",
                k + 1
            )));
        }
    }
    Ok(leaves.into_iter().map(|(_, wnid)| wnid).collect())
}

/// Something wrong or missing in a placed ImageNet, as listed by [`validate`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    /// A required directory or file is absent.
    Missing {
        /// What was looked for.
        path: PathBuf,
    },
    /// A split has the wrong number of class folders.
    ClassCount {
        /// The split's directory.
        path: PathBuf,
        /// 1000.
        expected: usize,
        /// Class folders found.
        found: usize,
    },
    /// A split has the wrong number of images.
    ImageCount {
        /// The split's directory.
        path: PathBuf,
        /// 1,281,167 or 50,000.
        expected: usize,
        /// JPEG files found.
        found: usize,
    },
    /// A class folder holds no JPEG files.
    EmptyClass {
        /// The folder.
        path: PathBuf,
    },
    /// The validation classes differ from the training classes.
    ClassMismatch {
        /// A validation class not among the training classes (or vice versa).
        wnid: String,
    },
    /// A file or folder could not be read: the underlying error.
    Unreadable {
        /// The error's message.
        message: String,
    },
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Issue::Missing { path } => write!(f, "{} is missing", path.display()),
            Issue::ClassCount {
                path,
                expected,
                found,
            } => write!(
                f,
                "{}: {found} class folders, expected {expected}",
                path.display()
            ),
            Issue::ImageCount {
                path,
                expected,
                found,
            } => write!(
                f,
                "{}: {found} JPEG files, expected {expected}",
                path.display()
            ),
            Issue::EmptyClass { path } => write!(f, "{} holds no JPEG files", path.display()),
            Issue::ClassMismatch { wnid } => {
                write!(f, "class {wnid} is in only one of train/ and val/")
            }
            Issue::Unreadable { message } => f.write_str(message),
        }
    }
}

/// What [`validate`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Class folders under `train/`.
    pub train_classes: usize,
    /// JPEG files under `train/`.
    pub train_images: usize,
    /// Validation images (sorted into folders or flat).
    pub val_images: usize,
    /// Every problem found, in the order checked.
    pub issues: Vec<Issue>,
}

impl Report {
    /// Whether the placed dataset is complete: no issues.
    pub fn is_complete(&self) -> bool {
        self.issues.is_empty()
    }
}

/// Checks a placed ImageNet against the expected layout and counts, listing every
/// problem instead of stopping at the first (counting 1.3 M files takes a while on a
/// network file system).
///
/// Pass `expected` = `(classes, train images, val images)`, normally
/// `(`[`NUM_CLASSES`]`, `[`TRAIN_IMAGES`]`, `[`VAL_IMAGES`]`)`.
///
/// # Errors
///
/// [`Error::MissingFile`] with [`HOW_TO_PLACE`] if `dir` itself is not a directory.
pub fn validate(dir: &Path, expected: (usize, usize, usize)) -> Result<Report, Error> {
    if !dir.is_dir() {
        return Err(Error::MissingFile {
            path: dir.to_owned(),
            hint: HOW_TO_PLACE.to_owned(),
        });
    }
    let (classes, train_expected, val_expected) = expected;
    let mut report = Report::default();
    let train_dir = dir.join("train");
    let mut train_names = Vec::new();
    if train_dir.is_dir() {
        count_class_folders(&train_dir, &mut report, &mut train_names, |r, n| {
            r.train_images += n;
        });
        report.train_classes = train_names.len();
        if train_names.len() != classes {
            report.issues.push(Issue::ClassCount {
                path: train_dir.clone(),
                expected: classes,
                found: train_names.len(),
            });
        }
        if report.train_images != train_expected {
            report.issues.push(Issue::ImageCount {
                path: train_dir,
                expected: train_expected,
                found: report.train_images,
            });
        }
    } else {
        report.issues.push(Issue::Missing { path: train_dir });
    }

    let val_dir = dir.join("val");
    if !val_dir.is_dir() {
        report.issues.push(Issue::Missing { path: val_dir });
        return Ok(report);
    }
    let sorted = sorted_subdirs(&val_dir)
        .map(|d| !d.is_empty())
        .unwrap_or(false);
    if sorted {
        let mut val_names = Vec::new();
        count_class_folders(&val_dir, &mut report, &mut val_names, |r, n| {
            r.val_images += n
        });
        if !train_names.is_empty() {
            for wnid in val_names.iter().filter(|w| !train_names.contains(w)) {
                report
                    .issues
                    .push(Issue::ClassMismatch { wnid: wnid.clone() });
            }
        }
    } else {
        match val(dir) {
            Ok(folder) => report.val_images = folder.len(),
            Err(Error::MissingFile { path, .. }) => report.issues.push(Issue::Missing { path }),
            Err(error) => report.issues.push(Issue::Unreadable {
                message: error.to_string(),
            }),
        }
    }
    if report.val_images != val_expected {
        report.issues.push(Issue::ImageCount {
            path: val_dir,
            expected: val_expected,
            found: report.val_images,
        });
    }
    Ok(report)
}

/// Lists `dir`'s class folders into `names`, adding each one's JPEG count with `add`.
fn count_class_folders(
    dir: &Path,
    report: &mut Report,
    names: &mut Vec<String>,
    add: impl Fn(&mut Report, usize),
) {
    let folders = match sorted_subdirs(dir) {
        Ok(folders) => folders,
        Err(error) => {
            report.issues.push(Issue::Unreadable {
                message: error.to_string(),
            });
            return;
        }
    };
    for (name, path) in folders {
        match sorted_jpegs(&path) {
            Ok(files) if files.is_empty() => report.issues.push(Issue::EmptyClass { path }),
            Ok(files) => add(report, files.len()),
            Err(error) => report.issues.push(Issue::Unreadable {
                message: error.to_string(),
            }),
        }
        names.push(name);
    }
}
