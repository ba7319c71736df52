//! The loop's running sums within an epoch: the loss and throughput since the last logged
//! step, the epoch's mean loss, and the time of the fit's first step.

use std::time::Instant;

use crate::observer::FirstStep;

/// Loss sums and clocks of one epoch; a new one starts each epoch.
#[derive(Debug)]
pub(crate) struct EpochMeter {
    started: Instant,
    interval: (f64, usize, Instant),
    epoch: (f64, usize),
}

impl EpochMeter {
    /// Starts the epoch's clocks now.
    pub(crate) fn start() -> Self {
        let now = Instant::now();
        Self { started: now, interval: (0.0, 0, now), epoch: (0.0, 0) }
    }

    /// Adds a step's loss.
    pub(crate) fn record(&mut self, loss: f32) {
        self.interval = (self.interval.0 + f64::from(loss), self.interval.1 + 1, self.interval.2);
        self.epoch = (self.epoch.0 + f64::from(loss), self.epoch.1 + 1);
    }

    /// Mean loss since the last [`EpochMeter::restart_interval`] (or the epoch's start).
    pub(crate) fn interval_loss(&self) -> f32 {
        (self.interval.0 / self.interval.1 as f64) as f32
    }

    /// Images per second since the last [`EpochMeter::restart_interval`], with `batch_size`
    /// images a step.
    pub(crate) fn images_per_s(&self, batch_size: usize) -> f64 {
        (self.interval.1 * batch_size) as f64 / self.interval.2.elapsed().as_secs_f64().max(1e-9)
    }

    /// Starts a new logging interval (after a logged step).
    pub(crate) fn restart_interval(&mut self) {
        self.interval = (0.0, 0, Instant::now());
    }

    /// Mean loss over the epoch's steps (NaN-free: 0 when there were none).
    pub(crate) fn epoch_loss(&self) -> f32 {
        (self.epoch.0 / self.epoch.1.max(1) as f64) as f32
    }

    /// Seconds since the epoch's start.
    pub(crate) fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The fit's first step, when `steps_left` steps follow it: the time since the epoch's
    /// start, loading included.
    pub(crate) fn first_step(&self, steps_left: usize) -> FirstStep {
        FirstStep { seconds: self.interval.2.elapsed().as_secs_f64(), steps_left }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_restart_and_the_epoch_mean_covers_every_step() {
        let mut meter = EpochMeter::start();
        assert_eq!(meter.epoch_loss(), 0.0);
        meter.record(-0.5);
        meter.record(-0.7);
        assert!((meter.interval_loss() + 0.6).abs() < 1e-6);
        assert!(meter.images_per_s(8) > 0.0);
        meter.restart_interval();
        assert_eq!(meter.images_per_s(8), 0.0);
        meter.record(-0.9);
        assert!((meter.interval_loss() + 0.9).abs() < 1e-6);
        assert!((meter.epoch_loss() + 0.7).abs() < 1e-6);
        assert!(meter.seconds() >= 0.0);
        assert_eq!(meter.first_step(5).steps_left, 5);
    }
}
