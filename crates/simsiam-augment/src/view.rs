//! One view: random crop from the source, in-place ops, then a normalised `f32` tensor.

use crate::chw_image::ChwImage;
use crate::compose::{Compose, Transform};
use crate::crop::RandomResizedCrop;
use crate::error::{AugmentError, Result};
use crate::normalize::Normalize;
use crate::rgb_view::RgbView;
use crate::rng::ChaCha8Rng;
use crate::workspace::Workspace;

/// A view pipeline: [`RandomResizedCrop`] read straight from the interleaved source, then
/// `steps` on the planar working image, then [`Normalize`] into a `[3][H][W]` `f32` buffer.
///
/// The steps must keep the crop's size (flips, colour ops, blur; a 90-degree rotation only for
/// square crops); [`ViewTransform::apply_into`] reports a shape change as an error.
#[derive(Debug)]
pub struct ViewTransform {
    crop: RandomResizedCrop,
    steps: Compose,
    normalize: Normalize,
}

impl ViewTransform {
    /// Assembles a view.
    pub fn new(crop: RandomResizedCrop, steps: Compose, normalize: Normalize) -> Self {
        Self { crop, steps, normalize }
    }

    /// `[3, height, width]` of the output.
    pub fn output_shape(&self) -> [usize; 3] {
        let (w, h) = self.crop.size();
        [3, h as usize, w as usize]
    }

    /// `3 * height * width`.
    pub fn output_len(&self) -> usize {
        self.output_shape().iter().product()
    }

    /// Runs the crop and the steps, leaving the augmented `u8` image in `out`.
    ///
    /// # Errors
    /// Only from a step (none for steps built through validating constructors).
    pub fn augment(
        &self,
        src: RgbView<'_>,
        ws: &mut Workspace,
        rng: &mut ChaCha8Rng,
        out: &mut ChwImage,
    ) -> Result<()> {
        self.crop.apply_from(src, out, ws, rng)?;
        self.steps.apply(out, ws, rng)
    }

    /// Augments `src` and writes the normalised `[3][H][W]` tensor into `out`.
    ///
    /// # Errors
    /// [`AugmentError::BufferSize`] when `out` is not [`ViewTransform::output_len`] long or a
    /// step changed the image size.
    pub fn apply_into(
        &self,
        src: RgbView<'_>,
        ws: &mut Workspace,
        rng: &mut ChaCha8Rng,
        out: &mut [f32],
    ) -> Result<()> {
        let expected = self.output_len();
        if out.len() != expected {
            return Err(AugmentError::BufferSize { expected, actual: out.len() });
        }
        let mut img = std::mem::take(&mut ws.work);
        let res = self.augment(src, ws, rng, &mut img).and_then(|()| self.normalize.apply(&img, out));
        ws.work = img;
        res
    }

    /// Augments `src` into a new `[3][H][W]` buffer.
    ///
    /// # Errors
    /// As [`ViewTransform::apply_into`].
    pub fn apply(&self, src: RgbView<'_>, rng: &mut ChaCha8Rng) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.output_len()];
        self.apply_into(src, &mut Workspace::new(), rng, &mut out)?;
        Ok(out)
    }
}
