//! Negative cosine similarity, the SimSiam paper's D(p, z) (Section 3, Eq. 1).

use candle::{D, Result, Tensor};

use crate::{Similarity, check_pair};

/// Row-wise cosine similarity with the semantics of PyTorch's `F.cosine_similarity(a, b,
/// dim=1, eps)`: each row is divided by its own l2 norm clamped below at `eps`, then the
/// normalised rows are multiplied and summed.
///
/// # Shapes
/// - `a`, `b`: `[batch, dim]`
/// - returns `[batch]`
pub fn cosine_similarity(a: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    check_pair("cosine_similarity", a, b)?;
    let a = a.broadcast_div(&clamped_norm(a, eps)?)?;
    let b = b.broadcast_div(&clamped_norm(b, eps)?)?;
    (a * b)?.sum(D::Minus1)
}

/// `max(||x||, eps)` per row, kept as `[batch, 1]`.
///
/// As in ATen, the clamp is invisible to autograd: the gradient flows through the unclamped
/// norm. Squared norms below `1e-30` (norms below `1e-15`, far under any useful `eps`) get a
/// zero gradient instead of PyTorch's `x / ||x||`, so an all-zero row gives no NaN.
fn clamped_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.maximum(1e-30)?.sqrt()?;
    let clamp = (norm.maximum(eps)? - &norm)?.detach();
    norm + clamp
}

/// Negative cosine similarity, -cos(p, z), averaged over the batch, as Lightly's
/// `NegativeCosineSimilarity` (SimSiam paper, Section 3, Eq. 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NegativeCosineSimilarity {
    eps: f64,
}

impl NegativeCosineSimilarity {
    /// A loss whose row norms are clamped below at `eps` (PyTorch's default is `1e-8`).
    pub fn new(eps: f64) -> Self {
        Self { eps }
    }

    /// The clamp on row norms.
    pub fn eps(&self) -> f64 {
        self.eps
    }
}

impl Default for NegativeCosineSimilarity {
    fn default() -> Self {
        Self::new(1e-8)
    }
}

impl Similarity for NegativeCosineSimilarity {
    /// `-mean(cos(p_i, z_i))`.
    ///
    /// # Shapes
    /// - `p`, `z`: `[batch, dim]`
    /// - returns a scalar `[]`
    fn loss(&self, p: &Tensor, z: &Tensor) -> Result<Tensor> {
        cosine_similarity(p, z, self.eps)?.mean_all()?.neg()
    }
}

#[cfg(test)]
mod tests {
    use candle::{Device, Tensor};

    use super::*;

    fn t(rows: &[[f32; 3]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), 3), &Device::Cpu).expect("tensor")
    }

    #[test]
    fn cosine_of_known_vectors() -> Result<()> {
        let a = t(&[[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [3.0, 4.0, 0.0]]);
        let b = t(&[[0.0, 2.0, 0.0], [2.0, 2.0, 0.0], [-3.0, -4.0, 0.0]]);
        let c = cosine_similarity(&a, &b, 1e-8)?.to_vec1::<f32>()?;
        let expected = [0.0, 1.0, -1.0];
        for (got, want) in c.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        Ok(())
    }

    #[test]
    fn zero_rows_give_zero_not_nan() -> Result<()> {
        let a = t(&[[0.0, 0.0, 0.0]]);
        let b = t(&[[1.0, 2.0, 3.0]]);
        let c = cosine_similarity(&a, &b, 1e-8)?.to_vec1::<f32>()?;
        assert_eq!(c, [0.0]);
        Ok(())
    }

    #[test]
    fn gradient_flows_through_the_clamped_norm_as_in_pytorch() -> Result<()> {
        // torch 2.9.1: a = [[3e-9, 4e-9]], b = [[1e-9, 0]] (norms under eps = 1e-8),
        // F.cosine_similarity(a, b, dim=1, eps=1e-8) = 0.03, a.grad = [8.2e6, -2.4e6],
        // b.grad = [2.7e7, 4.0e7].
        let a = candle::Var::new(&[[3e-9f64, 4e-9]], &Device::Cpu)?;
        let b = candle::Var::new(&[[1e-9f64, 0.0]], &Device::Cpu)?;
        let c = cosine_similarity(a.as_tensor(), b.as_tensor(), 1e-8)?;
        assert!((c.to_vec1::<f64>()?[0] - 0.03).abs() < 1e-12);
        let grads = c.sum_all()?.backward()?;
        let ga = grads.get(a.as_tensor()).expect("grad a").flatten_all()?.to_vec1::<f64>()?;
        let gb = grads.get(b.as_tensor()).expect("grad b").flatten_all()?.to_vec1::<f64>()?;
        for (got, want) in ga.iter().chain(&gb).zip([8.2e6, -2.4e6, 2.7e7, 4.0e7]) {
            assert!((got - want).abs() < 1e-3 * want.abs(), "{got} vs {want}");
        }
        Ok(())
    }

    #[test]
    fn loss_is_scale_invariant_and_bounded() -> Result<()> {
        let p = t(&[[0.3, -1.0, 2.0], [1.0, 1.0, 1.0]]);
        let z = t(&[[1.0, 0.5, -0.2], [-2.0, 0.1, 4.0]]);
        let loss = NegativeCosineSimilarity::default();
        let l1 = loss.loss(&p, &z)?.to_scalar::<f32>()?;
        let l2 = loss.loss(&(&p * 7.0)?, &(&z * 0.01)?)?.to_scalar::<f32>()?;
        assert!((l1 - l2).abs() < 1e-6);
        assert!((-1.0..=1.0).contains(&l1));
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let a = t(&[[1.0, 0.0, 0.0]]);
        let b = Tensor::zeros((2, 3), candle::DType::F32, &Device::Cpu).expect("zeros");
        assert!(cosine_similarity(&a, &b, 1e-8).is_err());
    }
}
