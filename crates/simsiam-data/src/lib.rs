//! Datasets and loaders for SimSiam pretraining.
//!
//! - [`Dataset`]: `len` + `get(i) -> Sample` (an RGB image, an optional label, a name), with
//!   [`Subset`] / [`DatasetExt::take`] to try a run on a few samples.
//! - [`Cifar10`] and [`Cifar100`]: the binary CIFAR files, validated and held in memory as
//!   `u8`, with labels and class names (CIFAR-100's coarse and fine).
//! - [`ImageFolder`]: a folder of images (PNG, JPEG, BMP, PNM, TIFF, WebP, GIF) read
//!   recursively in sorted order (Lightly's `LightlyDataset`), labelled by first sub-folder,
//!   decoded lazily on the loader's workers; with the `video` feature, videos too, one sample
//!   per frame named as Lightly names frames, decoded by the `ffmpeg` program.
//! - [`download`]: CIFAR from the official URLs, a mirror or a local archive, streamed,
//!   md5-checked, extracted safely into a temporary folder, verified, then renamed into place.
//! - [`TwoViewLoader`]: shuffled batches of two augmented views as candle tensors
//!   `[N, 3, H, W]`, built by worker threads ahead of training, identical for any number of
//!   workers; [`EvalLoader`]: plain preprocessed batches in order, with labels and names;
//!   [`LabelledLoader`]: shuffled batches of one augmented view with labels (linear evaluation
//!   on augmented crops).
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use std::sync::Arc;
//! use simsiam_augment::SimSiamConfig;
//! use simsiam_data::{Cifar10, LoaderConfig, Split, TwoViewLoader, download};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = download::fetch_cifar10(Path::new("data"), None)?;
//! let train = Cifar10::load(&dir, Split::Train)?;
//! let transform = SimSiamConfig::cifar10().build()?;
//! let config = LoaderConfig { batch_size: 256, seed: 42, ..LoaderConfig::default() };
//! let loader = TwoViewLoader::new(Arc::new(train), transform, config, candle::Device::Cpu)?;
//! for batch in loader.epoch(0) {
//!     let batch = batch?;
//!     assert_eq!(batch.x0.dims(), [256, 3, 32, 32]);
//! }
//! # Ok(())
//! # }
//! ```

mod cifar;
mod dataset;
pub mod download;
mod error;
mod folder;
mod formats;
mod loader;
#[cfg(feature = "video")]
mod video;

pub use cifar::{
    CIFAR_PIXELS, CIFAR_SIDE, CIFAR10_CLASSES, CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES, Cifar10,
    Cifar100, CifarDataset, Split,
};
pub use dataset::{Dataset, DatasetExt, Sample, Subset};
pub use download::{DatasetSpec, FileSpec, fetch_cifar10, fetch_cifar100, fetch_dataset};
pub use error::{DataError, Result};
pub use folder::{ImageFolder, ImageFolderOptions, Skipped};
pub use formats::{IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_video_extension, lightly_frame_name};
pub use loader::{
    BatchTransform, Batches, EvalBatch, EvalConfig, EvalLoader, EvalTransform, LabelledBatch, LabelledLoader,
    LoaderConfig, TwoViewBatch, TwoViewLoader, epoch_permutation,
};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
