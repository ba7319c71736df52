//! The kNN monitor as an observer: every `every` epochs and after the last, the accuracy of
//! the backbone's features, for the metrics log and the summary.

use std::time::Instant;

use simsiam_models::{Backbone, SimSiam};

use crate::Result;
use crate::observer::{EpochContext, TrainObserver, TrainView};

/// Computes kNN top-1 accuracy of the model's backbone ([`crate::knn_monitor`] makes one
/// from `simsiam-data`'s loaders).
pub type KnnMonitor<B> = Box<dyn FnMut(&SimSiam<B>) -> Result<f64>>;

/// Runs a [`KnnMonitor`] at the end of every `every`-th epoch (never when 0) and of the last,
/// and fills in the epoch's `knn_top1`; the epoch's seconds include the evaluation.
pub struct KnnObserver<B: Backbone> {
    monitor: KnnMonitor<B>,
    every: usize,
}

impl<B: Backbone> KnnObserver<B> {
    /// Runs `monitor` every `every` epochs and after the last.
    pub fn new(monitor: KnnMonitor<B>, every: usize) -> Self {
        Self { monitor, every }
    }

    fn due(&self, ctx: &EpochContext) -> bool {
        self.every > 0 && ctx.completed() % self.every == 0 || ctx.is_last()
    }
}

impl<B: Backbone> TrainObserver<B> for KnnObserver<B> {
    fn on_epoch_end(&mut self, ctx: &mut EpochContext, run: &TrainView<'_, B>) -> Result<()> {
        if self.due(ctx) {
            let started = Instant::now();
            ctx.knn_top1 = Some((self.monitor)(run.model)?);
            ctx.seconds += started.elapsed().as_secs_f64();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::observers::testing::{Tiny, epoch_context};

    #[test]
    fn runs_every_few_epochs_and_after_the_last_and_fills_in_the_accuracy() -> Result<()> {
        let tiny = Tiny::new()?;
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let monitor: KnnMonitor<_> = Box::new(move |model| {
            assert_eq!(model.output_dim(), 16);
            Ok(0.25 * counter.fetch_add(1, Ordering::SeqCst) as f64)
        });
        let mut observer = KnnObserver::new(monitor, 2);
        let mut accuracies = Vec::new();
        for epoch in 0..5 {
            let mut ctx = epoch_context(epoch, 5);
            observer.on_epoch_end(&mut ctx, &tiny.view())?;
            assert!(ctx.seconds >= 1.0);
            accuracies.push(ctx.knn_top1);
        }
        // Epochs 2 and 4 (completed counts) and the last, 5.
        assert_eq!(accuracies, [None, Some(0.0), None, Some(0.25), Some(0.5)]);

        let mut never = KnnObserver::new(Box::new(|_| Ok(1.0)), 0);
        let mut ctx = epoch_context(0, 3);
        never.on_epoch_end(&mut ctx, &tiny.view())?;
        assert_eq!(ctx.knn_top1, None);
        Ok(())
    }

    #[test]
    fn an_evaluation_error_stops_the_fit() -> Result<()> {
        let tiny = Tiny::new()?;
        let mut observer: KnnObserver<_> =
            KnnObserver::new(Box::new(|_| Err(crate::TrainError::Config("no bank".into()))), 1);
        let err = observer.on_epoch_end(&mut epoch_context(0, 2), &tiny.view()).expect_err("an error");
        assert!(err.to_string().contains("no bank"), "{err}");
        Ok(())
    }
}
