//! The crate's one error type.

/// Everything that can go wrong in `simsiam-augment`.
///
/// Invalid parameters are caught when a transform is built (or when a deterministic op is
/// called), never by a panic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AugmentError {
    /// A scalar parameter is outside its valid domain (a probability outside `[0, 1]`, a
    /// negative strength, a NaN, a hue factor outside `[-0.5, 0.5]`, ...).
    #[error("parameter `{name}` = {value} is invalid: expected {expected}")]
    InvalidParameter {
        /// The parameter's name, as spelled in the config or function.
        name: &'static str,
        /// The offending value.
        value: f64,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// A `(min, max)` range is empty, reversed, non-finite or out of its domain.
    #[error("range `{name}` = ({min}, {max}) is invalid: expected {expected}")]
    InvalidRange {
        /// The range's name (`scale`, `ratio`, `sigmas`, ...).
        name: &'static str,
        /// Lower end.
        min: f64,
        /// Upper end.
        max: f64,
        /// What a valid range looks like.
        expected: &'static str,
    },
    /// An image with zero width or height.
    #[error("image is empty ({width}x{height})")]
    EmptyImage {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// A target (output) size with a zero side.
    #[error("target size must be non-zero, got {width}x{height}")]
    ZeroSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// A pixel or output buffer whose length does not match its declared shape.
    #[error("buffer has {actual} elements, expected {expected}")]
    BufferSize {
        /// Length implied by the shape.
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// A crop box that does not lie inside the image.
    #[error(
        "crop box (top {top}, left {left}, {height}x{width}) does not fit a {image_height}x{image_width} image"
    )]
    CropOutOfBounds {
        /// Top row of the box.
        top: u32,
        /// Left column of the box.
        left: u32,
        /// Box height.
        height: u32,
        /// Box width.
        width: u32,
        /// Image height.
        image_height: u32,
        /// Image width.
        image_width: u32,
    },
    /// A Gaussian kernel size that is even or zero.
    #[error("gaussian kernel size must be odd and positive, got {0}")]
    InvalidKernelSize(u32),
    /// A multi-view transform without views, or whose views disagree on output shape.
    #[error("invalid views: {0}")]
    InvalidViews(&'static str),
    /// Slices that must have the same length do not.
    #[error("length mismatch: {what} ({left} vs {right})")]
    LengthMismatch {
        /// What was compared.
        what: &'static str,
        /// First length.
        left: usize,
        /// Second length.
        right: usize,
    },
}

/// The crate's result type.
pub type Result<T, E = AugmentError> = std::result::Result<T, E>;

/// `Ok(p)` when `p` is a probability in `[0, 1]`.
pub(crate) fn check_prob(name: &'static str, p: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(AugmentError::InvalidParameter { name, value: p, expected: "a probability in [0, 1]" })
    }
}

/// `Ok(v)` when `v` is finite and non-negative.
pub(crate) fn check_non_negative(name: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(AugmentError::InvalidParameter { name, value: v, expected: "a finite value >= 0" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities() {
        assert!(check_prob("p", 0.0).is_ok());
        assert!(check_prob("p", 1.0).is_ok());
        assert!(check_prob("p", -0.1).is_err());
        assert!(check_prob("p", 1.1).is_err());
        assert!(check_prob("p", f64::NAN).is_err());
    }

    #[test]
    fn strengths() {
        assert!(check_non_negative("s", 0.0).is_ok());
        assert!(check_non_negative("s", -1e-9).is_err());
        assert!(check_non_negative("s", f64::INFINITY).is_err());
    }
}
