//! [`ImageFolder`]: JPEG files in one folder per class, decoded on demand, with the
//! ImageNet [`Transform`]s.
//!
//! Classes are the subfolder names in sorted (byte) order, labels their indices, and
//! images each folder's `.jpg`/`.jpeg` files (any case) in sorted order, as in
//! torchvision's `ImageFolder`. Decoding uses the `image` crate (JPEG only).

use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::dataset::Dataset;
use crate::vision::Normalization;
use crate::vision::augment::{Resample, random_resized_crop_box, resample_rgb, rng_for};

/// How an image becomes a fixed-size RGB input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// Training: random-resized-crop to `size × size`, then a horizontal flip with
    /// probability ½ (if `flip`), seeded by `(seed, epoch, index)`.
    Train {
        /// Output side, 224 for ImageNet.
        size: usize,
        /// Range of the crop's area as a fraction of the image's.
        scale: (f64, f64),
        /// Range of the crop's aspect ratio (width / height).
        ratio: (f64, f64),
        /// Whether to flip horizontally at random.
        flip: bool,
    },
    /// Evaluation: resize the shorter side to `resize`, then center-crop `crop × crop`.
    Eval {
        /// Shorter side after resizing, 256 for ImageNet.
        resize: usize,
        /// Output side, 224 for ImageNet.
        crop: usize,
    },
}

impl Transform {
    /// The standard ImageNet training transform: random-resized-crop 224 with scale
    /// `(0.08, 1)` and ratio `(3/4, 4/3)`, then a random horizontal flip.
    pub const IMAGENET_TRAIN: Transform = Transform::Train {
        size: 224,
        scale: (0.08, 1.0),
        ratio: (3.0 / 4.0, 4.0 / 3.0),
        flip: true,
    };

    /// The standard ImageNet evaluation transform: resize 256, center-crop 224.
    pub const IMAGENET_EVAL: Transform = Transform::Eval {
        resize: 256,
        crop: 224,
    };

    /// The output side length.
    pub fn size(&self) -> usize {
        match *self {
            Transform::Train { size, .. } => size,
            Transform::Eval { crop, .. } => crop,
        }
    }

    /// Applies the transform to an interleaved RGB image, writing interleaved RGB of
    /// `size × size` into `out`. The random choices of example `index` depend only on
    /// `(seed, epoch, index)`.
    ///
    /// # Panics
    ///
    /// If `rgb.len() != 3 · width · height` or the image is empty.
    pub fn apply(
        &self,
        rgb: &[u8],
        (width, height): (u32, u32),
        (seed, epoch, index): (u64, u64, usize),
        out: &mut Vec<u8>,
    ) {
        let resample = match *self {
            Transform::Train {
                size,
                scale,
                ratio,
                flip,
            } => {
                let mut rng = rng_for(seed, epoch, index);
                let window = random_resized_crop_box(width, height, scale, ratio, &mut rng);
                let flip = flip && rand::RngCore::next_u64(&mut rng) >> 63 == 1;
                Resample::crop_resize(window, size, size, flip)
            }
            Transform::Eval { resize, crop } => {
                Resample::resize_center_crop(width, height, resize, crop)
            }
        };
        resample_rgb(rgb, width as usize, height as usize, &resample, out);
    }
}

/// Decodes a JPEG file to interleaved 8-bit RGB (grey-scale and CMYK converted).
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read, [`Error::Image`] naming it if it does
/// not decode (not a JPEG, corrupt, truncated, or zero-sized).
pub fn decode_jpeg(path: &Path) -> Result<(Vec<u8>, u32, u32), Error> {
    let bytes = fs::read(path).map_err(|source| Error::io(path, source))?;
    decode_jpeg_bytes(path, &bytes)
}

/// Decodes JPEG bytes; `path` only names them in errors. See [`decode_jpeg`].
///
/// # Errors
///
/// [`Error::Image`] if the bytes do not decode to a non-empty image.
pub fn decode_jpeg_bytes(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, u32, u32), Error> {
    let image_error = |source| Error::Image {
        path: path.to_owned(),
        source: Box::new(source),
    };
    let mut decoder =
        image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(bytes)).map_err(image_error)?;
    // Bound memory on hostile headers: ImageNet's largest image is about 8 MP.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(1 << 14);
    limits.max_image_height = Some(1 << 14);
    limits.max_alloc = Some(1 << 30);
    image::ImageDecoder::set_limits(&mut decoder, limits).map_err(image_error)?;
    let image = image::DynamicImage::from_decoder(decoder).map_err(image_error)?;
    let (width, height) = (image.width(), image.height());
    if width == 0 || height == 0 {
        return Err(image_error(image::ImageError::Limits(
            image::error::LimitError::from_kind(image::error::LimitErrorKind::DimensionError),
        )));
    }
    Ok((image.into_rgb8().into_raw(), width, height))
}

/// Images in class subfolders, decoded on demand.
///
/// ```
/// use bigbatch_data::vision::image_folder::ImageFolder;
/// use std::path::PathBuf;
///
/// let folder = ImageFolder::from_samples(
///     vec!["cat".into(), "dog".into()],
///     vec![(PathBuf::from("cat/1.jpg"), 0), (PathBuf::from("dog/7.jpg"), 1)],
/// )?;
/// assert_eq!((folder.len(), folder.label(1)), (2, 1));
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFolder {
    classes: Vec<String>,
    samples: Vec<(PathBuf, u32)>,
}

/// Whether a file name has a JPEG extension (`.jpg`, `.jpeg`, any case).
pub fn is_jpeg_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
}

/// The sorted subfolders of `dir`.
pub(crate) fn sorted_subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|source| Error::io(dir, source))? {
        let entry = entry.map_err(|source| Error::io(dir, source))?;
        let path = entry.path();
        if path.is_dir() {
            dirs.push((entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The sorted JPEG files directly in `dir`.
pub(crate) fn sorted_jpegs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|source| Error::io(dir, source))? {
        let path = entry.map_err(|source| Error::io(dir, source))?.path();
        if is_jpeg_name(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

impl ImageFolder {
    /// Scans `root/<class>/*.jpg`: classes are the sorted subfolder names.
    ///
    /// # Errors
    ///
    /// [`Error::MissingFile`] if `root` is not a directory; [`Error::Io`] if a folder
    /// cannot be listed; [`Error::EmptyImageFolder`] if no subfolder holds a JPEG.
    pub fn open(root: &Path) -> Result<Self, Error> {
        if !root.is_dir() {
            return Err(Error::MissingFile {
                path: root.to_owned(),
                hint: "expected a directory with one subfolder of JPEG files per class".to_owned(),
            });
        }
        let mut classes = Vec::new();
        let mut samples = Vec::new();
        for (label, (name, dir)) in sorted_subdirs(root)?.into_iter().enumerate() {
            // Labels are indices into at most `u32::MAX` folders.
            let label = u32::try_from(label).unwrap_or(u32::MAX);
            samples.extend(sorted_jpegs(&dir)?.into_iter().map(|path| (path, label)));
            classes.push(name);
        }
        if samples.is_empty() {
            return Err(Error::EmptyImageFolder {
                path: root.to_owned(),
                hint: "expected <dir>/<class>/<image>.jpg".to_owned(),
            });
        }
        Ok(ImageFolder { classes, samples })
    }

    /// A folder from explicit `(path, label)` samples and class names.
    ///
    /// # Errors
    ///
    /// [`Error::LabelOutOfRange`] if a label is not below `classes.len()`.
    pub fn from_samples(classes: Vec<String>, samples: Vec<(PathBuf, u32)>) -> Result<Self, Error> {
        if let Some((index, &(_, label))) = samples
            .iter()
            .enumerate()
            .find(|(_, (_, label))| *label as usize >= classes.len())
        {
            return Err(Error::LabelOutOfRange {
                index,
                label,
                num_classes: classes.len(),
            });
        }
        Ok(ImageFolder { classes, samples })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Class names, indexed by label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The `(path, label)` pairs, in order.
    pub fn samples(&self) -> &[(PathBuf, u32)] {
        &self.samples
    }

    /// The label of image `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    pub fn label(&self, i: usize) -> u32 {
        self.samples[i].1
    }

    /// Decodes image `index` and applies `transform`, writing `size × size` interleaved
    /// RGB into `out`.
    ///
    /// # Errors
    ///
    /// As [`decode_jpeg`].
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    pub fn load_into(
        &self,
        index: usize,
        transform: &Transform,
        (seed, epoch): (u64, u64),
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let (rgb, width, height) = decode_jpeg(&self.samples[index].0)?;
        transform.apply(&rgb, (width, height), (seed, epoch, index), out);
        Ok(())
    }

    /// Decodes and transforms images `indices` into `inputs` as normalised `f32`
    /// `N × 3 × S × S` (S = `transform.size()`), and their labels into `labels`.
    ///
    /// # Errors
    ///
    /// The first image that fails to decode, as [`decode_jpeg`]; the buffers are then
    /// left partly filled.
    ///
    /// # Panics
    ///
    /// If an index is out of range or `norm` does not have 3 channels.
    pub fn batch_into(
        &self,
        indices: &[usize],
        transform: &Transform,
        norm: &Normalization,
        (seed, epoch): (u64, u64),
        inputs: &mut Vec<f32>,
        labels: &mut Vec<u32>,
    ) -> Result<(), Error> {
        assert_eq!(norm.channels(), 3, "ImageFolder images are RGB");
        let table = norm.lookup_table();
        let side = transform.size();
        inputs.clear();
        inputs.reserve(indices.len() * 3 * side * side);
        labels.clear();
        let mut rgb = Vec::new();
        for &index in indices {
            self.load_into(index, transform, (seed, epoch), &mut rgb)?;
            let pixels = rgb.len() / 3;
            for channel in 0..3 {
                let lut = &table[256 * channel..256 * (channel + 1)];
                inputs.extend(
                    rgb[channel..]
                        .iter()
                        .step_by(3)
                        .take(pixels)
                        .map(|&p| lut[usize::from(p)]),
                );
            }
            labels.push(self.samples[index].1);
        }
        Ok(())
    }
}

impl Dataset for ImageFolder {
    type Item<'a> = (&'a Path, u32);

    fn len(&self) -> usize {
        self.samples.len()
    }

    fn get(&self, index: usize) -> Option<(&Path, u32)> {
        self.samples
            .get(index)
            .map(|(path, label)| (path.as_path(), *label))
    }
}
