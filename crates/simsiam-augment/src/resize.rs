//! Crop-and-resize in one pass: separable bilinear interpolation with antialiasing.
//!
//! This is the resize of torchvision's tensor path, `F.resize(img, size, BILINEAR,
//! antialias=True)` (PyTorch's `interpolate(mode="bilinear", antialias=True,
//! align_corners=False)`), which is the same support-scaled triangle-filter convolution as
//! PIL's `Image.resize(..., BILINEAR)`: when shrinking by a factor `s`, each output pixel
//! averages the input under a triangle `s` pixels wide on each side; when enlarging it is plain
//! bilinear interpolation. Like torchvision for `uint8` input, the passes run in `f32` without
//! intermediate rounding and the result is rounded half-to-even once, at the end.

use crate::chw_image::ChwImage;
use crate::crop::CropBox;
use crate::error::{AugmentError, Result};
use crate::rgb_view::RgbView;
use crate::simd::multiversion;
use crate::workspace::{Workspace, sized};

/// Precomputed filter taps for one axis: output `i` reads `len[i]` inputs from `start[i]`
/// (relative to the crop) with weights `weights[i * stride..][..len[i]]`, which sum to one.
#[derive(Debug, Default, Clone)]
pub(crate) struct AxisWeights {
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<f32>,
    stride: usize,
}

/// The bilinear (triangle) filter.
fn triangle(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

impl AxisWeights {
    /// Fills the taps for resizing `in_size` samples to `out_size` (both non-zero), following
    /// PyTorch's antialiased index/weight computation with `align_corners=False`, in `f32` as
    /// PyTorch does for `f32` images.
    pub(crate) fn compute(&mut self, in_size: usize, out_size: usize) {
        let scale = in_size as f32 / out_size as f32;
        // The triangle's half-width is 1 input pixel, scaled by the shrink factor.
        let (support, inv_scale) = if scale >= 1.0 { (scale, 1.0 / scale) } else { (1.0, 1.0) };
        let stride = (2.0 * support).ceil() as usize + 2;
        self.stride = stride;
        self.start.clear();
        self.len.clear();
        self.weights.clear();
        self.weights.resize(out_size * stride, 0.0);
        for (i, w) in self.weights.chunks_exact_mut(stride).enumerate() {
            let center = scale * (i as f32 + 0.5);
            // Truncation toward zero, then clamping, as PyTorch does.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_size as i64).max(lo as i64) as usize;
            let len = (hi - lo).min(stride);
            let mut total = 0.0;
            for (j, slot) in w.iter_mut().take(len).enumerate() {
                *slot = triangle((j as f32 + lo as f32 - center + 0.5) * inv_scale);
                total += *slot;
            }
            if total != 0.0 {
                w.iter_mut().take(len).for_each(|slot| *slot /= total);
            }
            self.start.push(lo);
            self.len.push(len);
        }
    }

    fn taps(&self, i: usize) -> (usize, &[f32]) {
        (self.start[i], &self.weights[i * self.stride..i * self.stride + self.len[i]])
    }
}

/// Rounds half to even and saturates to `u8`, like `torch.round(x).to(torch.uint8)` for
/// in-range values. Adding and subtracting 1.5 * 2^23 rounds to the nearest integer under the
/// default IEEE rounding mode without a libm call, so loops stay vectorisable.
#[inline(always)]
pub(crate) fn round_u8(v: f32) -> u8 {
    const MAGIC: f32 = 12_582_912.0;
    ((v + MAGIC) - MAGIC) as u8
}

fn check(crop: CropBox, img_w: u32, img_h: u32, width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(AugmentError::ZeroSize { width, height });
    }
    crop.check_inside(img_w, img_h)
}

multiversion! {
    /// Vertical pass: `tmp[oy][..]` = weighted sum of source rows, where crop row `y` is the
    /// contiguous segment `data[base + y * stride..][..seg]`.
    fn vertical(wy: &AxisWeights, data: &[u8], base: usize, stride: usize, seg: usize, tmp: &mut [f32]) {
        for (oy, acc) in tmp.chunks_exact_mut(seg).enumerate() {
            let (start, w) = wy.taps(oy);
            acc.fill(0.0);
            for (k, &wk) in w.iter().enumerate() {
                let at = base + (start + k) * stride;
                for (a, &p) in acc.iter_mut().zip(&data[at..at + seg]) {
                    *a += wk * f32::from(p);
                }
            }
        }
    }
}

multiversion! {
    /// Horizontal pass over interleaved rows of `tmp` (`seg = 3 * crop width` values each) into
    /// the three output planes.
    fn horizontal_rgb(wx: &AxisWeights, tmp: &[f32], seg: usize, r: &mut [u8], g: &mut [u8], b: &mut [u8]) {
        let out_w = wx.start.len();
        let rows = tmp.chunks_exact(seg).zip(r.chunks_exact_mut(out_w));
        for ((row, r), (g, b)) in rows.zip(g.chunks_exact_mut(out_w).zip(b.chunks_exact_mut(out_w))) {
            for (ox, ((r, g), b)) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()).enumerate() {
                let (start, w) = wx.taps(ox);
                let px = &row[3 * start..3 * (start + w.len())];
                let (mut ar, mut ag, mut ab) = (0.0f32, 0.0f32, 0.0f32);
                for (&wk, p) in w.iter().zip(px.chunks_exact(3)) {
                    ar += wk * p[0];
                    ag += wk * p[1];
                    ab += wk * p[2];
                }
                *r = round_u8(ar);
                *g = round_u8(ag);
                *b = round_u8(ab);
            }
        }
    }
}

multiversion! {
    /// Horizontal pass over one plane's rows of `tmp` (`seg = crop width` values each).
    fn horizontal_plane(wx: &AxisWeights, tmp: &[f32], seg: usize, out: &mut [u8]) {
        let out_w = wx.start.len();
        for (row, out_row) in tmp.chunks_exact(seg).zip(out.chunks_exact_mut(out_w)) {
            for (ox, o) in out_row.iter_mut().enumerate() {
                let (start, w) = wx.taps(ox);
                let acc: f32 = w.iter().zip(&row[start..]).map(|(&wk, &p)| wk * p).sum();
                *o = round_u8(acc);
            }
        }
    }
}

/// Crops `crop` out of an interleaved RGB image and resizes it to `width x height` into `dst`
/// (planar), in one pass without an intermediate copy of the crop.
///
/// Equals torchvision's `F.resized_crop(img, top, left, h, w, [height, width], BILINEAR,
/// antialias=True)` on a `uint8` tensor, within one grey level of floating-point rounding.
///
/// # Errors
/// [`AugmentError::ZeroSize`] for a zero target side, [`AugmentError::CropOutOfBounds`] when
/// the crop is empty or leaves the image.
pub fn resized_crop(
    src: RgbView<'_>,
    crop: CropBox,
    width: u32,
    height: u32,
    dst: &mut ChwImage,
    ws: &mut Workspace,
) -> Result<()> {
    check(crop, src.width(), src.height(), width, height)?;
    let (out_w, out_h) = (width as usize, height as usize);
    let (cw, ch) = (crop.width as usize, crop.height as usize);
    ws.weights_x.compute(cw, out_w);
    ws.weights_y.compute(ch, out_h);
    let seg = 3 * cw;
    let stride = 3 * src.width() as usize;
    let base = crop.top as usize * stride + 3 * crop.left as usize;
    let tmp = sized(&mut ws.floats, out_h * seg);
    vertical(&ws.weights_y, src.as_raw(), base, stride, seg, tmp);
    dst.reshape(width, height);
    let [r, g, b] = dst.planes_mut();
    horizontal_rgb(&ws.weights_x, tmp, seg, r, g, b);
    Ok(())
}

/// Crops and resizes a planar image into `dst`; see [`resized_crop`].
///
/// # Errors
/// As [`resized_crop`], plus [`AugmentError::EmptyImage`] for an empty `src`.
pub fn resized_crop_chw(
    src: &ChwImage,
    crop: CropBox,
    width: u32,
    height: u32,
    dst: &mut ChwImage,
    ws: &mut Workspace,
) -> Result<()> {
    src.check_non_empty()?;
    check(crop, src.width(), src.height(), width, height)?;
    let (out_w, out_h) = (width as usize, height as usize);
    let (cw, ch) = (crop.width as usize, crop.height as usize);
    ws.weights_x.compute(cw, out_w);
    ws.weights_y.compute(ch, out_h);
    let stride = src.width() as usize;
    let base = crop.top as usize * stride + crop.left as usize;
    dst.reshape(width, height);
    let tmp = sized(&mut ws.floats, out_h * cw);
    for (plane, out) in src.planes().into_iter().zip(dst.planes_mut()) {
        vertical(&ws.weights_y, plane, base, stride, cw, tmp);
        horizontal_plane(&ws.weights_x, tmp, cw, out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_stay_inside() {
        let mut w = AxisWeights::default();
        for (i, o) in [(10, 3), (3, 10), (7, 7), (256, 224), (1, 5), (5, 1), (13, 32)] {
            w.compute(i, o);
            for k in 0..o {
                let (start, taps) = w.taps(k);
                assert!(start + taps.len() <= i, "{i}->{o} tap {k}");
                let sum: f32 = taps.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{i}->{o} tap {k}: {sum}");
            }
        }
    }

    #[test]
    fn identity_size_copies() {
        let data: Vec<u8> = (0..5 * 4 * 3).map(|v| (v * 7 % 256) as u8).collect();
        let src = RgbView::new(5, 4, &data).expect("valid");
        let mut out = ChwImage::default();
        let mut ws = Workspace::new();
        let full = CropBox { top: 0, left: 0, height: 4, width: 5 };
        resized_crop(src, full, 5, 4, &mut out, &mut ws).expect("valid");
        assert_eq!(out, ChwImage::from_view(src));
    }

    #[test]
    fn halving_averages_pairs() {
        // A 4x1 row [0, 100, 200, 255] shrunk to 2x1: triangle of half-width 2 centred at 1 and 3.
        let data = [0u8, 0, 0, 100, 100, 100, 200, 200, 200, 250, 250, 250];
        let src = RgbView::new(4, 1, &data).expect("valid");
        let mut out = ChwImage::default();
        let mut ws = Workspace::new();
        let full = CropBox { top: 0, left: 0, height: 1, width: 4 };
        resized_crop(src, full, 2, 1, &mut out, &mut ws).expect("valid");
        // Output 0: centre 1.0, taps x=0..3 at distance 0.5,0.5,1.5 -> weights .75,.75,.25.
        let expected0 = (0.75 * 0.0 + 0.75 * 100.0 + 0.25 * 200.0) / 1.75f32;
        assert_eq!(out.planes()[0][0], expected0.round() as u8);
        let chw = ChwImage::from_view(src);
        let mut out2 = ChwImage::default();
        resized_crop_chw(&chw, full, 2, 1, &mut out2, &mut ws).expect("valid");
        assert_eq!(out, out2);
    }

    #[test]
    fn rejects_bad_crops() {
        let data = [0u8; 12];
        let src = RgbView::new(2, 2, &data).expect("valid");
        let mut out = ChwImage::default();
        let mut ws = Workspace::new();
        let crop = CropBox { top: 1, left: 0, height: 2, width: 2 };
        assert!(resized_crop(src, crop, 2, 2, &mut out, &mut ws).is_err());
        let crop = CropBox { top: 0, left: 0, height: 2, width: 2 };
        assert!(matches!(
            resized_crop(src, crop, 0, 2, &mut out, &mut ws),
            Err(AugmentError::ZeroSize { .. })
        ));
    }

    #[test]
    fn rounds_half_to_even() {
        assert_eq!(round_u8(0.5), 0);
        assert_eq!(round_u8(1.5), 2);
        assert_eq!(round_u8(2.5), 2);
        assert_eq!(round_u8(254.6), 255);
        assert_eq!(round_u8(255.2), 255);
        assert_eq!(round_u8(-0.3), 0);
    }
}
