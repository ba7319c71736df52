//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `simsiam-data`. Every variant names the file, URL, archive
/// entry or sample it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// Reading or writing a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file that a dataset needs is absent.
    #[error("{}: file not found ({what})", path.display())]
    MissingFile {
        /// Where it was expected.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// A dataset file is not in the expected format (wrong size, bad label, ...).
    #[error("{}: {reason}", path.display())]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// An image could not be opened or decoded.
    #[error("{}: cannot decode image: {source}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's error.
        source: image::ImageError,
    },
    /// A video could not be listed or a frame of it decoded (feature `video`).
    #[error("{}: cannot read video: {reason}", path.display())]
    Video {
        /// The video file.
        path: PathBuf,
        /// What went wrong (FFmpeg's message).
        reason: String,
    },
    /// A directory holds no image with an accepted extension.
    #[error("{}: no images found (extensions {extensions})", path.display())]
    NoImages {
        /// The root directory.
        path: PathBuf,
        /// The accepted extensions.
        extensions: String,
    },
    /// A sample index beyond the end of a dataset.
    #[error("index {index} out of range for a dataset of {len} samples")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The dataset's length.
        len: usize,
    },
    /// A download failed (connection, HTTP status, truncated body).
    #[error("download of {url} failed: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A file's md5 is not the expected one.
    #[error("{}: md5 mismatch: expected {expected}, got {actual}", path.display())]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The expected md5, hex.
        expected: String,
        /// The md5 found, hex.
        actual: String,
    },
    /// A file's size is not the expected one.
    #[error("{}: size mismatch: expected {expected} bytes, got {actual}", path.display())]
    Size {
        /// The file.
        path: PathBuf,
        /// The expected size.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// An archive entry that would land outside the target folder, or a link.
    #[error("{}: refusing archive entry `{entry}`: {reason}", archive.display())]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An augmentation failed for a sample.
    #[error("augmenting sample `{sample}`: {source}")]
    Augment {
        /// The sample's name (or a batch description).
        sample: String,
        /// The augmentation error.
        source: simsiam_augment::AugmentError,
    },
    /// Building a tensor failed.
    #[error("building a tensor: {0}")]
    Tensor(#[from] candle::Error),
    /// Invalid loader or dataset options.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Samples of one evaluation batch have different sizes.
    #[error(
        "sample `{name}` is {actual_w}x{actual_h}, but the batch is {expected_w}x{expected_h}: \
         set a resize and centre crop"
    )]
    ShapeMismatch {
        /// The sample.
        name: String,
        /// Width of the batch.
        expected_w: u32,
        /// Height of the batch.
        expected_h: u32,
        /// Width of the sample.
        actual_w: u32,
        /// Height of the sample.
        actual_h: u32,
    },
    /// A loader worker panicked or stopped.
    #[error("loader worker failed: {0}")]
    Worker(String),
}

/// The crate's result type.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Wraps an I/O error with its path.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| DataError::Io { path, source }
}
