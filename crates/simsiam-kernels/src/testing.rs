//! Helpers for the kernels' unit tests.

use candle::{DType, Result, Tensor};

/// `||ours - reference|| / ||reference||`, in `f64`.
pub(crate) fn rel(ours: &Tensor, reference: &Tensor) -> Result<f64> {
    let diff = (ours.to_dtype(DType::F64)? - reference.to_dtype(DType::F64)?)?.sqr()?.sum_all()?;
    let norm = reference.to_dtype(DType::F64)?.sqr()?.sum_all()?;
    Ok((diff.to_scalar::<f64>()? / norm.to_scalar::<f64>()?.max(1e-300)).sqrt())
}
