//! `ColorJitter`: random brightness, contrast, saturation and hue, in a random order.

use crate::adjust::{adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation};
use crate::chw_image::ChwImage;
use crate::compose::Transform;
use crate::error::{AugmentError, Result, check_non_negative};
use crate::rng::{ChaCha8Rng, permutation, uniform};
use crate::workspace::Workspace;

/// Factors drawn by one [`ColorJitter`] call, and the order to apply them in; `None` for a
/// disabled adjustment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterParams {
    /// A permutation of `0..4`: 0 brightness, 1 contrast, 2 saturation, 3 hue.
    pub order: [usize; 4],
    /// Brightness factor.
    pub brightness: Option<f64>,
    /// Contrast factor.
    pub contrast: Option<f64>,
    /// Saturation factor.
    pub saturation: Option<f64>,
    /// Hue shift in turns.
    pub hue: Option<f64>,
}

impl JitterParams {
    /// Applies the adjustments in `order` (torchvision `ColorJitter.forward`).
    ///
    /// # Errors
    /// [`AugmentError::InvalidParameter`] for a factor out of range (never for sampled params).
    pub fn apply(&self, img: &mut ChwImage) -> Result<()> {
        for op in self.order {
            match op {
                0 => self.brightness.map_or(Ok(()), |f| adjust_brightness(img, f))?,
                1 => self.contrast.map_or(Ok(()), |f| adjust_contrast(img, f))?,
                2 => self.saturation.map_or(Ok(()), |f| adjust_saturation(img, f))?,
                _ => self.hue.map_or(Ok(()), |f| adjust_hue(img, f))?,
            }
        }
        Ok(())
    }
}

/// Randomly changes brightness, contrast, saturation and hue, as torchvision's
/// `ColorJitter(brightness, contrast, saturation, hue)`.
///
/// A strength `s` for brightness, contrast or saturation draws the factor uniformly from
/// `[max(0, 1 - s), 1 + s]`; the hue strength `h` (at most 0.5) draws the shift from `[-h, h]`.
/// A zero strength disables that adjustment. The four are applied in a random order.
#[derive(Debug, Clone, PartialEq)]
pub struct ColorJitter {
    brightness: Option<(f64, f64)>,
    contrast: Option<(f64, f64)>,
    saturation: Option<(f64, f64)>,
    hue: Option<(f64, f64)>,
}

fn factor_range(name: &'static str, s: f64) -> Result<Option<(f64, f64)>> {
    let s = check_non_negative(name, s)?;
    Ok((s > 0.0).then(|| ((1.0 - s).max(0.0), 1.0 + s)))
}

impl ColorJitter {
    /// A jitter with the given strengths.
    ///
    /// # Errors
    /// [`AugmentError::InvalidParameter`] for a negative or non-finite strength, or a hue
    /// strength above 0.5.
    pub fn new(brightness: f64, contrast: f64, saturation: f64, hue: f64) -> Result<Self> {
        let hue_range = if !(0.0..=0.5).contains(&hue) {
            return Err(AugmentError::InvalidParameter {
                name: "hue",
                value: hue,
                expected: "a value in [0, 0.5]",
            });
        } else {
            (hue > 0.0).then_some((-hue, hue))
        };
        Ok(Self {
            brightness: factor_range("brightness", brightness)?,
            contrast: factor_range("contrast", contrast)?,
            saturation: factor_range("saturation", saturation)?,
            hue: hue_range,
        })
    }

    /// Draws the order and the factors (torchvision `ColorJitter.get_params`: the permutation
    /// first, then each enabled factor in the order brightness, contrast, saturation, hue).
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> JitterParams {
        let order = permutation::<4>(rng);
        let mut draw = |r: Option<(f64, f64)>| r.map(|(lo, hi)| uniform(rng, lo, hi));
        let brightness = draw(self.brightness);
        let contrast = draw(self.contrast);
        let saturation = draw(self.saturation);
        let hue = draw(self.hue);
        JitterParams { order, brightness, contrast, saturation, hue }
    }
}

impl Transform for ColorJitter {
    fn apply(&self, img: &mut ChwImage, _: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        img.check_non_empty()?;
        self.sample(rng).apply(img)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    #[test]
    fn ranges_follow_torchvision() {
        let j = ColorJitter::new(0.4, 1.5, 0.0, 0.1).expect("valid");
        assert_eq!(j.brightness, Some((0.6, 1.4)));
        assert_eq!(j.contrast, Some((0.0, 2.5)));
        assert_eq!(j.saturation, None);
        assert_eq!(j.hue, Some((-0.1, 0.1)));
        let mut rng = sample_rng(0, 0, 0);
        for _ in 0..100 {
            let p = j.sample(&mut rng);
            assert!(p.saturation.is_none());
            assert!(p.brightness.is_some_and(|b| (0.6..1.4).contains(&b)));
            assert!(p.hue.is_some_and(|h| (-0.1..0.1).contains(&h)));
        }
    }

    #[test]
    fn rejects_invalid() {
        assert!(ColorJitter::new(-0.1, 0.0, 0.0, 0.0).is_err());
        assert!(ColorJitter::new(0.0, f64::NAN, 0.0, 0.0).is_err());
        assert!(ColorJitter::new(0.0, 0.0, 0.0, 0.6).is_err());
        assert!(ColorJitter::new(0.0, 0.0, 0.0, -0.1).is_err());
    }
}
