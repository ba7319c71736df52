//! torchvision's `CenterCrop`: a centred square cut from a planar image.

use crate::chw_image::ChwImage;
use crate::crop::CropBox;
use crate::error::Result;

/// torchvision's `CenterCrop(side)` for an image at least `side` in both directions: the offsets
/// are `round((h - side) / 2)` and `round((w - side) / 2)`, rounding half to even as Python's
/// `round` does.
///
/// # Errors
/// [`AugmentError::CropOutOfBounds`](crate::AugmentError::CropOutOfBounds) when `side` is zero
/// or larger than the image.
pub fn center_crop(src: &ChwImage, side: u32, out: &mut ChwImage) -> Result<()> {
    let (w, h) = (src.width(), src.height());
    let top = (f64::from(h.saturating_sub(side)) / 2.0).round_ties_even() as u32;
    let left = (f64::from(w.saturating_sub(side)) / 2.0).round_ties_even() as u32;
    CropBox { top, left, height: side, width: side }.check_inside(w, h)?;
    let mut dst = ChwImage::new(side, side)?;
    let (s, w) = (side as usize, w as usize);
    for (plane, out_plane) in src.planes().into_iter().zip(dst.planes_mut()) {
        for (y, row) in out_plane.chunks_exact_mut(s).enumerate() {
            let start = (top as usize + y) * w + left as usize;
            row.copy_from_slice(&plane[start..start + s]);
        }
    }
    *out = dst;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AugmentError;

    /// A `w x h` planar image whose byte at plane `c`, row `y`, column `x` is `c*100 + y*10 + x`.
    fn numbered(w: u32, h: u32) -> ChwImage {
        let data = (0..3u32)
            .flat_map(|c| (0..h).flat_map(move |y| (0..w).map(move |x| (c * 100 + y * 10 + x) as u8)))
            .collect();
        ChwImage::from_raw(w, h, data).expect("3 planes of w x h")
    }

    #[test]
    fn offsets_round_half_to_even() {
        let mut out = ChwImage::default();
        // 5 wide, 4 high, side 3: top = round(0.5) = 0, left = round(1.0) = 1.
        center_crop(&numbered(5, 4), 3, &mut out).expect("fits");
        assert_eq!((out.width(), out.height()), (3, 3));
        assert_eq!(out.planes()[0], [1, 2, 3, 11, 12, 13, 21, 22, 23]);
        // 8 square, side 5: round(1.5) = 2 on both axes.
        center_crop(&numbered(8, 8), 5, &mut out).expect("fits");
        assert_eq!(out.planes()[2][..5], [222, 223, 224, 225, 226]);
        assert_eq!(out.planes()[1][5..10], [132, 133, 134, 135, 136]);
    }

    #[test]
    fn the_whole_image_is_a_copy() {
        let src = numbered(6, 6);
        let mut out = ChwImage::default();
        center_crop(&src, 6, &mut out).expect("fits");
        assert_eq!(out, src);
    }

    #[test]
    fn a_crop_larger_than_the_image_is_an_error() {
        let mut out = ChwImage::default();
        let err = center_crop(&numbered(6, 4), 5, &mut out).expect_err("5 rows do not fit in 4");
        assert!(matches!(err, AugmentError::CropOutOfBounds { height: 5, width: 5, .. }), "{err}");
        assert!(matches!(
            center_crop(&numbered(6, 4), 0, &mut out),
            Err(AugmentError::CropOutOfBounds { .. })
        ));
    }
}
