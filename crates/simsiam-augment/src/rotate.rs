//! Rotation by 90 degrees, fixed and random (Lightly's `RandomRotate`, `rr_prob`).

use crate::chw_image::ChwImage;
use crate::compose::Transform;
use crate::error::{Result, check_prob};
use crate::rng::{ChaCha8Rng, bernoulli};
use crate::workspace::Workspace;

/// Rotates `src` by 90 degrees counter-clockwise into `dst` (`torch.rot90(img, 1, [-2, -1])`;
/// for square images also torchvision's `F.rotate(img, 90)`); the output is `height x width`.
pub fn rot90(src: &ChwImage, dst: &mut ChwImage) {
    let (w, h) = (src.width() as usize, src.height() as usize);
    dst.reshape(src.height(), src.width());
    // dst[c][i][j] = src[c][j][w - 1 - i], dst has w rows of h columns.
    for (s, d) in src.planes().into_iter().zip(dst.planes_mut()) {
        for (i, row) in d.chunks_exact_mut(h.max(1)).enumerate() {
            let col = w - 1 - i;
            for (j, px) in row.iter_mut().enumerate() {
                *px = s[j * w + col];
            }
        }
    }
}

/// Rotates `img` by 90 degrees counter-clockwise in place, using the workspace's spare image.
pub fn rot90_in_place(img: &mut ChwImage, ws: &mut Workspace) {
    let mut out = std::mem::take(&mut ws.image);
    rot90(img, &mut out);
    std::mem::swap(img, &mut out);
    ws.image = out;
}

/// Rotates by 90 degrees counter-clockwise with probability `p`, as Lightly's
/// `RandomRotate(prob=rr_prob, angle=90)`.
#[derive(Debug, Clone, Copy)]
pub struct RandomRotate90 {
    p: f64,
}

impl RandomRotate90 {
    /// # Errors
    /// [`crate::AugmentError::InvalidParameter`] when `p` is not in `[0, 1]`.
    pub fn new(p: f64) -> Result<Self> {
        Ok(Self { p: check_prob("rr_prob", p)? })
    }
}

impl Transform for RandomRotate90 {
    fn apply(&self, img: &mut ChwImage, ws: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        if bernoulli(rng, self.p) {
            img.check_non_empty()?;
            rot90_in_place(img, ws);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_clockwise() {
        // [[1, 2, 3], [4, 5, 6]] rotated CCW is [[3, 6], [2, 5], [1, 4]].
        let mut d = vec![1, 2, 3, 4, 5, 6];
        d.extend([0; 12]);
        let src = ChwImage::from_raw(3, 2, d).expect("valid");
        let mut dst = ChwImage::default();
        rot90(&src, &mut dst);
        assert_eq!((dst.width(), dst.height()), (2, 3));
        assert_eq!(&dst.as_raw()[..6], &[3, 6, 2, 5, 1, 4]);
        let mut four = src.clone();
        let mut ws = Workspace::new();
        for _ in 0..4 {
            rot90_in_place(&mut four, &mut ws);
        }
        assert_eq!(four, src);
        assert!(RandomRotate90::new(1.01).is_err());
    }
}
