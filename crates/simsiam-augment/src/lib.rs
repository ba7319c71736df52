//! Image augmentations for SimSiam on raw RGB `u8` buffers: torchvision's formulas, explicit
//! seeded randomness, and a parallel batch API that fills one contiguous `f32` tensor buffer.
//!
//! - Ops, each in its own module, each a deterministic function (matching
//!   `torchvision.transforms.functional` on `uint8` tensors) plus a random [`Transform`]:
//!   [`RandomResizedCrop`] (antialiased bilinear), flips, [`RandomRotate90`],
//!   [`RandomRotation`], [`ColorJitter`],
//!   [`RandomGrayscale`], [`RandomGaussianBlur`], [`RandomSolarization`], [`Normalize`],
//!   combined with [`Compose`] and [`RandomApply`].
//! - [`SimSiamTransform`], built from a [`SimSiamConfig`] with Lightly's defaults and one
//!   constructor per published recipe, and the general [`MultiViewTransform`].
//! - Randomness is explicit: every random op takes `&mut ChaCha8Rng`; a sample's generator
//!   comes from `(seed, epoch, index)` ([`sample_rng`], [`view_rng`]), so a batch is
//!   byte-identical on any number of threads.
//! - [`EvalTransform`]: the deterministic preprocessing for evaluation (resize, [`center_crop`],
//!   normalisation).
//!
//! Images enter as an interleaved [`RgbView`] (an [`image::RgbImage`] or a byte slice) and are
//! worked on as a planar [`ChwImage`].
//!
//! # Example
//!
//! ```
//! use simsiam_augment::{RgbView, SimSiamConfig};
//!
//! # fn main() -> Result<(), simsiam_augment::AugmentError> {
//! let transform = SimSiamConfig::cifar10().build()?;
//! // Two 40x30 images (any size works; views are 32x32).
//! let pixels: Vec<u8> = (0..40 * 30 * 3).map(|i| (i % 251) as u8).collect();
//! let images = [RgbView::new(40, 30, &pixels)?, RgbView::new(40, 30, &pixels)?];
//! // Dataset indices seed the views together with (seed, epoch).
//! let batch = transform.apply_batch(&images, &[0, 1], 42, 0)?;
//! // [view][n][3][H][W]
//! assert_eq!(batch.len(), 2 * 2 * 3 * 32 * 32);
//! // Same (seed, epoch, index), same bytes, on any number of threads.
//! assert_eq!(batch, transform.apply_batch(&images, &[0, 1], 42, 0)?);
//! # Ok(())
//! # }
//! ```

mod adjust;
mod blur;
mod center_crop;
mod chw_image;
mod color_jitter;
mod compose;
mod crop;
mod error;
mod eval;
mod flip;
mod grayscale;
mod multi_view;
mod normalize;
mod resize;
mod rgb_view;
pub mod rng;
mod rotate;
mod simd;
mod simsiam;
mod solarize;
mod view;
mod workspace;

pub use adjust::{adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation};
pub use blur::{RandomGaussianBlur, auto_kernel_size, gaussian_blur, gaussian_kernel1d};
pub use center_crop::center_crop;
pub use chw_image::ChwImage;
pub use color_jitter::{ColorJitter, JitterParams};
pub use compose::{Compose, RandomApply, Transform};
pub use crop::{CropBox, RandomResizedCrop, sample_crop};
pub use error::{AugmentError, Result};
pub use eval::EvalTransform;
pub use flip::{HorizontalFlip, RandomHorizontalFlip, RandomVerticalFlip, hflip, vflip};
pub use grayscale::{GRAY_WEIGHTS, RandomGrayscale, rgb_to_grayscale};
pub use multi_view::MultiViewTransform;
pub use normalize::{Normalization, Normalize};
pub use resize::{resized_crop, resized_crop_chw};
pub use rgb_view::RgbView;
pub use rng::{ChaCha8Rng, sample_rng, view_rng};
pub use rotate::{RandomRotate90, RandomRotation, rot90, rot90_in_place, rotate};
pub use simsiam::{SimSiamConfig, SimSiamTransform};
pub use solarize::{RandomSolarization, solarize};
pub use view::ViewTransform;
pub use workspace::Workspace;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
