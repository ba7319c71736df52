//! SimSiam's projection MLP and prediction MLP (SimSiam paper, Section 4 "Baseline settings"
//! and Section 4.4), with Lightly's `SimSiamProjectionHead` and `SimSiamPredictionHead`
//! parameter names (`layers.0.weight`, `layers.1.running_mean`, ...).

use candle::{ModuleT, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::layers::{linear, linear_forward};
use crate::{BatchNorm, BatchNormConfig, Precision, batch_norm};

/// The projection MLP: `num_layers` fully connected layers without bias, each followed by BN;
/// ReLU after all but the last. The paper's last BN has no affine parameters; Lightly's CIFAR
/// benchmark gives it some.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionHeadConfig {
    /// Input features (the backbone's feature dimension).
    pub input_dim: usize,
    /// Width of the hidden layers.
    pub hidden_dim: usize,
    /// Output features, `z`.
    pub output_dim: usize,
    /// Fully connected layers, at least 1 (the paper uses 3 on ImageNet, 2 on CIFAR).
    pub num_layers: usize,
    /// Whether the last BN learns a scale and shift (`false` in the paper).
    pub last_bn_affine: bool,
    /// The dtype of the matrix products (`f32` by default).
    pub precision: Precision,
    /// Every batch norm's eps, momentum and statistics (PyTorch's defaults, local statistics).
    pub batch_norm: BatchNormConfig,
}

impl ProjectionHeadConfig {
    /// Lightly's `SimSiamProjectionHead` defaults: 2048-2048-2048, three layers, last BN
    /// without affine.
    pub fn lightly() -> Self {
        Self::new(2048, 2048, 2048)
    }

    /// Three layers `input_dim -> hidden_dim -> hidden_dim -> output_dim`, last BN without
    /// affine, as `SimSiamProjectionHead(input_dim, hidden_dim, output_dim)`.
    pub fn new(input_dim: usize, hidden_dim: usize, output_dim: usize) -> Self {
        Self {
            input_dim,
            hidden_dim,
            output_dim,
            num_layers: 3,
            last_bn_affine: false,
            precision: Precision::F32,
            batch_norm: BatchNormConfig::default(),
        }
    }

    /// The same head with its matrix products in `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The same head with its batch norms built from `config` (whether each is affine stays
    /// the head's choice).
    pub fn with_batch_norm(mut self, config: BatchNormConfig) -> Self {
        self.batch_norm = config;
        self
    }

    /// Builds the head through `vb`.
    pub fn init(&self, vb: VarBuilder) -> Result<ProjectionHead> {
        if self.num_layers == 0 || self.input_dim == 0 || self.hidden_dim == 0 || self.output_dim == 0 {
            candle::bail!("invalid projection head {self:?}: dimensions and layer count must be positive");
        }
        let vb = vb.pp("layers");
        let mut layers = Vec::with_capacity(self.num_layers);
        for i in 0..self.num_layers {
            let last = i + 1 == self.num_layers;
            let fan_in = if i == 0 { self.input_dim } else { self.hidden_dim };
            let fan_out = if last { self.output_dim } else { self.hidden_dim };
            // Sequential indices: Linear, BN, ReLU per hidden layer.
            let fc = linear(fan_in, fan_out, false, vb.pp(3 * i))?;
            let bn = batch_norm(fan_out, self.bn(!last || self.last_bn_affine), vb.pp(3 * i + 1))?;
            layers.push((fc, bn));
        }
        Ok(ProjectionHead { layers, precision: self.precision })
    }

    fn bn(&self, affine: bool) -> BatchNormConfig {
        BatchNormConfig { affine, ..self.batch_norm.clone() }
    }
}

/// The projection MLP `g` of SimSiam. Build it with [`ProjectionHeadConfig::init`].
#[derive(Debug, Clone)]
pub struct ProjectionHead {
    layers: Vec<(Linear, BatchNorm)>,
    precision: Precision,
}

impl ModuleT for ProjectionHead {
    /// # Shapes
    /// - `x`: `[batch, input_dim]`
    /// - returns `[batch, output_dim]`
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let last = self.layers.len() - 1;
        let mut x = x.clone();
        for (i, (fc, bn)) in self.layers.iter().enumerate() {
            let h = linear_forward(fc, &x, self.precision)?;
            x = if i != last { bn.forward_relu_t(&h, train)? } else { bn.forward_t(&h, train)? };
        }
        Ok(x)
    }
}

/// The prediction MLP `h`: a bottleneck of two fully connected layers, the first without bias
/// and followed by BN and ReLU, the second with bias and nothing after it (paper, Section 4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionHeadConfig {
    /// Input features, `z`.
    pub input_dim: usize,
    /// The bottleneck's width (a quarter of the input in the paper).
    pub hidden_dim: usize,
    /// Output features, `p`.
    pub output_dim: usize,
    /// The dtype of the matrix products (`f32` by default).
    pub precision: Precision,
    /// Every batch norm's eps, momentum and statistics (PyTorch's defaults, local statistics).
    pub batch_norm: BatchNormConfig,
}

impl PredictionHeadConfig {
    /// Lightly's `SimSiamPredictionHead` defaults: 2048-512-2048.
    pub fn lightly() -> Self {
        Self::new(2048, 512, 2048)
    }

    /// `input_dim -> hidden_dim -> output_dim`.
    pub fn new(input_dim: usize, hidden_dim: usize, output_dim: usize) -> Self {
        Self {
            input_dim,
            hidden_dim,
            output_dim,
            precision: Precision::F32,
            batch_norm: BatchNormConfig::default(),
        }
    }

    /// The same head with its matrix products in `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The same head with its batch norms built from `config` (whether each is affine stays
    /// the head's choice).
    pub fn with_batch_norm(mut self, config: BatchNormConfig) -> Self {
        self.batch_norm = config;
        self
    }

    /// Builds the head through `vb`.
    pub fn init(&self, vb: VarBuilder) -> Result<PredictionHead> {
        if self.input_dim == 0 || self.hidden_dim == 0 || self.output_dim == 0 {
            candle::bail!("invalid prediction head {self:?}: dimensions must be positive");
        }
        let vb = vb.pp("layers");
        Ok(PredictionHead {
            fc1: linear(self.input_dim, self.hidden_dim, false, vb.pp(0))?,
            bn1: batch_norm(
                self.hidden_dim,
                BatchNormConfig { affine: true, ..self.batch_norm.clone() },
                vb.pp(1),
            )?,
            fc2: linear(self.hidden_dim, self.output_dim, true, vb.pp(3))?,
            precision: self.precision,
        })
    }
}

/// The prediction MLP `h` of SimSiam. Build it with [`PredictionHeadConfig::init`].
#[derive(Debug, Clone)]
pub struct PredictionHead {
    fc1: Linear,
    bn1: BatchNorm,
    fc2: Linear,
    precision: Precision,
}

impl ModuleT for PredictionHead {
    /// # Shapes
    /// - `x`: `[batch, input_dim]`
    /// - returns `[batch, output_dim]`
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.bn1.forward_relu_t(&linear_forward(&self.fc1, x, self.precision)?, train)?;
        linear_forward(&self.fc2, &h, self.precision)
    }
}
