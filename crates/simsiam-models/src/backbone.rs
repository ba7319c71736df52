//! The interface between SimSiam and the network that produces features.

use candle::ModuleT;

/// A network that maps images to flat feature vectors: implement it, and `ModuleT`, to bring
/// your own encoder.
///
/// Its `ModuleT::forward_t(x, train)` takes `[batch, channels, h, w]` images and returns
/// `[batch, feature_dim]` features; `train` selects batch statistics for batch norm (updating
/// the running statistics) or the running statistics.
pub trait Backbone: ModuleT + Send + Sync {
    /// The length of each feature vector.
    fn feature_dim(&self) -> usize;
}
