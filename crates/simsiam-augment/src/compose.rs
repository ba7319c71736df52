//! The `Transform` trait and its combinators, `Compose` and `RandomApply`.

use std::fmt;

use crate::chw_image::ChwImage;
use crate::error::{Result, check_prob};
use crate::rng::{ChaCha8Rng, bernoulli};
use crate::workspace::Workspace;

/// A (possibly random) image op that edits a planar image in place.
///
/// Implementations draw all their randomness from `rng` and use `ws` for scratch memory, so
/// they are deterministic given the generator and allocate nothing once `ws` has grown.
pub trait Transform: Send + Sync + fmt::Debug {
    /// Applies the op to `img`.
    ///
    /// # Errors
    /// [`crate::AugmentError::EmptyImage`] for an empty image; ops built through a validating
    /// constructor fail for no other reason.
    fn apply(&self, img: &mut ChwImage, ws: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()>;
}

impl<T: Transform + ?Sized> Transform for Box<T> {
    fn apply(&self, img: &mut ChwImage, ws: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        (**self).apply(img, ws, rng)
    }
}

/// Applies transforms one after the other, as torchvision's `Compose`.
#[derive(Debug, Default)]
pub struct Compose {
    steps: Vec<Box<dyn Transform>>,
}

impl Compose {
    /// A composition of `steps`, applied in order.
    pub fn new(steps: Vec<Box<dyn Transform>>) -> Self {
        Self { steps }
    }

    /// Appends a step.
    pub fn push(&mut self, step: impl Transform + 'static) {
        self.steps.push(Box::new(step));
    }

    /// Appends a step, builder style.
    #[must_use]
    pub fn then(mut self, step: impl Transform + 'static) -> Self {
        self.push(step);
        self
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// `true` when there are no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl Transform for Compose {
    fn apply(&self, img: &mut ChwImage, ws: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        self.steps.iter().try_for_each(|step| step.apply(img, ws, rng))
    }
}

/// Applies `inner` with probability `p`, as torchvision's `RandomApply([inner], p)`.
#[derive(Debug, Clone)]
pub struct RandomApply<T> {
    inner: T,
    p: f64,
}

impl<T: Transform> RandomApply<T> {
    /// Wraps `inner`.
    ///
    /// # Errors
    /// [`crate::AugmentError::InvalidParameter`] when `p` is not in `[0, 1]`.
    pub fn new(inner: T, p: f64) -> Result<Self> {
        Ok(Self { inner, p: check_prob("p", p)? })
    }

    /// The wrapped transform.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: Transform> Transform for RandomApply<T> {
    fn apply(&self, img: &mut ChwImage, ws: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        if bernoulli(rng, self.p) { self.inner.apply(img, ws, rng) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flip::HorizontalFlip;
    use crate::rng::sample_rng;

    #[test]
    fn compose_and_random_apply() {
        let mut img = ChwImage::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6]).expect("valid");
        let mut ws = Workspace::new();
        let mut rng = sample_rng(0, 0, 0);
        let twice = Compose::default().then(HorizontalFlip).then(HorizontalFlip);
        assert_eq!(twice.len(), 2);
        twice.apply(&mut img, &mut ws, &mut rng).expect("valid");
        assert_eq!(img.as_raw(), &[1, 2, 3, 4, 5, 6]);
        RandomApply::new(HorizontalFlip, 1.0)
            .expect("valid")
            .apply(&mut img, &mut ws, &mut rng)
            .expect("valid");
        assert_eq!(img.as_raw(), &[2, 1, 4, 3, 6, 5]);
        RandomApply::new(HorizontalFlip, 0.0)
            .expect("valid")
            .apply(&mut img, &mut ws, &mut rng)
            .expect("valid");
        assert_eq!(img.as_raw(), &[2, 1, 4, 3, 6, 5]);
        assert!(RandomApply::new(HorizontalFlip, 1.5).is_err());
    }
}
