//! What the two-view (pretraining) and labelled (linear evaluation) loaders share: a dataset, a
//! batch transform with a fixed number of views, the shuffled order of each epoch, the workers,
//! and the decoding and augmenting of one batch.

use std::sync::Arc;

use candle::Device;
use rayon::prelude::*;
use simsiam_augment::RgbView;

use super::batch_transform::BatchTransform;
use super::order::epoch_permutation;
use super::two_view::LoaderConfig;
use super::workers::{Batches, Engine, Job, num_batches};
use crate::dataset::{Dataset, Sample};
use crate::error::{DataError, Result};

/// A batch's samples and their views, `views x [n, c, h, w]` one after the other.
pub(super) struct Augmented {
    pub(super) samples: Vec<Sample>,
    pub(super) pixels: Vec<f32>,
    /// `[n, c, h, w]` of one view.
    pub(super) shape: (usize, usize, usize, usize),
}

/// Builds a loader's batch from the augmented samples and their dataset indices.
pub(super) type Assemble<T> = fn(Augmented, &[usize], &Device) -> Result<T>;

/// The dataset, transform, settings and workers of an augmenting loader.
pub(super) struct AugmentingLoader {
    pub(super) dataset: Arc<dyn Dataset>,
    transform: Arc<dyn BatchTransform>,
    pub(super) config: LoaderConfig,
    pub(super) device: Device,
    engine: Engine,
}

impl AugmentingLoader {
    /// Checks the batch size and that `transform` makes `views` views (`what` names the loader
    /// in the error), then starts the workers.
    pub(super) fn new(
        dataset: Arc<dyn Dataset>,
        transform: impl BatchTransform + 'static,
        config: LoaderConfig,
        device: Device,
        views: usize,
        what: &str,
    ) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DataError::Config("batch_size must be at least 1".into()));
        }
        if transform.num_views() != views {
            let plural = if views == 1 { "" } else { "s" };
            return Err(DataError::Config(format!(
                "a {what} loader needs a transform with {views} view{plural}, got {}",
                transform.num_views()
            )));
        }
        let engine = Engine::new(config.workers, config.prefetch)?;
        Ok(Self { dataset, transform: Arc::new(transform), config, device, engine })
    }

    /// Batches in each epoch.
    pub(super) fn batches_per_epoch(&self) -> usize {
        num_batches(self.dataset.len(), self.config.batch_size, self.config.drop_last)
    }

    /// The batches of `epoch` in [`epoch_permutation`]'s order, built ahead on the workers and
    /// put together by `assemble`.
    pub(super) fn epoch<T: Send + 'static>(&self, epoch: u64, assemble: Assemble<T>) -> Batches<T> {
        let order = Arc::new(epoch_permutation(self.dataset.len(), self.config.seed, epoch));
        let (dataset, transform) = (self.dataset.clone(), self.transform.clone());
        let (bs, seed, device) = (self.config.batch_size, self.config.seed, self.device.clone());
        let job: Job<T> = Arc::new(move |b| {
            let indices = &order[b * bs..((b + 1) * bs).min(order.len())];
            assemble(augment(&*dataset, &*transform, indices, seed, epoch)?, indices, &device)
        });
        self.engine.run(self.batches_per_epoch(), job)
    }
}

/// Decodes `indices` in parallel on the current pool and augments them: sample `i` gets its
/// views from `simsiam_augment::view_rng(seed, epoch, i, v)`, whatever batch it falls in.
fn augment(
    dataset: &dyn Dataset,
    transform: &dyn BatchTransform,
    indices: &[usize],
    seed: u64,
    epoch: u64,
) -> Result<Augmented> {
    let samples: Vec<Sample> = indices.par_iter().map(|&i| dataset.get(i)).collect::<Result<_>>()?;
    let views = samples
        .iter()
        .map(|s| {
            RgbView::from_image(&s.image)
                .map_err(|source| DataError::Augment { sample: s.name.clone(), source })
        })
        .collect::<Result<Vec<_>>>()?;
    let keys: Vec<u64> = indices.iter().map(|&i| i as u64).collect();
    let [c, h, w] = transform.view_shape();
    let n = indices.len();
    let mut pixels = vec![0f32; transform.num_views() * n * c * h * w];
    transform.apply_batch_into(&views, &keys, seed, epoch, &mut pixels).map_err(|source| {
        let first = samples.first().map_or_else(String::new, |s| s.name.clone());
        DataError::Augment { sample: format!("batch starting at {first}"), source }
    })?;
    Ok(Augmented { samples, pixels, shape: (n, c, h, w) })
}
