//! The layers the models share besides batch norm ([`crate::BatchNorm`]), with PyTorch's
//! default initialisations: a bias-free convolution on our kernels ([`simsiam_kernels`]) and a
//! linear layer, and their builders in candle-nn's style.

use candle::backprop::GradStore;
use candle::{DType, Module, Result, Tensor};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, Linear, VarBuilder};
use simsiam_kernels::Conv2dParams;

use crate::Precision;
use crate::backbone::accumulate;

/// Stride and zero padding of a [`Conv2d`], the same on both axes (1 and 0 by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dConfig {
    /// Step between windows.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Self { stride: 1, padding: 0 }
    }
}

/// A bias-free 2-D convolution with one group and no dilation, as the ResNets use.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    params: Conv2dParams,
    precision: Precision,
}

impl Conv2d {
    /// A convolution with `weight: [out, in, kh, kw]`.
    pub fn new(weight: Tensor, config: Conv2dConfig) -> Self {
        let params = Conv2dParams { stride: config.stride, padding: config.padding };
        Self { weight, params, precision: Precision::F32 }
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
    pub fn config(&self) -> Conv2dConfig {
        Conv2dConfig { stride: self.params.stride, padding: self.params.padding }
    }

    /// Whether [`Self::forward_taped`] and [`Self::backward_taped`] run for this layer.
    pub(crate) fn tapes(&self) -> bool {
        self.precision == Precision::F32
    }

    /// The `f32` forward pass outside candle's graph, for a network's own backward pass.
    pub(crate) fn forward_taped(&self, x: &Tensor) -> Result<Tensor> {
        simsiam_kernels::conv2d(&x.detach(), &self.weight.detach(), self.params)
    }

    /// Adds the weight's gradient for input `x` and output gradient `dy` to `grads`; returns
    /// the input's gradient when `input_grad` (a network's first layer needs none).
    pub(crate) fn backward_taped(
        &self,
        x: &Tensor,
        dy: &Tensor,
        input_grad: bool,
        grads: &mut GradStore,
    ) -> Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        let (_, _, kh, kw) = self.weight.dims4()?;
        let dx = if input_grad {
            Some(simsiam_kernels::conv2d_input_grad(dy, &self.weight.detach(), self.params, (h, w))?)
        } else {
            None
        };
        let dw = simsiam_kernels::conv2d_weight_grad(x, dy, self.params, (kh, kw))?;
        accumulate(grads, &self.weight, dw)?;
        Ok(dx)
    }
}

impl Module for Conv2d {
    /// # Shapes
    /// - `x`: `[batch, in, h, w]`
    /// - returns `[batch, out, (h + 2p - kh) / s + 1, (w + 2p - kw) / s + 1]`
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.precision {
            Precision::F32 => simsiam_kernels::conv2d(x, &self.weight, self.params),
            p => {
                let (x, w) = (p.cast(x)?, p.cast(&self.weight)?);
                if x.device().is_cpu() {
                    // candle's CPU conv2d has no bf16: the same rounding, products in f32.
                    let y = simsiam_kernels::conv2d(
                        &x.to_dtype(DType::F32)?,
                        &w.to_dtype(DType::F32)?,
                        self.params,
                    )?;
                    return y.to_dtype(x.dtype());
                }
                simsiam_kernels::conv2d(&x, &w, self.params)
            }
        }
    }
}

/// A bias-free `kernel x kernel` convolution, its weight under `vb` as `weight`, initialised
/// as torchvision's ResNet does (`kaiming_normal_(mode="fan_out", nonlinearity="relu")`).
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    config: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let init = Init::Kaiming {
        dist: NormalOrUniform::Normal,
        fan: FanInOut::FanOut,
        non_linearity: NonLinearity::ReLU,
    };
    let weight = vb.get_with_hints((out_channels, in_channels, kernel, kernel), "weight", init)?;
    Ok(Conv2d::new(weight, config))
}

/// A linear layer, its variables under `vb` as `weight` and `bias`, initialised as
/// `torch.nn.Linear` is: weight and bias uniform in `±1/sqrt(in_features)`.
pub fn linear(in_features: usize, out_features: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
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
    let y = if precision == Precision::F32 {
        // Our product and its gradients (candle's `Linear` goes to the slower `gemm` crate).
        simsiam_kernels::linear(x, fc.weight())?
    } else {
        precision.cast(x)?.matmul(&precision.cast(fc.weight())?.t()?)?.to_dtype(x.dtype())?
    };
    match fc.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}
