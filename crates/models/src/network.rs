//! [`Network`] and [`Autoencoder`]: what every model in this crate is.

use candle_core::Tensor;

use crate::Result;

/// A classifier network: images in, logits out, with an explicit training flag.
///
/// `train` switches dropout and batch-norm statistics; there are no eval-only
/// shortcuts, so the same weights give the same function in both modes for
/// layers without such behaviour. In training, batch-norm layers also update
/// their running statistics (buffers in the [`crate::VarStore`]).
pub trait Network: Send + Sync {
    /// Logits of shape `(batch, num_classes)` for inputs `(batch, C, H, W)`.
    ///
    /// # Errors
    /// [`crate::Error::InputShape`] if the input does not fit the model, or a
    /// candle error.
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor>;
}

/// A model trained without labels (the SVHN VAE): inputs in, a scalar loss out.
pub trait Autoencoder: Send + Sync {
    /// The scalar loss to minimise for a batch `(batch, C, H, W)`, averaged
    /// over examples.
    ///
    /// # Errors
    /// [`crate::Error::InputShape`] if the input does not fit the model, or a
    /// candle error.
    fn loss(&self, xs: &Tensor, train: bool) -> Result<Tensor>;
}
