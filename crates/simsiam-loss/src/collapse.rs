//! The collapse metric of Lightly's satellite tutorial: the standard deviation of
//! l2-normalised outputs, about `1/sqrt(d)` for healthy embeddings and 0 when collapsed.

use candle::{D, Result, Tensor};

/// The mean over channels of the per-channel standard deviation (unbiased, as `torch.std`) of
/// the l2-normalised rows of `x`.
///
/// Rows are normalised as `F.normalize(x, dim=1)` does (norm clamped below at `1e-12`).
///
/// # Shapes
/// - `x`: `[batch, dim]` with `batch >= 2`
pub fn collapse_std(x: &Tensor) -> Result<f32> {
    let (batch, _dim) = x.dims2()?;
    if batch < 2 {
        candle::bail!("collapse_std needs at least two rows, got {batch}");
    }
    let x = x.detach().to_dtype(candle::DType::F32)?;
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    let x = x.broadcast_div(&norm)?;
    let centred = x.broadcast_sub(&x.mean_keepdim(0)?)?;
    let var = (centred.sqr()?.sum(0)? / (batch - 1) as f64)?;
    var.sqrt()?.mean_all()?.to_scalar::<f32>()
}

/// The collapse level `max(0, 1 - sqrt(d) * std)`: 0 for healthy outputs whose per-channel
/// std is `1/sqrt(d)`, 1 for a complete collapse.
pub fn collapse_level(std: f32, dim: usize) -> f32 {
    (1.0 - (dim as f32).sqrt() * std).max(0.0)
}

/// Exponential moving averages of the loss and of [`collapse_std`], weight 0.9 on the past,
/// as the satellite tutorial tracks them during training.
#[derive(Debug, Clone, PartialEq)]
pub struct CollapseMonitor {
    dim: usize,
    weight: f32,
    avg_loss: f32,
    avg_std: f32,
}

impl CollapseMonitor {
    /// A monitor for outputs of dimension `dim`, with the tutorial's weight 0.9.
    pub fn new(dim: usize) -> Self {
        Self { dim, weight: 0.9, avg_loss: 0.0, avg_std: 0.0 }
    }

    /// Folds one step's loss and output into the averages.
    ///
    /// # Shapes
    /// - `output`: `[batch, dim]`
    pub fn update(&mut self, loss: f32, output: &Tensor) -> Result<()> {
        let std = collapse_std(output)?;
        let w = self.weight;
        self.avg_loss = w * self.avg_loss + (1.0 - w) * loss;
        self.avg_std = w * self.avg_std + (1.0 - w) * std;
        Ok(())
    }

    /// The averaged loss.
    pub fn avg_loss(&self) -> f32 {
        self.avg_loss
    }

    /// The averaged standard deviation of normalised outputs.
    pub fn avg_std(&self) -> f32 {
        self.avg_std
    }

    /// The collapse level of the averaged standard deviation.
    pub fn level(&self) -> f32 {
        collapse_level(self.avg_std, self.dim)
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, Tensor};

    use super::*;

    #[test]
    fn collapsed_outputs_have_zero_std_and_level_one() -> Result<()> {
        let x = Tensor::ones((8, 16), DType::F32, &Device::Cpu)?;
        let std = collapse_std(&x)?;
        assert!(std.abs() < 1e-7);
        assert_eq!(collapse_level(std, 16), 1.0);
        Ok(())
    }

    #[test]
    fn one_hot_rows_match_the_closed_form() -> Result<()> {
        // Rows are the d unit vectors: each channel holds a single 1 among d values, so its
        // unbiased variance is (1/d)(1 - 1/d) * d / (d - 1) = 1/d, and the std is 1/sqrt(d).
        let d = 64;
        let x = Tensor::eye(d, DType::F32, &Device::Cpu)?;
        let std = collapse_std(&x)?;
        assert!((std - 1.0 / (d as f32).sqrt()).abs() < 1e-6, "{std}");
        assert!(collapse_level(std, d) < 1e-5);
        Ok(())
    }

    #[test]
    fn a_single_row_is_an_error() {
        let x = Tensor::ones((1, 4), DType::F32, &Device::Cpu).expect("ones");
        assert!(collapse_std(&x).is_err());
    }

    #[test]
    fn monitor_moves_towards_the_observed_std() -> Result<()> {
        let x = Tensor::eye(4, DType::F32, &Device::Cpu)?;
        let mut m = CollapseMonitor::new(4);
        for _ in 0..200 {
            m.update(-0.5, &x)?;
        }
        assert!((m.avg_std() - 0.5).abs() < 1e-4);
        assert!((m.avg_loss() + 0.5).abs() < 1e-4);
        assert!(m.level() < 1e-3);
        Ok(())
    }
}
