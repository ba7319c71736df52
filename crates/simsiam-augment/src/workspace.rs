//! Reusable scratch memory, one per worker thread.

use crate::chw_image::ChwImage;
use crate::resize::AxisWeights;

/// Scratch buffers that ops reuse between images, so the hot path allocates only while the
/// buffers grow to the largest image seen.
///
/// Keep one per thread: the batch API holds one in a thread-local; single-image callers make
/// one with [`Workspace::new`] and pass it along.
#[derive(Debug, Default)]
pub struct Workspace {
    /// The image a view pipeline works on.
    pub(crate) work: ChwImage,
    /// A second image for ops that cannot work in place (crop, rotation).
    pub(crate) image: ChwImage,
    /// `f32` intermediate rows or planes (resize, blur).
    pub(crate) floats: Vec<f32>,
    /// A second `f32` buffer (blur's padded row).
    pub(crate) floats2: Vec<f32>,
    /// Resize weights along x.
    pub(crate) weights_x: AxisWeights,
    /// Resize weights along y.
    pub(crate) weights_y: AxisWeights,
    /// Gaussian kernel taps.
    pub(crate) kernel: Vec<f32>,
    /// Offsets (blur's source rows of each tap).
    pub(crate) indices: Vec<usize>,
}

impl Workspace {
    /// An empty workspace; buffers grow on first use.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The first `len` values of `buf` (contents unspecified), growing it when shorter.
/// Never shrinks `buf`, so buffers shared by ops of different sizes are not zero-filled again
/// each time they grow back.
pub(crate) fn sized(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}
