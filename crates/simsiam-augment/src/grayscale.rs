//! Grayscale conversion with three output channels, fixed and random.

use crate::chw_image::ChwImage;
use crate::compose::Transform;
use crate::error::{Result, check_prob};
use crate::rng::{ChaCha8Rng, bernoulli};
use crate::simd::{multiversion, trunc_u8};
use crate::workspace::Workspace;

/// Luma weights of torchvision's tensor `rgb_to_grayscale` (ITU-R 601-2 with red rounded to
/// 0.2989, as torchvision writes it; PIL uses 0.299).
pub const GRAY_WEIGHTS: [f32; 3] = [0.2989, 0.587, 0.114];

/// The grey level of one pixel, truncated to `u8` as torchvision's `.to(torch.uint8)`.
#[inline(always)]
pub(crate) fn gray(r: u8, g: u8, b: u8) -> u8 {
    trunc_u8(GRAY_WEIGHTS[0] * f32::from(r) + GRAY_WEIGHTS[1] * f32::from(g) + GRAY_WEIGHTS[2] * f32::from(b))
}

/// Replaces every channel by the grey level (torchvision `F.rgb_to_grayscale(img,
/// num_output_channels=3)`).
pub fn rgb_to_grayscale(img: &mut ChwImage) {
    let [r, g, b] = img.planes_mut();
    gray_planes(r, g, b);
}

multiversion! {
    fn gray_planes(r: &mut [u8], g: &mut [u8], b: &mut [u8]) {
        for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
            let l = gray(*r, *g, *b);
            (*r, *g, *b) = (l, l, l);
        }
    }
}

/// Converts to grayscale with probability `p` (torchvision `RandomGrayscale`).
#[derive(Debug, Clone, Copy)]
pub struct RandomGrayscale {
    p: f64,
}

impl RandomGrayscale {
    /// # Errors
    /// [`crate::AugmentError::InvalidParameter`] when `p` is not in `[0, 1]`.
    pub fn new(p: f64) -> Result<Self> {
        Ok(Self { p: check_prob("random_gray_scale", p)? })
    }
}

impl Transform for RandomGrayscale {
    fn apply(&self, img: &mut ChwImage, _: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        if bernoulli(rng, self.p) {
            rgb_to_grayscale(img);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_levels() {
        // torchvision: white maps to 254 because the weights sum to 0.9999.
        assert_eq!(gray(255, 255, 255), 254);
        assert_eq!(gray(0, 0, 0), 0);
        assert_eq!(gray(100, 0, 0), 29);
        let mut img = ChwImage::from_raw(1, 1, vec![10, 200, 30]).expect("valid");
        rgb_to_grayscale(&mut img);
        let l = gray(10, 200, 30);
        assert_eq!(img.as_raw(), &[l, l, l]);
        assert!(RandomGrayscale::new(f64::NAN).is_err());
    }
}
