//! The metrics log as an observer: every logged step and every epoch as a `tracing` event
//! and, on the primary worker, as a line of the JSON-lines file, which the trainer brings
//! back to the checkpoint it resumed from before a fit.

use simsiam_models::Backbone;

use crate::observer::{EpochContext, StepContext, TrainObserver, TrainView};
use crate::{MetricEvent, MetricsLog, Result};

/// Emits a `tracing` event for every `log_every`-th step and every epoch, on every rank, and
/// appends them to the [`MetricsLog`], when there is one, on rank 0 only.
#[derive(Debug, Default)]
pub struct MetricsObserver {
    log: Option<MetricsLog>,
}

impl MetricsObserver {
    /// Events to `tracing` and, when given, to `log`.
    pub fn new(log: Option<MetricsLog>) -> Self {
        Self { log }
    }

    /// Before a fit: after a resume to `resumed_at` (0 when it found no checkpoint), drops the
    /// events the file holds past that step, which the fit writes again; in any case drops
    /// lines a kill tore, so that the next line starts whole. Primary worker only.
    pub(crate) fn rewind<B: Backbone>(
        &mut self,
        resumed_at: Option<usize>,
        run: &TrainView<'_, B>,
    ) -> Result<()> {
        let Some(log) = self.log.as_mut().filter(|_| run.is_primary()) else { return Ok(()) };
        let rewound = log.rewind(resumed_at)?;
        if !rewound.is_empty() {
            tracing::warn!(
                path = %log.path().display(),
                step = resumed_at,
                later_events = rewound.later_events,
                torn_lines = rewound.torn_lines,
                "metrics brought back to the checkpoint: events past it and torn lines dropped"
            );
        }
        Ok(())
    }

    fn write<B: Backbone>(&mut self, event: &MetricEvent, run: &TrainView<'_, B>) -> Result<()> {
        match &mut self.log {
            Some(log) if run.is_primary() => log.log(event),
            _ => Ok(()),
        }
    }
}

impl<B: Backbone> TrainObserver<B> for MetricsObserver {
    fn on_step(&mut self, ctx: &mut StepContext<'_>, run: &TrainView<'_, B>) -> Result<()> {
        if !ctx.log_due {
            return Ok(());
        }
        let (epoch, step, loss, lr, collapse, images_per_s) =
            (ctx.epoch, ctx.step, ctx.interval_loss, ctx.lr, ctx.collapse, ctx.images_per_s);
        tracing::info!(epoch, step, loss, lr, collapse, images_per_s);
        self.write(&MetricEvent::Step { epoch, step, loss, lr, collapse, images_per_s }, run)
    }

    fn on_epoch_end(&mut self, ctx: &mut EpochContext, run: &TrainView<'_, B>) -> Result<()> {
        let (loss, collapse, seconds, knn_top1) = (ctx.loss, ctx.collapse, ctx.seconds, ctx.knn_top1);
        let probe = ctx.probe;
        let test = probe.and_then(|p| p.test);
        tracing::info!(epoch = ctx.epoch, loss, collapse, seconds, knn_top1 = ?knn_top1, probe = ?probe, "epoch done");
        let event = MetricEvent::Epoch {
            epoch: ctx.epoch,
            step: ctx.step,
            loss,
            lr: ctx.lr,
            collapse,
            seconds,
            knn_top1,
            probe_train_top1: probe.map(|p| p.train_top1).filter(|a| a.is_finite()),
            probe_train_top5: probe.map(|p| p.train_top5).filter(|a| a.is_finite()),
            probe_test_top1: test.map(|t| t.top1),
            probe_test_top5: test.map(|t| t.top5),
        };
        self.write(&event, run)
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, Tensor};

    use super::*;
    use crate::distributed::{Communicator, LocalCommunicator};
    use crate::observer::ProbeAccuracy;
    use crate::observers::testing::{Tiny, epoch_context, step_context};
    use crate::{TopK, TrainError};

    fn lines(path: &std::path::Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Ok(text.lines().map(str::to_owned).collect())
    }

    #[test]
    fn logged_steps_and_epochs_become_lines_on_the_primary_worker_only() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let path = dir.path().join("metrics.jsonl");
        let tiny = Tiny::new()?;
        let p = Tensor::zeros((2, 16), DType::F32, &Device::Cpu)?;
        let mut observer = MetricsObserver::new(Some(MetricsLog::append(&path)?));

        let mut quiet = StepContext { log_due: false, ..step_context(&p, -0.5) };
        observer.on_step(&mut quiet, &tiny.view())?;
        let mut logged = StepContext { interval_loss: -0.25, collapse: 0.5, ..step_context(&p, -0.5) };
        observer.on_step(&mut logged, &tiny.view())?;
        let probe =
            ProbeAccuracy { train_top1: 0.5, train_top5: 0.75, test: Some(TopK { top1: 0.25, top5: 1.0 }) };
        let mut epoch = EpochContext { knn_top1: Some(0.75), probe: Some(probe), ..epoch_context(0, 2) };
        observer.on_epoch_end(&mut epoch, &tiny.view())?;
        let written = lines(&path)?;
        assert_eq!(written.len(), 2, "{written:?}");
        assert!(
            written[0]
                .starts_with(r#"{"event":"step","epoch":0,"step":1,"loss":-0.25,"lr":0.05,"collapse":0.5"#)
        );
        assert!(
            written[1].starts_with(r#"{"event":"epoch","epoch":0,"step":2"#)
                && written[1].contains(r#""knn_top1":0.75"#)
                && written[1].ends_with(
                    r#""probe_train_top1":0.5,"probe_train_top5":0.75,"probe_test_top1":0.25,"probe_test_top5":1.0}"#
                ),
            "{}",
            written[1]
        );

        // Rank 1 of two writes nothing (it never calls a collective here).
        let group = LocalCommunicator::group(2)?;
        let rank1: &dyn Communicator = &group[1];
        let view = TrainView { comm: Some(rank1), ..tiny.view() };
        observer.on_step(&mut logged, &view)?;
        observer.on_epoch_end(&mut epoch, &view)?;
        assert_eq!(lines(&path)?.len(), 2);

        // Without a log there is nothing to write and nothing fails.
        MetricsObserver::new(None).on_epoch_end(&mut epoch, &tiny.view())?;
        Ok(())
    }
}
