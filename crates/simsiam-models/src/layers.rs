//! The layers the models share, with PyTorch's default initialisations: a bias-free
//! convolution and a batch norm on our own kernels ([`crate::kernels`]), and builders.

use candle::{DType, Module, ModuleT, Result, Tensor, Var};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, Linear, VarBuilder};

use crate::Precision;
use crate::kernels::{self, Conv2dParams};

/// A bias-free 2-D convolution with one group and no dilation, as the ResNets use.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    params: Conv2dParams,
    precision: Precision,
}

impl Conv2d {
    /// A convolution with `weight: [out, in, kh, kw]`.
    pub fn new(weight: Tensor, stride: usize, padding: usize) -> Self {
        Self { weight, params: Conv2dParams { stride, padding }, precision: Precision::F32 }
    }

    /// The same convolution computing in `precision`; with `bf16` the output is `bf16` too,
    /// for the following batch norm to take back to `f32`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The kernel, `[out, in, kh, kw]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Stride and padding.
    pub fn params(&self) -> Conv2dParams {
        self.params
    }
}

impl Module for Conv2d {
    /// # Shapes
    /// - `x`: `[batch, in, h, w]`
    /// - returns `[batch, out, (h + 2p - kh) / s + 1, (w + 2p - kw) / s + 1]`
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.precision {
            Precision::F32 => kernels::conv2d(x, &self.weight, self.params),
            p => {
                let (x, w) = (p.cast(x)?, p.cast(&self.weight)?);
                if x.device().is_cpu() {
                    // candle's CPU conv2d has no bf16: the same rounding, products in f32.
                    let y = kernels::conv2d(&x.to_dtype(DType::F32)?, &w.to_dtype(DType::F32)?, self.params)?;
                    return y.to_dtype(x.dtype());
                }
                kernels::conv2d(&x, &w, self.params)
            }
        }
    }
}

/// PyTorch's `BatchNorm1d`/`BatchNorm2d`. In training mode it normalises with the batch's
/// statistics (biased variance) and updates the running statistics with momentum, the
/// variance unbiased; in evaluation mode it uses the running statistics.
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
}

impl BatchNorm {
    /// A batch norm over `running_mean.dim(0)` features. `running_mean` and `running_var`
    /// should be variables (from a `VarBuilder` over a `VarMap`) for the updates to show there.
    pub fn new(
        running_mean: Tensor,
        running_var: Tensor,
        weight_and_bias: Option<(Tensor, Tensor)>,
        eps: f64,
        momentum: f64,
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
        if eps < 0.0 || !(0.0..=1.0).contains(&momentum) {
            candle::bail!("batch norm: invalid eps {eps} or momentum {momentum}");
        }
        Ok(Self {
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            weight_and_bias,
            eps,
            momentum,
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

    /// `relu(self.forward_t(x, train))`, fused into one op per direction in training mode.
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train { self.forward_train(x, true) } else { self.forward_eval(x)?.relu() }
    }

    /// `relu(self.forward_t(x, train) + residual)`, the end of a residual block, fused into
    /// one op per direction in training mode ([`kernels::batch_norm_add_relu_train`]).
    pub fn forward_add_relu_t(&self, x: &Tensor, residual: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            return (self.forward_eval(x)? + residual)?.relu();
        }
        let x = &self.input(x)?;
        let residual = &self.input(residual)?;
        let wb = self.weight_and_bias();
        let (y, stats) = kernels::batch_norm_add_relu_train(x, wb, self.eps, residual)?;
        self.update_running(stats)?;
        Ok(y)
    }

    /// `x` in the statistics' dtype: a `bf16` convolution output normalises in `f32`.
    fn input(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = self.running_mean.dtype();
        if x.dtype() == dtype { Ok(x.clone()) } else { x.to_dtype(dtype) }
    }

    fn forward_train(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let x = &self.input(x)?;
        let wb = self.weight_and_bias();
        let (y, stats) = kernels::batch_norm_train(x, wb, self.eps, relu)?;
        self.update_running(stats)?;
        Ok(y)
    }

    /// Moves the running statistics towards a training batch's, PyTorch's way.
    fn update_running(&self, stats: kernels::BatchNormStats) -> Result<()> {
        let m = self.momentum;
        let unbiased = stats.count as f64 / (stats.count as f64 - 1.0);
        let rm = self.running_mean.as_detached_tensor();
        let rv = self.running_var.as_detached_tensor();
        self.running_mean.set(&((rm * (1.0 - m))? + (stats.mean * m)?)?)?;
        self.running_var.set(&((rv * (1.0 - m))? + (stats.var * (m * unbiased))?)?)
    }

    fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        let x = &self.input(x)?;
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

impl ModuleT for BatchNorm {
    /// # Shapes
    /// - `x`: `[batch, features]` or `[batch, features, ...]`
    /// - returns `x`'s shape
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train { self.forward_train(x, false) } else { self.forward_eval(x) }
    }
}

/// A bias-free convolution initialised as torchvision's ResNet does
/// (`kaiming_normal_(mode="fan_out", nonlinearity="relu")`).
pub(crate) fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let init = Init::Kaiming {
        dist: NormalOrUniform::Normal,
        fan: FanInOut::FanOut,
        non_linearity: NonLinearity::ReLU,
    };
    let weight = vb.get_with_hints((out_channels, in_channels, kernel, kernel), "weight", init)?;
    Ok(Conv2d::new(weight, stride, padding))
}

/// A linear layer initialised as `torch.nn.Linear` is: weight and bias uniform in
/// `±1/sqrt(in_features)`.
pub(crate) fn linear(in_features: usize, out_features: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let bound = 1.0 / (in_features.max(1) as f64).sqrt();
    let init = Init::Uniform { lo: -bound, up: bound };
    let weight = vb.get_with_hints((out_features, in_features), "weight", init)?;
    let bias = if bias { Some(vb.get_with_hints(out_features, "bias", init)?) } else { None };
    Ok(Linear::new(weight, bias))
}

/// `fc(x)`, the product in `precision` and the result in `x`'s dtype (the bias added in it).
///
/// # Shapes
/// - `x`: `[batch, in]`
/// - returns `[batch, out]`
pub(crate) fn linear_forward(fc: &Linear, x: &Tensor, precision: Precision) -> Result<Tensor> {
    if precision == Precision::F32 {
        return fc.forward(x);
    }
    let y = precision.cast(x)?.matmul(&precision.cast(fc.weight())?.t()?)?.to_dtype(x.dtype())?;
    match fc.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// PyTorch's `BatchNorm1d`/`BatchNorm2d` (eps 1e-5, momentum 0.1), weight 1 and bias 0. Its
/// running statistics live in the same `VarBuilder` under `running_mean` and `running_var`,
/// torchvision's names, and are updated in training mode as PyTorch updates them.
pub(crate) fn batch_norm(features: usize, affine: bool, vb: VarBuilder) -> Result<BatchNorm> {
    let running_mean = vb.get_with_hints(features, "running_mean", Init::Const(0.0))?;
    let running_var = vb.get_with_hints(features, "running_var", Init::Const(1.0))?;
    let weight_and_bias = if affine {
        let weight = vb.get_with_hints(features, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(features, "bias", Init::Const(0.0))?;
        Some((weight, bias))
    } else {
        None
    };
    BatchNorm::new(running_mean, running_var, weight_and_bias, 1e-5, 0.1)
}

/// A batch norm whose weight starts at zero (torchvision's `zero_init_residual`), so that a
/// residual block starts as the identity.
pub(crate) fn zero_batch_norm(features: usize, vb: VarBuilder) -> Result<BatchNorm> {
    // Creating the weight first makes `batch_norm` find it instead of initialising it to one.
    vb.get_with_hints(features, "weight", Init::Const(0.0))?;
    batch_norm(features, true, vb)
}
