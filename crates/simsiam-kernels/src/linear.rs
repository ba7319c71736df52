//! A fully connected layer's product, `y = x wᵀ` (`torch.nn.functional.linear` without its
//! bias), and its two gradients through our matrix product: candle's `matmul` goes to the
//! `gemm` crate. On the SimSiam heads (2048 wide in the CIFAR ResNet-18's) this made a whole
//! training step 7% faster (2-core AVX-512 Xeon, docs/performance-step.md).

use candle::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::gemm::{MatMut, MatRef, all_threads, matmul};
use crate::{Float, dispatch2, on_cpu_fast_path};

/// `x wᵀ`, differentiable in both. `f32`/`f64` matrices on the CPU take our product (any
/// layout: non-contiguous operands are copied first); anything else candle's `matmul`.
///
/// # Shapes
/// - `x`: `[batch, in]`
/// - `weight`: `[out, in]`
/// - returns `[batch, out]`
pub fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if !on_cpu_fast_path(x, weight) || x.rank() != 2 || weight.rank() != 2 {
        return x.matmul(&weight.t()?);
    }
    x.contiguous()?.apply_op2(&weight.contiguous()?, Product { lhs_t: false, rhs_t: true })
}

/// `op(lhs) op(rhs)` of two contiguous row-major matrices, `op` transposing where asked.
/// Differentiable as [`linear`]'s product (`rhs` transposed, `lhs` not); the gradients are
/// products of this op themselves.
struct Product {
    lhs_t: bool,
    rhs_t: bool,
}

impl Product {
    /// `(m, k, n)` of `op(lhs) [m, k] x op(rhs) [k, n]`.
    fn dims(&self, l1: &Layout, l2: &Layout) -> Result<(usize, usize, usize)> {
        let ((r0, c0), (r1, c1)) = (l1.shape().dims2()?, l2.shape().dims2()?);
        let (m, k) = if self.lhs_t { (c0, r0) } else { (r0, c0) };
        let (k2, n) = if self.rhs_t { (c1, r1) } else { (r1, c1) };
        if k != k2 {
            candle::bail!("{}: {:?} and {:?} do not multiply", self.name(), l1.shape(), l2.shape());
        }
        Ok((m, k, n))
    }
}

fn product<T: Float>(lhs: &[T], rhs: &[T], op: &Product, (m, k, n): (usize, usize, usize)) -> Vec<T> {
    let l = if op.lhs_t { MatRef::row_major(lhs, k, m).t() } else { MatRef::row_major(lhs, m, k) };
    let r = if op.rhs_t { MatRef::row_major(rhs, n, k).t() } else { MatRef::row_major(rhs, k, n) };
    let mut out = vec![T::zero(); m * n];
    matmul(MatMut::row_major(&mut out, m, n), l, r, false, all_threads());
    out
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "simsiam-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = self.dims(l1, l2)?;
        let out = dispatch2!(self.name(), s1, l1, s2, l2, |lhs, rhs| product(lhs, rhs, self, dims));
        Ok((out, Shape::from((dims.0, dims.2))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if self.lhs_t || !self.rhs_t {
            candle::bail!("{}: only x wᵀ is differentiable", self.name());
        }
        let dy = dy.contiguous()?;
        // dx = dy w; dw = dyᵀ x.
        let dx = dy.apply_op2_no_bwd(w, &Product { lhs_t: false, rhs_t: false })?;
        let dw = dy.apply_op2_no_bwd(x, &Product { lhs_t: true, rhs_t: false })?;
        Ok((Some(dx), Some(dw)))
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, Var};

    use super::*;
    use crate::testing::rel;

    #[test]
    fn matches_candles_matmul_and_its_gradients() -> Result<()> {
        // Edge shapes around the register tiles, a wide product (columns split over threads)
        // and a tall one; f32 and f64; a transposed (non-contiguous) input.
        for dtype in [DType::F32, DType::F64] {
            for &(n, i, o) in &[(1, 1, 1), (5, 7, 3), (64, 512, 2048), (130, 40, 17)] {
                let x = Var::from_tensor(&Tensor::randn(0.0, 1.0, (n, i), &Device::Cpu)?.to_dtype(dtype)?)?;
                let w = Var::from_tensor(&Tensor::randn(0.0, 1.0, (o, i), &Device::Cpu)?.to_dtype(dtype)?)?;
                let dy = Tensor::randn(0.0, 1.0, (n, o), &Device::Cpu)?.to_dtype(dtype)?;
                let ours = linear(x.as_tensor(), w.as_tensor())?;
                let reference = x.as_tensor().matmul(&w.as_tensor().t()?)?;
                let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
                assert!(rel(&ours, &reference)? < tol, "forward {n}x{i}x{o} {dtype:?}");
                let g = (ours * &dy)?.sum_all()?.backward()?;
                let r = (reference * &dy)?.sum_all()?.backward()?;
                for v in [&x, &w] {
                    let (a, b) =
                        (g.get(v.as_tensor()).expect("ours"), r.get(v.as_tensor()).expect("candle's"));
                    assert!(rel(a, b)? < tol, "gradient {n}x{i}x{o} {dtype:?}");
                }
            }
        }
        let xt = Tensor::randn(0f32, 1.0, (9, 6), &Device::Cpu)?.t()?;
        let w = Tensor::randn(0f32, 1.0, (4, 9), &Device::Cpu)?;
        assert!(rel(&linear(&xt, &w)?, &xt.matmul(&w.t()?)?)? < 1e-5);
        Ok(())
    }
}
