//! SVHN cropped digits ("Format 2"): the official `{train,test,extra}_32x32.mat` files.
//!
//! Netzer, Wang, Coates, Bissacco, Wu and Ng (2011), "Reading Digits in Natural Images
//! with Unsupervised Feature Learning"; <http://ufldl.stanford.edu/housenumbers/>.
//! 73,257 training, 26,032 test and 531,131 extra 3×32×32 images of 10 classes.
//!
//! Each file is a MATLAB v5 MAT-file (read by [`crate::vision::mat`]) with two
//! variables: `X`, `uint8` of dimensions `[32, 32, 3, N]` (row, column, channel,
//! image) in column-major order, and `y`, `[N, 1]` labels `1..=10` where `10` stands
//! for the digit 0. The loader maps `10` to `0` (so label = digit, as torchvision
//! does) and reorders pixels to `N × 3 × 32 × 32` row-major.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::dataset::Split;
use crate::download::{Checksum, Resource};
use crate::error::MatProblem;
use crate::vision::mat::{MatArray, MatData, NumericType, read_mat};
use crate::vision::{ImageClassification, ImageShape};

/// Number of classes (the digits).
pub const NUM_CLASSES: usize = 10;

/// The shape of one image: RGB 32×32.
pub const SHAPE: ImageShape = ImageShape::new(3, 32, 32);

/// Where the files are published (the dataset's page lists no other mirror).
pub const MIRRORS: [&str; 1] = ["http://ufldl.stanford.edu/housenumbers/"];

/// The subdirectory of the data directory conventionally holding the files.
pub const DIR_NAME: &str = "svhn";

/// A split of SVHN, which has an `extra` split besides train and test.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SvhnSplit {
    /// 73,257 training digits.
    Train,
    /// 26,032 test digits.
    Test,
    /// 531,131 additional, somewhat easier training digits.
    Extra,
}

impl SvhnSplit {
    /// Every split, in a fixed order.
    pub const ALL: [SvhnSplit; 3] = [SvhnSplit::Train, SvhnSplit::Test, SvhnSplit::Extra];

    /// The official file name, e.g. `train_32x32.mat`.
    pub fn file_name(self) -> &'static str {
        match self {
            SvhnSplit::Train => "train_32x32.mat",
            SvhnSplit::Test => "test_32x32.mat",
            SvhnSplit::Extra => "extra_32x32.mat",
        }
    }

    /// The published MD5 of the file (torchvision's `SVHN.split_list`).
    fn md5(self) -> &'static str {
        match self {
            SvhnSplit::Train => "e26dedcc434d2e4c54c9b2d4a06d8373",
            SvhnSplit::Test => "eb5a983be6a315427106f1b164d9cef3",
            SvhnSplit::Extra => "a93ce644f1a588dc4d68dda5feec44a7",
        }
    }
}

impl From<Split> for SvhnSplit {
    fn from(split: Split) -> Self {
        match split {
            Split::Train => SvhnSplit::Train,
            Split::Test => SvhnSplit::Test,
        }
    }
}

/// The file of `split` with its MD5 and mirrors, for [`crate::download::fetch`].
///
/// ```
/// use bigbatch_data::vision::svhn::{resource, SvhnSplit};
/// let train = resource(SvhnSplit::Train);
/// assert_eq!(train.mirrors[0], "http://ufldl.stanford.edu/housenumbers/train_32x32.mat");
/// ```
pub fn resource(split: SvhnSplit) -> Resource {
    let file_name = split.file_name().to_owned();
    Resource {
        mirrors: MIRRORS
            .iter()
            .map(|base| format!("{base}{file_name}"))
            .collect(),
        checksum: Checksum::Md5(split.md5().to_owned()),
        file_name,
    }
}

/// Loads `split` from `dir/<split file name>`.
///
/// # Errors
///
/// [`Error::MissingFile`] (with a hint to fetch it) if the file is absent; otherwise
/// as [`read_file`].
///
/// ```no_run
/// use bigbatch_data::{data_dir, vision::svhn};
/// let test = svhn::load(&data_dir(None).join(svhn::DIR_NAME), svhn::SvhnSplit::Test)?;
/// assert_eq!(test.len(), 26_032);
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
pub fn load(dir: &Path, split: SvhnSplit) -> Result<ImageClassification, Error> {
    let path = dir.join(split.file_name());
    if !path.is_file() {
        return Err(Error::MissingFile {
            path,
            hint: format!(
                "run `cargo xtask fetch svhn` or download {}{} into {}",
                MIRRORS[0],
                split.file_name(),
                dir.display()
            ),
        });
    }
    read_file(&path)
}

/// Reads one SVHN `.mat` file (compressed or not) into `N × 3 × 32 × 32` images with
/// labels `0..=9` (file label 10 becomes 0).
///
/// # Errors
///
/// The errors of [`read_mat`]; [`Error::BadMat`] with [`MatProblem::MissingVariable`]
/// or [`MatProblem::Unexpected`] if `X` or `y` is absent or has the wrong class or
/// dimensions; [`Error::CountMismatch`] if `X` and `y` disagree on `N`;
/// [`Error::BadLabel`] for a label outside `1..=10`.
pub fn read_file(path: &Path) -> Result<ImageClassification, Error> {
    let mut variables = read_mat(path)?;
    let y = take(path, &mut variables, "y")?;
    let x = take(path, &mut variables, "X")?;
    let count = match x.dims.as_slice() {
        [32, 32, 3] => 1,
        [32, 32, 3, n] => *n,
        _ => return Err(unexpected(path, &x, "uint8 [32, 32, 3, N]")),
    };
    let mut pixels = match x.data {
        MatData::Numeric {
            storage: NumericType::U8,
            bytes,
            ..
        } => bytes,
        _ => return Err(unexpected(path, &x, "uint8 [32, 32, 3, N]")),
    };
    let values = y
        .to_f64()
        .filter(|_| y.dims.len() == 2 && y.dims.contains(&1))
        .ok_or_else(|| unexpected(path, &y, "a numeric [N, 1] array"))?;
    if values.len() != count {
        return Err(Error::CountMismatch {
            images: PathBuf::from(format!("{} (X)", path.display())),
            image_count: count,
            labels: PathBuf::from(format!("{} (y)", path.display())),
            label_count: values.len(),
        });
    }
    let mut labels = Vec::with_capacity(count);
    for (index, &value) in values.iter().enumerate() {
        if !(value.fract() == 0.0 && (1.0..=10.0).contains(&value)) {
            return Err(Error::BadLabel {
                path: path.to_owned(),
                index,
                // Saturating cast: NaN becomes 0, which is out of range too.
                label: value as u32,
                num_classes: NUM_CLASSES,
            });
        }
        labels.push(value as u32 % 10);
    }
    column_major_to_chw(&mut pixels);
    ImageClassification::new(SHAPE, pixels, labels, NUM_CLASSES)
}

/// Reorders each 3072-byte image from `[row, column, channel]` column-major to
/// `channel × row × column` row-major, in place.
fn column_major_to_chw(pixels: &mut [u8]) {
    let (size, side) = (SHAPE.len(), SHAPE.width);
    let mut scratch = vec![0u8; size];
    for image in pixels.chunks_exact_mut(size) {
        scratch.copy_from_slice(image);
        for (plane_in, plane_out) in scratch
            .chunks_exact(side * side)
            .zip(image.chunks_exact_mut(side * side))
        {
            // Input index: row + 32·column; output: 32·row + column.
            for (column, input) in plane_in.chunks_exact(side).enumerate() {
                for (row, &pixel) in input.iter().enumerate() {
                    plane_out[row * side + column] = pixel;
                }
            }
        }
    }
}

fn take(path: &Path, variables: &mut Vec<MatArray>, name: &str) -> Result<MatArray, Error> {
    let index = variables
        .iter()
        .position(|v| v.name == name)
        .ok_or_else(|| Error::BadMat {
            path: path.to_owned(),
            problem: MatProblem::MissingVariable {
                name: name.to_owned(),
            },
        })?;
    Ok(variables.swap_remove(index))
}

fn unexpected(path: &Path, array: &MatArray, expected: &str) -> Error {
    Error::BadMat {
        path: path.to_owned(),
        problem: MatProblem::Unexpected {
            name: array.name.clone(),
            expected: expected.to_owned(),
            found: array.describe(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_each_plane() {
        // Pixel (row r, column c, channel k, image n) = r + 32c + 1024k + 3072n in
        // column-major order, stored as its value mod 251 to stay distinguishable.
        let value =
            |r: usize, c: usize, k: usize, n: usize| ((r + 3 * c + 7 * k + 11 * n) % 251) as u8;
        let mut pixels = vec![0u8; 2 * 3072];
        for n in 0..2 {
            for k in 0..3 {
                for c in 0..32 {
                    for r in 0..32 {
                        pixels[r + 32 * c + 1024 * k + 3072 * n] = value(r, c, k, n);
                    }
                }
            }
        }
        column_major_to_chw(&mut pixels);
        for n in 0..2 {
            for k in 0..3 {
                for r in 0..32 {
                    for c in 0..32 {
                        assert_eq!(pixels[3072 * n + 1024 * k + 32 * r + c], value(r, c, k, n));
                    }
                }
            }
        }
    }

    #[test]
    fn resources_cover_every_split() {
        let names: Vec<String> = SvhnSplit::ALL
            .iter()
            .map(|&split| resource(split).file_name)
            .collect();
        assert_eq!(
            names,
            ["train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"]
        );
        assert_eq!(SvhnSplit::from(Split::Test), SvhnSplit::Test);
    }
}
