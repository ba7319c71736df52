//! Learning-rate schedules: the linear scaling rule and cosine decay with linear warmup.

use crate::{Result, TrainError};

/// The paper's linear scaling rule: `lr = base_lr * batch_size / 256` (Section 4, "Optimizer").
pub fn scaled_lr(base_lr: f64, batch_size: usize) -> f64 {
    base_lr * batch_size as f64 / 256.0
}

/// Cosine decay from `base_lr` to `final_lr` after an optional linear warmup, over steps that
/// are iterations or epochs as the caller counts them.
///
/// Equals PyTorch's `SequentialLR([LinearLR(start_factor, total_iters=warmup),
/// CosineAnnealingLR(T_max=total - warmup, eta_min=final_lr)], milestones=[warmup])`, and with
/// no warmup the SimSiam recipe's `lr * 0.5 * (1 + cos(pi * epoch / epochs))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineSchedule {
    base_lr: f64,
    total: usize,
    warmup: usize,
    warmup_start_factor: f64,
    final_lr: f64,
}

impl CosineSchedule {
    /// Cosine decay from `base_lr` to 0 over `total` steps, no warmup.
    pub fn new(base_lr: f64, total: usize) -> Result<Self> {
        Self::with_warmup(base_lr, total, 0, 1.0, 0.0)
    }

    /// Linear warmup from `base_lr * warmup_start_factor` over `warmup` steps, then cosine
    /// decay to `final_lr` at step `total`.
    pub fn with_warmup(
        base_lr: f64,
        total: usize,
        warmup: usize,
        warmup_start_factor: f64,
        final_lr: f64,
    ) -> Result<Self> {
        if !(base_lr > 0.0 && base_lr.is_finite()) || total == 0 || warmup >= total {
            return Err(TrainError::Config(format!(
                "cosine schedule needs base_lr > 0 and warmup < total, got base_lr {base_lr}, warmup {warmup}, total {total}"
            )));
        }
        if !(0.0..=1.0).contains(&warmup_start_factor) || warmup_start_factor == 0.0 && warmup > 0 {
            return Err(TrainError::Config(format!(
                "warmup start factor must be in (0, 1], got {warmup_start_factor}"
            )));
        }
        if !(0.0..=base_lr).contains(&final_lr) {
            return Err(TrainError::Config(format!("final lr {final_lr} must be in [0, {base_lr}]")));
        }
        Ok(Self { base_lr, total, warmup, warmup_start_factor, final_lr })
    }

    /// The base learning rate.
    pub fn base_lr(&self) -> f64 {
        self.base_lr
    }

    /// The learning rate at `step` (0-based); steps past the end keep the final rate.
    pub fn lr(&self, step: usize) -> f64 {
        self.lr_at(step as f64)
    }

    /// The learning rate at a position between steps (a clock schedule's fraction of its
    /// budget, see [`crate::ScheduleStep::Clock`]); positions past the end keep the final rate.
    pub fn lr_at(&self, at: f64) -> f64 {
        let warmup = self.warmup as f64;
        if at < warmup {
            let f = self.warmup_start_factor;
            return self.base_lr * (f + (1.0 - f) * at / warmup);
        }
        let span = (self.total - self.warmup) as f64;
        let cos = (std::f64::consts::PI * (at - warmup).min(span) / span).cos();
        self.final_lr + (self.base_lr - self.final_lr) * 0.5 * (1.0 + cos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_scaling_rule() {
        assert_eq!(scaled_lr(0.05, 512), 0.1);
        assert_eq!(scaled_lr(0.03, 256), 0.03);
    }

    #[test]
    fn cosine_without_warmup_is_the_papers_formula() -> Result<()> {
        let s = CosineSchedule::new(0.06, 800)?;
        for epoch in [0, 1, 100, 400, 799] {
            let want = 0.06 * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / 800.0).cos());
            assert!((s.lr(epoch) - want).abs() < 1e-15);
        }
        assert_eq!(s.lr(0), 0.06);
        assert!(s.lr(800).abs() < 1e-15 && s.lr(10_000).abs() < 1e-15);
        Ok(())
    }

    #[test]
    fn between_steps_the_cosine_is_continuous() -> Result<()> {
        let s = CosineSchedule::new(0.06, 800)?;
        assert_eq!(s.lr_at(100.0), s.lr(100));
        let half = s.lr_at(400.5);
        assert!(s.lr(401) < half && half < s.lr(400));
        assert!((s.lr_at(400.0) - 0.03).abs() < 1e-15 && s.lr_at(1e9).abs() < 1e-15);
        Ok(())
    }

    #[test]
    fn invalid_schedules_are_errors() {
        assert!(CosineSchedule::new(0.0, 10).is_err());
        assert!(CosineSchedule::new(0.1, 0).is_err());
        assert!(CosineSchedule::with_warmup(0.1, 10, 10, 0.5, 0.0).is_err());
        assert!(CosineSchedule::with_warmup(0.1, 10, 2, 0.0, 0.0).is_err());
        assert!(CosineSchedule::with_warmup(0.1, 10, 2, 0.5, 0.2).is_err());
        assert!(CosineSchedule::new(f64::NAN, 10).is_err());
    }
}
