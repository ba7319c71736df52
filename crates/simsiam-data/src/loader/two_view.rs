//! The pretraining loader: shuffled batches of two augmented views per image.

use std::sync::Arc;

use candle::{Device, Tensor};

use super::augmented::{Augmented, AugmentingLoader};
use super::batch_transform::BatchTransform;
#[cfg(doc)]
use super::order::epoch_permutation;
use super::workers::Batches;
use crate::dataset::Dataset;
#[cfg(doc)]
use crate::error::DataError;
use crate::error::Result;

/// Settings of [`TwoViewLoader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Images per batch (256).
    pub batch_size: usize,
    /// Run seed: with the epoch it fixes the order and every augmentation (0).
    pub seed: u64,
    /// Drop the last, incomplete batch (`true`, as SimSiam training does).
    pub drop_last: bool,
    /// Worker threads decoding and augmenting; 0 builds each batch in the caller's thread when
    /// it is asked for (available parallelism).
    pub workers: usize,
    /// Batches built ahead of the consumer, at most; at least 1 (4).
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            seed: 0,
            drop_last: true,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            prefetch: 4,
        }
    }
}

/// Two augmented views of a batch.
#[derive(Debug, Clone)]
pub struct TwoViewBatch {
    /// First views, `[n, 3, H, W]`, `f32`.
    pub x0: Tensor,
    /// Second views, `[n, 3, H, W]`, `f32`.
    pub x1: Tensor,
    /// Dataset index of each image.
    pub indices: Vec<usize>,
    /// Class of each image, where the dataset has labels (an online linear probe trains on
    /// them).
    pub labels: Vec<Option<usize>>,
}

/// The pretraining loader: for each epoch, shuffled batches of two augmented views.
///
/// - Order: [`epoch_permutation`]`(len, seed, epoch)`, cut into batches of `batch_size`
///   (the last, short one dropped with `drop_last`).
/// - Views: sample `i` (a dataset index) gets views from `simsiam_augment::view_rng(seed,
///   epoch, i, v)` through the transform's batch API, so every batch is identical for any
///   number of workers, and a sample's views do not depend on the batch it falls in.
/// - Work: `workers` threads decode (`Dataset::get`) and augment, in parallel inside each batch
///   and across up to `prefetch` batches ahead of the consumer.
pub struct TwoViewLoader {
    inner: AugmentingLoader,
}

impl std::fmt::Debug for TwoViewLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoViewLoader")
            .field("len", &self.inner.dataset.len())
            .field("config", &self.inner.config)
            .field("device", &self.inner.device)
            .finish_non_exhaustive()
    }
}

impl TwoViewLoader {
    /// A loader over `dataset` applying `transform` (two views, e.g. a
    /// [`SimSiamTransform`](simsiam_augment::SimSiamTransform)), putting tensors on `device`.
    ///
    /// # Errors
    /// [`DataError::Config`] for a zero batch size or prefetch, or a transform without exactly
    /// two views; [`DataError::Worker`] when the threads cannot start.
    pub fn new(
        dataset: Arc<dyn Dataset>,
        transform: impl BatchTransform + 'static,
        config: LoaderConfig,
        device: Device,
    ) -> Result<Self> {
        Ok(Self { inner: AugmentingLoader::new(dataset, transform, config, device, 2, "two-view")? })
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.config
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.inner.dataset
    }

    /// Batches in each epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.inner.batches_per_epoch()
    }

    /// The batches of `epoch`, built ahead on the workers.
    pub fn epoch(&self, epoch: u64) -> Batches<TwoViewBatch> {
        self.inner.epoch(epoch, two_view_batch)
    }
}

/// The first and second views of each sample, as tensors.
fn two_view_batch(batch: Augmented, indices: &[usize], device: &Device) -> Result<TwoViewBatch> {
    let Augmented { samples, pixels: mut x0, shape } = batch;
    let (n, c, h, w) = shape;
    let x1 = x0.split_off(n * c * h * w);
    Ok(TwoViewBatch {
        x0: Tensor::from_vec(x0, shape, device)?,
        x1: Tensor::from_vec(x1, shape, device)?,
        indices: indices.to_vec(),
        labels: samples.iter().map(|s| s.label).collect(),
    })
}
