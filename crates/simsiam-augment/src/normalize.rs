//! Conversion of a `u8` image to a normalised `f32` `CHW` buffer (ToTensor + Normalize).

use crate::chw_image::ChwImage;
use crate::error::{AugmentError, Result};
use crate::simd::multiversion;

/// Per-channel mean and standard deviation, applied to values scaled to `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Channel means (R, G, B).
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B).
    pub std: [f32; 3],
}

impl Normalization {
    /// ImageNet statistics (Lightly's `IMAGENET_NORMALIZE`).
    pub const IMAGENET: Self = Self { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    /// CIFAR-10 statistics.
    pub const CIFAR10: Self = Self { mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616] };
    /// No normalisation: values in `[0, 1]` (ToTensor alone).
    pub const NONE: Self = Self { mean: [0.0; 3], std: [1.0; 3] };
}

/// Writes `(v / 255 - mean[c]) / std[c]` for every value into a `[3][H][W]` `f32` buffer, in
/// the same `f32` operations as torchvision's `ToTensor()` then `Normalize(mean, std)`.
///
/// The 256 possible results per channel are tabulated once, at construction.
#[derive(Clone, PartialEq)]
pub struct Normalize {
    stats: Normalization,
    lut: [[f32; 256]; 3],
}

impl std::fmt::Debug for Normalize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Normalize").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl Normalize {
    /// # Errors
    /// [`AugmentError::InvalidParameter`] for a non-finite mean or a standard deviation that is
    /// not finite and positive.
    pub fn new(stats: Normalization) -> Result<Self> {
        for c in 0..3 {
            let (m, s) = (stats.mean[c], stats.std[c]);
            if !m.is_finite() {
                return Err(AugmentError::InvalidParameter {
                    name: "mean",
                    value: f64::from(m),
                    expected: "a finite value",
                });
            }
            if !(s.is_finite() && s > 0.0) {
                return Err(AugmentError::InvalidParameter {
                    name: "std",
                    value: f64::from(s),
                    expected: "a finite value > 0",
                });
            }
        }
        let lut = std::array::from_fn(|c| {
            std::array::from_fn(|v| (v as f32 / 255.0 - stats.mean[c]) / stats.std[c])
        });
        Ok(Self { stats, lut })
    }

    /// The statistics.
    pub fn stats(&self) -> Normalization {
        self.stats
    }

    /// Converts `img` into `out` (`3 * H * W` values, channel-major).
    ///
    /// # Errors
    /// [`AugmentError::BufferSize`] when `out` has the wrong length.
    pub fn apply(&self, img: &ChwImage, out: &mut [f32]) -> Result<()> {
        let n = img.as_raw().len();
        if out.len() != n {
            return Err(AugmentError::BufferSize { expected: n, actual: out.len() });
        }
        for ((plane, out), lut) in
            img.planes().into_iter().zip(out.chunks_exact_mut(img.plane_len().max(1))).zip(&self.lut)
        {
            lookup(plane, lut, out);
        }
        Ok(())
    }
}

multiversion! {
    /// `out[i] = lut[plane[i]]`.
    fn lookup(plane: &[u8], lut: &[f32; 256], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(plane) {
            *o = lut[usize::from(v)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_formula() {
        let n = Normalize::new(Normalization::IMAGENET).expect("valid");
        let img = ChwImage::from_raw(2, 1, vec![0, 255, 10, 20, 128, 64]).expect("valid");
        let mut out = [0.0f32; 6];
        n.apply(&img, &mut out).expect("valid");
        let expect =
            |v: f32, c: usize| (v / 255.0 - [0.485f32, 0.456, 0.406][c]) / [0.229f32, 0.224, 0.225][c];
        assert_eq!(out[0], expect(0.0, 0));
        assert_eq!(out[1], expect(255.0, 0));
        assert_eq!(out[3], expect(20.0, 1));
        assert_eq!(out[5], expect(64.0, 2));
        assert!(n.apply(&img, &mut [0.0; 5]).is_err());
    }

    #[test]
    fn rejects_invalid() {
        let bad = Normalization { mean: [0.0; 3], std: [1.0, 0.0, 1.0] };
        assert!(Normalize::new(bad).is_err());
        let bad = Normalization { mean: [f32::NAN, 0.0, 0.0], std: [1.0; 3] };
        assert!(Normalize::new(bad).is_err());
        assert!(Normalize::new(Normalization::CIFAR10).is_ok());
        assert!(Normalize::new(Normalization::NONE).is_ok());
    }
}
