//! The multi-view augmentation interface of the two-view loader.

use std::sync::Arc;

use simsiam_augment::{AugmentError, MultiViewTransform, RgbView, SimSiamTransform};

/// A multi-view augmentation with a batch API writing `[view][n][3][H][W]` into one `f32`
/// buffer: what [`TwoViewLoader`](crate::TwoViewLoader) needs. Implemented for `simsiam-augment`'s
/// [`SimSiamTransform`] and [`MultiViewTransform`].
pub trait BatchTransform: Send + Sync {
    /// Views per image.
    fn num_views(&self) -> usize;
    /// `[3, H, W]` of every view.
    fn view_shape(&self) -> [usize; 3];
    /// Augments `images`; view `v` of image `i` must depend only on
    /// `(seed, epoch, indices[i], v)`.
    ///
    /// # Errors
    /// The augmentation's error.
    fn apply_batch_into(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
        out: &mut [f32],
    ) -> std::result::Result<(), AugmentError>;
}

impl BatchTransform for MultiViewTransform {
    fn num_views(&self) -> usize {
        MultiViewTransform::num_views(self)
    }

    fn view_shape(&self) -> [usize; 3] {
        MultiViewTransform::view_shape(self)
    }

    fn apply_batch_into(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
        out: &mut [f32],
    ) -> std::result::Result<(), AugmentError> {
        MultiViewTransform::apply_batch_into(self, images, indices, seed, epoch, out)
    }
}

impl BatchTransform for SimSiamTransform {
    fn num_views(&self) -> usize {
        SimSiamTransform::num_views(self)
    }

    fn view_shape(&self) -> [usize; 3] {
        SimSiamTransform::view_shape(self)
    }

    fn apply_batch_into(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
        out: &mut [f32],
    ) -> std::result::Result<(), AugmentError> {
        SimSiamTransform::apply_batch_into(self, images, indices, seed, epoch, out)
    }
}

impl<T: BatchTransform + ?Sized> BatchTransform for Arc<T> {
    fn num_views(&self) -> usize {
        (**self).num_views()
    }

    fn view_shape(&self) -> [usize; 3] {
        (**self).view_shape()
    }

    fn apply_batch_into(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
        out: &mut [f32],
    ) -> std::result::Result<(), AugmentError> {
        (**self).apply_batch_into(images, indices, seed, epoch, out)
    }
}
