//! The trainer's settings: epochs, the SGD recipe, the schedule, and how often to log,
//! checkpoint and evaluate.

use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// Whether the learning rate follows the cosine decay every iteration or every epoch, or along
/// the training clock, or stays constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleStep {
    /// Once per optimiser step (smoother; Lightly's benchmarks).
    Iteration,
    /// Once per epoch (the official SimSiam code).
    Epoch,
    /// Never: after the warmup (if any) the rate stays at `lr`, as a plain
    /// `torch.optim.SGD(params, lr)` without a scheduler (Lightly's examples and tutorials).
    Constant,
    /// Every iteration, over [`TrainerConfig::clock_minutes`] of training clock instead of
    /// over the epochs: the rate is the cosine at the clock's reading before the step, and
    /// reaches 0 at the budget however fast the machine runs. No warmup. The clock is
    /// [`crate::TrainState::train_seconds`], kept in checkpoints.
    Clock,
}

/// Everything the loop needs besides the model and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerConfig {
    /// Epochs to train.
    pub epochs: usize,
    /// The learning rate at the start of the cosine decay (already scaled by batch / 256
    /// where the recipe asks for it: see [`crate::scaled_lr`]).
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Keep the prediction head at `lr` throughout (the paper's default, Section 4.4).
    pub fixed_predictor_lr: bool,
    /// Linear warmup length, in epochs.
    pub warmup_epochs: usize,
    /// Per-iteration, per-epoch or clock schedule.
    pub schedule_step: ScheduleStep,
    /// The training-clock minutes a [`ScheduleStep::Clock`] schedule spans (the run's time
    /// budget); unused by the other schedules.
    #[serde(default)]
    pub clock_minutes: f64,
    /// Steps between progress log lines and metrics entries.
    pub log_every: usize,
    /// Epochs between checkpoints (the last epoch always gets one).
    pub checkpoint_every: usize,
    /// Checkpoints to keep.
    pub keep_checkpoints: usize,
    /// Epochs between kNN evaluations; 0 never (the last epoch always gets one when a
    /// monitor is set).
    pub knn_every: usize,
    /// The run's seed, stored in checkpoints.
    pub seed: u64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            epochs: 800,
            lr: 0.06,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
            fixed_predictor_lr: true,
            warmup_epochs: 0,
            schedule_step: ScheduleStep::Epoch,
            clock_minutes: 0.0,
            log_every: 20,
            checkpoint_every: 1,
            keep_checkpoints: 3,
            knn_every: 10,
            seed: 0,
        }
    }
}

impl TrainerConfig {
    /// Refuses values the loop cannot run with.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.log_every == 0 || self.checkpoint_every == 0 {
            return Err(TrainError::Config(format!(
                "epochs, log_every and checkpoint_every must be positive: {self:?}"
            )));
        }
        if self.warmup_epochs >= self.epochs {
            return Err(TrainError::Config(format!(
                "warmup_epochs ({}) must be below epochs ({})",
                self.warmup_epochs, self.epochs
            )));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(TrainError::Config(format!("the learning rate must be positive, got {}", self.lr)));
        }
        if self.schedule_step == ScheduleStep::Clock {
            if !(self.clock_minutes > 0.0 && self.clock_minutes.is_finite()) {
                return Err(TrainError::Config(format!(
                    "a clock schedule needs a positive budget of training minutes, got {}",
                    self.clock_minutes
                )));
            }
            if self.warmup_epochs > 0 {
                return Err(TrainError::Config(format!(
                    "a clock schedule has no warmup, got warmup_epochs {}",
                    self.warmup_epochs
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_validate_and_impossible_values_do_not() {
        assert!(TrainerConfig::default().validate().is_ok());
        let clock = TrainerConfig {
            schedule_step: ScheduleStep::Clock,
            clock_minutes: 0.5,
            ..TrainerConfig::default()
        };
        assert!(clock.validate().is_ok());
        for bad in [
            TrainerConfig { epochs: 0, ..TrainerConfig::default() },
            TrainerConfig { log_every: 0, ..TrainerConfig::default() },
            TrainerConfig { checkpoint_every: 0, ..TrainerConfig::default() },
            TrainerConfig { epochs: 5, warmup_epochs: 5, ..TrainerConfig::default() },
            TrainerConfig { lr: 0.0, ..TrainerConfig::default() },
            TrainerConfig { lr: f64::NAN, ..TrainerConfig::default() },
            TrainerConfig { schedule_step: ScheduleStep::Clock, ..TrainerConfig::default() },
            TrainerConfig {
                schedule_step: ScheduleStep::Clock,
                clock_minutes: f64::INFINITY,
                ..TrainerConfig::default()
            },
            TrainerConfig {
                schedule_step: ScheduleStep::Clock,
                clock_minutes: 1.0,
                warmup_epochs: 1,
                ..TrainerConfig::default()
            },
        ] {
            assert!(matches!(bad.validate(), Err(TrainError::Config(_))), "{bad:?}");
        }
    }
}
