//! [`Num`]: the numbers a transform's per-element update is written over.
//!
//! Each elementwise transform states its update once, as a generic function
//! over `T: Num`. With `T = Tensor` it is the composed update (one candle op
//! per operation, on any device and dtype); with `T = f32` it is the body of
//! the in-place CPU loop ([`crate::fuse`]). The `f32` operations are those of
//! candle's f32 CPU kernels, operation for operation (`affine(a, b)` is
//! `x·(a as f32) + (b as f32)`, `clamp` is `maximum` then `minimum`), so the
//! two paths round alike: a fused update equals its composed one bit for bit.

use std::convert::Infallible;

use candle_core::Tensor;

/// The operations the per-element updates use, each as candle defines it.
pub(crate) trait Num: Clone {
    /// What an operation can fail with (nothing, for `f32`).
    type Error;

    /// `self + rhs`.
    fn add(&self, rhs: &Self) -> Result<Self, Self::Error>;
    /// `self − rhs`.
    fn sub(&self, rhs: &Self) -> Result<Self, Self::Error>;
    /// `self / rhs`.
    fn div(&self, rhs: &Self) -> Result<Self, Self::Error>;
    /// `self²`.
    fn sqr(&self) -> Result<Self, Self::Error>;
    /// `√self`.
    fn sqrt(&self) -> Result<Self, Self::Error>;
    /// `self·mul + add`, the coefficients rounded to the element type first.
    fn affine(&self, mul: f64, add: f64) -> Result<Self, Self::Error>;
    /// `self` clamped to `[min, max]`.
    fn clamp(&self, min: f64, max: f64) -> Result<Self, Self::Error>;
}

impl Num for f32 {
    type Error = Infallible;

    #[inline(always)]
    fn add(&self, rhs: &f32) -> Result<f32, Infallible> {
        Ok(self + rhs)
    }

    #[inline(always)]
    fn sub(&self, rhs: &f32) -> Result<f32, Infallible> {
        Ok(self - rhs)
    }

    #[inline(always)]
    fn div(&self, rhs: &f32) -> Result<f32, Infallible> {
        Ok(self / rhs)
    }

    #[inline(always)]
    fn sqr(&self) -> Result<f32, Infallible> {
        Ok(self * self)
    }

    #[inline(always)]
    fn sqrt(&self) -> Result<f32, Infallible> {
        Ok(f32::sqrt(*self))
    }

    #[inline(always)]
    fn affine(&self, mul: f64, add: f64) -> Result<f32, Infallible> {
        // candle adds `+0.0` too, which only turns a −0 product into +0: one
        // addition per scaling, in every fused loop, for the sign of zero.
        if add == 0.0 {
            return Ok(self * mul as f32);
        }
        Ok(self * mul as f32 + add as f32)
    }

    #[inline(always)]
    fn clamp(&self, min: f64, max: f64) -> Result<f32, Infallible> {
        // candle's `maximum`, then `minimum`, against the bounds cast to f32.
        let (min, max) = (min as f32, max as f32);
        let x = if *self < min { min } else { *self };
        Ok(if x > max { max } else { x })
    }
}

impl Num for Tensor {
    type Error = candle_core::Error;

    fn add(&self, rhs: &Tensor) -> candle_core::Result<Tensor> {
        Tensor::add(self, rhs)
    }

    fn sub(&self, rhs: &Tensor) -> candle_core::Result<Tensor> {
        Tensor::sub(self, rhs)
    }

    fn div(&self, rhs: &Tensor) -> candle_core::Result<Tensor> {
        Tensor::div(self, rhs)
    }

    fn sqr(&self) -> candle_core::Result<Tensor> {
        Tensor::sqr(self)
    }

    fn sqrt(&self) -> candle_core::Result<Tensor> {
        Tensor::sqrt(self)
    }

    fn affine(&self, mul: f64, add: f64) -> candle_core::Result<Tensor> {
        Tensor::affine(self, mul, add)
    }

    fn clamp(&self, min: f64, max: f64) -> candle_core::Result<Tensor> {
        Tensor::clamp(self, min, max)
    }
}

/// The value of an `f32` computation, which cannot fail.
#[inline(always)]
pub(crate) fn exact<T>(r: Result<T, Infallible>) -> T {
    let Ok(x) = r;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Every operation on f32 scalars equals candle's f32 kernel bit for bit,
    /// except `affine(a, 0)` on a product that is `−0` (candle gives `+0`).
    #[test]
    fn scalar_ops_round_as_candle_does() -> crate::Result<()> {
        let xs = [
            0.0f32,
            -0.0,
            1.5,
            -2.25,
            3e-8,
            7.0e10,
            0.1,
            f32::MIN_POSITIVE,
        ];
        let ys = [0.3f32, -0.7, 2.0, 1e-9, -4.5, 0.1, -0.0, 3.0];
        let x = Tensor::new(&xs, &Device::Cpu)?;
        let y = Tensor::new(&ys, &Device::Cpu)?;
        let bits = |t: Tensor| -> crate::Result<Vec<u32>> {
            Ok(t.to_dtype(DType::F32)?
                .to_vec1::<f32>()?
                .iter()
                .map(|v| v.to_bits())
                .collect())
        };
        let each = |f: &dyn Fn(f32, f32) -> f32| -> Vec<u32> {
            xs.iter()
                .zip(&ys)
                .map(|(&a, &b)| f(a, b).to_bits())
                .collect()
        };
        let coefficient = 0.1f64 - 1e-12; // not exactly an f32
        // Values as f32 `==` sees them: −0 = +0, the only difference allowed.
        let values =
            |bits: Vec<u32>| -> Vec<f32> { bits.into_iter().map(f32::from_bits).collect() };
        assert_eq!(
            bits(Num::add(&x, &y)?)?,
            each(&|a, b| exact(Num::add(&a, &b)))
        );
        assert_eq!(
            bits(Num::sub(&x, &y)?)?,
            each(&|a, b| exact(Num::sub(&a, &b)))
        );
        assert_eq!(
            bits(Num::div(&x, &y)?)?,
            each(&|a, b| exact(Num::div(&a, &b)))
        );
        assert_eq!(bits(Num::sqr(&x)?)?, each(&|a, _| exact(Num::sqr(&a))));
        let abs = x.abs()?;
        assert_eq!(
            bits(Num::sqrt(&abs)?)?,
            each(&|a, _| exact(Num::sqrt(&a.abs())))
        );
        assert_eq!(
            values(bits(Num::affine(&x, coefficient, 0.0)?)?),
            values(each(&|a, _| exact(Num::affine(&a, coefficient, 0.0))))
        );
        // -0 · 0.1 = -0: candle adds +0, the f32 path does not.
        assert_eq!(
            exact(Num::affine(&-0.0f32, 0.1, 0.0)).to_bits(),
            (-0.0f32).to_bits()
        );
        assert_eq!(
            bits(Num::affine(&x, -1.0 / 3.0, 1e-8)?)?,
            each(&|a, _| exact(Num::affine(&a, -1.0 / 3.0, 1e-8)))
        );
        assert_eq!(
            bits(Num::clamp(&x, -1.0, coefficient)?)?,
            each(&|a, _| exact(Num::clamp(&a, -1.0, coefficient)))
        );
        Ok(())
    }
}
