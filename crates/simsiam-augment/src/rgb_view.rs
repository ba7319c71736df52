//! A borrowed, interleaved RGB u8 image: the input of every pipeline.

use crate::error::{AugmentError, Result};

/// A borrowed RGB image, row-major, interleaved (`HWC`, `[r, g, b, r, g, b, ...]`), the layout of
/// [`image::RgbImage`] and of decoded PNG/JPEG buffers.
///
/// Construction checks that the buffer length is `width * height * 3` and that the image is not
/// empty, so every op that reads a `RgbView` can index it freely.
#[derive(Debug, Clone, Copy)]
pub struct RgbView<'a> {
    width: u32,
    height: u32,
    data: &'a [u8],
}

impl<'a> RgbView<'a> {
    /// Wraps `data` (`height * width * 3` bytes, interleaved RGB).
    ///
    /// # Errors
    /// [`AugmentError::EmptyImage`] for a zero side, [`AugmentError::BufferSize`] when the length
    /// does not match.
    pub fn new(width: u32, height: u32, data: &'a [u8]) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(AugmentError::EmptyImage { width, height });
        }
        let expected = width as usize * height as usize * 3;
        if data.len() != expected {
            return Err(AugmentError::BufferSize { expected, actual: data.len() });
        }
        Ok(Self { width, height, data })
    }

    /// Borrows an [`image::RgbImage`].
    ///
    /// # Errors
    /// [`AugmentError::EmptyImage`] for an image with a zero side.
    pub fn from_image(img: &'a image::RgbImage) -> Result<Self> {
        Self::new(img.width(), img.height(), img.as_raw())
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The interleaved bytes.
    pub fn as_raw(&self) -> &'a [u8] {
        self.data
    }
}

impl<'a> TryFrom<&'a image::RgbImage> for RgbView<'a> {
    type Error = AugmentError;

    fn try_from(img: &'a image::RgbImage) -> Result<Self> {
        Self::from_image(img)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_shape() {
        let data = [0u8; 12];
        assert!(RgbView::new(2, 2, &data).is_ok());
        assert_eq!(
            RgbView::new(3, 2, &data).err(),
            Some(AugmentError::BufferSize { expected: 18, actual: 12 })
        );
        assert!(matches!(RgbView::new(0, 2, &[]), Err(AugmentError::EmptyImage { .. })));
    }

    #[test]
    fn from_image() {
        let img = image::RgbImage::new(3, 5);
        let view = RgbView::try_from(&img).expect("non-empty");
        assert_eq!((view.width(), view.height(), view.as_raw().len()), (3, 5, 45));
        let empty = image::RgbImage::new(0, 5);
        assert!(RgbView::from_image(&empty).is_err());
    }
}
