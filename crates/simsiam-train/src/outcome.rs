//! What a fit returns: how far it got, and whether it ran to its end or was interrupted.

/// What a fit reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// Epochs completed, in this run and before it.
    pub epochs: usize,
    /// Optimiser steps taken in all.
    pub steps: usize,
    /// Mean loss of the last epoch completed in this fit (NaN when none was).
    pub last_loss: f32,
    /// Collapse level at the end.
    pub collapse: f32,
    /// The last kNN accuracy at an epoch end, when a monitor ran.
    pub knn_top1: Option<f64>,
    /// Epochs completed when that kNN accuracy was measured: below `epochs` when the monitor
    /// skipped the last epochs (`knn_every`) or the fit stopped mid-schedule.
    pub knn_epochs: Option<usize>,
}

/// How a fit ended. An interruption is an outcome, not an error: the checkpoint of the step
/// it stopped after is saved, and the run resumes from it.
#[must_use = "an interrupted fit stopped early"]
#[derive(Debug, Clone, PartialEq)]
pub enum TrainOutcome {
    /// Every epoch asked for was trained.
    Finished(TrainSummary),
    /// The interrupt flag stopped training after a step, mid-epoch; `epochs` is the epoch
    /// that was in progress.
    Interrupted(TrainSummary),
    /// An observer ended the fit after a step because the training-time budget was spent
    /// ([`crate::TimeBudgetObserver`]); the checkpoint of that step is saved and a longer
    /// budget resumes from it.
    TimeUp(TrainSummary),
}

impl TrainOutcome {
    /// The summary, however the fit ended.
    pub fn summary(&self) -> &TrainSummary {
        match self {
            Self::Finished(s) | Self::Interrupted(s) | Self::TimeUp(s) => s,
        }
    }

    /// The summary, however the fit ended.
    pub fn into_summary(self) -> TrainSummary {
        match self {
            Self::Finished(s) | Self::Interrupted(s) | Self::TimeUp(s) => s,
        }
    }

    /// Whether an interruption stopped the fit.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Self::Interrupted(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_outcomes_carry_their_summary() {
        let summary = TrainSummary {
            epochs: 1,
            steps: 4,
            last_loss: -0.5,
            collapse: 0.1,
            knn_top1: None,
            knn_epochs: None,
        };
        let stopped = TrainOutcome::Interrupted(summary.clone());
        assert!(stopped.is_interrupted());
        assert_eq!(stopped.summary(), &summary);
        let done = TrainOutcome::Finished(summary.clone());
        assert!(!done.is_interrupted());
        assert_eq!(done.into_summary(), summary.clone());
        let out_of_time = TrainOutcome::TimeUp(summary.clone());
        assert!(!out_of_time.is_interrupted());
        assert_eq!(out_of_time.summary(), &summary);
    }
}
