//! The collapse monitor as an observer: moving averages of the loss and of the predictions'
//! per-channel spread, for the progress bar, the metrics and the summary.

use simsiam_loss::CollapseMonitor;
use simsiam_models::Backbone;

use crate::Result;
use crate::observer::{EpochContext, FitContext, StepContext, TrainObserver, TrainView};

/// Fills in the collapse level (0 healthy, 1 collapsed) and the smoothed loss of every step
/// and epoch; starts afresh with each fit.
#[derive(Debug, Clone, PartialEq)]
pub struct CollapseObserver {
    monitor: CollapseMonitor,
}

impl CollapseObserver {
    /// A monitor for predictions of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        Self { monitor: CollapseMonitor::new(dim) }
    }

    /// The collapse level now.
    pub fn level(&self) -> f32 {
        self.monitor.level()
    }
}

impl<B: Backbone> TrainObserver<B> for CollapseObserver {
    fn on_fit_start(&mut self, _: &FitContext, run: &TrainView<'_, B>) -> Result<()> {
        self.monitor = CollapseMonitor::new(run.model.output_dim());
        Ok(())
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>, _: &TrainView<'_, B>) -> Result<()> {
        self.monitor.update(ctx.loss, ctx.prediction)?;
        ctx.collapse = self.monitor.level();
        ctx.smoothed_loss = self.monitor.avg_loss();
        Ok(())
    }

    fn on_epoch_end(&mut self, ctx: &mut EpochContext, _: &TrainView<'_, B>) -> Result<()> {
        ctx.collapse = self.monitor.level();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, Tensor};

    use super::*;
    use crate::observers::testing::{Tiny, epoch_context, fit_context, step_context};

    #[test]
    fn collapsed_predictions_raise_the_level_that_later_observers_read() -> Result<()> {
        let tiny = Tiny::new()?;
        let dim = tiny.model.output_dim();
        let mut observer = CollapseObserver::new(1);
        TrainObserver::on_fit_start(&mut observer, &fit_context(), &tiny.view())?;

        // One-hot rows have the healthy spread 1/sqrt(d): after one step the average, with
        // weight 0.9 on the past (0), is a tenth of it, a level of 0.9.
        let healthy = Tensor::eye(dim, DType::F32, &Device::Cpu)?;
        let mut ctx = step_context(&healthy, -0.5);
        observer.on_step(&mut ctx, &tiny.view())?;
        assert!((ctx.collapse - 0.9).abs() < 1e-5, "{}", ctx.collapse);
        assert!((ctx.smoothed_loss + 0.05).abs() < 1e-6, "{}", ctx.smoothed_loss);

        // Identical rows have no spread: the average stays, the level with it.
        let collapsed = Tensor::ones((8, dim), DType::F32, &Device::Cpu)?;
        let mut ctx = step_context(&collapsed, -1.0);
        observer.on_step(&mut ctx, &tiny.view())?;
        assert!(ctx.collapse > 0.9 && ctx.collapse <= 1.0, "{}", ctx.collapse);
        let mut epoch = epoch_context(0, 2);
        observer.on_epoch_end(&mut epoch, &tiny.view())?;
        assert_eq!(epoch.collapse, ctx.collapse);
        assert_eq!(observer.level(), ctx.collapse);

        // A new fit starts from a fresh average.
        TrainObserver::on_fit_start(&mut observer, &fit_context(), &tiny.view())?;
        assert_eq!(observer.level(), 1.0);
        Ok(())
    }
}
