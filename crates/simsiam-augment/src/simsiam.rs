//! `SimSiamTransform`: Lightly's SimSiam augmentation recipe, every knob exposed.

use crate::blur::RandomGaussianBlur;
use crate::color_jitter::ColorJitter;
use crate::compose::{Compose, RandomApply};
use crate::crop::RandomResizedCrop;
use crate::error::{AugmentError, Result, check_non_negative, check_prob};
use crate::flip::{RandomHorizontalFlip, RandomVerticalFlip};
use crate::grayscale::RandomGrayscale;
use crate::multi_view::MultiViewTransform;
use crate::normalize::{Normalization, Normalize};
use crate::rgb_view::RgbView;
use crate::rotate::RandomRotate90;
use crate::view::ViewTransform;

/// The knobs of [`SimSiamTransform`], named and defaulted as Lightly's
/// `lightly.transforms.SimSiamTransform` (the paper's ImageNet recipe).
///
/// For CIFAR-10 start from [`SimSiamConfig::cifar10`] (32-pixel views, no blur, CIFAR
/// statistics); for overhead imagery, [`SimSiamConfig::satellite`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimSiamConfig {
    /// Side of the square output views (224).
    pub input_size: u32,
    /// Probability of applying colour jitter (0.8).
    pub cj_prob: f64,
    /// Multiplier of the four jitter strengths (1.0).
    pub cj_strength: f64,
    /// Brightness jitter strength before `cj_strength` (0.4).
    pub cj_bright: f64,
    /// Contrast jitter strength before `cj_strength` (0.4).
    pub cj_contrast: f64,
    /// Saturation jitter strength before `cj_strength` (0.4).
    pub cj_sat: f64,
    /// Hue jitter strength before `cj_strength` (0.1); the product must be at most 0.5.
    pub cj_hue: f64,
    /// Smallest crop area fraction (0.2); the largest is 1.
    pub min_scale: f64,
    /// Probability of converting to grayscale (0.2).
    pub random_gray_scale: f64,
    /// Probability of a Gaussian blur (0.5).
    pub gaussian_blur: f64,
    /// Fixed blur kernel size, or `None` for `2 * ceil(3 * sigma) + 1` (see
    /// [`crate::auto_kernel_size`]).
    pub kernel_size: Option<u32>,
    /// Range of the blur's sigma, in pixels ((0.1, 2.0)).
    pub sigmas: (f64, f64),
    /// Probability of a vertical flip (0.0).
    pub vf_prob: f64,
    /// Probability of a horizontal flip (0.5).
    pub hf_prob: f64,
    /// Probability of a 90-degree rotation (0.0).
    pub rr_prob: f64,
    /// Normalisation after scaling to `[0, 1]` (ImageNet); `None` for plain `[0, 1]` values.
    pub normalize: Option<Normalization>,
    /// Number of views per image (2).
    pub num_views: usize,
}

impl Default for SimSiamConfig {
    fn default() -> Self {
        Self {
            input_size: 224,
            cj_prob: 0.8,
            cj_strength: 1.0,
            cj_bright: 0.4,
            cj_contrast: 0.4,
            cj_sat: 0.4,
            cj_hue: 0.1,
            min_scale: 0.2,
            random_gray_scale: 0.2,
            gaussian_blur: 0.5,
            kernel_size: None,
            sigmas: (0.1, 2.0),
            vf_prob: 0.0,
            hf_prob: 0.5,
            rr_prob: 0.0,
            normalize: Some(Normalization::IMAGENET),
            num_views: 2,
        }
    }
}

impl SimSiamConfig {
    /// The CIFAR-10 recipe: 32-pixel views, no blur (it destroys 32-pixel images), CIFAR-10
    /// statistics; the rest as [`Default`].
    pub fn cifar10() -> Self {
        Self {
            input_size: 32,
            gaussian_blur: 0.0,
            normalize: Some(Normalization::CIFAR10),
            ..Self::default()
        }
    }

    /// A recipe for overhead (satellite, aerial) imagery, which has no canonical orientation
    /// and whose colours carry signal: flips both ways and 90-degree rotations with
    /// probability 0.5, crops of at least half the area, colour jitter at half strength.
    pub fn satellite() -> Self {
        Self { hf_prob: 0.5, vf_prob: 0.5, rr_prob: 0.5, min_scale: 0.5, cj_strength: 0.5, ..Self::default() }
    }

    /// Checks every knob and builds one view's pipeline.
    ///
    /// # Errors
    /// The first invalid knob, as an [`AugmentError`].
    pub fn view_transform(&self) -> Result<ViewTransform> {
        let s = check_non_negative("cj_strength", self.cj_strength)?;
        let strength = |name, v| check_non_negative(name, v).map(|v| v * s);
        let jitter = ColorJitter::new(
            strength("cj_bright", self.cj_bright)?,
            strength("cj_contrast", self.cj_contrast)?,
            strength("cj_sat", self.cj_sat)?,
            strength("cj_hue", self.cj_hue)?,
        )?;
        if !(self.min_scale.is_finite() && self.min_scale > 0.0 && self.min_scale <= 1.0) {
            return Err(AugmentError::InvalidRange {
                name: "scale",
                min: self.min_scale,
                max: 1.0,
                expected: "0 < min_scale <= 1",
            });
        }
        let crop = RandomResizedCrop::square(self.input_size, self.min_scale)?;
        let steps = Compose::default()
            .then(RandomHorizontalFlip::new(self.hf_prob)?)
            .then(RandomVerticalFlip::new(self.vf_prob)?)
            .then(RandomRotate90::new(self.rr_prob)?)
            .then(RandomApply::new(jitter, check_prob("cj_prob", self.cj_prob)?)?)
            .then(RandomGrayscale::new(self.random_gray_scale)?)
            .then(RandomGaussianBlur::new(self.gaussian_blur, self.sigmas, self.kernel_size)?);
        let normalize = Normalize::new(self.normalize.unwrap_or(Normalization::NONE))?;
        Ok(ViewTransform::new(crop, steps, normalize))
    }

    /// Checks every knob and builds the transform.
    ///
    /// # Errors
    /// The first invalid knob, as an [`AugmentError`]; [`AugmentError::InvalidViews`] for
    /// `num_views == 0`.
    pub fn build(&self) -> Result<SimSiamTransform> {
        if self.num_views == 0 {
            return Err(AugmentError::InvalidViews("num_views must be at least 1"));
        }
        let views = (0..self.num_views).map(|_| self.view_transform()).collect::<Result<_>>()?;
        Ok(SimSiamTransform { config: self.clone(), views: MultiViewTransform::new(views)? })
    }
}

/// SimSiam's augmentation: `num_views` independent draws of the same view pipeline, in
/// Lightly's order: random resized crop, horizontal flip, vertical flip, 90-degree rotation,
/// colour jitter (random apply), random grayscale, Gaussian blur, to tensor, normalise.
#[derive(Debug)]
pub struct SimSiamTransform {
    config: SimSiamConfig,
    views: MultiViewTransform,
}

impl SimSiamTransform {
    /// Builds from `config` (same as [`SimSiamConfig::build`]).
    ///
    /// # Errors
    /// As [`SimSiamConfig::build`].
    pub fn new(config: SimSiamConfig) -> Result<Self> {
        config.build()
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &SimSiamConfig {
        &self.config
    }

    /// The underlying multi-view transform, with the full API.
    pub fn multi_view(&self) -> &MultiViewTransform {
        &self.views
    }

    /// Number of views per image.
    pub fn num_views(&self) -> usize {
        self.views.num_views()
    }

    /// `[3, H, W]` of every view.
    pub fn view_shape(&self) -> [usize; 3] {
        self.views.view_shape()
    }

    /// Length of a batch buffer for `n` images.
    pub fn batch_len(&self, n: usize) -> usize {
        self.views.batch_len(n)
    }

    /// All views of one image; see [`MultiViewTransform::apply`].
    ///
    /// # Errors
    /// As [`MultiViewTransform::apply`].
    pub fn apply(&self, src: RgbView<'_>, seed: u64, epoch: u64, index: u64) -> Result<Vec<Vec<f32>>> {
        self.views.apply(src, seed, epoch, index)
    }

    /// A batch into `[view][n][3][H][W]`; see [`MultiViewTransform::apply_batch_into`].
    ///
    /// # Errors
    /// As [`MultiViewTransform::apply_batch_into`].
    pub fn apply_batch_into(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
        out: &mut [f32],
    ) -> Result<()> {
        self.views.apply_batch_into(images, indices, seed, epoch, out)
    }

    /// A batch, allocating the output; see [`MultiViewTransform::apply_batch`].
    ///
    /// # Errors
    /// As [`MultiViewTransform::apply_batch_into`].
    pub fn apply_batch(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
    ) -> Result<Vec<f32>> {
        self.views.apply_batch(images, indices, seed, epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_build() {
        for c in [SimSiamConfig::default(), SimSiamConfig::cifar10(), SimSiamConfig::satellite()] {
            let t = c.build().expect("preset is valid");
            assert_eq!(t.num_views(), 2);
            let s = c.input_size as usize;
            assert_eq!(t.view_shape(), [3, s, s]);
        }
    }
}
