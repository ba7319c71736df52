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
use crate::simd::{multiversion, round_u8};
use crate::workspace::{Workspace, sized};

/// Precomputed filter taps for one axis: output `i` reads `len[i]` inputs from `start[i]`
/// (relative to the crop) with weights `weights[i * stride..][..len[i]]`, which sum to one.
///
/// For the horizontal pass the same weights are also laid out in dense blocks of [`LANES`]
/// consecutive outputs: block `b` reads the `span` inputs from `block_start[b]`, and
/// `blocks[b * span + i][j]` is the weight of its input `i` in output `b * LANES + j`, zero
/// outside that output's support. A block is then `span` vector multiply-adds over `LANES`
/// outputs, with no gather; the zeros add exactly nothing (`0 * x = 0` and `a + 0 = a` for the
/// non-negative values here), so the sums equal, bit for bit, the sums over each support in
/// the same order.
#[derive(Debug, Default, Clone)]
pub(crate) struct AxisWeights {
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<f32>,
    stride: usize,
    block_start: Vec<usize>,
    blocks: Vec<[f32; LANES]>,
    span: usize,
}

/// Outputs per block of the horizontal pass (one AVX2 register of `f32`).
const LANES: usize = 8;

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
        self.compute_blocks(in_size);
    }

    /// Lays the weights out in dense blocks of [`LANES`] outputs (see the type docs).
    fn compute_blocks(&mut self, in_size: usize) {
        let out_size = self.outputs();
        let n_blocks = out_size.div_ceil(LANES);
        // The inputs block `b` touches: from its first output's support to its last one's end.
        let first = |b: usize| self.start[b * LANES];
        let end = |b: usize| {
            let last = ((b + 1) * LANES).min(out_size) - 1;
            self.start[last] + self.len[last]
        };
        let span = (0..n_blocks).map(|b| end(b).saturating_sub(first(b))).max().unwrap_or(0);
        let span = span.clamp(1, in_size.max(1));
        self.span = span;
        self.block_start.clear();
        self.blocks.clear();
        self.blocks.resize(n_blocks * span, [0.0; LANES]);
        for b in 0..n_blocks {
            let s0 = first(b).min(in_size.saturating_sub(span));
            self.block_start.push(s0);
            let block = &mut self.blocks[b * span..(b + 1) * span];
            for (j, i) in (b * LANES..out_size.min((b + 1) * LANES)).enumerate() {
                let w = &self.weights[i * self.stride..i * self.stride + self.len[i]];
                for (k, &wk) in w.iter().enumerate() {
                    block[self.start[i] + k - s0][j] = wk;
                }
            }
        }
    }

    /// Number of outputs.
    fn outputs(&self) -> usize {
        self.start.len()
    }

    /// The support of output `i`: its first input and its weights.
    fn support(&self, i: usize) -> (usize, &[f32]) {
        (self.start[i], &self.weights[i * self.stride..i * self.stride + self.len[i]])
    }

    /// Block `b`'s first input and its dense weights.
    #[cfg(test)]
    fn block(&self, b: usize) -> (usize, &[[f32; LANES]]) {
        (self.block_start[b], &self.blocks[b * self.span..(b + 1) * self.span])
    }
}

fn check(crop: CropBox, img_w: u32, img_h: u32, width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(AugmentError::ZeroSize { width, height });
    }
    crop.check_inside(img_w, img_h)
}

/// One output row of the vertical pass, `K` taps: `row[j] = sum_k w[k] * data[at + k * stride + j]`,
/// accumulated in registers in tap order (from `0.0`, as PyTorch).
#[inline(always)]
fn vertical_taps<const K: usize>(w: &[f32], data: &[u8], at: usize, stride: usize, row: &mut [f32]) {
    let n = row.len();
    let w: [f32; K] = std::array::from_fn(|k| w[k]);
    let src: [&[u8]; K] = std::array::from_fn(|k| &data[at + k * stride..at + k * stride + n]);
    for (j, out) in row.iter_mut().enumerate() {
        let mut acc = 0.0f32;
        for k in 0..K {
            acc += w[k] * f32::from(src[k][j]);
        }
        *out = acc;
    }
}

/// One output row of the vertical pass for any number of taps (see [`vertical_taps`]).
#[inline(always)]
fn vertical_row(w: &[f32], data: &[u8], at: usize, stride: usize, row: &mut [f32]) {
    match w.len() {
        1 => vertical_taps::<1>(w, data, at, stride, row),
        2 => vertical_taps::<2>(w, data, at, stride, row),
        3 => vertical_taps::<3>(w, data, at, stride, row),
        4 => vertical_taps::<4>(w, data, at, stride, row),
        5 => vertical_taps::<5>(w, data, at, stride, row),
        6 => vertical_taps::<6>(w, data, at, stride, row),
        _ => {
            // Wide supports (strong shrinking): accumulate tap by tap through `row`.
            row.fill(0.0);
            let n = row.len();
            for (k, &wk) in w.iter().enumerate() {
                let src = &data[at + k * stride..at + k * stride + n];
                for (a, &p) in row.iter_mut().zip(src) {
                    *a += wk * f32::from(p);
                }
            }
        }
    }
}

/// `acc[j] += w[j] * p` for every lane.
#[inline(always)]
fn mul_add(acc: &mut [f32; LANES], w: &[f32; LANES], p: f32) {
    for j in 0..LANES {
        acc[j] += w[j] * p;
    }
}

/// Rounds the lanes of `acc` into `out[at..at + LANES]`, or what of it exists.
#[inline(always)]
fn store_block(acc: &[f32; LANES], out: &mut [u8], at: usize) {
    let mut rounded = [0u8; LANES];
    for j in 0..LANES {
        rounded[j] = round_u8(acc[j]);
    }
    if let Some(dst) = out.get_mut(at..at + LANES) {
        dst.copy_from_slice(&rounded);
    } else {
        // The last, partial block.
        for (d, &v) in out.iter_mut().skip(at).zip(&rounded) {
            *d = v;
        }
    }
}

/// One output row of the horizontal pass, `C` interleaved channels, by blocks of [`LANES`]
/// outputs: `outs[c][ox] = round(sum_i block[i][ox % LANES] * row[C * (s0 + i) + c])`.
///
/// Each block's weights are dense over its `span` inputs (zero where an output does not
/// reach), so the sums over the support come out exactly as tap by tap, in the same order.
#[inline(always)]
fn horizontal_row<const C: usize>(wx: &AxisWeights, row: &[f32], outs: &mut [&mut [u8]; C]) {
    let span = wx.span;
    for (b, (&s0, block)) in wx.block_start.iter().zip(wx.blocks.chunks_exact(span)).enumerate() {
        let mut acc = [[0.0f32; LANES]; C];
        for (w, p) in block.iter().zip(row[C * s0..C * (s0 + span)].chunks_exact(C)) {
            for c in 0..C {
                mul_add(&mut acc[c], w, p[c]);
            }
        }
        for c in 0..C {
            store_block(&acc[c], outs[c], b * LANES);
        }
    }
}

/// Both passes, one output row at a time so the intermediate `f32` row stays in L1: crop row
/// `y` is `data[base + y * stride..][..row.len()]` with `C` interleaved channels, and output
/// row `oy` of channel `c` is `outs[c][oy * out_w..][..out_w]`.
#[inline(always)]
fn resize_rows_c<const C: usize>(
    wx: &AxisWeights,
    wy: &AxisWeights,
    data: &[u8],
    base: usize,
    stride: usize,
    row: &mut [f32],
    outs: [&mut [u8]; C],
) {
    let out_w = wx.outputs();
    let mut out_rows = outs.map(|o| o.chunks_exact_mut(out_w));
    for oy in 0..wy.outputs() {
        let (first, w) = wy.support(oy);
        vertical_row(w, data, base + first * stride, stride, row);
        let mut outs: [&mut [u8]; C] = std::array::from_fn(|c| out_rows[c].next().unwrap_or_default());
        horizontal_row::<C>(wx, row, &mut outs);
    }
}

multiversion! {
    /// [`resize_rows_c`] for interleaved RGB sources into three planes (`outs.len() == 3`) or
    /// planar sources into one plane (`outs.len() == 1`).
    fn resize_rows(
        wx: &AxisWeights,
        wy: &AxisWeights,
        data: &[u8],
        base: usize,
        stride: usize,
        row: &mut [f32],
        outs: &mut [&mut [u8]],
    ) {
        match outs {
            [r, g, b] => resize_rows_c::<3>(wx, wy, data, base, stride, row, [r, g, b]),
            [plane] => resize_rows_c::<1>(wx, wy, data, base, stride, row, [plane]),
            _ => {}
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
    let stride = 3 * src.width() as usize;
    let base = crop.top as usize * stride + 3 * crop.left as usize;
    let row = sized(&mut ws.floats, 3 * cw);
    dst.reshape(width, height);
    let [r, g, b] = dst.planes_mut();
    resize_rows(&ws.weights_x, &ws.weights_y, src.as_raw(), base, stride, row, &mut [r, g, b]);
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
    let row = sized(&mut ws.floats, cw);
    for (plane, out) in src.planes().into_iter().zip(dst.planes_mut()) {
        resize_rows(&ws.weights_x, &ws.weights_y, plane, base, stride, row, &mut [out]);
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
                let (start, taps) = w.support(k);
                assert!(start + taps.len() <= i, "{i}->{o} tap {k}");
                let sum: f32 = taps.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{i}->{o} tap {k}: {sum}");
                // The dense block holds the same weights at the same inputs, zeros elsewhere.
                let (s0, block) = w.block(k / LANES);
                assert!(s0 + block.len() <= i, "{i}->{o} block of {k}");
                for (x, col) in block.iter().enumerate() {
                    let expect = (s0 + x).checked_sub(start).and_then(|t| taps.get(t)).copied();
                    assert_eq!(col[k % LANES], expect.unwrap_or(0.0), "{i}->{o} tap {k} input {x}");
                }
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
