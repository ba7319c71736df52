//! Solarisation: invert the bright pixels, fixed and random.

use crate::chw_image::ChwImage;
use crate::compose::Transform;
use crate::error::{Result, check_prob};
use crate::rng::{ChaCha8Rng, bernoulli};
use crate::workspace::Workspace;

/// Replaces every value `v >= threshold` by `255 - v` (torchvision `F.solarize`).
pub fn solarize(img: &mut ChwImage, threshold: u8) {
    for v in img.as_raw_mut() {
        if *v >= threshold {
            *v = 255 - *v;
        }
    }
}

/// Solarises at `threshold` with probability `prob` (Lightly's `RandomSolarization`, whose
/// threshold is 128).
#[derive(Debug, Clone, Copy)]
pub struct RandomSolarization {
    prob: f64,
    threshold: u8,
}

impl RandomSolarization {
    /// Lightly's threshold.
    pub const DEFAULT_THRESHOLD: u8 = 128;

    /// # Errors
    /// [`crate::AugmentError::InvalidParameter`] when `prob` is not in `[0, 1]`.
    pub fn new(prob: f64, threshold: u8) -> Result<Self> {
        Ok(Self { prob: check_prob("solarization_prob", prob)?, threshold })
    }
}

impl Transform for RandomSolarization {
    fn apply(&self, img: &mut ChwImage, _: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        if bernoulli(rng, self.prob) {
            solarize(img, self.threshold);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverts_bright_values() {
        let mut img = ChwImage::from_raw(1, 1, vec![127, 128, 255]).expect("valid");
        solarize(&mut img, 128);
        assert_eq!(img.as_raw(), &[127, 127, 0]);
        assert!(RandomSolarization::new(-1.0, 128).is_err());
    }
}
