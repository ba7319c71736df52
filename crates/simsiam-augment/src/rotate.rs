//! Rotation by 90 degrees, fixed and random (Lightly's `RandomRotate`, `rr_prob`), and by a
//! random angle in a range (Lightly's `RandomRotateDegrees`, `rr_degrees`).

use crate::chw_image::ChwImage;
use crate::compose::Transform;
use crate::error::{AugmentError, Result, check_prob};
use crate::rng::{ChaCha8Rng, bernoulli, uniform};
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

/// Rotates `src` by `degrees` counter-clockwise about its centre into `dst` (same size, corners
/// that leave the image dropped, uncovered pixels 0), as PIL's `Image.rotate(degrees)` with
/// nearest-neighbour sampling, which torchvision's `RandomRotation` calls on PIL images: each
/// output pixel centre is mapped back through the inverse rotation and the source pixel it
/// falls in is copied.
pub fn rotate(src: &ChwImage, dst: &mut ChwImage, degrees: f64) {
    let (w, h) = (src.width() as usize, src.height() as usize);
    dst.reshape(src.width(), src.height());
    // PIL rounds the matrix to 15 decimals, so multiples of 90 degrees map exactly.
    let theta = (degrees % 360.0).to_radians();
    let round15 = |v: f64| (v * 1e15).round() / 1e15;
    let (cos, sin) = (round15(theta.cos()), round15(theta.sin()));
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    for (s, d) in src.planes().into_iter().zip(dst.planes_mut()) {
        for (y, row) in d.chunks_exact_mut(w.max(1)).enumerate() {
            let dy = y as f64 + 0.5 - cy;
            for (x, px) in row.iter_mut().enumerate() {
                let dx = x as f64 + 0.5 - cx;
                let xin = cos * dx - sin * dy + cx;
                let yin = sin * dx + cos * dy + cy;
                // PIL's COORD: negative coordinates are outside, others truncate.
                *px = if xin >= 0.0 && yin >= 0.0 && (xin as usize) < w && (yin as usize) < h {
                    s[yin as usize * w + xin as usize]
                } else {
                    0
                };
            }
        }
    }
}

/// With probability `p`, rotates counter-clockwise by an angle drawn uniformly from
/// `[min, max]` degrees, as Lightly's `RandomRotateDegrees(prob, degrees)`
/// (`RandomApply([RandomRotation(degrees)], p)`; nearest-neighbour, no expansion, fill 0).
#[derive(Debug, Clone, Copy)]
pub struct RandomRotation {
    p: f64,
    min: f64,
    max: f64,
}

impl RandomRotation {
    /// # Errors
    /// [`AugmentError::InvalidParameter`] when `p` is not in `[0, 1]`;
    /// [`AugmentError::InvalidRange`] when the range is reversed or not finite.
    pub fn new(p: f64, (min, max): (f64, f64)) -> Result<Self> {
        if !(min.is_finite() && max.is_finite() && min <= max) {
            return Err(AugmentError::InvalidRange {
                name: "rr_degrees",
                min,
                max,
                expected: "finite degrees with min <= max",
            });
        }
        Ok(Self { p: check_prob("rr_prob", p)?, min, max })
    }
}

impl Transform for RandomRotation {
    fn apply(&self, img: &mut ChwImage, ws: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        if bernoulli(rng, self.p) {
            img.check_non_empty()?;
            let angle = uniform(rng, self.min, self.max);
            let mut out = std::mem::take(&mut ws.image);
            rotate(img, &mut out, angle);
            std::mem::swap(img, &mut out);
            ws.image = out;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: u32, h: u32) -> ChwImage {
        let n = (w * h) as usize;
        let data = (0..3 * n).map(|i| (i % 251) as u8 + 1).collect();
        ChwImage::from_raw(w, h, data).expect("valid")
    }

    #[test]
    fn rotate_by_multiples_of_90_is_exact() {
        let src = ramp(5, 5);
        let (mut a, mut b) = (ChwImage::default(), ChwImage::default());
        rotate(&src, &mut a, 90.0);
        rot90(&src, &mut b);
        assert_eq!(a, b);
        rotate(&src, &mut a, 0.0);
        assert_eq!(a, src);
        rotate(&src, &mut a, 360.0);
        assert_eq!(a, src);
        let mut twice = ChwImage::default();
        rotate(&src, &mut a, 180.0);
        rotate(&b, &mut twice, 90.0);
        assert_eq!(a, twice);
    }

    /// One plane `1..=w*h` (row-major) copied to the three channels.
    fn numbered(w: u32, h: u32) -> ChwImage {
        let plane: Vec<u8> = (1..=(w * h) as u8).collect();
        ChwImage::from_raw(w, h, plane.repeat(3)).expect("valid")
    }

    #[test]
    fn rotate_matches_pil() {
        // Pillow 12: list(Image.frombytes('L', (w, h), bytes(range(1, w*h+1))).rotate(a).getdata())
        let cases: [(u32, u32, f64, &[u8]); 3] = [
            (4, 4, 45.0, &[0, 3, 8, 0, 2, 7, 11, 12, 5, 10, 11, 15, 0, 9, 14, 0]),
            (
                6,
                5,
                -30.0,
                &[
                    0, 7, 8, 3, 4, 0, 13, 14, 9, 9, 4, 5, 19, 20, 15, 16, 11, 12, 26, 27, 22, 22, 17, 18, 0,
                    27, 28, 23, 24, 0,
                ],
            ),
            (
                6,
                5,
                17.5,
                &[
                    0, 3, 4, 5, 12, 12, 1, 8, 9, 10, 11, 18, 7, 14, 15, 16, 17, 24, 13, 20, 21, 22, 23, 30,
                    19, 19, 26, 27, 28, 0,
                ],
            ),
        ];
        for (w, h, angle, want) in cases {
            let mut dst = ChwImage::default();
            rotate(&numbered(w, h), &mut dst, angle);
            assert_eq!((dst.width(), dst.height()), (w, h));
            for plane in dst.planes() {
                assert_eq!(plane, want, "{w}x{h} by {angle}");
            }
        }
        assert!(RandomRotation::new(0.5, (10.0, -10.0)).is_err());
        assert!(RandomRotation::new(1.5, (-10.0, 10.0)).is_err());
        assert!(RandomRotation::new(0.5, (f64::NAN, 10.0)).is_err());
    }

    #[test]
    fn random_rotation_draws_in_its_range() {
        use crate::rng::sample_rng;
        let src = ramp(6, 6);
        let never = RandomRotation::new(0.0, (-30.0, 30.0)).expect("valid");
        let always = RandomRotation::new(1.0, (90.0, 90.0)).expect("valid");
        let mut ws = Workspace::new();
        let mut img = src.clone();
        never.apply(&mut img, &mut ws, &mut sample_rng(0, 0, 0)).expect("ok");
        assert_eq!(img, src);
        always.apply(&mut img, &mut ws, &mut sample_rng(0, 0, 0)).expect("ok");
        let mut want = ChwImage::default();
        rot90(&src, &mut want);
        assert_eq!(img, want);
    }

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
