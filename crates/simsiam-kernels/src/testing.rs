//! Helpers for the kernels' unit tests.

use candle::{DType, Result, Tensor};

/// `||ours - reference|| / ||reference||`, in `f64`.
pub(crate) fn rel(ours: &Tensor, reference: &Tensor) -> Result<f64> {
    let diff = (ours.to_dtype(DType::F64)? - reference.to_dtype(DType::F64)?)?.sqr()?.sum_all()?;
    let norm = reference.to_dtype(DType::F64)?.sqr()?.sum_all()?;
    Ok((diff.to_scalar::<f64>()? / norm.to_scalar::<f64>()?.max(1e-300)).sqrt())
}

/// `len` deterministic values in [-1, 1) from `seed` (a linear congruential generator).
pub(crate) fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
