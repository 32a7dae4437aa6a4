//! The networks of the large-batch training literature, in candle.
//!
//! Every classifier implements [`Network`]: a forward pass with an explicit
//! `train` flag, parameter names that follow the PyTorch reference's state-dict
//! keys, and a typed, serialisable config. The SVHN VAE implements
//! [`Autoencoder`]. Models are built from a [`VarStore`], which draws initial
//! values from a seed, separates trainable parameters ([`VarStore::vars`]) from
//! batch-norm buffers ([`VarStore::buffers`]), tells optimizer masks what each
//! parameter is ([`VarStore::param_kind`]) and checkpoints through safetensors
//! ([`save_checkpoint`], with a JSON config sidecar).
//!
//! | family | models |
//! |---|---|
//! | [`LeNet5`] | LeNet-5 (LeCun et al. 1998) |
//! | [`SimpleCnn`] | Shallue et al.'s simple CNN, the TPU MNIST model |
//! | [`KeskarF1`], [`KeskarShallow`], [`KeskarDeep`] | Keskar et al. 2017: F1, C1/C3, C2/C4 |
//! | [`CifarResNet`] | He et al. 2016 CIFAR ResNet-8/20/32/56 |
//! | [`ResNet`] | ResNet-50 v1.5 (ImageNet), ResNet-18/50 with CIFAR stems |
//! | [`SvhnVae`] | convolutional VAE for SVHN |
//!
//! [`ModelKind`] lists them all with their parameter counts.
//!
//! Batch norm ([`norm::BatchNorm`]) can be ordinary or ghost
//! ([`norm::Norm::Ghost`]) in every model that has it; the pooling layers are
//! this crate's own kernels ([`ops`]), which differentiate any kernel, stride
//! and padding with PyTorch's tie rule.

mod checkpoint;
mod error;
mod keskar;
pub mod layers;
mod lenet;
mod network;
pub mod norm;
pub mod ops;
mod resnet;
mod resnet_cifar;
mod simple_cnn;
mod store;
mod summary;
#[cfg(test)]
mod testing;
mod vae;

pub use checkpoint::{config_path, load_checkpoint, load_config, save_checkpoint};
pub use error::{Error, Result};
pub use keskar::{
    KeskarDeep, KeskarDeepConfig, KeskarF1, KeskarF1Config, KeskarShallow, KeskarShallowConfig,
};
pub use lenet::{LeNet5, LeNet5Config};
pub use network::{Autoencoder, Network};
pub use norm::{BatchNorm, BatchNormConfig, Norm};
pub use resnet::{Block, ResNet, ResNetConfig, Stem};
pub use resnet_cifar::{CifarResNet, CifarResNetConfig, Shortcut};
pub use simple_cnn::{SimpleCnn, SimpleCnnConfig};
pub use store::{BUFFER_NAMES, ParamKind, VarStore, is_buffer};
pub use summary::{BuildModel, Model, ModelKind, summary_table};
pub use vae::{Elbo, SvhnVae, SvhnVaeConfig};
