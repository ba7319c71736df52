//! The classifier-training loader: shuffled batches of one augmented view per image, with
//! labels, for linear evaluation on augmented crops (the official `main_lincls.py`).

use std::sync::Arc;

use candle::{Device, Tensor};

use super::augmented::{Augmented, AugmentingLoader};
use super::batch_transform::BatchTransform;
#[cfg(any(doc, test))]
use super::order::epoch_permutation;
use super::two_view::LoaderConfig;
use super::workers::Batches;
use crate::dataset::Dataset;
#[cfg(any(doc, test))]
use crate::error::DataError;
use crate::error::Result;

/// One augmented view of each image of a batch, with the labels.
#[derive(Debug, Clone)]
pub struct LabelledBatch {
    /// Views, `[n, 3, H, W]`, `f32`.
    pub x: Tensor,
    /// Labels.
    pub labels: Vec<Option<usize>>,
    /// Dataset index of each image.
    pub indices: Vec<usize>,
}

/// Shuffled batches of one augmented view per image with its label, built ahead by workers.
///
/// As [`TwoViewLoader`](crate::TwoViewLoader): the order of `epoch` is
/// [`epoch_permutation`]`(len, seed, epoch)` and the view of the sample with dataset index `i`
/// comes from `simsiam_augment::view_rng(seed, epoch, i, 0)`, so batches do not depend on the
/// number of workers and every epoch sees new crops. With `drop_last` false (PyTorch's
/// default, as `main_lincls.py` loads) the last batch may be short.
pub struct LabelledLoader {
    inner: AugmentingLoader,
}

impl std::fmt::Debug for LabelledLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelledLoader")
            .field("len", &self.inner.dataset.len())
            .field("config", &self.inner.config)
            .field("device", &self.inner.device)
            .finish_non_exhaustive()
    }
}

impl LabelledLoader {
    /// A loader over `dataset` applying `transform` (one view, e.g. a
    /// [`MultiViewTransform`](simsiam_augment::MultiViewTransform) of a crop and a flip),
    /// putting tensors on `device`.
    ///
    /// # Errors
    /// [`DataError::Config`] for a zero batch size or prefetch, or a transform without exactly
    /// one view; [`DataError::Worker`] when the threads cannot start.
    pub fn new(
        dataset: Arc<dyn Dataset>,
        transform: impl BatchTransform + 'static,
        config: LoaderConfig,
        device: Device,
    ) -> Result<Self> {
        Ok(Self { inner: AugmentingLoader::new(dataset, transform, config, device, 1, "labelled")? })
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.config
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.inner.dataset
    }

    /// The device the batches are put on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// Batches in each epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.inner.batches_per_epoch()
    }

    /// The batches of `epoch`, built ahead on the workers.
    pub fn epoch(&self, epoch: u64) -> Batches<LabelledBatch> {
        self.inner.epoch(epoch, labelled_batch)
    }
}

/// The one view of each sample as a tensor, with the labels.
fn labelled_batch(batch: Augmented, indices: &[usize], device: &Device) -> Result<LabelledBatch> {
    let Augmented { samples, pixels, shape } = batch;
    let labels = samples.iter().map(|s| s.label).collect();
    Ok(LabelledBatch { x: Tensor::from_vec(pixels, shape, device)?, labels, indices: indices.to_vec() })
}

#[cfg(test)]
mod tests {
    use image::{Rgb, RgbImage};
    use simsiam_augment::{
        Compose, MultiViewTransform, Normalization, Normalize, RandomHorizontalFlip, RandomResizedCrop,
        ViewTransform,
    };

    use super::*;
    use crate::dataset::Sample;

    /// Ten 12x10 images, sample `i` labelled `i % 3`.
    struct Patterns;

    impl Dataset for Patterns {
        fn len(&self) -> usize {
            10
        }

        fn get(&self, index: usize) -> Result<Sample> {
            let image = RgbImage::from_fn(12, 10, |x, y| Rgb([(x * 20) as u8, (y * 25) as u8, index as u8]));
            Ok(Sample { image, label: Some(index % 3), name: format!("{index}") })
        }
    }

    fn loader(workers: usize, views: usize) -> Result<LabelledLoader> {
        let view = || -> Result<ViewTransform> {
            let crop = RandomResizedCrop::square(6, 0.08).map_err(|e| DataError::Config(e.to_string()))?;
            let flip = RandomHorizontalFlip::new(0.5).map_err(|e| DataError::Config(e.to_string()))?;
            let normalize =
                Normalize::new(Normalization::CIFAR10).map_err(|e| DataError::Config(e.to_string()))?;
            Ok(ViewTransform::new(crop, Compose::default().then(flip), normalize))
        };
        let transform = MultiViewTransform::new((0..views).map(|_| view()).collect::<Result<_>>()?)
            .map_err(|e| DataError::Config(e.to_string()))?;
        let config = LoaderConfig { batch_size: 4, seed: 3, drop_last: false, workers, prefetch: 2 };
        LabelledLoader::new(Arc::new(Patterns), transform, config, Device::Cpu)
    }

    /// A batch's pixels, labels and dataset indices.
    type Plain = (Vec<f32>, Vec<Option<usize>>, Vec<usize>);

    fn epoch(loader: &LabelledLoader, e: u64) -> Result<Vec<Plain>> {
        loader
            .epoch(e)
            .map(|b| {
                let b = b?;
                Ok((b.x.flatten_all()?.to_vec1::<f32>()?, b.labels, b.indices))
            })
            .collect()
    }

    #[test]
    fn batches_are_shuffled_labelled_and_the_same_for_any_worker_count() -> Result<()> {
        let one = loader(1, 1)?;
        assert_eq!(one.batches_per_epoch(), 3);
        let first = epoch(&one, 0)?;
        assert_eq!(first.iter().map(|b| b.2.len()).collect::<Vec<_>>(), [4, 4, 2]);
        let indices: Vec<usize> = first.iter().flat_map(|b| b.2.clone()).collect();
        assert_eq!(indices, epoch_permutation(10, 3, 0));
        for (_, labels, indices) in &first {
            let want: Vec<Option<usize>> = indices.iter().map(|i| Some(i % 3)).collect();
            assert_eq!(labels, &want);
        }
        assert_eq!(epoch(&loader(3, 1)?, 0)?, first);
        assert_eq!(epoch(&loader(0, 1)?, 0)?, first);
        // Another epoch: another order and other crops.
        let second = epoch(&one, 1)?;
        assert_ne!(
            second.iter().map(|b| &b.0).collect::<Vec<_>>(),
            first.iter().map(|b| &b.0).collect::<Vec<_>>()
        );
        Ok(())
    }

    #[test]
    fn a_transform_with_two_views_is_refused() {
        assert!(matches!(loader(1, 2), Err(DataError::Config(_))));
    }
}
