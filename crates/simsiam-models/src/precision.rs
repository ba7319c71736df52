//! Mixed precision: the dtype convolutions and matrix products compute in.
//!
//! Parameters stay `f32` (the master weights the optimiser updates); with [`Precision::Bf16`]
//! each convolution and linear layer casts its input and weight to `bf16` for the product and
//! its output back to `f32` (linear) or lets the following batch norm cast it (convolution).
//! Batch-norm statistics, the heads' outputs, the loss and kNN features stay `f32`. The casts
//! are differentiable, so gradients arrive in `f32`.

use candle::{DType, Result, Tensor};

/// The dtype of convolutions and matrix products; `f32` by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in `f32` (bit-identical to a model without the option).
    #[default]
    F32,
    /// Convolutions and matrix products in `bf16`, everything else in `f32`.
    Bf16,
}

impl Precision {
    /// `"f32"` or `"bf16"`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Self::F32),
            "bf16" => Some(Self::Bf16),
            _ => None,
        }
    }

    /// The dtype products compute in, `None` for "the tensors' own".
    pub fn compute_dtype(self) -> Option<DType> {
        match self {
            Self::F32 => None,
            Self::Bf16 => Some(DType::BF16),
        }
    }

    /// `t` in the compute dtype (a no-op for [`Precision::F32`]).
    pub(crate) fn cast(self, t: &Tensor) -> Result<Tensor> {
        match self.compute_dtype() {
            Some(d) if t.dtype() != d => t.to_dtype(d),
            _ => Ok(t.clone()),
        }
    }
}
