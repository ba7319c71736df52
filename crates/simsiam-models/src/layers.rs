//! Builders for the layers the models share, with PyTorch's default initialisations.

use candle::Result;
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, Init, Linear, VarBuilder};

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
    let config = Conv2dConfig { padding, stride, ..Default::default() };
    Ok(Conv2d::new(weight, None, config))
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

/// PyTorch's `BatchNorm1d`/`BatchNorm2d` (eps 1e-5, momentum 0.1), weight 1 and bias 0. Its
/// running statistics live in the same `VarBuilder` under `running_mean` and `running_var`,
/// torchvision's names, and are updated in training mode as PyTorch updates them.
pub(crate) fn batch_norm(features: usize, affine: bool, vb: VarBuilder) -> Result<BatchNorm> {
    let config = BatchNormConfig { eps: 1e-5, remove_mean: true, affine, momentum: 0.1 };
    candle_nn::batch_norm(features, config, vb)
}

/// A batch norm whose weight starts at zero (torchvision's `zero_init_residual`), so that a
/// residual block starts as the identity.
pub(crate) fn zero_batch_norm(features: usize, vb: VarBuilder) -> Result<BatchNorm> {
    // Creating the weight first makes `batch_norm` find it instead of initialising it to one.
    vb.get_with_hints(features, "weight", Init::Const(0.0))?;
    batch_norm(features, true, vb)
}
