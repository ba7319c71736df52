//! A planar (`CHW`) RGB u8 image: the working buffer that every op edits in place.

use crate::error::{AugmentError, Result};
use crate::rgb_view::RgbView;

/// An owned RGB u8 image stored as three planes (`[3][height][width]`), like a torchvision
/// `uint8` tensor of shape `[3, H, W]`.
///
/// Planar storage lets every per-pixel op run over contiguous channel slices, which the
/// compiler vectorises. The buffer keeps its capacity when reshaped, so a pipeline that reuses
/// one `ChwImage` per worker allocates only on its first image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChwImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl ChwImage {
    /// A black image of the given size.
    ///
    /// # Errors
    /// [`AugmentError::EmptyImage`] for a zero side.
    pub fn new(width: u32, height: u32) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(AugmentError::EmptyImage { width, height });
        }
        Ok(Self { width, height, data: vec![0; 3 * width as usize * height as usize] })
    }

    /// Wraps planar bytes (`3 * height * width`, red plane first).
    ///
    /// # Errors
    /// [`AugmentError::EmptyImage`] or [`AugmentError::BufferSize`].
    pub fn from_raw(width: u32, height: u32, data: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(AugmentError::EmptyImage { width, height });
        }
        let expected = 3 * width as usize * height as usize;
        if data.len() != expected {
            return Err(AugmentError::BufferSize { expected, actual: data.len() });
        }
        Ok(Self { width, height, data })
    }

    /// Copies an interleaved RGB image into planes.
    pub fn from_view(src: RgbView<'_>) -> Self {
        let mut out = Self::default();
        out.copy_from_view(src);
        out
    }

    /// Copies an interleaved RGB image into planes, reusing this buffer's allocation.
    pub fn copy_from_view(&mut self, src: RgbView<'_>) {
        self.reshape(src.width(), src.height());
        let hw = self.plane_len();
        let (r, rest) = self.data.split_at_mut(hw);
        let (g, b) = rest.split_at_mut(hw);
        for (((px, r), g), b) in src.as_raw().chunks_exact(3).zip(r).zip(g).zip(b) {
            *r = px[0];
            *g = px[1];
            *b = px[2];
        }
    }

    /// Copies an [`image::RgbImage`] into planes.
    ///
    /// # Errors
    /// [`AugmentError::EmptyImage`] for an image with a zero side.
    pub fn from_image(img: &image::RgbImage) -> Result<Self> {
        Ok(Self::from_view(RgbView::from_image(img)?))
    }

    /// Interleaves the planes back into an [`image::RgbImage`].
    pub fn to_image(&self) -> image::RgbImage {
        let mut out = image::RgbImage::new(self.width, self.height);
        let [r, g, b] = self.planes();
        for (((px, r), g), b) in out.chunks_exact_mut(3).zip(r).zip(g).zip(b) {
            px.copy_from_slice(&[*r, *g, *b]);
        }
        out
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// `height * width`, the length of one plane.
    pub fn plane_len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// The planar bytes, `[3][height][width]`.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    /// The planar bytes, mutable.
    pub fn as_raw_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Consumes the image, returning its planar bytes.
    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }

    /// The red, green and blue planes.
    pub fn planes(&self) -> [&[u8]; 3] {
        let hw = self.plane_len();
        let (r, rest) = self.data.split_at(hw);
        let (g, b) = rest.split_at(hw);
        [r, g, b]
    }

    /// The red, green and blue planes, mutable and disjoint.
    pub fn planes_mut(&mut self) -> [&mut [u8]; 3] {
        let hw = self.plane_len();
        let (r, rest) = self.data.split_at_mut(hw);
        let (g, b) = rest.split_at_mut(hw);
        [r, g, b]
    }

    /// Sets the size, keeping the allocation; the contents are unspecified afterwards.
    pub(crate) fn reshape(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.data.resize(3 * width as usize * height as usize, 0);
    }

    /// [`AugmentError::EmptyImage`] when a side is zero (only a `Default` image can be empty).
    pub(crate) fn check_non_empty(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(AugmentError::EmptyImage { width: self.width, height: self.height });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data: Vec<u8> = (0..18).collect();
        let view = RgbView::new(3, 2, &data).expect("valid");
        let chw = ChwImage::from_view(view);
        assert_eq!(chw.planes()[0], &[0, 3, 6, 9, 12, 15]);
        assert_eq!(chw.planes()[2], &[2, 5, 8, 11, 14, 17]);
        assert_eq!(chw.to_image().as_raw(), &data);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(ChwImage::new(0, 1).is_err());
        assert!(ChwImage::from_raw(2, 2, vec![0; 11]).is_err());
        assert!(ChwImage::from_raw(2, 2, vec![0; 12]).is_ok());
        assert!(ChwImage::default().check_non_empty().is_err());
    }
}
