//! The interface between SimSiam and the network that produces features.

use candle::backprop::GradStore;
use candle::{ModuleT, Result, Tensor};

/// A network that maps images to flat feature vectors: implement it, and `ModuleT`, to bring
/// your own encoder.
///
/// Its `ModuleT::forward_t(x, train)` takes `[batch, channels, h, w]` images and returns
/// `[batch, feature_dim]` features; `train` selects batch statistics for batch norm (updating
/// the running statistics) or the running statistics.
pub trait Backbone: ModuleT + Send + Sync {
    /// The length of each feature vector.
    fn feature_dim(&self) -> usize;

    /// A training-mode forward pass outside candle's graph, with the tape of its own backward
    /// pass, where this backbone has one for `x` ([`crate::ResNet`] on the CPU); `None` sends
    /// training through `forward_t` and candle's autograd, as the default does. Either way the
    /// running statistics update once.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, h, w]`
    /// - returns `[batch, feature_dim]` features, detached
    fn forward_taped(&self, x: &Tensor) -> Result<Option<(Tensor, Box<dyn BackboneTape + '_>)>> {
        let _ = x;
        Ok(None)
    }
}

/// What a [`Backbone::forward_taped`] pass keeps for its backward pass.
pub trait BackboneTape {
    /// Adds the gradients of the backbone's parameters for `grad`, the gradient of the features
    /// the pass returned, to those already in `grads` (as candle's autograd sums them).
    ///
    /// # Shapes
    /// - `grad`: `[batch, feature_dim]`
    fn backward(self: Box<Self>, grad: &Tensor, grads: &mut GradStore) -> Result<()>;
}

/// Adds `grad` to `param`'s gradient in `grads`, or makes it the gradient.
pub(crate) fn accumulate(grads: &mut GradStore, param: &Tensor, grad: Tensor) -> Result<()> {
    let sum = match grads.remove(param) {
        Some(previous) => (previous + grad)?,
        None => grad,
    };
    grads.insert(param, sum);
    Ok(())
}
