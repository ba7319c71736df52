//! What the training loop tells the code around it: the [`TrainObserver`] trait and the
//! contexts its methods receive.
//!
//! The loop calls the observers after each optimiser step, at the start and end of each epoch,
//! when interrupted, and when a fit ends. The trainer's own observers run in a fixed order,
//! then those added with [`crate::Trainer::with_observer`]: collapse monitor, kNN monitor,
//! progress bar, metrics log, checkpoints. Measurements that one observer makes for the
//! others (the collapse level, the kNN accuracy) are fields of the context that it fills in
//! before the later ones read them.

use std::fmt;

use candle::Tensor;
use candle_nn::VarMap;
use simsiam_models::{Backbone, SimSiam};

use crate::distributed::Communicator;
use crate::{OnlineProbe, Result, Sgd, TopK, TrainState};

/// Read access to what is being trained, for observers that evaluate or save it.
pub struct TrainView<'a, B: Backbone> {
    /// The model.
    pub model: &'a SimSiam<B>,
    /// The model's variables.
    pub varmap: &'a VarMap,
    /// The optimiser (its momentum goes into checkpoints).
    pub optimizer: &'a Sgd,
    /// Where training stands, as a checkpoint stores it.
    pub state: &'a TrainState,
    /// The data-parallel group, when training as one of several ranks.
    pub comm: Option<&'a dyn Communicator>,
    /// The online linear probe, when one is trained.
    pub probe: Option<&'a OnlineProbe>,
}

impl<B: Backbone> TrainView<'_, B> {
    /// Whether this worker writes files: rank 0, or the only worker.
    pub fn is_primary(&self) -> bool {
        self.comm.is_none_or(|c| c.rank() == 0)
    }
}

/// At the start of a fit.
#[derive(Debug, Clone, PartialEq)]
pub struct FitContext {
    /// Epochs of the schedule (the run's length).
    pub epochs: usize,
    /// Epochs this fit stops after.
    pub until: usize,
    /// Optimiser steps per epoch.
    pub batches_per_epoch: usize,
}

/// At the start of an epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStart {
    /// The epoch beginning (0-based).
    pub epoch: usize,
    /// Epochs of the schedule.
    pub epochs: usize,
    /// Batches of this epoch already trained on (after a mid-epoch resume).
    pub batches_done: usize,
}

/// After an optimiser step.
#[derive(Debug)]
pub struct StepContext<'a> {
    /// Epoch in progress (0-based).
    pub epoch: usize,
    /// Optimiser steps taken, this one included.
    pub step: usize,
    /// This step's loss (the mean over ranks when data-parallel).
    pub loss: f32,
    /// The learning rate of this step.
    pub lr: f64,
    /// The prediction `p0` of the first view, `[batch, dim]`.
    pub prediction: &'a Tensor,
    /// Mean loss since the last logged step (or the epoch's start).
    pub interval_loss: f32,
    /// Images per second since the last logged step (or the epoch's start).
    pub images_per_s: f64,
    /// Whether this step is one that `log_every` asks to log.
    pub log_due: bool,
    /// On the fit's first step: how long it took and what that means for the rest.
    pub first_step: Option<FirstStep>,
    /// The collapse level of the moving average, filled in by the collapse monitor.
    pub collapse: f32,
    /// The moving average of the loss, filled in by the collapse monitor.
    pub smoothed_loss: f32,
    /// Seconds on the training clock after this step ([`TrainState::train_seconds`]).
    pub train_seconds: f64,
    /// Set by an observer to end the fit after this step, a checkpoint saved, as
    /// [`crate::TrainOutcome::TimeUp`] (a time budget spent). Data-parallel, every rank must
    /// set it at the same step.
    pub stop: bool,
}

/// After an epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochContext {
    /// The epoch completed (0-based).
    pub epoch: usize,
    /// Epochs of the schedule.
    pub epochs: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Mean loss over the epoch's steps in this fit.
    pub loss: f32,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    /// Seconds the epoch took; the kNN monitor adds the time of its evaluation.
    pub seconds: f64,
    /// The collapse level at the end of the epoch, filled in by the collapse monitor.
    pub collapse: f32,
    /// kNN top-1 accuracy, filled in by the kNN monitor when it ran this epoch.
    pub knn_top1: Option<f64>,
    /// The online probe's accuracy, filled in by its observer when a probe is trained.
    pub probe: Option<ProbeAccuracy>,
}

/// The online linear probe's accuracy over an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeAccuracy {
    /// Running top-1 on the epoch's training batches (both views, as the probe trained).
    pub train_top1: f64,
    /// Running top-5 on the epoch's training batches.
    pub train_top5: f64,
    /// Top-1 and top-5 on the test split (evaluation transform, backbone in evaluation
    /// mode), when the dataset has one.
    pub test: Option<TopK>,
}

impl EpochContext {
    /// Epochs completed, this one included.
    pub fn completed(&self) -> usize {
        self.epoch + 1
    }

    /// Whether this was the schedule's last epoch.
    pub fn is_last(&self) -> bool {
        self.completed() == self.epochs
    }

    /// `epoch 3/800: loss -0.9123, collapse 0.012, 41.2 s, kNN top-1 85.10%`, then the
    /// probe's accuracy when there is one (`, probe top-1 40.00% train, 38.50% test`).
    pub fn report_line(&self) -> String {
        format!(
            "epoch {}/{}: loss {:.4}, collapse {:.3}, {:.1} s{}{}",
            self.completed(),
            self.epochs,
            self.loss,
            self.collapse,
            self.seconds,
            self.knn_top1.map(|a| format!(", kNN top-1 {:.2}%", 100.0 * a)).unwrap_or_default(),
            self.probe.map(|p| p.report()).unwrap_or_default()
        )
    }
}

impl ProbeAccuracy {
    /// `, probe top-1 40.00% train, 38.50% test`.
    fn report(&self) -> String {
        let test = self.test.map(|t| format!(", {:.2}% test", 100.0 * t.top1)).unwrap_or_default();
        format!(", probe top-1 {:.2}% train{test}", 100.0 * self.train_top1)
    }
}

/// The fit's first step: its time, and the estimate for the steps left it gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirstStep {
    /// Seconds from the epoch's start to the end of the step (loading included).
    pub seconds: f64,
    /// Steps left in this fit after it.
    pub steps_left: usize,
}

impl fmt::Display for FirstStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "first step {:.2} s: about {} for the {} steps left (evaluation not included)",
            self.seconds,
            human_duration(self.seconds * self.steps_left as f64),
            self.steps_left
        )
    }
}

/// Code that follows training: every method does nothing unless implemented. An error stops
/// the fit and is returned from it.
pub trait TrainObserver<B: Backbone> {
    /// Before the first epoch of a fit.
    fn on_fit_start(&mut self, _ctx: &FitContext, _run: &TrainView<'_, B>) -> Result<()> {
        Ok(())
    }

    /// Before the first step of each epoch.
    fn on_epoch_start(&mut self, _ctx: &EpochStart, _run: &TrainView<'_, B>) -> Result<()> {
        Ok(())
    }

    /// After each optimiser step.
    fn on_step(&mut self, _ctx: &mut StepContext<'_>, _run: &TrainView<'_, B>) -> Result<()> {
        Ok(())
    }

    /// After each epoch.
    fn on_epoch_end(&mut self, _ctx: &mut EpochContext, _run: &TrainView<'_, B>) -> Result<()> {
        Ok(())
    }

    /// When an interruption or a spent time budget ([`StepContext::stop`]) stops the fit
    /// before its last epoch (on every rank at the same step), after that step's
    /// [`TrainObserver::on_step`] (and its epoch's end, when it was the epoch's last step).
    fn on_interrupt(&mut self, _run: &TrainView<'_, B>) -> Result<()> {
        Ok(())
    }

    /// After the last epoch of a fit that ran to its end.
    fn on_fit_end(&mut self, _run: &TrainView<'_, B>) -> Result<()> {
        Ok(())
    }
}

/// `1 h 05 min`, `12 min 30 s` or `42 s`.
fn human_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s:02} s"),
        (h, m, _) => format!("{h} h {m:02} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_hours_minutes_or_seconds() {
        assert_eq!(human_duration(42.4), "42 s");
        assert_eq!(human_duration(750.0), "12 min 30 s");
        assert_eq!(human_duration(3900.0), "1 h 05 min");
    }

    #[test]
    fn report_lines_name_the_epoch_and_the_knn_accuracy_when_there_is_one() {
        let mut ctx = EpochContext {
            epoch: 2,
            epochs: 800,
            step: 30,
            loss: -0.91234,
            lr: 0.05,
            seconds: 41.23,
            collapse: 0.0123,
            knn_top1: None,
            probe: None,
        };
        assert_eq!(ctx.report_line(), "epoch 3/800: loss -0.9123, collapse 0.012, 41.2 s");
        assert!(!ctx.is_last());
        ctx.knn_top1 = Some(0.851);
        assert!(ctx.report_line().ends_with(", kNN top-1 85.10%"), "{}", ctx.report_line());
        ctx.probe = Some(ProbeAccuracy {
            train_top1: 0.4,
            train_top5: 0.9,
            test: Some(TopK { top1: 0.385, top5: 0.8 }),
        });
        assert!(
            ctx.report_line().ends_with(", kNN top-1 85.10%, probe top-1 40.00% train, 38.50% test"),
            "{}",
            ctx.report_line()
        );
        let first = FirstStep { seconds: 1.5, steps_left: 500 };
        assert_eq!(
            first.to_string(),
            "first step 1.50 s: about 12 min 30 s for the 500 steps left (evaluation not included)"
        );
    }
}
