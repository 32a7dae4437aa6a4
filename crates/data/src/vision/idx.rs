//! The IDX file format of MNIST and its relatives (Fashion-MNIST, KMNIST, EMNIST).
//!
//! An IDX file is a big-endian header followed by a dense array
//! (<http://yann.lecun.com/exdb/mnist/>, "FILE FORMATS FOR THE MNIST DATABASE"):
//!
//! | offset | type   | value                                        |
//! |--------|--------|----------------------------------------------|
//! | 0      | u32 BE | magic: `0x0000_08DD`, `08` = u8 data, `DD` = number of dimensions |
//! | 4      | u32 BE | size of dimension 0 (number of items)       |
//! | 8 …    | u32 BE | sizes of the other dimensions               |
//! | 4 + 4·DD | u8   | the data, last dimension varying fastest    |
//!
//! Images are `0x0000_0803` (items × rows × columns), labels `0x0000_0801` (items).
//! Readers accept gzip-compressed files, detected by their magic bytes, and insist on
//! the exact length: a short file is [`Error::Truncated`], a long one
//! [`Error::TrailingBytes`].

use std::path::Path;

use crate::Error;
use crate::file::read_decompressed_split;
use crate::vision::ImageShape;

/// Magic number of an IDX file of `u8` images: 3 dimensions (items, rows, columns).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// Magic number of an IDX file of `u8` labels: 1 dimension (items).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The contents of an IDX images file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Shape of one image; IDX images have one channel.
    pub shape: ImageShape,
    /// `count · shape.len()` pixels, image after image, row-major.
    pub pixels: Vec<u8>,
}

/// Reads an IDX images file (`…-images-idx3-ubyte`, optionally gzip-compressed).
///
/// # Errors
///
/// [`Error::Io`], [`Error::Gzip`], [`Error::BadMagic`] unless the magic is
/// [`IMAGES_MAGIC`], [`Error::Truncated`] or [`Error::TrailingBytes`] if the length
/// differs from the header's, [`Error::BadDimensions`] if the dimensions overflow.
///
/// ```no_run
/// let images = bigbatch_data::vision::idx::read_idx_images("data/mnist/t10k-images-idx3-ubyte.gz".as_ref())?;
/// assert_eq!((images.count, images.shape.height), (10_000, 28));
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
pub fn read_idx_images(path: &Path) -> Result<IdxImages, Error> {
    let (header, pixels) = read_decompressed_split(path, header_len(3))?;
    let dims = parse_header(path, &header, pixels.len(), IMAGES_MAGIC, 3)?;
    let [count, height, width] = [dims[0], dims[1], dims[2]];
    Ok(IdxImages {
        count,
        shape: ImageShape::new(1, height, width),
        pixels,
    })
}

/// Reads an IDX labels file (`…-labels-idx1-ubyte`, optionally gzip-compressed).
///
/// Labels are returned as read; range checks belong to the dataset's loader.
///
/// # Errors
///
/// As [`read_idx_images`], with [`LABELS_MAGIC`].
pub fn read_idx_labels(path: &Path) -> Result<Vec<u32>, Error> {
    let (header, labels) = read_decompressed_split(path, header_len(1))?;
    parse_header(path, &header, labels.len(), LABELS_MAGIC, 1)?;
    Ok(labels.iter().map(|&b| u32::from(b)).collect())
}

/// The header length of an IDX file with `num_dims` dimensions.
const fn header_len(num_dims: usize) -> usize {
    4 + 4 * num_dims
}

/// Checks the magic number and dimensions in `bytes` (the file's first
/// [`header_len`] bytes, or all of a shorter file) and the exact file length
/// (`bytes` plus `payload_len` more), and returns the dimensions.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    payload_len: usize,
    magic: u32,
    num_dims: usize,
) -> Result<Vec<usize>, Error> {
    let header_len = header_len(num_dims);
    let found_bytes = (bytes.len() + payload_len) as u64;
    let truncated = |expected_bytes: u64| Error::Truncated {
        path: path.to_owned(),
        expected_bytes,
        found_bytes,
    };
    let word = |i: usize| -> Option<u32> {
        let chunk = bytes.get(4 * i..4 * i + 4)?;
        Some(u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
    };

    let found = word(0).ok_or_else(|| truncated(header_len as u64))?;
    if found != magic {
        return Err(Error::BadMagic {
            path: path.to_owned(),
            expected: magic,
            found,
        });
    }
    let raw_dims = (1..=num_dims)
        .map(word)
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(|| truncated(header_len as u64))?;

    let bad_dims = || Error::BadDimensions {
        path: path.to_owned(),
        dims: raw_dims.clone(),
    };
    let payload = raw_dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .ok_or_else(bad_dims)?;
    let expected_bytes = payload
        .checked_add(header_len as u64)
        .filter(|&total| usize::try_from(total).is_ok())
        .ok_or_else(bad_dims)?;
    if found_bytes < expected_bytes {
        return Err(truncated(expected_bytes));
    }
    if found_bytes > expected_bytes {
        return Err(Error::TrailingBytes {
            path: path.to_owned(),
            expected_bytes,
            found_bytes,
        });
    }
    // Each dimension divides the total, which fits in usize (checked above).
    Ok(raw_dims.iter().map(|&d| d as usize).collect())
}

/// Encodes `count` single-channel images as an IDX images file.
///
/// # Errors
///
/// [`Error::UnsupportedShape`] (naming `path`, the file to be written) unless the
/// images have one channel and the count and sizes fit in `u32`.
pub(crate) fn encode_images(
    path: &Path,
    shape: ImageShape,
    count: usize,
    pixels: &[u8],
) -> Result<Vec<u8>, Error> {
    let dims = [count, shape.height, shape.width].map(u32::try_from);
    let [Ok(n), Ok(rows), Ok(cols)] = dims else {
        return Err(unsupported(path, shape, count));
    };
    if shape.channels != 1 {
        return Err(unsupported(path, shape, count));
    }
    let mut bytes = Vec::with_capacity(16 + pixels.len());
    for word in [IMAGES_MAGIC, n, rows, cols] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend_from_slice(pixels);
    Ok(bytes)
}

/// Encodes labels as an IDX labels file.
///
/// # Errors
///
/// [`Error::BadLabel`] (naming `path`) if a label does not fit in a byte;
/// [`Error::UnsupportedShape`] if there are `2^32` labels or more.
pub(crate) fn encode_labels(
    path: &Path,
    shape: ImageShape,
    labels: &[u32],
) -> Result<Vec<u8>, Error> {
    let n = u32::try_from(labels.len()).map_err(|_| unsupported(path, shape, labels.len()))?;
    let mut bytes = Vec::with_capacity(8 + labels.len());
    bytes.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    bytes.extend_from_slice(&n.to_be_bytes());
    for (index, &label) in labels.iter().enumerate() {
        let byte = u8::try_from(label).map_err(|_| Error::BadLabel {
            path: path.to_owned(),
            index,
            label,
            num_classes: 256,
        })?;
        bytes.push(byte);
    }
    Ok(bytes)
}

fn unsupported(path: &Path, shape: ImageShape, count: usize) -> Error {
    Error::UnsupportedShape {
        path: path.to_owned(),
        shape,
        count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::write_atomic;
    use std::path::PathBuf;

    /// Two 2×3 images, built byte by byte from the format table in the module docs.
    fn two_images() -> Vec<u8> {
        let mut bytes = vec![0x00, 0x00, 0x08, 0x03]; // magic: u8 data, 3 dimensions
        bytes.extend([0, 0, 0, 2]); // 2 images
        bytes.extend([0, 0, 0, 2]); // 2 rows
        bytes.extend([0, 0, 0, 3]); // 3 columns
        bytes.extend(1..=12u8); // pixels
        bytes
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        write_atomic(&path, bytes).expect("write test file");
        path
    }

    #[test]
    fn reads_hand_built_images_and_labels() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let images = read_idx_images(&write(dir.path(), "img", &two_images()))?;
        assert_eq!(images.count, 2);
        assert_eq!(images.shape, ImageShape::new(1, 2, 3));
        assert_eq!(images.pixels, (1..=12).collect::<Vec<u8>>());

        let labels = [0x00, 0x00, 0x08, 0x01, 0, 0, 0, 3, 7, 0, 9];
        assert_eq!(
            read_idx_labels(&write(dir.path(), "lbl", &labels))?,
            [7, 0, 9]
        );
        Ok(())
    }

    #[test]
    fn encoders_match_the_spec_bytes() -> Result<(), Error> {
        let path = Path::new("out");
        let pixels: Vec<u8> = (1..=12).collect();
        let encoded = encode_images(path, ImageShape::new(1, 2, 3), 2, &pixels)?;
        assert_eq!(encoded, two_images());
        let labels = encode_labels(path, ImageShape::MNIST, &[7, 0, 9])?;
        assert_eq!(labels, [0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9]);

        let rgb = encode_images(path, ImageShape::new(3, 1, 1), 1, &[1, 2, 3]);
        assert!(matches!(rgb, Err(Error::UnsupportedShape { .. })));
        let wide = encode_labels(path, ImageShape::MNIST, &[1, 256]);
        assert!(matches!(
            wide,
            Err(Error::BadLabel {
                index: 1,
                label: 256,
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn rejects_malformed_files_naming_them() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let good = two_images();

        let wrong_magic = write(dir.path(), "wrong-magic", &{
            let mut b = good.clone();
            b[3] = 0x01;
            b
        });
        let error = read_idx_images(&wrong_magic).expect_err("wrong magic");
        assert!(matches!(
            error,
            Error::BadMagic {
                expected: IMAGES_MAGIC,
                found: LABELS_MAGIC,
                ..
            }
        ));
        assert!(error.to_string().contains("wrong-magic"));

        let short = write(dir.path(), "short", &good[..good.len() - 1]);
        let error = read_idx_images(&short).expect_err("truncated payload");
        assert!(matches!(
            error,
            Error::Truncated {
                expected_bytes: 28,
                found_bytes: 27,
                ..
            }
        ));
        assert!(error.to_string().contains("short"));

        let header_only = write(dir.path(), "header-only", &good[..10]);
        let error = read_idx_images(&header_only).expect_err("truncated header");
        assert!(matches!(
            error,
            Error::Truncated {
                expected_bytes: 16,
                found_bytes: 10,
                ..
            }
        ));

        let empty = write(dir.path(), "empty", &[]);
        assert!(matches!(
            read_idx_labels(&empty),
            Err(Error::Truncated {
                expected_bytes: 8,
                found_bytes: 0,
                ..
            })
        ));

        let long = write(dir.path(), "long", &[good.as_slice(), &[0, 0]].concat());
        let error = read_idx_images(&long).expect_err("trailing bytes");
        assert!(matches!(
            error,
            Error::TrailingBytes {
                expected_bytes: 28,
                found_bytes: 30,
                ..
            }
        ));
        assert!(error.to_string().contains("long"));
        assert!(error.to_string().contains("2 unexpected trailing bytes"));

        let huge = write(
            dir.path(),
            "huge",
            &[
                0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
            ],
        );
        let error = read_idx_images(&huge).expect_err("huge dimensions");
        // 2^32−1 cubed overflows u64: reported as bad dimensions, not an allocation.
        assert!(matches!(error, Error::BadDimensions { .. }));
        assert!(error.to_string().contains("huge"));

        let missing = dir.path().join("missing");
        assert!(
            matches!(read_idx_labels(&missing), Err(Error::Io { ref path, .. }) if path == &missing)
        );
        Ok(())
    }
}
