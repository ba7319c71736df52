//! ResNet-18, -34 and -50 (He et al., 2016) with torchvision's structure and parameter names,
//! and the CIFAR variant's 3x3 stem.

use candle::{D, Module, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;

use simsiam_kernels::{MaxPool2dConfig, max_pool2d};

use crate::backbone::BackboneTape;
use crate::batch_norm::zero_batch_norm;
use crate::layers::{Conv2d, Conv2dConfig, conv2d};
use crate::{Backbone, BatchNorm, BatchNormConfig, Precision, batch_norm};

mod tape;

/// The residual block family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Two 3x3 convolutions (ResNet-18/34), expansion 1.
    Basic,
    /// 1x1, 3x3, 1x1 convolutions (ResNet-50 and deeper), expansion 4.
    Bottleneck,
}

impl Block {
    /// Output channels over the block's width.
    pub fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// The first layers, before the residual stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stem {
    /// torchvision's: 7x7 stride-2 convolution, BN, ReLU, 3x3 stride-2 max-pool with padding 1.
    /// A 32x32 image leaves it at 8x8; this is what Lightly's SimSiam example uses on CIFAR.
    ImageNet,
    /// The CIFAR variant of the SimSiam paper's Appendix: one 3x3 stride-1 convolution, BN,
    /// ReLU, no max-pool.
    Cifar,
}

/// A ResNet's architecture. Build it with [`ResNetConfig::init`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetConfig {
    /// Residual block family.
    pub block: Block,
    /// Blocks in each of the four stages.
    pub layers: [usize; 4],
    /// The stem.
    pub stem: Stem,
    /// Channels of the stem and first stage (64 in the paper); stages double it.
    pub width: usize,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Start each block's last BN weight at zero, as torchvision's `zero_init_residual`.
    pub zero_init_residual: bool,
    /// The dtype of the convolutions (`f32` by default; batch norms stay `f32`).
    pub precision: Precision,
    /// Every batch norm's eps, momentum and statistics (PyTorch's defaults, local statistics;
    /// [`crate::BatchStats::Synced`] for synchronised batch norm under data parallelism).
    pub batch_norm: BatchNormConfig,
}

impl ResNetConfig {
    /// ResNet-18: basic blocks, `[2, 2, 2, 2]`, 512 features.
    pub fn resnet18(stem: Stem) -> Self {
        Self::new(Block::Basic, [2, 2, 2, 2], stem)
    }

    /// ResNet-34: basic blocks, `[3, 4, 6, 3]`, 512 features.
    pub fn resnet34(stem: Stem) -> Self {
        Self::new(Block::Basic, [3, 4, 6, 3], stem)
    }

    /// ResNet-50: bottleneck blocks, `[3, 4, 6, 3]`, 2048 features.
    pub fn resnet50(stem: Stem) -> Self {
        Self::new(Block::Bottleneck, [3, 4, 6, 3], stem)
    }

    fn new(block: Block, layers: [usize; 4], stem: Stem) -> Self {
        Self {
            block,
            layers,
            stem,
            width: 64,
            in_channels: 3,
            zero_init_residual: false,
            precision: Precision::F32,
            batch_norm: BatchNormConfig::default(),
        }
    }

    /// The same network with every batch norm built from `config` (its `affine` is ignored:
    /// ResNets' batch norms are affine).
    pub fn with_batch_norm(mut self, config: BatchNormConfig) -> Self {
        self.batch_norm = config;
        self
    }

    /// The configuration of this network's batch norms.
    fn bn(&self) -> BatchNormConfig {
        BatchNormConfig { affine: true, ..self.batch_norm.clone() }
    }

    /// The same network with its convolutions in `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The same network with `width` channels in the first stage (64 by default): a narrower
    /// ResNet for quick runs and small tests.
    pub fn with_width(mut self, width: usize) -> Self {
        self.width = width;
        self
    }

    /// The same network with `zero_init_residual` set.
    pub fn with_zero_init_residual(mut self, zero: bool) -> Self {
        self.zero_init_residual = zero;
        self
    }

    /// Length of the feature vector: `8 * width * expansion`.
    pub fn feature_dim(&self) -> usize {
        8 * self.width * self.block.expansion()
    }

    /// Builds the network, creating or loading its variables through `vb` under torchvision's
    /// names (`conv1.weight`, `layer1.0.bn1.running_mean`, ...).
    pub fn init(&self, vb: VarBuilder) -> Result<ResNet> {
        if self.width == 0 || self.in_channels == 0 || self.layers.contains(&0) {
            candle::bail!("invalid ResNet config {self:?}: widths and stage depths must be positive");
        }
        let w = self.width;
        let conv1 = match self.stem {
            Stem::ImageNet => conv2d(self.in_channels, w, 7, conv(2, 3), vb.pp("conv1"))?,
            Stem::Cifar => conv2d(self.in_channels, w, 3, conv(1, 1), vb.pp("conv1"))?,
        }
        .with_precision(self.precision);
        let bn1 = batch_norm(w, self.bn(), vb.pp("bn1"))?;
        let mut in_channels = w;
        let mut stages = Vec::with_capacity(4);
        for (i, &blocks) in self.layers.iter().enumerate() {
            let width = w << i;
            let stride = if i == 0 { 1 } else { 2 };
            let vb = vb.pp(format!("layer{}", i + 1));
            let mut stage = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let stride = if b == 0 { stride } else { 1 };
                stage.push(ResidualBlock::new(self, in_channels, width, stride, vb.pp(b))?);
                in_channels = width * self.block.expansion();
            }
            stages.push(stage);
        }
        Ok(ResNet { conv1, bn1, max_pool: self.stem == Stem::ImageNet, stages, feature_dim: in_channels })
    }
}

/// A ResNet without its classifier: images in, globally average-pooled features out.
#[derive(Debug, Clone)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    max_pool: bool,
    stages: Vec<Vec<ResidualBlock>>,
    feature_dim: usize,
}

/// torchvision's stem max-pool.
const STEM_POOL: MaxPool2dConfig = MaxPool2dConfig { kernel: 3, stride: 2, padding: 1 };

impl ResNet {
    /// The feature map before global pooling.
    ///
    /// # Shapes
    /// - `x`: `[batch, 3, h, w]`
    /// - returns `[batch, feature_dim, h / 32, w / 32]` (ImageNet stem) or
    ///   `[batch, feature_dim, h / 8, w / 8]` (CIFAR stem), rounded up
    pub fn feature_map(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = self.bn1.forward_relu_t(&self.conv1.forward(x)?, train)?;
        if self.max_pool {
            x = max_pool2d(&x, STEM_POOL)?; // [b, w, h / 4, w / 4]
        }
        for stage in &self.stages {
            for block in stage {
                x = block.forward_t(&x, train)?;
            }
        }
        Ok(x)
    }
}

impl Backbone for ResNet {
    fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// On the CPU with `f32`/`f64` convolutions and local batch statistics (unless
    /// [`simsiam_kernels::KernelOptions::taped_backward`] is off), our own backward pass: the
    /// gradients candle's autograd gives (`tests/taped_backward.rs` compares them), without its
    /// zero-filled buffer and addition per node.
    fn forward_taped(&self, x: &Tensor) -> Result<Option<(Tensor, Box<dyn BackboneTape + '_>)>> {
        if !tape::applies(self, x) {
            return Ok(None);
        }
        let (features, tape) = tape::forward(self, x)?;
        Ok(Some((features, Box::new(tape))))
    }
}

impl ModuleT for ResNet {
    /// # Shapes
    /// - `x`: `[batch, 3, h, w]`
    /// - returns `[batch, feature_dim]`, the global average of the last feature map
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.feature_map(x, train)?.flatten_from(2)?.mean(D::Minus1)
    }
}

/// A basic or bottleneck block with torchvision's names: `conv1`, `bn1`, ..., `downsample.0`
/// (1x1 convolution) and `downsample.1` (BN).
#[derive(Debug, Clone)]
struct ResidualBlock {
    convs: Vec<(Conv2d, BatchNorm)>,
    downsample: Option<(Conv2d, BatchNorm)>,
}

impl ResidualBlock {
    fn new(
        config: &ResNetConfig,
        in_channels: usize,
        width: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out_channels = width * config.block.expansion();
        // (in, out, kernel, stride, padding) per convolution; torchvision's v1.5 puts the
        // bottleneck's stride on its 3x3 convolution.
        let shapes: Vec<(usize, usize, usize, usize, usize)> = match config.block {
            Block::Basic => vec![(in_channels, width, 3, stride, 1), (width, width, 3, 1, 1)],
            Block::Bottleneck => vec![
                (in_channels, width, 1, 1, 0),
                (width, width, 3, stride, 1),
                (width, out_channels, 1, 1, 0),
            ],
        };
        let last = shapes.len() - 1;
        let mut convs = Vec::with_capacity(shapes.len());
        for (i, (cin, cout, k, s, p)) in shapes.into_iter().enumerate() {
            let conv = conv2d(cin, cout, k, conv(s, p), vb.pp(format!("conv{}", i + 1)))?
                .with_precision(config.precision);
            let bn_vb = vb.pp(format!("bn{}", i + 1));
            let bn = if i == last && config.zero_init_residual {
                zero_batch_norm(cout, config.bn(), bn_vb)?
            } else {
                batch_norm(cout, config.bn(), bn_vb)?
            };
            convs.push((conv, bn));
        }
        let downsample = if stride != 1 || in_channels != out_channels {
            let vb = vb.pp("downsample");
            let conv = conv2d(in_channels, out_channels, 1, conv(stride, 0), vb.pp("0"))?
                .with_precision(config.precision);
            Some((conv, batch_norm(out_channels, config.bn(), vb.pp("1"))?))
        } else {
            None
        };
        Ok(Self { convs, downsample })
    }
}

impl ModuleT for ResidualBlock {
    /// # Shapes
    /// - `x`: `[batch, in, h, w]`
    /// - returns `[batch, out, h / stride, w / stride]`
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let identity = match &self.downsample {
            Some((conv, bn)) => bn.forward_t(&conv.forward(x)?, train)?,
            None => x.clone(),
        };
        let Some((last, rest)) = self.convs.split_last() else {
            candle::bail!("resnet: a residual block without convolutions");
        };
        let mut y = x.clone();
        for (conv, bn) in rest {
            y = bn.forward_relu_t(&conv.forward(&y)?, train)?;
        }
        // torchvision's `out = bn(conv(out)); out += identity; relu(out)`, as one op.
        last.1.forward_add_relu_t(&last.0.forward(&y)?, &identity, train)
    }
}

/// A convolution's stride and padding.
fn conv(stride: usize, padding: usize) -> Conv2dConfig {
    Conv2dConfig { stride, padding }
}
