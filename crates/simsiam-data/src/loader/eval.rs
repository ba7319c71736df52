//! The evaluation loader: every sample once, in dataset order, preprocessed without
//! augmentation by an [`EvalTransform`] (from `simsiam-augment`).

use std::sync::Arc;

use candle::{Device, Tensor};
use rayon::prelude::*;
pub use simsiam_augment::EvalTransform;
use simsiam_augment::{ChwImage, Normalize, Workspace};

use super::two_view::LoaderConfig;
use super::workers::{Batches, Engine, Job, num_batches};
use crate::dataset::{Dataset, Sample};
use crate::error::{DataError, Result};

/// Settings of [`EvalLoader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalConfig {
    /// Images per batch; the last batch may be shorter (256).
    pub batch_size: usize,
    /// Worker threads, as [`LoaderConfig::workers`].
    pub workers: usize,
    /// Batches built ahead, as [`LoaderConfig::prefetch`] (4).
    pub prefetch: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        let LoaderConfig { batch_size, workers, prefetch, .. } = LoaderConfig::default();
        Self { batch_size, workers, prefetch }
    }
}

/// A batch of preprocessed images with their labels and names.
#[derive(Debug, Clone)]
pub struct EvalBatch {
    /// Images, `[n, 3, H, W]`, `f32`, normalised.
    pub x: Tensor,
    /// Labels.
    pub labels: Vec<Option<usize>>,
    /// Sample names.
    pub names: Vec<String>,
    /// Dataset indices.
    pub indices: Vec<usize>,
}

/// The evaluation loader: every sample once, in dataset order, no augmentation (for
/// embeddings, kNN and linear evaluation).
pub struct EvalLoader {
    dataset: Arc<dyn Dataset>,
    transform: EvalTransform,
    config: EvalConfig,
    device: Device,
    engine: Engine,
    normalize: Arc<Normalize>,
}

impl std::fmt::Debug for EvalLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalLoader")
            .field("len", &self.dataset.len())
            .field("transform", &self.transform)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EvalLoader {
    /// A loader over `dataset`, preprocessing with `transform`, putting tensors on `device`.
    ///
    /// # Errors
    /// [`DataError::Config`] for a zero batch size, prefetch or size, or invalid statistics.
    pub fn new(
        dataset: Arc<dyn Dataset>,
        transform: EvalTransform,
        config: EvalConfig,
        device: Device,
    ) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DataError::Config("batch_size must be at least 1".into()));
        }
        if transform.resize == Some(0) || transform.center_crop == Some(0) {
            return Err(DataError::Config("resize and centre crop sizes must be positive".into()));
        }
        let normalize = Normalize::new(transform.normalization)
            .map_err(|e| DataError::Config(format!("normalisation: {e}")))?;
        let engine = Engine::new(config.workers, config.prefetch)?;
        Ok(Self { dataset, transform, config, device, engine, normalize: Arc::new(normalize) })
    }

    /// Number of batches (the last one may be short).
    pub fn num_batches(&self) -> usize {
        num_batches(self.dataset.len(), self.config.batch_size, false)
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// All batches, in dataset order.
    pub fn batches(&self) -> Batches<EvalBatch> {
        let (dataset, transform, normalize) = (self.dataset.clone(), self.transform, self.normalize.clone());
        let (bs, len, device) = (self.config.batch_size, self.dataset.len(), self.device.clone());
        let job: Job<EvalBatch> = Arc::new(move |b| {
            let indices: Vec<usize> = (b * bs..((b + 1) * bs).min(len)).collect();
            eval_batch(&*dataset, &transform, &normalize, indices, &device)
        });
        self.engine.run(self.num_batches(), job)
    }
}

fn eval_batch(
    dataset: &dyn Dataset,
    transform: &EvalTransform,
    normalize: &Normalize,
    indices: Vec<usize>,
    device: &Device,
) -> Result<EvalBatch> {
    let prepared: Vec<(ChwImage, Sample)> = indices
        .par_iter()
        .map(|&i| {
            let sample = dataset.get(i)?;
            let mut img = ChwImage::default();
            transform
                .prepare(&sample.image, &mut img, &mut Workspace::new())
                .map_err(|source| DataError::Augment { sample: sample.name.clone(), source })?;
            Ok((img, sample))
        })
        .collect::<Result<_>>()?;
    let (w, h) = prepared.first().map_or((0, 0), |(img, _)| (img.width(), img.height()));
    if let Some((img, s)) = prepared.iter().find(|(img, _)| (img.width(), img.height()) != (w, h)) {
        return Err(DataError::ShapeMismatch {
            name: s.name.clone(),
            expected_w: w,
            expected_h: h,
            actual_w: img.width(),
            actual_h: img.height(),
        });
    }
    let len = 3 * w as usize * h as usize;
    let mut x = vec![0f32; prepared.len() * len];
    x.par_chunks_mut(len.max(1)).zip(&prepared).try_for_each(|(out, (img, s))| {
        normalize.apply(img, out).map_err(|source| DataError::Augment { sample: s.name.clone(), source })
    })?;
    let n = prepared.len();
    let (labels, names) = prepared.into_iter().map(|(_, s)| (s.label, s.name)).unzip();
    Ok(EvalBatch { x: Tensor::from_vec(x, (n, 3, h as usize, w as usize), device)?, labels, names, indices })
}
