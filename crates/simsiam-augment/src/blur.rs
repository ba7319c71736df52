//! Gaussian blur: torchvision's kernel, separable passes, reflect padding.

use crate::chw_image::ChwImage;
use crate::compose::Transform;
use crate::error::{AugmentError, Result, check_prob};
use crate::rng::{ChaCha8Rng, bernoulli, uniform};
use crate::simd::{multiversion, round_u8};
use crate::workspace::{Workspace, sized};

/// The kernel size [`RandomGaussianBlur`] uses for `sigma` when none is fixed:
/// `2 * ceil(3 * sigma) + 1`, the smallest odd size covering three standard deviations on each
/// side (k = 7 for sigma 1, 13 for sigma 2).
pub fn auto_kernel_size(sigma: f64) -> u32 {
    2 * (3.0 * sigma).ceil().max(0.0) as u32 + 1
}

/// Fills `out` with torchvision's 1-D Gaussian kernel (`_get_gaussian_kernel1d`): `size`
/// points evenly spaced over `[-(size-1)/2, (size-1)/2]`, `exp(-x^2 / (2 sigma^2))`,
/// normalised to sum one, in `f32`.
pub fn gaussian_kernel1d(size: u32, sigma: f64, out: &mut Vec<f32>) {
    let half = (size as f32 - 1.0) * 0.5;
    let sigma = sigma as f32;
    out.clear();
    out.extend((0..size).map(|i| {
        let x = (i as f32 - half) / sigma;
        (-0.5 * x * x).exp()
    }));
    let sum: f32 = out.iter().sum();
    out.iter_mut().for_each(|v| *v /= sum);
}

/// Mirror index without repeating the edge (PyTorch `reflect` padding), folded again for pads
/// wider than the image (where PyTorch raises).
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    let m = n as isize;
    // The usual cases, without a division: inside, or mirrored once at either edge.
    if (0..m).contains(&i) {
        return i as usize;
    }
    if (-m + 1..0).contains(&i) {
        return (-i) as usize;
    }
    if (m..2 * m - 1).contains(&i) {
        return (2 * m - 2 - i) as usize;
    }
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period) as usize;
    if m >= n { period as usize - m } else { m }
}

fn check_blur(size: u32, sigma: f64) -> Result<()> {
    if size == 0 || size % 2 == 0 {
        return Err(AugmentError::InvalidKernelSize(size));
    }
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(AugmentError::InvalidParameter {
            name: "sigma",
            value: sigma,
            expected: "a finite value > 0",
        });
    }
    Ok(())
}

/// Outputs per block of the blur passes: four AVX2 registers, so the four chains of dependent
/// additions overlap.
const BLOCK: usize = 32;

/// `acc[j] += w * p[j]` for every lane.
#[inline(always)]
fn mul_add(acc: &mut [f32; BLOCK], w: f32, p: &[f32; BLOCK]) {
    for j in 0..BLOCK {
        acc[j] += w * p[j];
    }
}

/// `out[x] = sum_k kernel[k] * src(k)[x]` for `x < out.len()`, from `0.0` in tap order, by
/// blocks of [`BLOCK`] outputs accumulated in registers; `src(k)` must have at least
/// `out.len()` values.
#[inline(always)]
fn convolve<'a>(kernel: &[f32], src: impl Fn(usize) -> &'a [f32], out: &mut [f32]) {
    let mut blocks = out.chunks_exact_mut(BLOCK);
    let mut x0 = 0;
    for dst in &mut blocks {
        let mut acc = [0.0f32; BLOCK];
        for (k, &wk) in kernel.iter().enumerate() {
            if let Some(p) = src(k).get(x0..).and_then(<[f32]>::first_chunk::<BLOCK>) {
                mul_add(&mut acc, wk, p);
            }
        }
        dst.copy_from_slice(&acc);
        x0 += BLOCK;
    }
    for (x, d) in blocks.into_remainder().iter_mut().enumerate() {
        let mut acc = 0.0f32;
        for (k, &wk) in kernel.iter().enumerate() {
            acc += wk * src(k).get(x0 + x).copied().unwrap_or(0.0);
        }
        *d = acc;
    }
}

multiversion! {
    /// One plane: horizontal pass into `tmp` through the padded row `pad`, then vertical pass
    /// through the row accumulator `acc`, rounding half to even. `rows` holds, for the
    /// vertical pass, the (reflected) source row of each tap.
    fn blur_plane(
        plane: &mut [u8],
        w: usize,
        kernel: &[f32],
        tmp: &mut [f32],
        pad: &mut [f32],
        acc: &mut [f32],
        rows: &mut [usize],
    ) {
        let h = plane.len() / w;
        let r = kernel.len() / 2;
        // Horizontal: pad each row by reflection, then tmp = sum_k kernel[k] * pad[x + k].
        for (src, dst) in plane.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
            let (left, rest) = pad.split_at_mut(r);
            let (mid, right) = rest.split_at_mut(w);
            for (i, p) in left.iter_mut().enumerate() {
                *p = f32::from(src[reflect(i as isize - r as isize, w)]);
            }
            for (p, &s) in mid.iter_mut().zip(src) {
                *p = f32::from(s);
            }
            for (i, p) in right.iter_mut().enumerate() {
                *p = f32::from(src[reflect((w + i) as isize, w)]);
            }
            let pad = &*pad;
            convolve(kernel, |k| &pad[k..], dst);
        }
        // Vertical: out[y] = sum_k kernel[k] * tmp[reflect(y + k - r)].
        let tmp = &*tmp;
        for (y, out) in plane.chunks_exact_mut(w).enumerate() {
            for (k, row) in rows.iter_mut().enumerate() {
                *row = reflect(y as isize + k as isize - r as isize, h) * w;
            }
            let rows = &*rows;
            convolve(kernel, |k| &tmp[rows[k]..rows[k] + w], acc);
            for (o, &a) in out.iter_mut().zip(acc.iter()) {
                *o = round_u8(a);
            }
        }
    }
}

/// Blurs with a `size x size` Gaussian of standard deviation `sigma` (torchvision
/// `F.gaussian_blur(img, [size, size], [sigma, sigma])` on a `uint8` tensor: reflect padding,
/// `f32` arithmetic, rounding half to even). The 2-D kernel is the outer product of the 1-D
/// one, so we run it as a horizontal then a vertical pass; results agree with torchvision's
/// single 2-D convolution up to `f32` rounding.
///
/// Unlike PyTorch, a kernel wider than twice the image still works (the reflection folds).
///
/// # Errors
/// [`AugmentError::InvalidKernelSize`] for an even or zero size,
/// [`AugmentError::InvalidParameter`] for a non-positive sigma, [`AugmentError::EmptyImage`].
pub fn gaussian_blur(img: &mut ChwImage, size: u32, sigma: f64, ws: &mut Workspace) -> Result<()> {
    check_blur(size, sigma)?;
    img.check_non_empty()?;
    gaussian_kernel1d(size, sigma, &mut ws.kernel);
    let (w, h) = (img.width() as usize, img.height() as usize);
    let r = (size / 2) as usize;
    let kernel = &ws.kernel[..];
    let tmp = sized(&mut ws.floats, w * h);
    let line = sized(&mut ws.floats2, w + 2 * r + w);
    let (pad, acc) = line.split_at_mut(w + 2 * r);
    let acc = &mut acc[..w];
    ws.indices.resize(kernel.len(), 0);
    for plane in img.planes_mut() {
        blur_plane(plane, w, kernel, tmp, pad, acc, &mut ws.indices);
    }
    Ok(())
}

/// With probability `prob`, blurs with `sigma ~ U(sigmas)` (Lightly's `GaussianBlur(prob,
/// sigmas)`). The kernel size is `kernel_size` when set, else [`auto_kernel_size`] of the drawn
/// sigma. (Lightly's own op, with `kernel_size=None`, calls PIL's `GaussianBlur(radius=sigma)`,
/// a box-filter approximation of the same Gaussian; we use the exact kernel.)
#[derive(Debug, Clone, PartialEq)]
pub struct RandomGaussianBlur {
    prob: f64,
    sigmas: (f64, f64),
    kernel_size: Option<u32>,
}

impl RandomGaussianBlur {
    /// # Errors
    /// [`AugmentError::InvalidParameter`] for `prob` outside `[0, 1]`,
    /// [`AugmentError::InvalidRange`] unless `0 < sigmas.0 <= sigmas.1` (finite),
    /// [`AugmentError::InvalidKernelSize`] for an even or zero `kernel_size`.
    pub fn new(prob: f64, sigmas: (f64, f64), kernel_size: Option<u32>) -> Result<Self> {
        check_prob("gaussian_blur", prob)?;
        let (lo, hi) = sigmas;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
            return Err(AugmentError::InvalidRange {
                name: "sigmas",
                min: lo,
                max: hi,
                expected: "finite 0 < min <= max",
            });
        }
        if let Some(k) = kernel_size {
            check_blur(k, lo)?;
        }
        Ok(Self { prob, sigmas, kernel_size })
    }
}

impl Transform for RandomGaussianBlur {
    fn apply(&self, img: &mut ChwImage, ws: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        if bernoulli(rng, self.prob) {
            let sigma = uniform(rng, self.sigmas.0, self.sigmas.1);
            let size = self.kernel_size.unwrap_or_else(|| auto_kernel_size(sigma));
            gaussian_blur(img, size, sigma, ws)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_sizes() {
        assert_eq!(auto_kernel_size(0.1), 3);
        assert_eq!(auto_kernel_size(1.0), 7);
        assert_eq!(auto_kernel_size(2.0), 13);
    }

    #[test]
    fn kernel_is_normalised_and_symmetric() {
        let mut k = Vec::new();
        gaussian_kernel1d(7, 1.3, &mut k);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        for i in 0..3 {
            assert!((k[i] - k[6 - i]).abs() < 1e-7);
        }
    }

    #[test]
    fn reflect_indices() {
        let idx: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(idx, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(reflect(-5, 1), 0);
    }

    #[test]
    fn constant_image_is_unchanged() {
        let mut img = ChwImage::from_raw(5, 3, vec![77; 45]).expect("valid");
        let mut ws = Workspace::new();
        gaussian_blur(&mut img, 13, 2.0, &mut ws).expect("valid");
        assert!(img.as_raw().iter().all(|&v| v == 77));
    }

    #[test]
    fn rejects_invalid() {
        let mut img = ChwImage::from_raw(2, 2, vec![0; 12]).expect("valid");
        let mut ws = Workspace::new();
        assert!(gaussian_blur(&mut img, 4, 1.0, &mut ws).is_err());
        assert!(gaussian_blur(&mut img, 0, 1.0, &mut ws).is_err());
        assert!(gaussian_blur(&mut img, 3, 0.0, &mut ws).is_err());
        assert!(RandomGaussianBlur::new(0.5, (2.0, 0.1), None).is_err());
        assert!(RandomGaussianBlur::new(0.5, (-1.0, 0.1), None).is_err());
        assert!(RandomGaussianBlur::new(1.5, (0.1, 2.0), None).is_err());
        assert!(RandomGaussianBlur::new(0.5, (0.1, 2.0), Some(8)).is_err());
        assert!(RandomGaussianBlur::new(0.5, (0.1, 2.0), Some(9)).is_ok());
    }
}
