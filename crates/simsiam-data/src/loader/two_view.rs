//! The pretraining loader: shuffled batches of two augmented views per image.

use std::sync::Arc;

use candle::{Device, Tensor};
use rayon::prelude::*;
use simsiam_augment::RgbView;

use super::batch_transform::BatchTransform;
use super::order::epoch_permutation;
use super::workers::{Batches, Engine, Job, num_batches};
use crate::dataset::{Dataset, Sample};
use crate::error::{DataError, Result};

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

/// Decodes `indices` in parallel on the current pool.
fn fetch(dataset: &dyn Dataset, indices: &[usize]) -> Result<Vec<Sample>> {
    indices.par_iter().map(|&i| dataset.get(i)).collect()
}

fn views_of(samples: &[Sample]) -> Result<Vec<RgbView<'_>>> {
    samples
        .iter()
        .map(|s| {
            RgbView::from_image(&s.image)
                .map_err(|source| DataError::Augment { sample: s.name.clone(), source })
        })
        .collect()
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
    dataset: Arc<dyn Dataset>,
    transform: Arc<dyn BatchTransform>,
    config: LoaderConfig,
    device: Device,
    engine: Engine,
}

impl std::fmt::Debug for TwoViewLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoViewLoader")
            .field("len", &self.dataset.len())
            .field("config", &self.config)
            .field("device", &self.device)
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
        if config.batch_size == 0 {
            return Err(DataError::Config("batch_size must be at least 1".into()));
        }
        if transform.num_views() != 2 {
            return Err(DataError::Config(format!(
                "a two-view loader needs a transform with 2 views, got {}",
                transform.num_views()
            )));
        }
        let engine = Engine::new(config.workers, config.prefetch)?;
        Ok(Self { dataset, transform: Arc::new(transform), config, device, engine })
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// Batches in each epoch.
    pub fn batches_per_epoch(&self) -> usize {
        num_batches(self.dataset.len(), self.config.batch_size, self.config.drop_last)
    }

    /// The batches of `epoch`, built ahead on the workers.
    pub fn epoch(&self, epoch: u64) -> Batches<TwoViewBatch> {
        let order = Arc::new(epoch_permutation(self.dataset.len(), self.config.seed, epoch));
        let (dataset, transform) = (self.dataset.clone(), self.transform.clone());
        let (bs, seed, device) = (self.config.batch_size, self.config.seed, self.device.clone());
        let job: Job<TwoViewBatch> = Arc::new(move |b| {
            let indices = order[b * bs..((b + 1) * bs).min(order.len())].to_vec();
            two_view_batch(&*dataset, &*transform, &indices, seed, epoch, &device)
        });
        self.engine.run(self.batches_per_epoch(), job)
    }
}

fn two_view_batch(
    dataset: &dyn Dataset,
    transform: &dyn BatchTransform,
    indices: &[usize],
    seed: u64,
    epoch: u64,
    device: &Device,
) -> Result<TwoViewBatch> {
    let samples = fetch(dataset, indices)?;
    let views = views_of(&samples)?;
    let keys: Vec<u64> = indices.iter().map(|&i| i as u64).collect();
    let [c, h, w] = transform.view_shape();
    let n = indices.len();
    let mut x0 = vec![0f32; 2 * n * c * h * w];
    transform.apply_batch_into(&views, &keys, seed, epoch, &mut x0).map_err(|source| {
        let first = samples.first().map_or_else(String::new, |s| s.name.clone());
        DataError::Augment { sample: format!("batch starting at {first}"), source }
    })?;
    let x1 = x0.split_off(n * c * h * w);
    Ok(TwoViewBatch {
        x0: Tensor::from_vec(x0, (n, c, h, w), device)?,
        x1: Tensor::from_vec(x1, (n, c, h, w), device)?,
        indices: indices.to_vec(),
        labels: samples.iter().map(|s| s.label).collect(),
    })
}
