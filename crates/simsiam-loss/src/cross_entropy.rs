//! The symmetrized cross-entropy variant of the SimSiam paper (Section 4.6, Table 5).

use candle::{D, Result, Tensor};
use candle_nn_free::{log_softmax, softmax};

use crate::{Similarity, check_pair};

/// D(p, z) = -softmax(z) · log_softmax(p), softmax over the channel dimension, averaged over
/// the batch (SimSiam paper, Section 4.6, "Similarity function").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SymmetrizedCrossEntropy;

impl Similarity for SymmetrizedCrossEntropy {
    /// # Shapes
    /// - `p`, `z`: `[batch, dim]`
    /// - returns a scalar `[]`
    fn loss(&self, p: &Tensor, z: &Tensor) -> Result<Tensor> {
        check_pair("SymmetrizedCrossEntropy", p, z)?;
        (softmax(z)? * log_softmax(p)?)?.sum(D::Minus1)?.mean_all()?.neg()
    }
}

/// Numerically stable softmax helpers over the last dimension; candle-nn has them too, but
/// this crate depends on candle-core alone.
mod candle_nn_free {
    use candle::{D, Result, Tensor};

    pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
        let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
        let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        shifted.broadcast_sub(&lse)
    }

    pub fn softmax(x: &Tensor) -> Result<Tensor> {
        log_softmax(x)?.exp()
    }
}

#[cfg(test)]
mod tests {
    use candle::{Device, Tensor};

    use super::*;

    #[test]
    fn equals_entropy_when_p_equals_z() -> Result<()> {
        let z = Tensor::new(&[[1f32, 2.0, 3.0]], &Device::Cpu)?;
        let loss = SymmetrizedCrossEntropy.loss(&z, &z)?.to_scalar::<f32>()?;
        let e: Vec<f32> = [1f32, 2.0, 3.0].iter().map(|v| v.exp()).collect();
        let s: f32 = e.iter().sum();
        let entropy: f32 = e.iter().map(|v| -(v / s) * (v / s).ln()).sum();
        assert!((loss - entropy).abs() < 1e-5, "{loss} vs {entropy}");
        Ok(())
    }

    #[test]
    fn large_logits_stay_finite() -> Result<()> {
        let p = Tensor::new(&[[1000f32, -1000.0, 0.0]], &Device::Cpu)?;
        let z = Tensor::new(&[[-1000f32, 1000.0, 0.0]], &Device::Cpu)?;
        let loss = SymmetrizedCrossEntropy.loss(&p, &z)?.to_scalar::<f32>()?;
        assert!(loss.is_finite());
        assert!((loss - 2000.0).abs() < 1e-2);
        Ok(())
    }
}
