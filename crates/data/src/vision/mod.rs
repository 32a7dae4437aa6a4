//! Image-classification datasets: the in-memory [`ImageClassification`] container,
//! [`Normalization`] statistics, file formats ([`idx`], [`mat`]), the loaders
//! ([`mnist`], [`cifar`], [`svhn`], [`imagenet`] and the generic [`image_folder`]) and
//! seeded [`augment`]ation.

pub mod augment;
pub mod cifar;
mod classification;
pub mod idx;
pub mod image_folder;
pub mod imagenet;
pub mod mat;
pub mod mnist;
pub mod svhn;

use std::fmt;

pub use classification::{ImageClassification, Sample, SplitSize};

use crate::Error;

/// The shape of one image: `channels × height × width`, stored channel-major (CHW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageShape {
    /// Number of channels (1 for grey-scale, 3 for RGB).
    pub channels: usize,
    /// Number of rows.
    pub height: usize,
    /// Number of columns.
    pub width: usize,
}

impl ImageShape {
    /// MNIST and Fashion-MNIST: one channel of 28×28.
    pub const MNIST: ImageShape = ImageShape::new(1, 28, 28);

    /// A shape of `channels × height × width`.
    pub const fn new(channels: usize, height: usize, width: usize) -> Self {
        ImageShape {
            channels,
            height,
            width,
        }
    }

    /// Number of values in one image: `channels · height · width`.
    ///
    /// ```
    /// assert_eq!(bigbatch_data::ImageShape::MNIST.len(), 784);
    /// ```
    pub const fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether an image of this shape holds no values.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of values in one channel: `height · width`.
    pub const fn plane_len(&self) -> usize {
        self.height * self.width
    }
}

impl fmt::Display for ImageShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

/// Per-channel statistics that map a pixel `p ∈ 0..=255` of channel `c` to
/// `(p / 255 − mean[c]) / std[c]`, as torchvision's `ToTensor` then `Normalize` do.
///
/// ```
/// use bigbatch_data::Normalization;
///
/// let norm = Normalization::mnist();
/// assert_eq!(norm.channels(), 1);
/// assert!((norm.apply(0, 255) - (1.0 - 0.1307) / 0.3081).abs() < 1e-6);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Mean of each channel, on the `[0, 1]` scale.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel, on the `[0, 1]` scale.
    pub std: Vec<f32>,
}

impl Normalization {
    /// Checked statistics.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNormalization`] if `mean` and `std` differ in length, are empty,
    /// or a `std` is not positive and finite, or a `mean` is not finite.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self, Error> {
        let valid = mean.len() == std.len()
            && !mean.is_empty()
            && mean.iter().all(|m| m.is_finite())
            && std.iter().all(|s| s.is_finite() && *s > 0.0);
        if valid {
            Ok(Normalization { mean, std })
        } else {
            Err(Error::InvalidNormalization { mean, std })
        }
    }

    /// The usual MNIST statistics, mean 0.1307 and std 0.3081 (PyTorch's MNIST example).
    pub fn mnist() -> Self {
        Normalization {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// Fashion-MNIST statistics of the training split, mean 0.2860 and std 0.3530.
    pub fn fashion_mnist() -> Self {
        Normalization {
            mean: vec![0.2860],
            std: vec![0.3530],
        }
    }

    /// CIFAR-10 training statistics: mean (0.4914, 0.4822, 0.4465), std (0.2470,
    /// 0.2435, 0.2616).
    pub fn cifar10() -> Self {
        Normalization {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        }
    }

    /// CIFAR-100 training statistics: mean (0.5071, 0.4865, 0.4409), std (0.2673,
    /// 0.2564, 0.2762).
    pub fn cifar100() -> Self {
        Normalization {
            mean: vec![0.5071, 0.4865, 0.4409],
            std: vec![0.2673, 0.2564, 0.2762],
        }
    }

    /// SVHN training statistics: mean (0.4377, 0.4438, 0.4728), std (0.1980, 0.2010,
    /// 0.1970).
    pub fn svhn() -> Self {
        Normalization {
            mean: vec![0.4377, 0.4438, 0.4728],
            std: vec![0.1980, 0.2010, 0.1970],
        }
    }

    /// The ImageNet statistics used by torchvision's pretrained models: mean (0.485,
    /// 0.456, 0.406), std (0.229, 0.224, 0.225).
    pub fn imagenet() -> Self {
        Normalization {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// Mean 0 and std 1 for every channel: pixels are only scaled to `[0, 1]`.
    pub fn identity(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// The per-channel mean and (population) standard deviation of `data`'s pixels on
    /// the `[0, 1]` scale, accumulated in `f64`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidNormalization`] if `data` is empty or a channel is constant
    /// (its std would be zero).
    pub fn fit(data: &ImageClassification) -> Result<Self, Error> {
        let shape = data.shape();
        let mut counts = vec![0u64; 256 * shape.channels];
        for image in data.pixels().chunks_exact(shape.len().max(1)) {
            for (channel, plane) in image.chunks_exact(shape.plane_len().max(1)).enumerate() {
                let histogram = &mut counts[256 * channel..256 * (channel + 1)];
                for &pixel in plane {
                    histogram[usize::from(pixel)] += 1;
                }
            }
        }
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        for histogram in counts.chunks_exact(256) {
            let n: u64 = histogram.iter().sum();
            let moment = |power: i32| -> f64 {
                let total: f64 = (0..256)
                    .map(|p| histogram[p] as f64 * (p as f64 / 255.0).powi(power))
                    .sum();
                total / n as f64
            };
            let m = moment(1);
            mean.push(m as f32);
            std.push((moment(2) - m * m).max(0.0).sqrt() as f32);
        }
        Normalization::new(mean, std)
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// The normalised value of pixel `pixel` in channel `channel`.
    ///
    /// # Panics
    ///
    /// If `channel >= self.channels()`.
    pub fn apply(&self, channel: usize, pixel: u8) -> f32 {
        (f32::from(pixel) / 255.0 - self.mean[channel]) / self.std[channel]
    }

    /// A table of [`Self::apply`] for every `(channel, pixel)`, indexed `256 · channel + pixel`.
    pub(crate) fn lookup_table(&self) -> Vec<f32> {
        (0..self.channels())
            .flat_map(|channel| (0..=255u8).map(move |pixel| self.apply(channel, pixel)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_len_and_display() {
        let shape = ImageShape::new(3, 32, 32);
        assert_eq!(shape.len(), 3072);
        assert_eq!(shape.plane_len(), 1024);
        assert_eq!(shape.to_string(), "3×32×32");
        assert!(ImageShape::new(1, 0, 5).is_empty());
    }

    #[test]
    fn normalization_golden_values() {
        // By hand: (0/255 − 0.1307)/0.3081 = −0.424212917…, (255/255 − 0.1307)/0.3081 = 2.821486535…
        let norm = Normalization::mnist();
        assert!((norm.apply(0, 0) - -0.424_212_9).abs() < 1e-6);
        assert!((norm.apply(0, 255) - 2.821_486_5).abs() < 1e-6);
        let table = norm.lookup_table();
        assert_eq!(table.len(), 256);
        assert_eq!(table[128], norm.apply(0, 128));
        assert_eq!(Normalization::identity(2).apply(1, 51), 0.2);
        for norm in [
            Normalization::cifar10(),
            Normalization::cifar100(),
            Normalization::svhn(),
            Normalization::imagenet(),
        ] {
            let checked = Normalization::new(norm.mean.clone(), norm.std.clone());
            assert!(checked.is_ok_and(|checked| checked == norm));
        }
    }

    #[test]
    fn new_rejects_bad_statistics() {
        for (mean, std) in [
            (vec![0.5], vec![0.0]),
            (vec![0.5], vec![f32::NAN]),
            (vec![0.5, 0.5], vec![1.0]),
            (vec![], vec![]),
        ] {
            let result = Normalization::new(mean, std);
            assert!(matches!(result, Err(Error::InvalidNormalization { .. })));
        }
        assert!(Normalization::new(vec![0.5, 0.4], vec![0.2, 0.3]).is_ok());
    }

    #[test]
    fn fit_matches_hand_computed_statistics() -> Result<(), Error> {
        // Two 2-channel 1×2 images. Channel 0 pixels: 0, 255, 255, 255 → mean 0.75,
        // var = 0.75 − 0.5625 = 0.1875. Channel 1 pixels: 51 everywhere → std 0 (invalid),
        // so use 51, 102, 51, 102 → mean 0.3, std 0.1.
        let pixels = vec![0, 255, 51, 102, 255, 255, 51, 102];
        let data = ImageClassification::new(ImageShape::new(2, 1, 2), pixels, vec![0, 0], 1)?;
        let norm = Normalization::fit(&data)?;
        assert!((norm.mean[0] - 0.75).abs() < 1e-6);
        assert!((norm.std[0] - 0.1875f32.sqrt()).abs() < 1e-6);
        assert!((norm.mean[1] - 0.3).abs() < 1e-6);
        assert!((norm.std[1] - 0.1).abs() < 1e-6);

        let constant =
            ImageClassification::new(ImageShape::new(1, 1, 1), vec![7, 7], vec![0, 0], 1)?;
        assert!(matches!(
            Normalization::fit(&constant),
            Err(Error::InvalidNormalization { .. })
        ));
        Ok(())
    }
}
