//! Losses and the collapse metric of SimSiam (Chen & He, "Exploring Simple Siamese
//! Representation Learning", CVPR 2021), on candle.
//!
//! - [`NegativeCosineSimilarity`]: the paper's D(p, z) = -cos(p, z) (Eq. 1), with PyTorch's
//!   `F.cosine_similarity` semantics, mean over the batch; Lightly's default loss.
//! - [`SymmetrizedCrossEntropy`]: the paper's Section 4.6 variant,
//!   D(p, z) = -softmax(z) · log_softmax(p).
//! - [`symmetric_loss`]: L = D(p0, z1) / 2 + D(p1, z0) / 2 (Eq. 2), for any [`Similarity`].
//! - [`collapse_std`] and [`CollapseMonitor`]: the per-channel standard deviation of
//!   l2-normalised outputs and the collapse level of Lightly's satellite tutorial.
//!
//! The stop-gradient belongs to the model (its `z` come back detached); these functions are
//! pure and differentiate through both arguments.
//!
//! ```
//! use candle::{Device, Tensor};
//! use simsiam_loss::{NegativeCosineSimilarity, symmetric_loss};
//!
//! # fn main() -> candle::Result<()> {
//! let dev = Device::Cpu;
//! let z0 = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &dev)?;
//! let z1 = Tensor::new(&[[2f32, 0.0], [0.0, 3.0]], &dev)?;
//! // Predictions equal to the other view's projections give the minimum, -1.
//! let loss = symmetric_loss(&NegativeCosineSimilarity::default(), &z1, &z1, &z0, &z0)?;
//! assert!((loss.to_scalar::<f32>()? + 1.0).abs() < 1e-6);
//! # Ok(())
//! # }
//! ```

mod collapse;
mod cross_entropy;
mod negative_cosine;

pub use collapse::{CollapseMonitor, collapse_level, collapse_std};
pub use cross_entropy::SymmetrizedCrossEntropy;
pub use negative_cosine::{NegativeCosineSimilarity, cosine_similarity};

use candle::{Result, Tensor};

/// A dissimilarity D(p, z) between predictions and targets, reduced to a scalar.
///
/// `Send + Sync`, so a training step that holds one can run on a compute thread pool.
pub trait Similarity: Send + Sync {
    /// The loss D(p, z), averaged over the batch.
    ///
    /// # Shapes
    /// - `p`, `z`: `[batch, dim]`
    /// - returns a scalar `[]`
    fn loss(&self, p: &Tensor, z: &Tensor) -> Result<Tensor>;
}

/// The symmetrised SimSiam loss of the paper's Eq. 2: `0.5 * D(p0, z1) + 0.5 * D(p1, z0)`.
///
/// Pass the projections `z0`, `z1` already detached (the stop-gradient of Eq. 3); the SimSiam
/// model of `simsiam-models` returns them that way.
///
/// # Shapes
/// - `p0`, `z1`, `p1`, `z0`: `[batch, dim]`
/// - returns a scalar `[]`
pub fn symmetric_loss<D: Similarity + ?Sized>(
    d: &D,
    p0: &Tensor,
    z1: &Tensor,
    p1: &Tensor,
    z0: &Tensor,
) -> Result<Tensor> {
    let a = d.loss(p0, z1)?;
    let b = d.loss(p1, z0)?;
    (a + b)? * 0.5
}

/// Checks that two inputs of a pairwise loss are `[batch, dim]` and agree.
fn check_pair(name: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.rank() != 2 || a.dims() != b.dims() {
        candle::bail!(
            "{name}: expected two [batch, dim] tensors of the same shape, got {:?} and {:?}",
            a.shape(),
            b.shape()
        );
    }
    Ok(())
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
