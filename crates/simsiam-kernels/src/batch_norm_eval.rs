//! Evaluation-mode batch normalisation as one op: `relu?((x - mean) / std * w + b (+ residual))`
//! in one pass over the input, where candle's stock ops take four broadcast passes (and two
//! more for a residual block's sum and ReLU), each writing a tensor of its own.
//!
//! Each element goes through the same `f32`/`f64` operations in the same order as the stock
//! ops, so the result has the same bits; the backward pass is written with candle's ops.

use candle::{CpuStorage, CustomOp2, CustomOp3, D, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::buffer::zeroed;
use crate::{Float, avx2_dispatch, contiguous_slice, with_float};

/// `relu?((x - mean) / std * weight + bias (+ residual))` per channel (dimension 1), with
/// `params` the rows `[mean, std, weight, bias]`: batch norm with running statistics, fused
/// with a residual block's ending when `residual` is given. Differentiable in every input.
///
/// Contiguous `f32`/`f64` tensors on the CPU go through one fused op; anything else through
/// candle's stock ops, which give the same values.
///
/// # Shapes
/// - `x`: `[batch, channels]` or `[batch, channels, ...]`; `residual`: the same
/// - `params`: `[4, channels]`
pub fn batch_norm_eval(x: &Tensor, params: &Tensor, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
    let c = x.dim(1)?;
    if params.dims() != [4, c] {
        candle::bail!("batch_norm_eval: params {:?} for {c} channels, expected [4, {c}]", params.shape());
    }
    if let Some(r) = residual.filter(|r| r.shape() != x.shape()) {
        candle::bail!("batch_norm_eval: residual {:?} for input {:?}", r.shape(), x.shape());
    }
    let fused = x.device().is_cpu()
        && !crate::kernel_options().stock
        && matches!(x.dtype(), candle::DType::F32 | candle::DType::F64)
        && params.device().is_cpu()
        && residual.is_none_or(|r| r.device().is_cpu());
    if !fused {
        return stock(x, params, residual, relu);
    }
    let (x, params) = (x.contiguous()?, params.to_dtype(x.dtype())?.contiguous()?);
    let op = BatchNormEval { relu };
    match residual {
        None => x.apply_op2(&params, op),
        Some(r) => x.apply_op3(&params, &r.to_dtype(x.dtype())?.contiguous()?, op),
    }
}

/// The same map with candle's ops, in the same order.
fn stock(x: &Tensor, params: &Tensor, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
    let [mean, std, w, b] = rows(x, params)?;
    let y = x.broadcast_sub(&mean)?.broadcast_div(&std)?.broadcast_mul(&w)?.broadcast_add(&b)?;
    let y = match residual {
        Some(r) => (y + r)?,
        None => y,
    };
    if relu { y.relu() } else { Ok(y) }
}

/// The four rows of `params`, shaped `[1, channels, 1, ...]` to broadcast against `x`.
fn rows(x: &Tensor, params: &Tensor) -> Result<[Tensor; 4]> {
    let mut shape = vec![1; x.rank()];
    shape[1] = x.dim(1)?;
    let row = |i| params.get(i)?.reshape(shape.as_slice());
    Ok([row(0)?, row(1)?, row(2)?, row(3)?])
}

#[derive(Debug, Clone, Copy)]
struct BatchNormEval {
    relu: bool,
}

impl BatchNormEval {
    fn run(
        &self,
        x: (&CpuStorage, &Layout),
        p: (&CpuStorage, &Layout),
        r: Option<(&CpuStorage, &Layout)>,
    ) -> Result<CpuStorage> {
        let dims = x.1.shape().dims();
        let (c, inner) = (dims[1], dims[2..].iter().product::<usize>());
        let name = "batch-norm-eval";
        Ok(with_float!(x.0, name, |T| {
            let xs = contiguous_slice::<T>(x.0, x.1, name, "input")?;
            let ps = contiguous_slice::<T>(p.0, p.1, name, "params")?;
            let rs = match r {
                Some((s, l)) => Some(contiguous_slice::<T>(s, l, name, "residual")?),
                None => None,
            };
            let mut y = zeroed(xs.len(), T::default());
            // One plane (a sample's channel) per task: the same bits for any number of threads.
            y.par_chunks_mut(inner.max(1)).enumerate().for_each(|(i, yp)| {
                let ch = i % c;
                let coef = [ps[ch], ps[c + ch], ps[2 * c + ch], ps[3 * c + ch]];
                let span = i * inner..(i + 1) * inner;
                normalize_plane(yp, &xs[span.clone()], rs.map(|r| &r[span]), coef, self.relu);
            });
            y
        }))
    }

    /// `(dx, dparams, dresidual)` with candle's ops.
    fn grads(
        &self,
        x: &Tensor,
        params: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let g = if self.relu { (dy * y.gt(0.0)?.to_dtype(dy.dtype())?)? } else { dy.clone() };
        let [mean, std, w, _] = rows(x, params)?;
        let x_hat = x.broadcast_sub(&mean)?.broadcast_div(&std)?;
        // Sums over every dimension but the channels'.
        let per_channel = |t: &Tensor| -> Result<Tensor> {
            let t = t.transpose(0, 1)?.contiguous()?;
            t.flatten_from(1)?.sum(D::Minus1)
        };
        let gw = g.broadcast_mul(&w)?;
        let dx = gw.broadcast_div(&std)?;
        let d_mean = per_channel(&dx)?.neg()?;
        let d_std = per_channel(&(gw * &x_hat)?.broadcast_div(&std)?)?.neg()?;
        let d_w = per_channel(&(&g * &x_hat)?)?;
        let d_b = per_channel(&g)?;
        Ok((dx, Tensor::stack(&[d_mean, d_std, d_w, d_b], 0)?, g))
    }
}

avx2_dispatch! {
    /// One plane's `y = relu?((x - mean) / std * w + b (+ residual))`.
    fn normalize_plane(y: &mut [T], x: &[T], r: Option<&[T]>, coef: [T; 4], relu: bool) = normalize_plane_kernel;
}

#[inline(always)]
fn normalize_plane_kernel<T: Float>(y: &mut [T], x: &[T], r: Option<&[T]>, coef: [T; 4], relu: bool) {
    let [m, s, w, b] = coef;
    let zero = T::default();
    // Candle's ReLU is `max(v, 0)`: a NaN becomes 0, as here (NaN > 0 is false).
    let relu_of =
        |v: T| if relu && v.partial_cmp(&zero) != Some(std::cmp::Ordering::Greater) { zero } else { v };
    match r {
        Some(r) => {
            for ((y, &x), &r) in y.iter_mut().zip(x).zip(r) {
                *y = relu_of((x - m) / s * w + b + r);
            }
        }
        None => {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = relu_of((x - m) / s * w + b);
            }
        }
    }
}

impl CustomOp2 for BatchNormEval {
    fn name(&self) -> &'static str {
        "batch-norm-eval"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((self.run((s1, l1), (s2, l2), None)?, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dp, _) = self.grads(x, params, y, dy)?;
        Ok((Some(dx), Some(dp)))
    }
}

impl CustomOp3 for BatchNormEval {
    fn name(&self) -> &'static str {
        "batch-norm-eval-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((self.run((s1, l1), (s2, l2), Some((s3, l3)))?, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        _residual: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dp, dr) = self.grads(x, params, y, dy)?;
        Ok((Some(dx), Some(dp), Some(dr)))
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, Var};

    use super::*;

    fn params(c: usize) -> Result<Tensor> {
        let dev = Device::Cpu;
        let mean = Tensor::randn(0f32, 1.0, c, &dev)?;
        let std = (Tensor::rand(0f32, 1.0, c, &dev)? + 0.5)?;
        let w = Tensor::randn(1f32, 0.5, c, &dev)?;
        let b = Tensor::randn(0f32, 0.5, c, &dev)?;
        Tensor::stack(&[mean, std, w, b], 0)
    }

    #[test]
    fn the_fused_op_gives_the_stock_ops_bits() -> Result<()> {
        let dev = Device::Cpu;
        for shape in [vec![3, 5, 4, 6], vec![7, 5], vec![2, 5, 1, 1]] {
            let x = Tensor::randn(0f32, 2.0, shape.as_slice(), &dev)?;
            let r = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev)?;
            let p = params(5)?;
            for relu in [false, true] {
                for residual in [None, Some(&r)] {
                    let fused = batch_norm_eval(&x, &p, residual, relu)?.flatten_all()?.to_vec1::<f32>()?;
                    let expected = stock(&x, &p, residual, relu)?.flatten_all()?.to_vec1::<f32>()?;
                    let same = fused.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{shape:?} relu {relu} residual {}", residual.is_some());
                }
            }
        }
        Ok(())
    }

    #[test]
    fn gradients_match_the_stock_ops() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 2.0, (3, 4, 5, 2), &dev)?)?;
        let r = Var::from_tensor(&Tensor::randn(0f64, 1.0, (3, 4, 5, 2), &dev)?)?;
        let p = Var::from_tensor(&params(4)?.to_dtype(DType::F64)?)?;
        let probe = Tensor::randn(0f64, 1.0, (3, 4, 5, 2), &dev)?;
        for relu in [false, true] {
            for residual in [None, Some(r.as_tensor())] {
                let loss = |y: Tensor| (y * &probe)?.sum_all();
                let fused = loss(batch_norm_eval(&x, &p, residual, relu)?)?.backward()?;
                let stocked = loss(stock(&x, &p, residual, relu)?)?.backward()?;
                let mut vars = vec![x.as_tensor(), p.as_tensor()];
                vars.extend(residual);
                for v in vars {
                    let (a, b) = (fused.get(v).expect("a gradient"), stocked.get(v).expect("a gradient"));
                    let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f64>()?;
                    assert!(diff < 1e-10, "relu {relu}: gradient differs by {diff}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_errors() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev)?;
        assert!(batch_norm_eval(&x, &Tensor::zeros((4, 2), DType::F32, &dev)?, None, true).is_err());
        let p = Tensor::ones((4, 3), DType::F32, &dev)?;
        assert!(
            batch_norm_eval(&x, &p, Some(&Tensor::zeros((2, 3, 4, 3), DType::F32, &dev)?), true).is_err()
        );
        Ok(())
    }
}
