//! The terminal progress bar as an observer (feature `progress`): one bar per epoch, the
//! loss, learning rate, collapse level and throughput beside it, and a line above it for the
//! first step's time estimate and for every epoch.

use indicatif::{ProgressBar, ProgressStyle};
use simsiam_models::Backbone;

use crate::Result;
use crate::observer::{EpochContext, EpochStart, FitContext, StepContext, TrainObserver, TrainView};

/// A progress bar on stderr, drawn only when stderr is a terminal (and hidden altogether
/// when built with `show` false); where it is hidden it prints nothing, so the lines it would
/// show ([`crate::FirstStep`], [`EpochContext::report_line`]) are for the caller to print.
#[derive(Debug)]
pub struct ProgressObserver {
    show: bool,
    bar: ProgressBar,
}

impl ProgressObserver {
    /// A bar, or none when `show` is false.
    pub fn new(show: bool) -> Self {
        Self { show, bar: ProgressBar::hidden() }
    }

    /// Whether the bar is drawn (shown, and stderr is a terminal).
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    fn new_bar(&self, len: usize) -> ProgressBar {
        if !self.show {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len as u64); // draws to stderr, and only on a terminal
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    }
}

impl<B: Backbone> TrainObserver<B> for ProgressObserver {
    fn on_fit_start(&mut self, ctx: &FitContext, _: &TrainView<'_, B>) -> Result<()> {
        self.bar = self.new_bar(ctx.batches_per_epoch);
        Ok(())
    }

    fn on_epoch_start(&mut self, ctx: &EpochStart, _: &TrainView<'_, B>) -> Result<()> {
        self.bar.set_prefix(format!("epoch {}/{}", ctx.epoch + 1, ctx.epochs));
        self.bar.set_position(ctx.batches_done as u64);
        self.bar.reset_eta();
        Ok(())
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>, _: &TrainView<'_, B>) -> Result<()> {
        if let Some(first) = &ctx.first_step {
            self.bar.println(first.to_string()); // nothing when hidden
        }
        self.bar.inc(1);
        self.bar.set_message(format!(
            "loss {:.4} lr {:.4} collapse {:.3} {:.0} img/s",
            ctx.smoothed_loss, ctx.lr, ctx.collapse, ctx.images_per_s
        ));
        Ok(())
    }

    fn on_epoch_end(&mut self, ctx: &mut EpochContext, _: &TrainView<'_, B>) -> Result<()> {
        self.bar.println(ctx.report_line());
        Ok(())
    }

    fn on_interrupt(&mut self, _: &TrainView<'_, B>) -> Result<()> {
        self.bar.abandon();
        Ok(())
    }

    fn on_fit_end(&mut self, _: &TrainView<'_, B>) -> Result<()> {
        self.bar.finish_and_clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, Tensor};

    use super::*;
    use crate::observers::testing::{Tiny, fit_context, step_context};

    #[test]
    fn the_bar_follows_the_epochs_and_steps_and_stays_hidden_when_asked() -> Result<()> {
        let tiny = Tiny::new()?;
        let p = Tensor::zeros((2, 16), DType::F32, &Device::Cpu)?;
        let mut observer = ProgressObserver::new(false);
        TrainObserver::on_fit_start(&mut observer, &fit_context(), &tiny.view())?;
        assert!(!observer.is_visible());
        let start = EpochStart { epoch: 1, epochs: 2, batches_done: 1 };
        TrainObserver::on_epoch_start(&mut observer, &start, &tiny.view())?;
        let mut ctx = StepContext { smoothed_loss: -0.5, collapse: 0.25, ..step_context(&p, -0.5) };
        observer.on_step(&mut ctx, &tiny.view())?;
        assert_eq!(observer.bar.position(), 2, "one batch done before, one step now");
        assert_eq!(observer.bar.prefix(), "epoch 2/2");
        assert_eq!(observer.bar.message(), "loss -0.5000 lr 0.0500 collapse 0.250 100 img/s");
        TrainObserver::on_fit_end(&mut observer, &tiny.view())?;
        assert!(observer.bar.is_finished());
        Ok(())
    }
}
