//! Seeded data augmentation: CIFAR's pad-crop-flip on in-memory images, and the
//! ImageNet geometry (random-resized-crop, resize + center-crop) with a PIL-compatible
//! bilinear resampler.
//!
//! Every random choice for example `index` comes from a ChaCha8 generator keyed by
//! `(seed, domain, epoch, index)` (see `crate::batch`), so augmented batches are the
//! same whatever the batch composition, thread count or order of decoding.
//!
//! References: He, Zhang, Ren and Sun (2016), "Deep Residual Learning for Image
//! Recognition" (CIFAR: 4-pixel padding, random 32×32 crop, horizontal flip);
//! Szegedy et al. (2015), "Going Deeper with Convolutions" and torchvision's
//! `RandomResizedCrop` (scale `(0.08, 1)`, ratio `(3/4, 4/3)`, 10 attempts, then a
//! center crop).

use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use crate::batch::{example_rng, uniform_below, uniform_unit};

/// Domain tag of augmentation generators in the ChaCha key (epochs use 0, stratified
/// splits 1).
pub(crate) const AUGMENT_DOMAIN: u64 = 2;

/// A random augmentation of in-memory `C × H × W` images, applied while gathering a
/// batch (see [`crate::ImageClassification::augmented_batch_into`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Augment {
    /// No augmentation: images are copied as they are.
    Identity,
    /// Pad each side with `pad` zero pixels, crop a random window of the original size,
    /// then flip horizontally with probability ½ (crop before flip, as torchvision's
    /// `RandomCrop(32, padding=4)` then `RandomHorizontalFlip()`).
    PadCropFlip {
        /// Zero padding on each side, in pixels.
        pad: usize,
    },
}

impl Augment {
    /// The standard CIFAR training augmentation: 4-pixel pad, random crop, flip.
    pub const CIFAR: Augment = Augment::PadCropFlip { pad: 4 };

    /// The crop offsets `(dy, dx)` in `0..=2·pad` and flip of example `index`.
    ///
    /// ```
    /// use bigbatch_data::vision::augment::Augment;
    /// let (dy, dx, _flip) = Augment::CIFAR.draw(7, 0, 123);
    /// assert!(dy <= 8 && dx <= 8);
    /// assert_eq!(Augment::CIFAR.draw(7, 0, 123), (dy, dx, _flip));
    /// assert_eq!(Augment::Identity.draw(7, 0, 123), (0, 0, false));
    /// ```
    pub fn draw(self, seed: u64, epoch: u64, index: usize) -> (usize, usize, bool) {
        match self {
            Augment::Identity => (0, 0, false),
            Augment::PadCropFlip { pad } => {
                let mut rng = example_rng(seed, AUGMENT_DOMAIN, epoch, index as u64);
                let span = 2 * pad as u64 + 1;
                // Values are at most 2·pad, which came from a usize.
                let dy = uniform_below(&mut rng, span) as usize;
                let dx = uniform_below(&mut rng, span) as usize;
                let flip = rng.next_u64() >> 63 == 1;
                (dy, dx, flip)
            }
        }
    }

    /// The padding this augmentation adds on each side.
    fn pad(self) -> usize {
        match self {
            Augment::Identity => 0,
            Augment::PadCropFlip { pad } => pad,
        }
    }
}

/// Writes one augmented `C × H × W` image to `out`, each pixel through the per-channel
/// lookup table `table` (`256 · channel + pixel`): a single pass, no intermediate copy.
pub(crate) fn pad_crop_flip_into(
    image: &[u8],
    (channels, height, width): (usize, usize, usize),
    augment: Augment,
    (dy, dx, flip): (usize, usize, bool),
    table: &[f32],
    out: &mut Vec<f32>,
) {
    let pad = augment.pad();
    for channel in 0..channels {
        let lut = &table[256 * channel..256 * (channel + 1)];
        let plane = &image[channel * height * width..(channel + 1) * height * width];
        let zero = lut[0];
        for y in 0..height {
            // Source row of output row y: y + dy − pad, if inside the image.
            let Some(row) = (y + dy).checked_sub(pad).filter(|&r| r < height) else {
                out.extend(std::iter::repeat_n(zero, width));
                continue;
            };
            let row = &plane[row * width..(row + 1) * width];
            // Output column x reads source column x + shift (or width − 1 − x + shift
            // when flipped); outside the image it is padding. Three runs: padding,
            // contiguous source pixels, padding.
            let shift = dx as isize - pad as isize;
            let w = width as isize;
            let (lo, hi) = if flip {
                (shift.max(0), (w + shift).min(w))
            } else {
                ((-shift).max(0), (w - shift).min(w))
            };
            let (lo, hi) = (lo.min(w) as usize, hi.max(lo.min(w)) as usize);
            out.extend(std::iter::repeat_n(zero, lo));
            if hi > lo {
                if flip {
                    let first = (w - hi as isize + shift) as usize;
                    let last = (w - 1 - lo as isize + shift) as usize;
                    out.extend(row[first..=last].iter().rev().map(|&p| lut[usize::from(p)]));
                } else {
                    let first = (lo as isize + shift) as usize;
                    out.extend(
                        row[first..first + (hi - lo)]
                            .iter()
                            .map(|&p| lut[usize::from(p)]),
                    );
                }
            }
            out.extend(std::iter::repeat_n(zero, width - hi));
        }
    }
}

/// A crop window in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width, at least 1.
    pub width: u32,
    /// Height, at least 1.
    pub height: u32,
}

/// torchvision's `RandomResizedCrop.get_params` for a `width × height` image.
///
/// Up to 10 times: draw a target area `A·U(scale)` and a log-uniform aspect ratio in
/// `ratio`, take `w = round(√(area·ratio))`, `h = round(√(area/ratio))`, and accept the
/// first that fits, at a uniform position. Otherwise fall back to the largest center
/// crop whose ratio is clamped to `ratio`.
///
/// # Panics
///
/// If `width` or `height` is 0.
pub fn random_resized_crop_box(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut ChaCha8Rng,
) -> CropBox {
    assert!(width > 0 && height > 0, "cannot crop an empty image");
    let area = f64::from(width) * f64::from(height);
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * (scale.0 + (scale.1 - scale.0) * uniform_unit(rng));
        let aspect = (log_lo + (log_hi - log_lo) * uniform_unit(rng)).exp();
        let w = (target * aspect).sqrt().round();
        let h = (target / aspect).sqrt().round();
        if w >= 1.0 && h >= 1.0 && w <= f64::from(width) && h <= f64::from(height) {
            // Both fit in u32: they are at most width and height.
            let (w, h) = (w as u32, h as u32);
            let y = uniform_below(rng, u64::from(height - h) + 1) as u32;
            let x = uniform_below(rng, u64::from(width - w) + 1) as u32;
            return CropBox {
                x,
                y,
                width: w,
                height: h,
            };
        }
    }
    let in_ratio = f64::from(width) / f64::from(height);
    let (w, h) = if in_ratio < ratio.0.min(ratio.1) {
        (
            width,
            (f64::from(width) / ratio.0.min(ratio.1)).round() as u32,
        )
    } else if in_ratio > ratio.0.max(ratio.1) {
        (
            (f64::from(height) * ratio.0.max(ratio.1)).round() as u32,
            height,
        )
    } else {
        (width, height)
    };
    let (w, h) = (w.clamp(1, width), h.clamp(1, height));
    CropBox {
        x: (width - w) / 2,
        y: (height - h) / 2,
        width: w,
        height: h,
    }
}

/// The filter taps of one axis: for each output pixel, the first source pixel and the
/// weights of the source pixels from there on.
struct Taps {
    starts: Vec<usize>,
    /// `weights[k·stride..(k+1)·stride]`, zero-padded.
    weights: Vec<f32>,
    stride: usize,
}

/// PIL's bilinear (triangle) filter coefficients (`precompute_coeffs` in Pillow's
/// `Resample.c`), with antialiasing: when shrinking by `scale > 1` the filter is
/// widened by `scale`. Output pixel `i` samples source position
/// `offset + (first + i + ½)·scale`, from pixels in `lo..hi`.
fn taps(lo: usize, hi: usize, offset: f64, scale: f64, first: usize, count: usize) -> Taps {
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1
    let stride = (support.ceil() as usize) * 2 + 1;
    let mut starts = Vec::with_capacity(count);
    let mut weights = vec![0f32; count * stride];
    for i in 0..count {
        let center = offset + (first + i) as f64 * scale + 0.5 * scale;
        let start = ((center - support + 0.5).floor().max(lo as f64) as usize).min(hi - 1);
        let end = ((center + support + 0.5).floor() as usize).clamp(start + 1, hi);
        let row = &mut weights[i * stride..(i + 1) * stride];
        let mut total = 0.0;
        for (k, j) in (start..end).take(stride).enumerate() {
            let t = ((j as f64 - center + 0.5) / filter_scale).abs();
            let w = (1.0 - t).max(0.0);
            row[k] = w as f32;
            total += w;
        }
        if total > 0.0 {
            row.iter_mut()
                .for_each(|w| *w = (f64::from(*w) / total) as f32);
        } else {
            row[0] = 1.0;
        }
        starts.push(start);
    }
    Taps {
        starts,
        weights,
        stride,
    }
}

/// How to map a source image to an output image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resample {
    /// Source window: columns `x..x+width`, rows `y..y+height` are the only pixels
    /// sampled (a crop; the whole image for resize-then-center-crop).
    pub window: CropBox,
    /// Source pixels per output pixel, horizontally and vertically.
    pub scale: (f64, f64),
    /// Source position of output pixel 0's left/top edge, before `first`.
    pub origin: (f64, f64),
    /// Index of the first output column and row in the (virtual) resized image.
    pub first: (usize, usize),
    /// Output width and height.
    pub size: (usize, usize),
    /// Mirror the output horizontally.
    pub flip: bool,
}

impl Resample {
    /// Crop `window` and resize it to `width × height` (torchvision's `resized_crop`).
    pub fn crop_resize(window: CropBox, width: usize, height: usize, flip: bool) -> Self {
        Resample {
            window,
            scale: (
                f64::from(window.width) / width as f64,
                f64::from(window.height) / height as f64,
            ),
            origin: (f64::from(window.x), f64::from(window.y)),
            first: (0, 0),
            size: (width, height),
            flip,
        }
    }

    /// Resize so the shorter side is `resize` (the longer one `⌊resize·long/short⌋`),
    /// then take the central `crop × crop` (torchvision's `Resize(256)` then
    /// `CenterCrop(224)`). A crop larger than the resized image is clamped to it.
    pub fn resize_center_crop(width: u32, height: u32, resize: usize, crop: usize) -> Self {
        let (w, h) = (width as usize, height as usize);
        let (new_w, new_h) = if w <= h {
            (resize, resize * h / w.max(1))
        } else {
            (resize * w / h.max(1), resize)
        };
        let (crop_w, crop_h) = (crop.min(new_w), crop.min(new_h));
        // torchvision: top = round((h − crop)/2), left likewise.
        let left = ((new_w - crop_w) as f64 / 2.0).round() as usize;
        let top = ((new_h - crop_h) as f64 / 2.0).round() as usize;
        Resample {
            window: CropBox {
                x: 0,
                y: 0,
                width,
                height,
            },
            scale: (w as f64 / new_w as f64, h as f64 / new_h as f64),
            origin: (0.0, 0.0),
            first: (left, top),
            size: (crop_w, crop_h),
            flip: false,
        }
    }
}

/// Resamples an interleaved RGB image (`width × height × 3`, row-major) into `out`
/// (cleared first), interleaved RGB of `resample.size`.
///
/// Separable: a horizontal pass over the window's rows into `f32`, then a vertical pass
/// rounding to `u8` as PIL does.
///
/// # Panics
///
/// If `rgb.len() != 3 · width · height`, the window is empty or leaves the image.
pub fn resample_rgb(
    rgb: &[u8],
    width: usize,
    height: usize,
    resample: &Resample,
    out: &mut Vec<u8>,
) {
    assert_eq!(rgb.len(), 3 * width * height, "RGB buffer size");
    let window = resample.window;
    let (x0, y0) = (window.x as usize, window.y as usize);
    let (x1, y1) = (x0 + window.width as usize, y0 + window.height as usize);
    assert!(
        x0 < x1 && x1 <= width && y0 < y1 && y1 <= height,
        "window inside the image"
    );
    let (out_w, out_h) = resample.size;
    let h_taps = taps(
        x0,
        x1,
        resample.origin.0,
        resample.scale.0,
        resample.first.0,
        out_w,
    );
    let v_taps = taps(
        y0,
        y1,
        resample.origin.1,
        resample.scale.1,
        resample.first.1,
        out_h,
    );

    // Rows the vertical pass reads.
    let row_lo = v_taps.starts.iter().copied().min().unwrap_or(y0);
    let row_hi = (v_taps.starts.iter().copied().max().unwrap_or(y0) + v_taps.stride).min(y1);
    // Like PIL, the horizontal pass rounds to u8 before the vertical one.
    let mut rows = vec![0u8; (row_hi - row_lo) * out_w * 3];
    for (r, row) in rows.chunks_exact_mut(out_w * 3).enumerate() {
        let src = &rgb[(row_lo + r) * width * 3..(row_lo + r + 1) * width * 3];
        for (i, px) in row.chunks_exact_mut(3).enumerate() {
            let o = if resample.flip { out_w - 1 - i } else { i };
            let start = h_taps.starts[o];
            let weights = &h_taps.weights[o * h_taps.stride..(o + 1) * h_taps.stride];
            let (mut r0, mut g0, mut b0) = (0f32, 0f32, 0f32);
            for (k, &w) in weights.iter().enumerate().take(x1 - start) {
                let s = &src[(start + k) * 3..(start + k) * 3 + 3];
                r0 += w * f32::from(s[0]);
                g0 += w * f32::from(s[1]);
                b0 += w * f32::from(s[2]);
            }
            px.copy_from_slice(&[round_u8(r0), round_u8(g0), round_u8(b0)]);
        }
    }
    out.clear();
    out.resize(out_w * out_h * 3, 0);
    for (j, dst) in out.chunks_exact_mut(out_w * 3).enumerate() {
        let start = v_taps.starts[j];
        let weights = &v_taps.weights[j * v_taps.stride..(j + 1) * v_taps.stride];
        let mut acc = vec![0f32; out_w * 3];
        for (k, &w) in weights.iter().enumerate().take(row_hi - start) {
            if w == 0.0 {
                continue;
            }
            let row = &rows[(start + k - row_lo) * out_w * 3..(start + k - row_lo + 1) * out_w * 3];
            acc.iter_mut()
                .zip(row)
                .for_each(|(a, &v)| *a += w * f32::from(v));
        }
        dst.iter_mut()
            .zip(&acc)
            .for_each(|(d, &v)| *d = round_u8(v));
    }
}

/// Rounds half up and clamps to `0..=255`, as PIL's fixed-point `clip8` does.
fn round_u8(value: f32) -> u8 {
    (value + 0.5).floor().clamp(0.0, 255.0) as u8
}

/// The generator of example `index`'s augmentation in `epoch` (for transforms outside
/// this module, such as [`crate::vision::image_folder`]).
pub(crate) fn rng_for(seed: u64, epoch: u64, index: usize) -> ChaCha8Rng {
    example_rng(seed, AUGMENT_DOMAIN, epoch, index as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pad_crop_flip_matches_a_padded_reference() {
        // 1 channel of 3×4, pad 2; compare with explicitly padding, cropping, flipping.
        let (h, w, pad) = (3usize, 4usize, 2usize);
        let image: Vec<u8> = (1..=12).collect();
        let table: Vec<f32> = (0..256).map(|p| p as f32).collect();
        for dy in 0..=2 * pad {
            for dx in 0..=2 * pad {
                for flip in [false, true] {
                    let mut out = Vec::new();
                    let augment = Augment::PadCropFlip { pad };
                    pad_crop_flip_into(
                        &image,
                        (1, h, w),
                        augment,
                        (dy, dx, flip),
                        &table,
                        &mut out,
                    );
                    let padded = |y: usize, x: usize| -> f32 {
                        if y < pad || x < pad || y - pad >= h || x - pad >= w {
                            0.0
                        } else {
                            f32::from(image[(y - pad) * w + x - pad])
                        }
                    };
                    for y in 0..h {
                        for x in 0..w {
                            let cx = if flip { w - 1 - x } else { x };
                            assert_eq!(out[y * w + x], padded(y + dy, cx + dx), "{dy} {dx} {flip}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn draws_cover_offsets_and_flips() {
        let mut seen = [[0usize; 9]; 2];
        let mut flips = 0;
        for index in 0..2000 {
            let (dy, dx, flip) = Augment::CIFAR.draw(1, 0, index);
            seen[0][dy] += 1;
            seen[1][dx] += 1;
            flips += usize::from(flip);
        }
        assert!(seen.iter().flatten().all(|&c| c > 150), "{seen:?}");
        assert!((900..1100).contains(&flips), "{flips}");
    }

    #[test]
    fn random_resized_crop_stays_inside_and_falls_back_to_center() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..500 {
            let b = random_resized_crop_box(500, 375, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(b.width >= 1 && b.height >= 1);
            assert!(b.x + b.width <= 500 && b.y + b.height <= 375);
        }
        // A scale no crop can satisfy forces the fallback: a very wide image is cropped
        // to ratio 4/3 in the middle.
        let b = random_resized_crop_box(1000, 10, (2.0, 3.0), (0.75, 4.0 / 3.0), &mut rng);
        assert_eq!(
            b,
            CropBox {
                x: 493,
                y: 0,
                width: 13,
                height: 10
            }
        );
    }

    #[test]
    fn resize_of_a_constant_image_is_constant_and_identity_is_exact() {
        let rgb: Vec<u8> = (0..20 * 10).flat_map(|_| [10u8, 20, 30]).collect();
        let mut out = Vec::new();
        resample_rgb(
            &rgb,
            20,
            10,
            &Resample::resize_center_crop(20, 10, 7, 5),
            &mut out,
        );
        assert_eq!(out.len(), 5 * 5 * 3);
        assert!(out.chunks_exact(3).all(|p| p == [10, 20, 30]));

        let ramp: Vec<u8> = (0..6 * 4).flat_map(|i| [i as u8, 0, 255]).collect();
        let whole = CropBox {
            x: 0,
            y: 0,
            width: 6,
            height: 4,
        };
        resample_rgb(
            &ramp,
            6,
            4,
            &Resample::crop_resize(whole, 6, 4, false),
            &mut out,
        );
        assert_eq!(out, ramp);
        resample_rgb(
            &ramp,
            6,
            4,
            &Resample::crop_resize(whole, 6, 4, true),
            &mut out,
        );
        assert_eq!(out[..3], [5, 0, 255]);
    }

    #[test]
    fn halving_averages_pairs_like_pil() {
        // Scale 2 widens the triangle to support 2. First output: center 1.0, taps
        // 0..3 with weights (0.75, 0.75, 0.25)/1.75 → (0 + 75 + 50)/1.75 = 71.4 → 71.
        let row: Vec<u8> = [0u8, 100, 200, 250]
            .iter()
            .flat_map(|&v| [v, v, v])
            .collect();
        let whole = CropBox {
            x: 0,
            y: 0,
            width: 4,
            height: 1,
        };
        let mut out = Vec::new();
        resample_rgb(
            &row,
            4,
            1,
            &Resample::crop_resize(whole, 2, 1, false),
            &mut out,
        );
        // Second output: center 3.0, taps 1..4 weights (0.25, 0.75, 0.75)/1.75:
        // (25 + 150 + 187.5)/1.75 = 207.1 → 207.
        assert_eq!([out[0], out[3]], [71, 207]);
    }
}
