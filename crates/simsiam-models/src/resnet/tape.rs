//! ResNet's training pass outside candle's graph, and its own backward pass: the kernels that
//! candle's autograd would call, in the same order, without the zero-filled gradient buffer
//! and the addition it makes for every node (huggingface/candle#3822) and with each block's
//! activations freed as soon as its gradients are out.

use candle::backprop::GradStore;
use candle::{D, Result, Tensor};
use simsiam_kernels::{BatchNormTape, kernel_options, max_pool2d, max_pool2d_backward};

use super::{ResNet, ResidualBlock, STEM_POOL};
use crate::BatchNorm;
use crate::backbone::BackboneTape;
use crate::layers::Conv2d;

/// Whether [`forward`] runs `net` on `x`: the option is on, every convolution computes in the
/// input's dtype and every batch norm has local statistics on our CPU kernels.
pub(super) fn applies(net: &ResNet, x: &Tensor) -> bool {
    let layers = || {
        let blocks = net.stages.iter().flatten();
        let pairs = blocks.flat_map(|b| b.convs.iter().chain(&b.downsample)).map(|(c, bn)| (c, bn));
        std::iter::once((&net.conv1, &net.bn1)).chain(pairs)
    };
    kernel_options().taped_backward && layers().all(|(conv, bn)| conv.tapes() && bn.tapes(x))
}

/// The training-mode forward pass of `net` on `x` outside candle's graph: the features and
/// the tape of their backward pass.
///
/// # Shapes
/// - `x`: `[batch, 3, h, w]`
/// - returns `[batch, feature_dim]`, detached
pub(super) fn forward<'a>(net: &'a ResNet, x: &Tensor) -> Result<(Tensor, ResNetTape<'a>)> {
    let stem = ConvBn::run(&net.conv1, &net.bn1, x, None)?;
    let mut y = if net.max_pool { max_pool2d(&stem.out, STEM_POOL)? } else { stem.out.clone() };
    let mut blocks = Vec::new();
    for block in net.stages.iter().flatten() {
        let pass = BlockPass::run(block, &y)?;
        y = pass.out()?.clone();
        blocks.push(pass);
    }
    let map_dims = y.dims4()?;
    let features = y.flatten_from(2)?.mean(D::Minus1)?;
    Ok((features, ResNetTape { net, stem, blocks, map_dims }))
}

/// What [`forward`] keeps for the backward pass.
pub(super) struct ResNetTape<'a> {
    net: &'a ResNet,
    stem: ConvBn,
    /// Every residual block's pass, stage by stage.
    blocks: Vec<BlockPass>,
    /// The last feature map's `[batch, channels, h, w]`.
    map_dims: (usize, usize, usize, usize),
}

impl BackboneTape for ResNetTape<'_> {
    fn backward(self: Box<Self>, grad: &Tensor, grads: &mut GradStore) -> Result<()> {
        let ResNetTape { net, stem, mut blocks, map_dims: (b, c, h, w) } = *self;
        // The global average pool's gradient, as candle's mean: scaled, then broadcast.
        let scale = 1.0 / (h * w) as f64;
        let mut d = grad.affine(scale, 0.0)?.reshape((b, c, 1))?;
        d = d.broadcast_as((b, c, h * w))?.contiguous()?.reshape((b, c, h, w))?;
        for block in net.stages.iter().flatten().rev() {
            let pass =
                blocks.pop().ok_or_else(|| candle::Error::Msg("resnet tape: a block is missing".into()))?;
            d = pass.backward(block, &d, grads)?;
        }
        if net.max_pool {
            d = max_pool2d_backward(&stem.out, &d, STEM_POOL)?;
        }
        // The images need no gradient.
        stem.backward(&net.conv1, &net.bn1, &d, false, grads)?;
        Ok(())
    }
}

/// A convolution and the batch norm after it, as the forward pass ran them.
struct ConvBn {
    /// The convolution's input.
    input: Tensor,
    /// The convolution's output, the batch norm's input.
    conv_out: Tensor,
    /// The batch norm's output (after the ReLU, or the residual and the ReLU).
    out: Tensor,
    tape: BatchNormTape,
}

impl ConvBn {
    /// `relu(bn(conv(input)) (+ residual))`: the ReLU always except before a downsampling
    /// shortcut's sum (`relu` is false only there).
    fn run_with(
        conv: &Conv2d,
        bn: &BatchNorm,
        input: &Tensor,
        relu: bool,
        residual: Option<&Tensor>,
    ) -> Result<Self> {
        let conv_out = conv.forward_taped(input)?;
        let (out, tape) = bn.forward_taped(&conv_out, relu, residual)?;
        Ok(Self { input: input.clone(), conv_out, out, tape })
    }

    /// `relu(bn(conv(input)) (+ residual))`.
    fn run(conv: &Conv2d, bn: &BatchNorm, input: &Tensor, residual: Option<&Tensor>) -> Result<Self> {
        Self::run_with(conv, bn, input, true, residual)
    }

    /// Adds the layers' parameter gradients for `dy` at the output to `grads`; returns the
    /// input's gradient (when `input_grad`) and the residual's (when one was added).
    fn backward(
        &self,
        conv: &Conv2d,
        bn: &BatchNorm,
        dy: &Tensor,
        input_grad: bool,
        grads: &mut GradStore,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (d_conv_out, d_residual) =
            bn.backward_taped(&self.tape, (&self.conv_out, &self.out), dy, grads)?;
        let d_input = conv.backward_taped(&self.input, &d_conv_out, input_grad, grads)?;
        Ok((d_input, d_residual))
    }
}

/// One residual block's pass.
struct BlockPass {
    /// The main branch, the last one with the shortcut added.
    convs: Vec<ConvBn>,
    /// The downsampling shortcut, when the block has one.
    downsample: Option<ConvBn>,
}

impl BlockPass {
    /// The block's forward pass, in the order of its `forward_t`.
    fn run(block: &ResidualBlock, x: &Tensor) -> Result<Self> {
        let downsample = match &block.downsample {
            Some((conv, bn)) => Some(ConvBn::run_with(conv, bn, x, false, None)?),
            None => None,
        };
        let identity = downsample.as_ref().map_or(x, |d| &d.out);
        let Some((last, rest)) = block.convs.split_last() else {
            candle::bail!("resnet: a residual block without convolutions");
        };
        let mut convs = Vec::with_capacity(block.convs.len());
        let mut y = x.clone();
        for (conv, bn) in rest {
            let pass = ConvBn::run(conv, bn, &y, None)?;
            y = pass.out.clone();
            convs.push(pass);
        }
        convs.push(ConvBn::run(&last.0, &last.1, &y, Some(identity))?);
        Ok(Self { convs, downsample })
    }

    /// The block's output.
    fn out(&self) -> Result<&Tensor> {
        let last = self.convs.last().ok_or_else(|| candle::Error::Msg("resnet: an empty block".into()))?;
        Ok(&last.out)
    }

    /// The gradient of the block's input for `dy` at its output; the parameters' into `grads`.
    fn backward(&self, block: &ResidualBlock, dy: &Tensor, grads: &mut GradStore) -> Result<Tensor> {
        let missing = |what: &str| candle::Error::Msg(format!("resnet tape: no {what} gradient"));
        let mut d = dy.clone();
        let mut d_identity = None;
        for (pass, (conv, bn)) in self.convs.iter().zip(&block.convs).rev() {
            let (d_input, d_residual) = pass.backward(conv, bn, &d, true, grads)?;
            d_identity = d_identity.or(d_residual);
            d = d_input.ok_or_else(|| missing("input"))?;
        }
        let d_identity = d_identity.ok_or_else(|| missing("shortcut"))?;
        let d_shortcut = match (&self.downsample, &block.downsample) {
            (Some(pass), Some((conv, bn))) => pass.backward(conv, bn, &d_identity, true, grads)?.0,
            _ => Some(d_identity),
        };
        d + d_shortcut.ok_or_else(|| missing("shortcut input"))?
    }
}
