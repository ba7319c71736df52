//! The trainer's own observers, one concern each, and the fixed order they run in.

mod checkpoint;
mod collapse;
mod knn;
mod metrics;
mod online_probe;
#[cfg(feature = "progress")]
mod progress;
mod tensorboard;
#[cfg(test)]
pub(crate) mod testing;
mod time_budget;

pub use checkpoint::CheckpointObserver;
pub use collapse::CollapseObserver;
pub use knn::{KnnMonitor, KnnObserver};
pub use metrics::MetricsObserver;
pub use online_probe::{OnlineProbeObserver, ProbeTestSet};
#[cfg(feature = "progress")]
pub use progress::ProgressObserver;
use simsiam_models::Backbone;
pub use tensorboard::TensorBoardObserver;
pub use time_budget::{MinuteMarks, TimeBudgetObserver};

use crate::Result;
use crate::observer::TrainObserver;

/// The observers of a trainer, in the order they run: the measuring ones first (collapse,
/// kNN, online probe), whose results the reporting ones (progress bar, metrics) read, then checkpoints,
/// then the caller's own.
pub(crate) struct Observers<B: Backbone> {
    pub(crate) collapse: CollapseObserver,
    pub(crate) knn: Option<KnnObserver<B>>,
    pub(crate) probe: OnlineProbeObserver<B>,
    #[cfg(feature = "progress")]
    pub(crate) progress: ProgressObserver,
    pub(crate) metrics: MetricsObserver,
    pub(crate) checkpoint: CheckpointObserver,
    pub(crate) extra: Vec<Box<dyn TrainObserver<B>>>,
}

impl<B: Backbone> Observers<B> {
    /// Calls `f` on every observer in order; stops at the first error.
    pub(crate) fn each(&mut self, mut f: impl FnMut(&mut dyn TrainObserver<B>) -> Result<()>) -> Result<()> {
        f(&mut self.collapse)?;
        if let Some(knn) = &mut self.knn {
            f(knn)?;
        }
        f(&mut self.probe)?;
        #[cfg(feature = "progress")]
        f(&mut self.progress)?;
        f(&mut self.metrics)?;
        f(&mut self.checkpoint)?;
        self.extra.iter_mut().try_for_each(|o| f(o.as_mut()))
    }
}
