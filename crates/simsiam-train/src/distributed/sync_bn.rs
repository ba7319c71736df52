//! Synchronised batch normalisation (PyTorch's `SyncBatchNorm`): training-mode statistics over
//! the union of all ranks' batches, so `W` workers with batch `b` normalise as one worker with
//! batch `W b`, forward and backward.

use std::sync::Arc;

use candle::{DType, ModuleT, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use super::{Communicator, all_reduce_sum};

/// The global statistics of one training-mode call.
#[derive(Debug, Clone)]
pub struct SyncBatchNormStats {
    /// Per-channel mean over all ranks, `[channels]`, detached.
    pub mean: Tensor,
    /// Per-channel biased variance over all ranks, `[channels]`, detached.
    pub var: Tensor,
    /// Per-channel unbiased variance over all ranks (for running statistics), detached.
    pub unbiased_var: Tensor,
}

/// Batch-normalises `x` with the statistics of the union of every rank's `x` (PyTorch's
/// training mode), then applies `weight` and `bias` if given. Differentiable in `x`, `weight`
/// and `bias`.
///
/// Each rank sums its `x` and `x^2` per channel (in `f64`) and counts its values; one
/// all-reduce of `[sum, sum of squares, count]` gives the global mean and biased variance. The
/// all-reduce is differentiable ([`all_reduce_sum`]), so the backward pass all-reduces the
/// per-channel gradients reaching the statistics, that is the two reductions of batch norm's
/// backward pass, `sum(dy)` and `sum(dy * x_hat)` (after the chain rule through the affine
/// map). The gradients of `weight` and `bias` are this rank's own sums, as with PyTorch's
/// `SyncBatchNorm`: averaging them over ranks, as data parallelism does with every gradient,
/// gives those of the single large batch.
///
/// Every rank must call it in the same order, with the same channels; batch sizes may differ.
///
/// # Shapes
/// - `x`: `[batch, channels]` or `[batch, channels, ...]`
/// - `weight`, `bias`: `[channels]`
/// - returns `x`'s shape, and the statistics
pub fn sync_batch_norm_train(
    x: &Tensor,
    weight_and_bias: Option<(&Tensor, &Tensor)>,
    eps: f64,
    comm: &Arc<dyn Communicator>,
) -> candle::Result<(Tensor, SyncBatchNormStats)> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 {
        candle::bail!("sync_batch_norm: input {:?} needs at least two dimensions", x.shape());
    }
    let (n, c) = (dims[0], dims[1]);
    let s: usize = dims[2..].iter().product();
    if let Some((w, b)) = weight_and_bias
        && (w.dims() != [c] || b.dims() != [c])
    {
        candle::bail!("sync_batch_norm: weight {:?} and bias {:?} must be [{c}]", w.shape(), b.shape());
    }
    // [n, c, s] in f64: per-channel sums of x and x^2 over n and s.
    let xs = x.to_dtype(DType::F64)?.reshape((n, c, s))?;
    let sum = xs.sum(2)?.sum(0)?;
    let sum_sq = xs.sqr()?.sum(2)?.sum(0)?;
    let count = Tensor::new(&[(n * s) as f64], x.device())?;
    let total = all_reduce_sum(&Tensor::cat(&[&sum, &sum_sq, &count], 0)?, comm)?;
    let global_count = total.narrow(0, 2 * c, 1)?;
    // Only a rank with fewer than two values per channel reads the global count back (a device
    // synchronisation on GPUs); otherwise the global count is at least two.
    if n * s < 2 {
        let n_total = global_count.to_vec1::<f64>()?[0];
        if n_total < 2.0 {
            candle::bail!(
                "sync_batch_norm: expected more than 1 value per channel when training, got {n_total}"
            );
        }
    }
    let mean = total.narrow(0, 0, c)?.broadcast_div(&global_count)?;
    let mean_sq = total.narrow(0, c, c)?.broadcast_div(&global_count)?;
    let var = (mean_sq - mean.sqr()?)?.relu()?;
    let invstd = (&var + eps)?.sqrt()?.recip()?;

    // y = x * a + (b - mean * a), a = w * invstd, per channel.
    let (scale, shift) = match weight_and_bias {
        Some((w, b)) => {
            let a = (w.to_dtype(DType::F64)? * &invstd)?;
            let shift = (b.to_dtype(DType::F64)? - (&mean * &a)?)?;
            (a, shift)
        }
        None => (invstd.clone(), (&mean * &invstd)?.neg()?),
    };
    let mut bshape = vec![1; dims.len()];
    bshape[1] = c;
    let scale = scale.to_dtype(x.dtype())?.reshape(bshape.as_slice())?;
    let shift = shift.to_dtype(x.dtype())?.reshape(bshape.as_slice())?;
    let y = x.broadcast_mul(&scale)?.broadcast_add(&shift)?;
    let count = global_count.detach();
    let unbiased = (&count / (&count - 1.0)?)?;
    let stats = SyncBatchNormStats {
        mean: mean.detach().to_dtype(x.dtype())?,
        var: var.detach().to_dtype(x.dtype())?,
        unbiased_var: var.detach().broadcast_mul(&unbiased)?.to_dtype(x.dtype())?,
    };
    Ok((y, stats))
}

/// `BatchNorm1d`/`BatchNorm2d` with statistics synchronised over a [`Communicator`]'s ranks in
/// training mode; in evaluation mode it uses the running statistics, as a plain batch norm.
/// Its variables have torchvision's names (`weight`, `bias`, `running_mean`, `running_var`),
/// so its weights and checkpoints are interchangeable with `simsiam_models::BatchNorm`'s.
///
/// With a one-rank communicator it is a plain batch norm (up to rounding: the statistics come
/// from `f64` sums of `x` and `x^2`, where `simsiam-models`' kernel takes two passes).
#[derive(Debug, Clone)]
pub struct SyncBatchNorm {
    running_mean: Var,
    running_var: Var,
    weight_and_bias: Option<(Tensor, Tensor)>,
    eps: f64,
    momentum: f64,
    comm: Arc<dyn Communicator>,
}

impl SyncBatchNorm {
    /// A synchronised batch norm over `running_mean.dim(0)` features; `running_mean` and
    /// `running_var` should be variables of a `VarMap` for the updates to show there.
    pub fn new(
        running_mean: Tensor,
        running_var: Tensor,
        weight_and_bias: Option<(Tensor, Tensor)>,
        eps: f64,
        momentum: f64,
        comm: Arc<dyn Communicator>,
    ) -> candle::Result<Self> {
        let c = running_mean.dims1()?;
        if running_var.dims() != [c] {
            candle::bail!("sync batch norm: running var {:?} does not match [{c}]", running_var.shape());
        }
        if let Some((w, b)) = &weight_and_bias
            && (w.dims() != [c] || b.dims() != [c])
        {
            candle::bail!("sync batch norm: weight {:?} and bias {:?} must be [{c}]", w.shape(), b.shape());
        }
        if eps < 0.0 || !(0.0..=1.0).contains(&momentum) {
            candle::bail!("sync batch norm: invalid eps {eps} or momentum {momentum}");
        }
        Ok(Self {
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            weight_and_bias,
            eps,
            momentum,
            comm,
        })
    }

    /// The running mean, `[features]`.
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running variance, `[features]`.
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// The communicator the statistics are reduced over.
    pub fn communicator(&self) -> &Arc<dyn Communicator> {
        &self.comm
    }

    fn forward_train(&self, x: &Tensor) -> candle::Result<Tensor> {
        let wb = self.weight_and_bias.as_ref().map(|(w, b)| (w, b));
        let (y, stats) = sync_batch_norm_train(x, wb, self.eps, &self.comm)?;
        let m = self.momentum;
        let rm = self.running_mean.as_detached_tensor();
        let rv = self.running_var.as_detached_tensor();
        let dtype = rm.dtype();
        self.running_mean.set(&((rm * (1.0 - m))? + (stats.mean.to_dtype(dtype)? * m)?)?)?;
        self.running_var.set(&((rv * (1.0 - m))? + (stats.unbiased_var.to_dtype(dtype)? * m)?)?)?;
        Ok(y)
    }

    fn forward_eval(&self, x: &Tensor) -> candle::Result<Tensor> {
        let mut shape = vec![1; x.rank()];
        shape[1] = x.dim(1)?;
        let mean = self.running_mean.as_detached_tensor().reshape(shape.as_slice())?;
        let std = (self.running_var.as_detached_tensor().reshape(shape.as_slice())? + self.eps)?.sqrt()?;
        let y = x.broadcast_sub(&mean)?.broadcast_div(&std)?;
        match &self.weight_and_bias {
            None => Ok(y),
            Some((w, b)) => {
                y.broadcast_mul(&w.reshape(shape.as_slice())?)?.broadcast_add(&b.reshape(shape.as_slice())?)
            }
        }
    }
}

impl ModuleT for SyncBatchNorm {
    /// # Shapes
    /// - `x`: `[batch, features]` or `[batch, features, ...]`
    /// - returns `x`'s shape
    fn forward_t(&self, x: &Tensor, train: bool) -> candle::Result<Tensor> {
        if train { self.forward_train(x) } else { self.forward_eval(x) }
    }
}

/// A [`SyncBatchNorm`] of `features` channels (eps 1e-5, momentum 0.1, weight 1, bias 0), its
/// variables under `vb` with torchvision's names, as `simsiam-models` builds its batch norms.
pub fn sync_batch_norm(
    features: usize,
    affine: bool,
    comm: Arc<dyn Communicator>,
    vb: VarBuilder,
) -> candle::Result<SyncBatchNorm> {
    let running_mean = vb.get_with_hints(features, "running_mean", Init::Const(0.0))?;
    let running_var = vb.get_with_hints(features, "running_var", Init::Const(1.0))?;
    let weight_and_bias = if affine {
        let weight = vb.get_with_hints(features, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(features, "bias", Init::Const(0.0))?;
        Some((weight, bias))
    } else {
        None
    };
    SyncBatchNorm::new(running_mean, running_var, weight_and_bias, 1e-5, 0.1, comm)
}

#[cfg(test)]
mod tests {
    use candle::Device;

    use super::*;
    use crate::distributed::LocalCommunicator;

    fn rel(a: &Tensor, b: &Tensor) -> candle::Result<f64> {
        let diff =
            (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        let norm = b.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        Ok((diff / norm.max(1e-300)).sqrt())
    }

    /// With one rank, the same output and gradients as `simsiam-models`' batch norm kernel.
    #[test]
    fn one_rank_matches_the_models_batch_norm() -> candle::Result<()> {
        let dev = Device::Cpu;
        let comm: Arc<dyn Communicator> = Arc::new(LocalCommunicator::single());
        for shape in [&[6, 4, 3, 5][..], &[9, 7]] {
            let c = shape[1];
            let x = Var::from_tensor(&Tensor::randn(2f32, 3.0, shape, &dev)?)?;
            let w = Var::from_tensor(&Tensor::randn(1f32, 0.5, c, &dev)?)?;
            let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, c, &dev)?)?;
            let wb = Some((w.as_tensor(), b.as_tensor()));
            let (ours, s1) = sync_batch_norm_train(x.as_tensor(), wb, 1e-5, &comm)?;
            let (theirs, s2) = simsiam_models::kernels::batch_norm_train(x.as_tensor(), wb, 1e-5, false)?;
            assert!(rel(&ours, &theirs)? < 1e-5, "output {shape:?}");
            assert!(rel(&s1.mean, &s2.mean)? < 1e-5 && rel(&s1.var, &s2.var)? < 1e-5, "statistics");
            let unbiased = (&s2.var * (s2.count as f64 / (s2.count as f64 - 1.0)))?;
            assert!(rel(&s1.unbiased_var, &unbiased)? < 1e-5, "unbiased variance");
            let dy = Tensor::randn(0f32, 1.0, shape, &dev)?;
            let g1 = (ours * &dy)?.sum_all()?.backward()?;
            let g2 = (theirs * &dy)?.sum_all()?.backward()?;
            for v in [&x, &w, &b] {
                let (a, r) = (g1.get(v.as_tensor()), g2.get(v.as_tensor()));
                let (Some(a), Some(r)) = (a, r) else { candle::bail!("missing gradient") };
                assert!(rel(a, r)? < 1e-5, "gradient {shape:?}: {}", rel(a, r)?);
            }
        }
        Ok(())
    }
}
