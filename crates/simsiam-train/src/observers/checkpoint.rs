//! Checkpoints as an observer: every `every` epochs, after the last and on an interruption.

use std::path::PathBuf;

use simsiam_models::Backbone;

use crate::distributed::save_checkpoint_rank0;
use crate::observer::{EpochContext, TrainObserver, TrainView};
use crate::{Checkpointer, Result};

/// Saves a checkpoint at the end of every `every`-th epoch, of the last, and when training is
/// interrupted. Data-parallel, rank 0 writes and every rank waits for the write, even without
/// a checkpointer, so that the ranks stay in step.
#[derive(Debug, Clone)]
pub struct CheckpointObserver {
    checkpointer: Option<Checkpointer>,
    every: usize,
}

impl CheckpointObserver {
    /// Checkpoints through `checkpointer` (none: saves nothing) every `every` epochs.
    pub fn new(checkpointer: Option<Checkpointer>, every: usize) -> Self {
        Self { checkpointer, every }
    }

    /// Where checkpoints go, when anywhere.
    pub fn checkpointer(&self) -> Option<&Checkpointer> {
        self.checkpointer.as_ref()
    }

    /// Saves the model, the online probe (when there is one), the optimiser and the state now; the path when this worker wrote one.
    pub fn save<B: Backbone>(&self, run: &TrainView<'_, B>) -> Result<Option<PathBuf>> {
        let probe = run.probe.map(|p| p.varmap());
        if let Some(comm) = run.comm {
            return match &self.checkpointer {
                Some(c) => save_checkpoint_rank0(comm, c, run.varmap, probe, run.optimizer, run.state),
                None => comm.barrier().map(|()| None),
            };
        }
        let Some(checkpointer) = &self.checkpointer else { return Ok(None) };
        let path = checkpointer.save_with_probe(run.varmap, probe, run.optimizer, run.state)?;
        tracing::debug!(path = %path.display(), "checkpoint saved");
        Ok(Some(path))
    }
}

impl<B: Backbone> TrainObserver<B> for CheckpointObserver {
    fn on_epoch_end(&mut self, ctx: &mut EpochContext, run: &TrainView<'_, B>) -> Result<()> {
        if ctx.completed() % self.every.max(1) == 0 || ctx.is_last() {
            self.save(run)?;
        }
        Ok(())
    }

    fn on_interrupt(&mut self, run: &TrainView<'_, B>) -> Result<()> {
        let path = self.save(run)?;
        tracing::warn!(path = ?path, "stopped before the last epoch: checkpoint saved");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observers::testing::{Tiny, epoch_context};
    use crate::{TrainError, read_train_state};

    #[test]
    fn saves_every_few_epochs_after_the_last_and_on_interruption() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let mut tiny = Tiny::new()?;
        let mut observer = CheckpointObserver::new(Some(Checkpointer::new(dir.path(), 10)?), 2);
        let mut saved = Vec::new();
        for epoch in 0..3 {
            tiny.state.epoch = epoch + 1;
            tiny.state.step = 2 * (epoch + 1);
            observer.on_epoch_end(&mut epoch_context(epoch, 3), &tiny.view())?;
            saved.push(observer.checkpointer().map_or(Ok(0), |c| c.list().map(|l| l.len()))?);
        }
        assert_eq!(saved, [0, 1, 2], "after epochs 2 and 3 (the last)");

        tiny.state.step = 7; // mid-epoch
        TrainObserver::on_interrupt(&mut observer, &tiny.view())?;
        let checkpointer = Checkpointer::new(dir.path(), 10)?;
        let latest = checkpointer.latest()?.expect("the interruption's checkpoint");
        assert_eq!(read_train_state(&latest)?.step, 7);
        assert_eq!(checkpointer.list()?.len(), 3);

        // Without a checkpointer nothing is written and nothing fails.
        assert_eq!(CheckpointObserver::new(None, 1).save(&tiny.view())?, None);
        Ok(())
    }
}
