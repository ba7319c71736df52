//! A NaN loss stops training with a clear error and keeps the last good checkpoint.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use candle::Tensor;
use common::{config, trainer_with_loss};
use simsiam_loss::{NegativeCosineSimilarity, Similarity};
use simsiam_train::{Checkpointer, Result, TrainError, read_train_state};

/// Negative cosine similarity that turns NaN from its `nan_from`-th call on, as a diverging
/// run would.
struct DivergingLoss {
    calls: AtomicUsize,
    nan_from: usize,
}

impl Similarity for DivergingLoss {
    fn loss(&self, p: &Tensor, z: &Tensor) -> candle::Result<Tensor> {
        let loss = NegativeCosineSimilarity::default().loss(p, z)?;
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.nan_from { loss * f64::NAN } else { Ok(loss) }
    }
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    // Two calls per step (the symmetric loss): NaN from the fifth step on, in epoch 1.
    let loss = Box::new(DivergingLoss { calls: AtomicUsize::new(0), nan_from: 8 });
    let mut t = trainer_with_loss(config(3), loss)?.with_checkpoints(Checkpointer::new(dir.path(), 5)?);
    match t.fit(&common::data()) {
        Err(TrainError::NonFiniteLoss { epoch: 1, step: 4, loss }) => assert!(loss.is_nan()),
        other => panic!("expected a NaN loss at epoch 1, step 4, got {other:?}"),
    }
    let checkpoints = Checkpointer::new(dir.path(), 5)?.list()?;
    assert_eq!(checkpoints.len(), 1, "only the good epoch-1 checkpoint: {checkpoints:?}");
    let state = read_train_state(&checkpoints[0])?;
    assert_eq!((state.epoch, state.step), (1, 3));
    let message = TrainError::NonFiniteLoss { loss: f32::NAN, epoch: 1, step: 4 }.to_string();
    assert!(message.contains("NaN") && message.contains("last good checkpoint"), "{message}");
    Ok(())
}
