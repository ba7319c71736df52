//! Horizontal and vertical flips, fixed and random.

use crate::chw_image::ChwImage;
use crate::compose::Transform;
use crate::error::{Result, check_prob};
use crate::rng::{ChaCha8Rng, bernoulli};
use crate::workspace::Workspace;

/// Mirrors the image left-right in place (torchvision `F.hflip`).
pub fn hflip(img: &mut ChwImage) {
    let w = img.width() as usize;
    if w == 0 {
        return;
    }
    img.as_raw_mut().chunks_exact_mut(w).for_each(<[u8]>::reverse);
}

/// Mirrors the image top-bottom in place (torchvision `F.vflip`).
pub fn vflip(img: &mut ChwImage) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 {
        return;
    }
    for plane in img.planes_mut() {
        for y in 0..h / 2 {
            let (top, bottom) = plane.split_at_mut((h - 1 - y) * w);
            top[y * w..(y + 1) * w].swap_with_slice(&mut bottom[..w]);
        }
    }
}

/// Always mirrors left-right.
#[derive(Debug, Clone, Copy, Default)]
pub struct HorizontalFlip;

impl Transform for HorizontalFlip {
    fn apply(&self, img: &mut ChwImage, _: &mut Workspace, _: &mut ChaCha8Rng) -> Result<()> {
        hflip(img);
        Ok(())
    }
}

/// Mirrors left-right with probability `p` (torchvision `RandomHorizontalFlip`).
#[derive(Debug, Clone, Copy)]
pub struct RandomHorizontalFlip {
    p: f64,
}

impl RandomHorizontalFlip {
    /// # Errors
    /// [`crate::AugmentError::InvalidParameter`] when `p` is not in `[0, 1]`.
    pub fn new(p: f64) -> Result<Self> {
        Ok(Self { p: check_prob("hf_prob", p)? })
    }
}

impl Transform for RandomHorizontalFlip {
    fn apply(&self, img: &mut ChwImage, _: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        if bernoulli(rng, self.p) {
            hflip(img);
        }
        Ok(())
    }
}

/// Mirrors top-bottom with probability `p` (torchvision `RandomVerticalFlip`).
#[derive(Debug, Clone, Copy)]
pub struct RandomVerticalFlip {
    p: f64,
}

impl RandomVerticalFlip {
    /// # Errors
    /// [`crate::AugmentError::InvalidParameter`] when `p` is not in `[0, 1]`.
    pub fn new(p: f64) -> Result<Self> {
        Ok(Self { p: check_prob("vf_prob", p)? })
    }
}

impl Transform for RandomVerticalFlip {
    fn apply(&self, img: &mut ChwImage, _: &mut Workspace, rng: &mut ChaCha8Rng) -> Result<()> {
        if bernoulli(rng, self.p) {
            vflip(img);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> ChwImage {
        // 3x2, red plane 0..6, green 10.., blue 20..
        let mut d: Vec<u8> = (0..6).collect();
        d.extend(10..16);
        d.extend(20..26);
        ChwImage::from_raw(3, 2, d).expect("valid")
    }

    #[test]
    fn flips() {
        let mut a = img();
        hflip(&mut a);
        assert_eq!(&a.as_raw()[..6], &[2, 1, 0, 5, 4, 3]);
        let mut b = img();
        vflip(&mut b);
        assert_eq!(&b.as_raw()[..6], &[3, 4, 5, 0, 1, 2]);
        assert_eq!(&b.as_raw()[12..], &[23, 24, 25, 20, 21, 22]);
        vflip(&mut b);
        assert_eq!(b, img());
    }

    #[test]
    fn rejects_bad_probability() {
        assert!(RandomHorizontalFlip::new(-0.5).is_err());
        assert!(RandomVerticalFlip::new(2.0).is_err());
    }
}
