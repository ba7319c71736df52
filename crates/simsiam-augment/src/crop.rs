//! `RandomResizedCrop`: torchvision's crop sampler followed by the antialiased resize.

use crate::chw_image::ChwImage;
use crate::compose::Transform;
use crate::error::{AugmentError, Result};
use crate::resize::{resized_crop, resized_crop_chw};
use crate::rgb_view::RgbView;
use crate::rng::{ChaCha8Rng, below, uniform};
use crate::workspace::Workspace;

/// A crop rectangle in pixels, as torchvision's `(i, j, h, w)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First row (`i`).
    pub top: u32,
    /// First column (`j`).
    pub left: u32,
    /// Rows (`h`).
    pub height: u32,
    /// Columns (`w`).
    pub width: u32,
}

impl CropBox {
    /// [`AugmentError::CropOutOfBounds`] unless the box is non-empty and inside a
    /// `img_w x img_h` image.
    pub fn check_inside(&self, img_w: u32, img_h: u32) -> Result<()> {
        let fits = |start: u32, len: u32, total: u32| {
            len > 0 && u64::from(start) + u64::from(len) <= u64::from(total)
        };
        if fits(self.top, self.height, img_h) && fits(self.left, self.width, img_w) {
            Ok(())
        } else {
            Err(AugmentError::CropOutOfBounds {
                top: self.top,
                left: self.left,
                height: self.height,
                width: self.width,
                image_height: img_h,
                image_width: img_w,
            })
        }
    }
}

/// Python's `round` (half to even) for the non-negative sizes the sampler produces.
fn round_half_even(x: f64) -> u64 {
    x.round_ties_even() as u64
}

/// Samples a crop of a `width x height` image as torchvision's
/// `RandomResizedCrop.get_params(img, scale, ratio)`:
///
/// up to 10 attempts draw an area `width * height * U(scale)` and an aspect ratio
/// `exp(U(ln ratio.0, ln ratio.1))`, set `w = round(sqrt(area * ratio))`,
/// `h = round(sqrt(area / ratio))` (half to even, as Python) and accept when
/// `0 < w <= width && 0 < h <= height`, placing the box uniformly; otherwise the fallback is the
/// centre crop of the whole image with its aspect ratio clamped into `ratio`.
///
/// The parameters are assumed valid (see [`RandomResizedCrop::new`]); only the random numbers
/// differ from torchvision's (ChaCha8 instead of PyTorch's generator).
pub fn sample_crop(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut ChaCha8Rng,
) -> CropBox {
    let (wf, hf) = (f64::from(width), f64::from(height));
    let area = wf * hf;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, log_lo, log_hi).exp();
        let w = round_half_even((target_area * aspect).sqrt());
        let h = round_half_even((target_area / aspect).sqrt());
        if w > 0 && w <= u64::from(width) && h > 0 && h <= u64::from(height) {
            let top = below(rng, u64::from(height) - h + 1);
            let left = below(rng, u64::from(width) - w + 1);
            return CropBox { top: top as u32, left: left as u32, height: h as u32, width: w as u32 };
        }
    }
    let in_ratio = wf / hf;
    let (w, h) = if in_ratio < ratio.0.min(ratio.1) {
        (width, (round_half_even(wf / ratio.0.min(ratio.1)) as u32).clamp(1, height))
    } else if in_ratio > ratio.0.max(ratio.1) {
        ((round_half_even(hf * ratio.0.max(ratio.1)) as u32).clamp(1, width), height)
    } else {
        (width, height)
    };
    CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
}

/// Validates a `scale` range: `0 < min <= max`, finite. (torchvision accepts `max > 1`; so do we.)
pub(crate) fn check_scale(scale: (f64, f64)) -> Result<()> {
    if scale.0.is_finite() && scale.1.is_finite() && scale.0 > 0.0 && scale.0 <= scale.1 {
        Ok(())
    } else {
        Err(AugmentError::InvalidRange {
            name: "scale",
            min: scale.0,
            max: scale.1,
            expected: "finite 0 < min <= max",
        })
    }
}

/// Validates an aspect-ratio range: `0 < min <= max`, finite.
pub(crate) fn check_ratio(ratio: (f64, f64)) -> Result<()> {
    if ratio.0.is_finite() && ratio.1.is_finite() && ratio.0 > 0.0 && ratio.0 <= ratio.1 {
        Ok(())
    } else {
        Err(AugmentError::InvalidRange {
            name: "ratio",
            min: ratio.0,
            max: ratio.1,
            expected: "finite 0 < min <= max",
        })
    }
}

/// Crops a random region (see [`sample_crop`]) and resizes it to a fixed size with
/// antialiased bilinear interpolation, as torchvision's `RandomResizedCrop(size, scale, ratio,
/// antialias=True)`.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomResizedCrop {
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// The usual ratio range, `(3/4, 4/3)`.
    pub const DEFAULT_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

    /// A crop to `width x height` with area fraction in `scale` and aspect ratio in `ratio`.
    ///
    /// # Errors
    /// [`AugmentError::ZeroSize`] for a zero side, [`AugmentError::InvalidRange`] for a bad
    /// `scale` or `ratio`.
    pub fn new(width: u32, height: u32, scale: (f64, f64), ratio: (f64, f64)) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(AugmentError::ZeroSize { width, height });
        }
        check_scale(scale)?;
        check_ratio(ratio)?;
        Ok(Self { width, height, scale, ratio })
    }

    /// A square crop of side `size` with `scale = (min_scale, 1)` and the default ratio.
    ///
    /// # Errors
    /// As [`RandomResizedCrop::new`].
    pub fn square(size: u32, min_scale: f64) -> Result<Self> {
        Self::new(size, size, (min_scale, 1.0), Self::DEFAULT_RATIO)
    }

    /// Output `(width, height)`.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Samples a box for a `width x height` image.
    pub fn sample(&self, width: u32, height: u32, rng: &mut ChaCha8Rng) -> CropBox {
        sample_crop(width, height, self.scale, self.ratio, rng)
    }

    /// Crops and resizes an interleaved source straight into `dst` (no intermediate copy).
    ///
    /// # Errors
    /// Never for a valid `RgbView`; kept fallible for symmetry with the other ops.
    pub fn apply_from(
        &self,
        src: RgbView<'_>,
        dst: &mut ChwImage,
        ws: &mut Workspace,
        rng: &mut ChaCha8Rng,
    ) -> Result<()> {
        let crop = self.sample(src.width(), src.height(), rng);
        resized_crop(src, crop, self.width, self.height, dst, ws)
    }
}

impl Transform for RandomResizedCrop {
    fn apply(&self, img: &mut ChwImage, ws: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        img.check_non_empty()?;
        let crop = self.sample(img.width(), img.height(), rng);
        let mut out = std::mem::take(&mut ws.image);
        let res = resized_crop_chw(img, crop, self.width, self.height, &mut out, ws);
        std::mem::swap(img, &mut out);
        ws.image = out;
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    #[test]
    fn boxes_fit() {
        let mut rng = sample_rng(0, 0, 0);
        for (w, h) in [(1, 1), (1, 9), (9, 1), (32, 48), (256, 256), (3, 1000)] {
            for _ in 0..500 {
                let b = sample_crop(w, h, (0.08, 1.0), RandomResizedCrop::DEFAULT_RATIO, &mut rng);
                assert!(b.check_inside(w, h).is_ok(), "{b:?} in {w}x{h}");
            }
        }
    }

    #[test]
    fn fallback_is_torchvision_centre_crop() {
        // No attempt can succeed with scale (2, 2) (area larger than the image): the fallback.
        let mut rng = sample_rng(0, 0, 0);
        let b = sample_crop(48, 32, (2.0, 2.0), (0.75, 4.0 / 3.0), &mut rng);
        // in_ratio = 1.5 > 4/3: h = 32, w = round(32 * 4/3) = 43, centred.
        assert_eq!(b, CropBox { top: 0, left: 2, height: 32, width: 43 });
        let b = sample_crop(32, 48, (2.0, 2.0), (0.75, 4.0 / 3.0), &mut rng);
        // in_ratio = 2/3 < 3/4: w = 32, h = round(32 / 0.75) = 43.
        assert_eq!(b, CropBox { top: 2, left: 0, height: 43, width: 32 });
        let b = sample_crop(30, 30, (2.0, 2.0), (0.75, 4.0 / 3.0), &mut rng);
        assert_eq!(b, CropBox { top: 0, left: 0, height: 30, width: 30 });
    }

    #[test]
    fn rejects_invalid() {
        assert!(RandomResizedCrop::new(0, 4, (0.2, 1.0), (0.75, 1.3)).is_err());
        assert!(RandomResizedCrop::new(4, 4, (0.9, 0.2), (0.75, 1.3)).is_err());
        assert!(RandomResizedCrop::new(4, 4, (0.0, 1.0), (0.75, 1.3)).is_err());
        assert!(RandomResizedCrop::new(4, 4, (0.2, 1.0), (1.3, 0.75)).is_err());
        assert!(RandomResizedCrop::new(4, 4, (0.2, f64::NAN), (0.75, 1.3)).is_err());
    }

    #[test]
    fn transform_on_planar_matches_view() {
        let data: Vec<u8> = (0..20 * 10 * 3).map(|v| (v * 31 % 251) as u8).collect();
        let view = RgbView::new(20, 10, &data).expect("valid");
        let t = RandomResizedCrop::square(8, 0.2).expect("valid");
        let mut ws = Workspace::new();
        let mut a = ChwImage::default();
        t.apply_from(view, &mut a, &mut ws, &mut sample_rng(1, 2, 3)).expect("valid");
        let mut b = ChwImage::from_view(view);
        t.apply(&mut b, &mut ws, &mut sample_rng(1, 2, 3)).expect("valid");
        assert_eq!(a, b);
        assert_eq!((a.width(), a.height()), (8, 8));
    }
}
