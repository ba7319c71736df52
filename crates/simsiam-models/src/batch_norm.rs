//! PyTorch's `BatchNorm1d`/`BatchNorm2d`, and its `SyncBatchNorm`, as one layer whose
//! training-mode statistics are reduced either over the local batch (our fused kernels) or
//! over every replica of a data-parallel run ([`BatchStats::Synced`]).

use std::fmt;
use std::sync::Arc;

use candle::backprop::GradStore;
use candle::{DType, ModuleT, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use simsiam_kernels::{
    BatchNormStats, BatchNormTape, batch_norm_add_relu_train, batch_norm_eval, batch_norm_train,
    batch_norm_train_taped,
};

use crate::backbone::accumulate;

/// A differentiable elementwise sum over the replicas of a data-parallel run: every replica
/// calls it in the same order and receives the same sum, and its backward pass sums the
/// incoming gradients the same way. `simsiam-train` implements it over its `Communicator`.
pub trait AllReduceSum: Send + Sync + fmt::Debug {
    /// The elementwise sum of `x` over all replicas.
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor>;
}

/// Where a batch norm takes its training-mode statistics from.
#[derive(Debug, Clone, Default)]
pub enum BatchStats {
    /// This process's batch (PyTorch's `BatchNorm2d`; per GPU under data parallelism).
    #[default]
    Local,
    /// The union of every replica's batch (PyTorch's `SyncBatchNorm`, as the official SimSiam
    /// code trains): `W` replicas with batch `b` normalise as one with batch `W b`.
    Synced(Arc<dyn AllReduceSum>),
}

impl PartialEq for BatchStats {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (BatchStats::Local, BatchStats::Local) => true,
            (BatchStats::Synced(a), BatchStats::Synced(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A batch norm's hyper-parameters, PyTorch's defaults by [`Default`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root (1e-5).
    pub eps: f64,
    /// Weight of a batch's statistics in the running ones (0.1).
    pub momentum: f64,
    /// Whether the layer has a weight and a bias (true).
    pub affine: bool,
    /// Where training-mode statistics come from ([`BatchStats::Local`]).
    pub stats: BatchStats,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self { eps: 1e-5, momentum: 0.1, affine: true, stats: BatchStats::Local }
    }
}

impl BatchNormConfig {
    /// The same configuration with statistics from `stats`.
    pub fn with_stats(mut self, stats: BatchStats) -> Self {
        self.stats = stats;
        self
    }
}

/// PyTorch's `BatchNorm1d`/`BatchNorm2d` (or `SyncBatchNorm` with [`BatchStats::Synced`]).
/// In training mode it normalises with the batch's statistics (biased variance) and updates
/// the running statistics with momentum, the variance unbiased; in evaluation mode it uses the
/// running statistics.
///
/// The running statistics are [`Var`]s sharing storage with the `VarMap` they came from,
/// updated in place with `Var::set`, never part of the graph, so they get no gradient.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    running_mean: Var,
    running_var: Var,
    weight_and_bias: Option<(Tensor, Tensor)>,
    eps: f64,
    momentum: f64,
    stats: BatchStats,
}

impl BatchNorm {
    /// A batch norm over `running_mean.dim(0)` features with `config`'s eps, momentum and
    /// statistics (its `affine` is whether `weight_and_bias` is given). `running_mean` and
    /// `running_var` should be variables (from a `VarBuilder` over a `VarMap`) for the updates
    /// to show there.
    pub fn new(
        running_mean: Tensor,
        running_var: Tensor,
        weight_and_bias: Option<(Tensor, Tensor)>,
        config: &BatchNormConfig,
    ) -> Result<Self> {
        let c = running_mean.dims1()?;
        if running_var.dims() != [c] {
            candle::bail!("batch norm: running var {:?} does not match [{c}]", running_var.shape());
        }
        if let Some((w, b)) = &weight_and_bias
            && (w.dims() != [c] || b.dims() != [c])
        {
            candle::bail!("batch norm: weight {:?} and bias {:?} must be [{c}]", w.shape(), b.shape());
        }
        let (eps, momentum) = (config.eps, config.momentum);
        if eps.is_nan() || eps < 0.0 || !(0.0..=1.0).contains(&momentum) {
            candle::bail!("batch norm: invalid eps {eps} or momentum {momentum}");
        }
        Ok(Self {
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            weight_and_bias,
            eps,
            momentum,
            stats: config.stats.clone(),
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

    /// Weight and bias, if affine.
    pub fn weight_and_bias(&self) -> Option<(&Tensor, &Tensor)> {
        self.weight_and_bias.as_ref().map(|(w, b)| (w, b))
    }

    /// Where training-mode statistics come from.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// `relu(self.forward_t(x, train))`, fused into one op per direction in training mode.
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match (&self.stats, train) {
            (_, false) => self.forward_eval(x, None, true),
            (BatchStats::Local, true) => self.forward_local(x, true),
            (BatchStats::Synced(comm), true) => self.forward_synced(x, comm)?.relu(),
        }
    }

    /// `relu(self.forward_t(x, train) + residual)`, the end of a residual block, fused into
    /// one op per direction in training mode with local statistics
    /// ([`simsiam_kernels::batch_norm_add_relu_train`]).
    pub fn forward_add_relu_t(&self, x: &Tensor, residual: &Tensor, train: bool) -> Result<Tensor> {
        match (&self.stats, train) {
            (_, false) => self.forward_eval(x, Some(residual), true),
            (BatchStats::Synced(comm), true) => (self.forward_synced(x, comm)? + residual)?.relu(),
            (BatchStats::Local, true) => {
                let x = &self.input(x)?;
                let residual = &self.input(residual)?;
                let (y, stats) = batch_norm_add_relu_train(x, self.weight_and_bias(), self.eps, residual)?;
                self.update_running(&stats.mean, &stats.var, unbiased_factor(&stats))?;
                Ok(y)
            }
        }
    }

    /// `x` in the statistics' dtype: a `bf16` convolution output normalises in `f32`.
    fn input(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = self.running_mean.dtype();
        if x.dtype() == dtype { Ok(x.clone()) } else { x.to_dtype(dtype) }
    }

    fn forward_local(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let x = &self.input(x)?;
        let (y, stats) = batch_norm_train(x, self.weight_and_bias(), self.eps, relu)?;
        self.update_running(&stats.mean, &stats.var, unbiased_factor(&stats))?;
        Ok(y)
    }

    fn forward_synced(&self, x: &Tensor, comm: &Arc<dyn AllReduceSum>) -> Result<Tensor> {
        let x = &self.input(x)?;
        let (y, stats) = synced_batch_norm_train(x, self.weight_and_bias(), self.eps, comm.as_ref())?;
        self.update_running(&stats.mean, &stats.unbiased_var, 1.0)?;
        Ok(y)
    }

    /// Moves the running statistics towards a training batch's, PyTorch's way: `var` times
    /// `unbiased` is the unbiased variance.
    fn update_running(&self, mean: &Tensor, var: &Tensor, unbiased: f64) -> Result<()> {
        let m = self.momentum;
        let rm = self.running_mean.as_detached_tensor();
        let rv = self.running_var.as_detached_tensor();
        let dtype = rm.dtype();
        self.running_mean.set(&((rm * (1.0 - m))? + (mean.to_dtype(dtype)? * m)?)?)?;
        self.running_var.set(&((rv * (1.0 - m))? + (var.to_dtype(dtype)? * (m * unbiased))?)?)
    }

    /// Whether [`Self::forward_taped`] runs for `x`: local statistics, `x` in the statistics'
    /// dtype, on our CPU kernels.
    pub(crate) fn tapes(&self, x: &Tensor) -> bool {
        matches!(self.stats, BatchStats::Local)
            && x.dtype() == self.running_mean.dtype()
            && simsiam_kernels::taped_backward_applies(x)
    }

    /// Training mode outside candle's graph: `relu?(bn(x) (+ residual))` (a residual needs
    /// `relu`), updating the running statistics as [`Self::forward_t`] does, and the tape for
    /// [`Self::backward_taped`].
    pub(crate) fn forward_taped(
        &self,
        x: &Tensor,
        relu: bool,
        residual: Option<&Tensor>,
    ) -> Result<(Tensor, BatchNormTape)> {
        let (y, stats, tape) = batch_norm_train_taped(x, self.weight_and_bias(), self.eps, relu, residual)?;
        self.update_running(&stats.mean, &stats.var, unbiased_factor(&stats))?;
        Ok((y, tape))
    }

    /// Adds the weight's and bias's gradients for the taped pass `x -> y` and the output
    /// gradient `dy` to `grads`; returns the input's and (when one was added) the residual's
    /// gradients.
    pub(crate) fn backward_taped(
        &self,
        tape: &BatchNormTape,
        (x, y): (&Tensor, &Tensor),
        dy: &Tensor,
        grads: &mut GradStore,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let g = tape.backward(x, y, dy)?;
        if let (Some((w, b)), Some((dw, db))) = (&self.weight_and_bias, g.weight_and_bias) {
            accumulate(grads, w, dw)?;
            accumulate(grads, b, db)?;
        }
        Ok((g.input, g.residual))
    }

    /// Evaluation mode: `relu?(bn(x) (+ residual))` with the running statistics, one fused op
    /// on the CPU ([`simsiam_kernels::batch_norm_eval`]).
    fn forward_eval(&self, x: &Tensor, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        let x = &self.input(x)?;
        let residual = residual.map(|r| self.input(r)).transpose()?;
        let mean = self.running_mean.as_detached_tensor();
        let std = (self.running_var.as_detached_tensor() + self.eps)?.sqrt()?;
        let (w, b) = match &self.weight_and_bias {
            Some((w, b)) => (w.clone(), b.clone()),
            None => (mean.ones_like()?, mean.zeros_like()?),
        };
        let params = Tensor::stack(&[mean, std, w, b], 0)?;
        batch_norm_eval(x, &params, residual.as_ref(), relu)
    }
}

impl ModuleT for BatchNorm {
    /// # Shapes
    /// - `x`: `[batch, features]` or `[batch, features, ...]`
    /// - returns `x`'s shape
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match (&self.stats, train) {
            (_, false) => self.forward_eval(x, None, false),
            (BatchStats::Local, true) => self.forward_local(x, false),
            (BatchStats::Synced(comm), true) => self.forward_synced(x, comm),
        }
    }
}

/// `count / (count - 1)`: the biased variance times it is the unbiased one.
fn unbiased_factor(stats: &BatchNormStats) -> f64 {
    stats.count as f64 / (stats.count as f64 - 1.0)
}

/// A batch norm of `features` channels, its variables under `vb` with torchvision's names
/// (`weight` 1, `bias` 0, `running_mean` 0, `running_var` 1, created where missing), as
/// candle-nn's `batch_norm` builds one.
pub fn batch_norm(features: usize, config: BatchNormConfig, vb: VarBuilder) -> Result<BatchNorm> {
    let running_mean = vb.get_with_hints(features, "running_mean", Init::Const(0.0))?;
    let running_var = vb.get_with_hints(features, "running_var", Init::Const(1.0))?;
    let weight_and_bias = if config.affine {
        let weight = vb.get_with_hints(features, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(features, "bias", Init::Const(0.0))?;
        Some((weight, bias))
    } else {
        None
    };
    BatchNorm::new(running_mean, running_var, weight_and_bias, &config)
}

/// A batch norm whose weight starts at zero (torchvision's `zero_init_residual`), so that a
/// residual block starts as the identity.
pub(crate) fn zero_batch_norm(features: usize, config: BatchNormConfig, vb: VarBuilder) -> Result<BatchNorm> {
    // Creating the weight first makes `batch_norm` find it instead of initialising it to one.
    vb.get_with_hints(features, "weight", Init::Const(0.0))?;
    batch_norm(features, BatchNormConfig { affine: true, ..config }, vb)
}

/// The statistics of one synchronised training-mode call, detached.
#[derive(Debug, Clone)]
pub struct SyncedStats {
    /// Per-channel mean over all replicas, `[channels]`.
    pub mean: Tensor,
    /// Per-channel biased variance over all replicas, `[channels]`.
    pub var: Tensor,
    /// Per-channel unbiased variance over all replicas (for running statistics).
    pub unbiased_var: Tensor,
}

/// Batch-normalises `x` with the statistics of the union of every replica's `x` (PyTorch's
/// `SyncBatchNorm` in training mode), then applies `weight` and `bias` if given.
/// Differentiable in `x`, `weight` and `bias`.
///
/// Each replica sums its `x` and `x^2` per channel (in `f64`) and counts its values; one
/// all-reduce of `[sum, sum of squares, count]` gives the global mean and biased variance. The
/// all-reduce is differentiable, so the backward pass all-reduces the per-channel gradients
/// reaching the statistics, that is the two reductions of batch norm's backward pass,
/// `sum(dy)` and `sum(dy * x_hat)`. The gradients of `weight` and `bias` are this replica's
/// own sums, as with PyTorch's `SyncBatchNorm`: averaging them over replicas, as data
/// parallelism does with every gradient, gives those of the single large batch.
///
/// Every replica must call it in the same order, with the same channels; batch sizes may
/// differ.
///
/// # Shapes
/// - `x`: `[batch, channels]` or `[batch, channels, ...]`
/// - `weight`, `bias`: `[channels]`
/// - returns `x`'s shape, and the statistics
pub fn synced_batch_norm_train(
    x: &Tensor,
    weight_and_bias: Option<(&Tensor, &Tensor)>,
    eps: f64,
    comm: &dyn AllReduceSum,
) -> Result<(Tensor, SyncedStats)> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 {
        candle::bail!("sync batch norm: input {:?} needs at least two dimensions", x.shape());
    }
    let (n, c) = (dims[0], dims[1]);
    let s: usize = dims[2..].iter().product();
    if let Some((w, b)) = weight_and_bias
        && (w.dims() != [c] || b.dims() != [c])
    {
        candle::bail!("sync batch norm: weight {:?} and bias {:?} must be [{c}]", w.shape(), b.shape());
    }
    // [n, c, s] in f64: per-channel sums of x and x^2 over n and s.
    let xs = x.to_dtype(DType::F64)?.reshape((n, c, s))?;
    let sum = xs.sum(2)?.sum(0)?;
    let sum_sq = xs.sqr()?.sum(2)?.sum(0)?;
    let count = Tensor::new(&[(n * s) as f64], x.device())?;
    let total = comm.all_reduce_sum(&Tensor::cat(&[&sum, &sum_sq, &count], 0)?)?;
    let global_count = total.narrow(0, 2 * c, 1)?;
    // Only a replica with fewer than two values per channel reads the global count back (a
    // device synchronisation on GPUs); otherwise the global count is at least two.
    if n * s < 2 {
        let n_total = global_count.to_vec1::<f64>()?[0];
        if n_total < 2.0 {
            candle::bail!(
                "sync batch norm: expected more than 1 value per channel when training, got {n_total}"
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
    let stats = SyncedStats {
        mean: mean.detach().to_dtype(x.dtype())?,
        var: var.detach().to_dtype(x.dtype())?,
        unbiased_var: var.detach().broadcast_mul(&unbiased)?.to_dtype(x.dtype())?,
    };
    Ok((y, stats))
}

#[cfg(test)]
mod tests {
    use candle::Device;
    use candle_nn::VarMap;

    use super::*;

    /// One replica: the sum over replicas is the value itself.
    #[derive(Debug)]
    struct Alone;

    impl AllReduceSum for Alone {
        fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
            Ok(x.clone())
        }
    }

    fn rel(a: &Tensor, b: &Tensor) -> Result<f64> {
        let diff =
            (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        let norm = b.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        Ok((diff / norm.max(1e-300)).sqrt())
    }

    /// With one replica, synchronised statistics give the fused kernel's output, running
    /// statistics and gradients (to rounding: f64 sums against two passes).
    #[test]
    fn synced_with_one_replica_matches_local() -> Result<()> {
        let dev = Device::Cpu;
        let synced = BatchNormConfig::default().with_stats(BatchStats::Synced(Arc::new(Alone)));
        for shape in [&[6, 4, 3, 5][..], &[9, 7]] {
            let c = shape[1];
            let x = Var::from_tensor(&Tensor::randn(2f32, 3.0, shape, &dev)?)?;
            let dy = Tensor::randn(0f32, 1.0, shape, &dev)?;
            let mut results = Vec::new();
            for config in [BatchNormConfig::default(), synced.clone()] {
                let varmap = VarMap::new();
                let bn = batch_norm(c, config, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
                let y = bn.forward_relu_t(x.as_tensor(), true)?;
                let grads = (&y * &dy)?.sum_all()?.backward()?;
                let dx = grads.get(x.as_tensor()).cloned();
                let (w, _) = bn.weight_and_bias().ok_or_else(|| candle::Error::Msg("affine".into()))?;
                let dw = grads.get(w).cloned();
                let (Some(dx), Some(dw)) = (dx, dw) else { candle::bail!("missing gradient") };
                results.push([y, dx, dw, bn.running_mean().clone(), bn.running_var().clone()]);
            }
            for (i, name) in ["output", "dx", "dweight", "running mean", "running var"].iter().enumerate() {
                let e = rel(&results[1][i], &results[0][i])?;
                assert!(e < 1e-5, "{name} {shape:?}: {e}");
            }
        }
        Ok(())
    }

    #[test]
    fn invalid_hyper_parameters_are_refused() -> Result<()> {
        let dev = Device::Cpu;
        let ones = Tensor::ones(3, DType::F32, &dev)?;
        for (eps, momentum) in [(-1.0, 0.1), (f64::NAN, 0.1), (1e-5, 1.5)] {
            let config = BatchNormConfig { eps, momentum, ..Default::default() };
            assert!(BatchNorm::new(ones.clone(), ones.clone(), None, &config).is_err(), "{eps} {momentum}");
        }
        Ok(())
    }
}
