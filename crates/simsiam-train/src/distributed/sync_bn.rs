//! Synchronised batch normalisation: `simsiam-models`' [`BatchNorm`] with its statistics
//! summed over a [`Communicator`]'s ranks, as PyTorch's `SyncBatchNorm` (and the official
//! SimSiam code under `torch.distributed`).
//!
//! [`BatchNorm`]: simsiam_models::BatchNorm

use std::sync::Arc;

use candle::Tensor;
use simsiam_models::{AllReduceSum, BatchStats};

use super::{Communicator, all_reduce_sum};

/// Batch statistics summed over every rank of `comm`: give it to a model's
/// `BatchNormConfig::with_stats` (or `ResNetConfig::with_batch_norm` and the heads'
/// `with_batch_norm`) so that `W` ranks with batch `b` normalise as one rank with batch `W b`,
/// forward and backward. With one rank it is [`BatchStats::Local`], the fused kernels.
pub fn synced_batch_stats(comm: Arc<dyn Communicator>) -> BatchStats {
    if comm.world_size() == 1 {
        return BatchStats::Local;
    }
    BatchStats::Synced(Arc::new(OverRanks(comm)))
}

/// [`AllReduceSum`] over a communicator's ranks, through the differentiable
/// [`all_reduce_sum`].
#[derive(Debug)]
struct OverRanks(Arc<dyn Communicator>);

impl AllReduceSum for OverRanks {
    fn all_reduce_sum(&self, x: &Tensor) -> candle::Result<Tensor> {
        all_reduce_sum(x, &self.0)
    }
}
