//! `SimSiamTransform`: Lightly's SimSiam augmentation recipe, every knob exposed.

use crate::blur::RandomGaussianBlur;
use crate::color_jitter::ColorJitter;
use crate::compose::{Compose, RandomApply, Transform};
use crate::crop::RandomResizedCrop;
use crate::error::{AugmentError, Result, check_non_negative, check_prob};
use crate::flip::{RandomHorizontalFlip, RandomVerticalFlip};
use crate::grayscale::RandomGrayscale;
use crate::multi_view::MultiViewTransform;
use crate::normalize::{Normalization, Normalize};
use crate::rgb_view::RgbView;
use crate::rotate::{RandomRotate90, RandomRotation};
use crate::view::ViewTransform;

/// The knobs of [`SimSiamTransform`], named and defaulted as Lightly's
/// `lightly.transforms.SimSiamTransform` (the paper's ImageNet recipe).
///
/// Named recipes, each the augmentation of one published source (file and line in its docs):
/// [`SimSiamConfig::lightly_example`], [`SimSiamConfig::lightly_cifar10_benchmark`],
/// [`SimSiamConfig::satellite`], [`SimSiamConfig::cifar10_paper`],
/// [`SimSiamConfig::imagenet_paper`]; and our CPU recipe for CIFAR-10,
/// [`SimSiamConfig::cifar10_cpu`]. The `simsiam` program's presets of the same names use
/// these. [`SimSiamConfig::cifar10`] is a CIFAR-10 starting point of our own.
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
    /// Probability of a rotation (0.0).
    pub rr_prob: f64,
    /// `None`: rotations by 90 degrees (Lightly's `RandomRotate`); `Some((min, max))`: by an
    /// angle drawn uniformly from `[min, max]` degrees, counter-clockwise (Lightly's
    /// `RandomRotateDegrees`, torchvision's `RandomRotation`) (`None`).
    pub rr_degrees: Option<(f64, f64)>,
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
            rr_degrees: None,
            normalize: Some(Normalization::IMAGENET),
            num_views: 2,
        }
    }
}

impl SimSiamConfig {
    /// The CIFAR-10 recipe: 32-pixel views, no blur (it destroys 32-pixel images), CIFAR-10
    /// statistics; the rest as [`Default`]. The same as [`SimSiamConfig::cifar10_paper`].
    pub fn cifar10() -> Self {
        Self::cifar10_paper()
    }

    /// Lightly's SimSiam example, `examples/pytorch/simsiam.py` line 39:
    /// `SimSiamTransform(input_size=32)`, every other knob at its default (blur 0.5, ImageNet
    /// statistics; `lightly/transforms/simsiam_transform.py` lines 76-95).
    pub fn lightly_example() -> Self {
        Self { input_size: 32, ..Self::default() }
    }

    /// The `simsiam` program's `cifar10-cpu` preset, our recipe for CIFAR-10 on a CPU (chosen
    /// by the recipe sweep of `docs/training.md`, "Recipe sweep for a CPU"):
    /// [`SimSiamConfig::lightly_example`] with two changes, no Gaussian blur (it destroys
    /// 32-pixel images, as the paper's CIFAR recipe says) and CIFAR-10's statistics instead of
    /// ImageNet's. The views are those of [`SimSiamConfig::cifar10_paper`].
    pub fn cifar10_cpu() -> Self {
        Self { gaussian_blur: 0.0, normalize: Some(Normalization::CIFAR10), ..Self::lightly_example() }
    }

    /// Lightly's CIFAR-10 benchmark,
    /// `docs/source/getting_started/benchmarks/cifar10_benchmark.py` lines 181-184:
    /// `SimSiamTransform(input_size=32, gaussian_blur=0.0)` (ImageNet statistics).
    pub fn lightly_cifar10_benchmark() -> Self {
        Self { input_size: 32, gaussian_blur: 0.0, ..Self::default() }
    }

    /// Lightly's Tutorial 4 on satellite images,
    /// `docs/source/tutorials_source/package/tutorial_simsiam_esa.py` lines 91-106:
    /// `SimCLRTransform(input_size=256, hf_prob=0.5, vf_prob=0.5, rr_prob=0.5, min_scale=0.5,
    /// cj_prob=0.2, cj_bright=0.1, cj_contrast=0.1, cj_hue=0.1, cj_sat=0.1)`, the rest at
    /// `SimCLRTransform`'s defaults (`lightly/transforms/simclr_transform.py` lines 39-55: grey
    /// 0.2, blur 0.5, 90-degree rotations, ImageNet statistics). `SimCLRTransform` applies the
    /// same steps in the same order as `SimSiamTransform` (lines 197-209).
    pub fn satellite() -> Self {
        Self {
            input_size: 256,
            cj_prob: 0.2,
            cj_strength: 1.0,
            cj_bright: 0.1,
            cj_contrast: 0.1,
            cj_sat: 0.1,
            cj_hue: 0.1,
            min_scale: 0.5,
            random_gray_scale: 0.2,
            gaussian_blur: 0.5,
            hf_prob: 0.5,
            vf_prob: 0.5,
            rr_prob: 0.5,
            rr_degrees: None,
            ..Self::default()
        }
    }

    /// The paper's CIFAR-10 recipe (arXiv:2011.10566, Appendix "CIFAR experiments": 32-pixel
    /// inputs, no blur) on the official code's MoCo v2 augmentation
    /// (facebookresearch/simsiam `main_simsiam.py` lines 229-239: crop scale 0.2, jitter
    /// 0.4/0.4/0.4/0.1 with p 0.8, grey 0.2, horizontal flip 0.5), with CIFAR-10's statistics
    /// (the sources give none for CIFAR).
    pub fn cifar10_paper() -> Self {
        Self {
            input_size: 32,
            gaussian_blur: 0.0,
            normalize: Some(Normalization::CIFAR10),
            ..Self::default()
        }
    }

    /// The official ImageNet recipe, facebookresearch/simsiam `main_simsiam.py` lines 225-239:
    /// 224-pixel crops of scale 0.2 to 1, jitter 0.4/0.4/0.4/0.1 with p 0.8, grey 0.2, blur 0.5
    /// with sigma in [0.1, 2], horizontal flip 0.5, ImageNet statistics: Lightly's defaults.
    /// The official code flips after the blur; here the flip comes first, as in Lightly, which
    /// draws the same distribution of views.
    pub fn imagenet_paper() -> Self {
        Self::default()
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
        let rotation: Box<dyn Transform> = match self.rr_degrees {
            None => Box::new(RandomRotate90::new(self.rr_prob)?),
            Some(range) => Box::new(RandomRotation::new(self.rr_prob, range)?),
        };
        let steps = Compose::default()
            .then(RandomHorizontalFlip::new(self.hf_prob)?)
            .then(RandomVerticalFlip::new(self.vf_prob)?)
            .then(rotation)
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
        for c in [
            SimSiamConfig::default(),
            SimSiamConfig::cifar10(),
            SimSiamConfig::lightly_example(),
            SimSiamConfig::lightly_cifar10_benchmark(),
            SimSiamConfig::satellite(),
            SimSiamConfig::cifar10_paper(),
            SimSiamConfig::imagenet_paper(),
            SimSiamConfig::cifar10_cpu(),
            SimSiamConfig { rr_prob: 0.5, rr_degrees: Some((-20.0, 20.0)), ..SimSiamConfig::default() },
        ] {
            let t = c.build().expect("preset is valid");
            assert_eq!(t.num_views(), 2);
            let s = c.input_size as usize;
            assert_eq!(t.view_shape(), [3, s, s]);
        }
    }

    #[test]
    fn cifar10_cpu_is_the_lightly_example_without_blur_on_cifar_statistics() {
        let cpu = SimSiamConfig::cifar10_cpu();
        assert_eq!((cpu.gaussian_blur, cpu.normalize), (0.0, Some(Normalization::CIFAR10)));
        let back = SimSiamConfig { gaussian_blur: 0.5, normalize: Some(Normalization::IMAGENET), ..cpu };
        assert_eq!(back, SimSiamConfig::lightly_example());
    }
}
