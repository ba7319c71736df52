//! The deterministic preprocessing for evaluation: resize, centre crop, then normalisation.

use crate::center_crop::center_crop;
use crate::chw_image::ChwImage;
use crate::crop::CropBox;
use crate::error::Result;
use crate::normalize::Normalization;
use crate::resize::resized_crop;
use crate::rgb_view::RgbView;
use crate::workspace::Workspace;

/// The deterministic preprocessing of an evaluation loader: an optional resize (shorter side,
/// as torchvision's `Resize(int)`, or to a square, as `Resize((s, s))`; antialiased bilinear),
/// an optional centre crop
/// (torchvision's `CenterCrop`), then `ToTensor` and `Normalize` (with [`Normalize`] built from
/// `normalization`).
///
/// [`Normalize`]: crate::Normalize
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalTransform {
    /// Resize so that the shorter side has this length (or both sides, with `square`).
    pub resize: Option<u32>,
    /// Resize to `resize x resize`, ignoring the aspect ratio, instead of the shorter side.
    pub square: bool,
    /// Crop a centred square of this side (after the resize); it must fit the image.
    pub center_crop: Option<u32>,
    /// Normalisation after scaling to `[0, 1]`.
    pub normalization: Normalization,
}

impl EvalTransform {
    /// CIFAR-10: 32x32 images as they are, CIFAR-10 statistics.
    pub fn cifar10() -> Self {
        Self { resize: None, square: false, center_crop: None, normalization: Normalization::CIFAR10 }
    }

    /// ImageNet style: resize the shorter side to `size * 8 / 7` (256 for 224), crop `size`,
    /// ImageNet statistics.
    pub fn imagenet(size: u32) -> Self {
        Self {
            resize: Some(size * 8 / 7),
            square: false,
            center_crop: Some(size),
            normalization: Normalization::IMAGENET,
        }
    }

    /// A plain resize to `size x size` (aspect ratio not kept), no crop, ImageNet statistics:
    /// Lightly's Tutorial 4 (`tutorial_simsiam_esa.py` lines 123-131).
    pub fn resize_square(size: u32) -> Self {
        Self { resize: Some(size), square: true, center_crop: None, normalization: Normalization::IMAGENET }
    }

    /// Resizes and crops `image` into `out` (planar `u8`).
    ///
    /// # Errors
    /// [`AugmentError`](crate::AugmentError) for an empty image or a zero size;
    /// [`AugmentError::CropOutOfBounds`](crate::AugmentError::CropOutOfBounds) when the crop
    /// does not fit.
    pub fn prepare(&self, image: &image::RgbImage, out: &mut ChwImage, ws: &mut Workspace) -> Result<()> {
        let src = RgbView::from_image(image)?;
        let (w, h) = (src.width(), src.height());
        let resized = match self.resize {
            Some(side) => {
                let (nw, nh) = if self.square { (side, side) } else { shorter_side_to(w, h, side) };
                let mut tmp = ChwImage::new(1, 1)?;
                resized_crop(src, CropBox { top: 0, left: 0, height: h, width: w }, nw, nh, &mut tmp, ws)?;
                tmp
            }
            None => ChwImage::from_view(src),
        };
        match self.center_crop {
            Some(side) => center_crop(&resized, side, out),
            None => {
                *out = resized;
                Ok(())
            }
        }
    }
}

/// torchvision's `Resize(side)` output size for a `w x h` image: the shorter side becomes
/// `side`, the longer one scales with it, truncated.
fn shorter_side_to(w: u32, h: u32, side: u32) -> (u32, u32) {
    if w <= h {
        (side, (u64::from(side) * u64::from(h) / u64::from(w)) as u32)
    } else {
        ((u64::from(side) * u64::from(w) / u64::from(h)) as u32, side)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AugmentError;

    fn gradient(w: u32, h: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8]))
    }

    #[test]
    fn presets() {
        let t = EvalTransform::imagenet(224);
        assert_eq!((t.resize, t.center_crop), (Some(256), Some(224)));
        assert_eq!(t.normalization, Normalization::IMAGENET);
        let t = EvalTransform::cifar10();
        assert_eq!((t.resize, t.center_crop, t.normalization), (None, None, Normalization::CIFAR10));
    }

    #[test]
    fn the_shorter_side_gets_the_size_and_the_longer_one_is_truncated() {
        assert_eq!(shorter_side_to(40, 30, 20), (26, 20));
        assert_eq!(shorter_side_to(30, 40, 20), (20, 26));
        assert_eq!(shorter_side_to(33, 33, 16), (16, 16));
        assert_eq!(shorter_side_to(500, 375, 256), (341, 256));
    }

    #[test]
    fn without_resize_or_crop_the_image_is_only_made_planar() {
        let img = gradient(5, 3);
        let t = EvalTransform {
            resize: None,
            square: false,
            center_crop: None,
            normalization: Normalization::NONE,
        };
        let mut out = ChwImage::default();
        t.prepare(&img, &mut out, &mut Workspace::new()).expect("valid");
        assert_eq!(out, ChwImage::from_image(&img).expect("valid"));
    }

    #[test]
    fn resize_then_crop() {
        let img = gradient(40, 30);
        let t = EvalTransform {
            resize: Some(20),
            square: false,
            center_crop: None,
            normalization: Normalization::NONE,
        };
        let mut resized = ChwImage::default();
        t.prepare(&img, &mut resized, &mut Workspace::new()).expect("valid");
        assert_eq!((resized.width(), resized.height()), (26, 20));
        let t = EvalTransform { center_crop: Some(16), ..t };
        let mut cropped = ChwImage::default();
        t.prepare(&img, &mut cropped, &mut Workspace::new()).expect("valid");
        // The crop of the resized image: offsets round(4 / 2) = 2 rows and round(10 / 2) = 5 columns.
        let mut expected = ChwImage::default();
        center_crop(&resized, 16, &mut expected).expect("fits");
        assert_eq!(cropped, expected);
        assert_eq!(cropped.planes()[0][0], resized.planes()[0][2 * 26 + 5]);
        // A square resize ignores the aspect ratio.
        let t = EvalTransform { square: true, center_crop: None, ..t };
        let mut square = ChwImage::default();
        t.prepare(&img, &mut square, &mut Workspace::new()).expect("valid");
        assert_eq!((square.width(), square.height()), (20, 20));
        let t = EvalTransform::resize_square(256);
        assert_eq!((t.resize, t.square, t.center_crop), (Some(256), true, None));
    }

    #[test]
    fn a_crop_that_does_not_fit_is_an_error() {
        let t = EvalTransform {
            resize: None,
            square: false,
            center_crop: Some(33),
            normalization: Normalization::NONE,
        };
        let err = t
            .prepare(&gradient(32, 40), &mut ChwImage::default(), &mut Workspace::new())
            .expect_err("33 > 32");
        assert!(matches!(err, AugmentError::CropOutOfBounds { .. }), "{err}");
        let t = EvalTransform {
            resize: Some(0),
            square: false,
            center_crop: None,
            normalization: Normalization::NONE,
        };
        assert!(t.prepare(&gradient(4, 4), &mut ChwImage::default(), &mut Workspace::new()).is_err());
    }
}
