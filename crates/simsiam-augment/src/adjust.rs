//! Deterministic colour adjustments with torchvision's tensor formulas for `uint8` images.
//!
//! Every function blends in `f32` and truncates back to `u8` (torchvision's `.to(torch.uint8)`
//! after a clamp), so each one matches `torchvision.transforms.functional` on a `uint8`
//! tensor. Every loop runs over contiguous planes and vectorises.

use crate::chw_image::ChwImage;
use crate::error::{AugmentError, Result};
use crate::grayscale::gray;
use crate::simd::{floor_small, multiversion, trunc_u8, trunc_unit_u8};

fn check_factor(name: &'static str, f: f64) -> Result<f32> {
    if f.is_finite() && f >= 0.0 {
        Ok(f as f32)
    } else {
        Err(AugmentError::InvalidParameter { name, value: f, expected: "a finite factor >= 0" })
    }
}

/// torchvision's `_blend(img1, img2, ratio)` for one value: `ratio * a + (1 - ratio) * b`,
/// clamped to `[0, 255]` and truncated.
#[inline(always)]
fn blend(a: f32, b: f32, ratio: f32, one_minus: f32) -> u8 {
    trunc_u8(ratio * a + one_minus * b)
}

/// `(ratio, 1 - ratio)` in `f32`, with `1 - ratio` computed in `f64` as Python does.
fn ratios(factor: f64) -> (f32, f32) {
    (factor as f32, (1.0 - factor) as f32)
}

/// Blends every value with the constant `other` (a vectorised loop; the same `f32` operations
/// as torchvision's per-element `_blend`).
fn blend_all(img: &mut ChwImage, other: f32, ratio: f32, one_minus: f32) {
    blend_values(img.as_raw_mut(), one_minus * other, ratio);
}

multiversion! {
    fn blend_values(values: &mut [u8], b: f32, ratio: f32) {
        for v in values {
            *v = trunc_u8(ratio * f32::from(*v) + b);
        }
    }
}

multiversion! {
    fn sum_gray(r: &[u8], g: &[u8], b: &[u8], out: &mut u64) {
        // Chunks of 1024 keep the u32 partial sums exact (1024 * 255 < 2^32).
        let mut total = 0u64;
        for ((r, g), b) in r.chunks(1024).zip(g.chunks(1024)).zip(b.chunks(1024)) {
            let part: u32 =
                r.iter().zip(g).zip(b).map(|((&r, &g), &b)| u32::from(gray(r, g, b))).sum();
            total += u64::from(part);
        }
        *out = total;
    }
}

multiversion! {
    fn saturation_planes(r: &mut [u8], g: &mut [u8], b: &mut [u8], k: f32, one_minus: f32) {
        for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
            let l = f32::from(gray(*r, *g, *b));
            *r = blend(f32::from(*r), l, k, one_minus);
            *g = blend(f32::from(*g), l, k, one_minus);
            *b = blend(f32::from(*b), l, k, one_minus);
        }
    }
}

/// Pixels per unrolled block of [`hue_planes`].
const HUE_BLOCK: usize = 16;

multiversion! {
    fn hue_planes(r: &mut [u8], g: &mut [u8], b: &mut [u8], shift: f32) {
        // A pixel is a long chain of dependent operations (three divisions deep): blocks of
        // HUE_BLOCK pixels, unrolled into independent vectors, let the CPU overlap them.
        let mut rs = r.chunks_exact_mut(HUE_BLOCK);
        let mut gs = g.chunks_exact_mut(HUE_BLOCK);
        let mut bs = b.chunks_exact_mut(HUE_BLOCK);
        for ((r, g), b) in (&mut rs).zip(&mut gs).zip(&mut bs) {
            for j in 0..HUE_BLOCK {
                (r[j], g[j], b[j]) = hue_pixel(r[j], g[j], b[j], shift);
            }
        }
        let rest = rs.into_remainder().iter_mut().zip(gs.into_remainder().iter_mut());
        for ((r, g), b) in rest.zip(bs.into_remainder().iter_mut()) {
            (*r, *g, *b) = hue_pixel(*r, *g, *b, shift);
        }
    }
}

/// Scales brightness by `factor` (torchvision `F.adjust_brightness`): blend with black.
///
/// # Errors
/// [`AugmentError::InvalidParameter`] when `factor` is negative or not finite.
pub fn adjust_brightness(img: &mut ChwImage, factor: f64) -> Result<()> {
    check_factor("brightness_factor", factor)?;
    let (r, one_minus) = ratios(factor);
    blend_all(img, 0.0, r, one_minus);
    Ok(())
}

/// The mean grey level, as torchvision's `torch.mean(rgb_to_grayscale(img).to(float32))`.
fn mean_gray(img: &ChwImage) -> f32 {
    let [r, g, b] = img.planes();
    let mut sum = 0;
    sum_gray(r, g, b, &mut sum);
    sum as f32 / img.plane_len().max(1) as f32
}

/// Scales contrast by `factor` (torchvision `F.adjust_contrast`): blend with the mean grey
/// level of the image.
///
/// # Errors
/// [`AugmentError::InvalidParameter`] when `factor` is negative or not finite.
pub fn adjust_contrast(img: &mut ChwImage, factor: f64) -> Result<()> {
    check_factor("contrast_factor", factor)?;
    let (r, one_minus) = ratios(factor);
    let mean = mean_gray(img);
    blend_all(img, mean, r, one_minus);
    Ok(())
}

/// Scales saturation by `factor` (torchvision `F.adjust_saturation`): blend each pixel with its
/// own grey level.
///
/// # Errors
/// [`AugmentError::InvalidParameter`] when `factor` is negative or not finite.
pub fn adjust_saturation(img: &mut ChwImage, factor: f64) -> Result<()> {
    check_factor("saturation_factor", factor)?;
    let (k, one_minus) = ratios(factor);
    let [r, g, b] = img.planes_mut();
    saturation_planes(r, g, b, k, one_minus);
    Ok(())
}

#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

#[inline(always)]
fn min(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

#[inline(always)]
fn select(c: bool, a: f32, b: f32) -> f32 {
    if c { a } else { b }
}

/// One pixel of torchvision's `adjust_hue`: `_rgb2hsv`, shift the hue modulo 1, `_hsv2rgb`,
/// then `* 255` truncated to `u8`. Written branch-free so the loop vectorises, and with the
/// same `f32` operations as torchvision wherever they decide the result (the shortcuts below
/// rely on the value ranges noted beside them and give the same bits).
#[inline(always)]
fn hue_pixel(r8: u8, g8: u8, b8: u8, shift: f32) -> (u8, u8, u8) {
    let (r, g, b) = (f32::from(r8) / 255.0, f32::from(g8) / 255.0, f32::from(b8) / 255.0);
    let maxc = max(max(r, g), b);
    let minc = min(min(r, g), b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / select(eqc, 1.0, maxc);
    let cr_div = select(eqc, 1.0, cr);
    // torchvision computes rc, gc, bc = (maxc - {r, g, b}) / cr_div and takes
    // bc - gc (max is red), 2 + rc - bc (green) or 4 + gc - rc (blue), adding the two zero
    // terms of the other cases. Choosing the two numerators first needs two divisions, not
    // three; the zero terms change nothing as the sum is only used through `/ 6 + 1`.
    let (red, green) = (maxc == r, maxc == g && maxc != r);
    let n1 = maxc - select(red, b, select(green, r, g));
    let n2 = maxc - select(red, g, select(green, b, r));
    let base = select(red, 0.0, select(green, 2.0, 4.0));
    let hsum = (base + n1 / cr_div) - n2 / cr_div;
    // rc, gc, bc lie in [0, 1], so hsum / 6 + 1 lies in [5/6, 11/6]: fmod(., 1) subtracts 1
    // from values >= 1.
    let h = hsum / 6.0 + 1.0;
    let h = h - select(h >= 1.0, 1.0, 0.0);
    // Python-style (h + shift) % 1 with h + shift in [-0.5, 1.5): subtract the truncation
    // (1 for values >= 1, else 0), then add 1 to negatives.
    let h = h + shift;
    let m = h - select(h >= 1.0, 1.0, 0.0);
    let h = select(m < 0.0, m + 1.0, m);
    let v = maxc;
    let h6 = h * 6.0;
    // The sector, floor(h6) % 6 with h6 in [0, 6], as a float so that the loop vectorises.
    let i = floor_small(h6);
    let f = h6 - i;
    let i = select(i >= 6.0, i - 6.0, i);
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    let ro = select(i == 0.0 || i == 5.0, v, select(i == 1.0, q, select(i == 4.0, t, p)));
    let go = select(i == 1.0 || i == 2.0, v, select(i == 0.0, t, select(i == 3.0, q, p)));
    let bo = select(i == 3.0 || i == 4.0, v, select(i == 2.0, t, select(i == 5.0, q, p)));
    // v, p, q, t lie in [0, 1], so the products lie in [0, 255].
    (trunc_unit_u8(ro * 255.0), trunc_unit_u8(go * 255.0), trunc_unit_u8(bo * 255.0))
}

/// Rotates the hue by `factor` turns, `factor` in `[-0.5, 0.5]` (torchvision
/// `F.adjust_hue`), through torchvision's RGB -> HSV -> RGB formulas in `f32`.
///
/// # Errors
/// [`AugmentError::InvalidParameter`] when `factor` is outside `[-0.5, 0.5]`.
pub fn adjust_hue(img: &mut ChwImage, factor: f64) -> Result<()> {
    if !(-0.5..=0.5).contains(&factor) {
        return Err(AugmentError::InvalidParameter {
            name: "hue_factor",
            value: factor,
            expected: "a value in [-0.5, 0.5]",
        });
    }
    let shift = factor as f32;
    let [r, g, b] = img.planes_mut();
    hue_planes(r, g, b, shift);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(r: u8, g: u8, b: u8) -> ChwImage {
        ChwImage::from_raw(1, 1, vec![r, g, b]).expect("valid")
    }

    #[test]
    fn brightness_truncates() {
        let mut img = px(10, 100, 200);
        adjust_brightness(&mut img, 1.5).expect("valid");
        assert_eq!(img.as_raw(), &[15, 150, 255]);
        let mut img = px(3, 3, 3);
        adjust_brightness(&mut img, 0.5).expect("valid");
        assert_eq!(img.as_raw(), &[1, 1, 1]);
        assert!(adjust_brightness(&mut img, -0.1).is_err());
    }

    #[test]
    fn contrast_zero_gives_mean_gray() {
        let mut img = ChwImage::from_raw(2, 1, vec![0, 255, 0, 255, 0, 255]).expect("valid");
        adjust_contrast(&mut img, 0.0).expect("valid");
        let mean = (u32::from(gray(0, 0, 0)) + u32::from(gray(255, 255, 255))) as f32 / 2.0;
        assert!(img.as_raw().iter().all(|&v| v == mean as u8));
    }

    #[test]
    fn saturation_zero_is_gray() {
        let mut img = px(200, 50, 10);
        adjust_saturation(&mut img, 0.0).expect("valid");
        let l = gray(200, 50, 10);
        assert_eq!(img.as_raw(), &[l, l, l]);
    }

    /// torchvision's `_rgb2hsv`, hue shift and `_hsv2rgb` for one pixel, written plainly.
    fn hue_reference(r8: u8, g8: u8, b8: u8, shift: f32) -> [u8; 3] {
        let (r, g, b) = (f32::from(r8) / 255.0, f32::from(g8) / 255.0, f32::from(b8) / 255.0);
        let maxc = r.max(g).max(b);
        let minc = r.min(g).min(b);
        let eqc = maxc == minc;
        let cr = maxc - minc;
        let s = cr / if eqc { 1.0 } else { maxc };
        let cr_div = if eqc { 1.0 } else { cr };
        let (rc, gc, bc) = ((maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div);
        let hr = if maxc == r { bc - gc } else { 0.0 };
        let hg = if maxc == g && maxc != r { 2.0 + rc - bc } else { 0.0 };
        let hb = if maxc != g && maxc != r { 4.0 + gc - rc } else { 0.0 };
        let h = ((hr + hg + hb) / 6.0 + 1.0) % 1.0;
        let h = (h + shift).rem_euclid(1.0);
        let v = maxc;
        let i = (h * 6.0).floor();
        let f = h * 6.0 - i;
        let i = (i as i32) % 6;
        let p = (v * (1.0 - s)).clamp(0.0, 1.0);
        let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
        let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
        let (ro, go, bo) = match i {
            0 => (v, t, p),
            1 => (q, v, p),
            2 => (p, v, t),
            3 => (p, q, v),
            4 => (t, p, v),
            _ => (v, p, q),
        };
        [(ro * 255.0) as u8, (go * 255.0) as u8, (bo * 255.0) as u8]
    }

    #[test]
    fn hue_matches_reference_for_every_colour() {
        // All 2^24 colours, as planes, for a few shifts (the vectorised path with its exact
        // shortcuts against the plain formulas).
        let (mut r, mut g, mut b) = (vec![0u8; 1 << 24], vec![0u8; 1 << 24], vec![0u8; 1 << 24]);
        for shift in [-0.5f32, 0.07] {
            for i in 0..1usize << 24 {
                (r[i], g[i], b[i]) = ((i >> 16) as u8, (i >> 8) as u8, i as u8);
            }
            hue_planes(&mut r, &mut g, &mut b, shift);
            for i in 0..1usize << 24 {
                let want = hue_reference((i >> 16) as u8, (i >> 8) as u8, i as u8, shift);
                assert_eq!([r[i], g[i], b[i]], want, "colour {i:06x}, shift {shift}");
            }
        }
    }

    #[test]
    fn hue_rotations() {
        // Pure red shifted by a third of a turn is green, by two thirds blue.
        let mut img = px(255, 0, 0);
        adjust_hue(&mut img, 1.0 / 3.0).expect("valid");
        assert_eq!(img.as_raw(), &[0, 255, 0]);
        let mut img = px(255, 0, 0);
        adjust_hue(&mut img, -1.0 / 3.0).expect("valid");
        assert_eq!(img.as_raw(), &[0, 0, 255]);
        // Greys have no hue.
        let mut img = px(77, 77, 77);
        adjust_hue(&mut img, 0.25).expect("valid");
        assert_eq!(img.as_raw(), &[77, 77, 77]);
        // A zero shift is the identity up to torchvision's truncation.
        let mut img = px(12, 200, 99);
        adjust_hue(&mut img, 0.0).expect("valid");
        for (a, b) in img.as_raw().iter().zip([12u8, 200, 99]) {
            assert!(a.abs_diff(b) <= 1);
        }
        assert!(adjust_hue(&mut img, 0.6).is_err());
        assert!(adjust_hue(&mut img, f64::NAN).is_err());
    }
}
