//! Data parallelism: gradient averaging, sharded batches and rank-0 checkpoints.

use std::path::PathBuf;
use std::sync::Arc;

use candle::backprop::GradStore;
use candle::{DType, Tensor, Var};

use super::{Communicator, all_reduce_sum_detached};
use crate::{Checkpointer, EpochBatches, Result, Sgd, TrainError, TrainState, TwoViewBatches, ViewPair};
use candle_nn::VarMap;

/// Averages every gradient over the ranks of `comm` after the backward pass: the gradients of
/// `params` present in `grads` are flattened into one buffer, all-reduced once, divided by the
/// world size and put back. With per-rank losses that are means over equal local batches, the
/// result is the gradient of the mean loss over the union of the batches.
///
/// Every rank must pass the same parameters in the same order (an optimiser's groups do) and
/// have gradients for the same ones; all gradients must share one dtype.
pub fn average_gradients(
    comm: &Arc<dyn Communicator>,
    grads: &mut GradStore,
    params: &[(String, Var)],
) -> Result<()> {
    let world = comm.world_size();
    if world == 1 {
        return Ok(());
    }
    let mut present: Vec<(&Var, Tensor)> = Vec::with_capacity(params.len());
    let mut dtype: Option<DType> = None;
    for (name, var) in params {
        let Some(grad) = grads.get(var.as_tensor()) else { continue };
        match dtype {
            None => dtype = Some(grad.dtype()),
            Some(d) if d != grad.dtype() => {
                return Err(TrainError::Config(format!(
                    "gradient averaging needs one dtype: `{name}` is {:?}, others {d:?}",
                    grad.dtype()
                )));
            }
            Some(_) => {}
        }
        present.push((var, grad.flatten_all()?));
    }
    if present.is_empty() {
        return Ok(());
    }
    let flat = Tensor::cat(&present.iter().map(|(_, g)| g).collect::<Vec<_>>(), 0)?;
    let mean = all_reduce_sum_detached(&flat, comm)?.affine(1.0 / world as f64, 0.0)?;
    let mut offset = 0;
    for (var, g) in &present {
        let len = g.elem_count();
        let averaged = mean.narrow(0, offset, len)?.reshape(var.as_tensor().shape())?;
        grads.insert(var.as_tensor(), averaged);
        offset += len;
    }
    Ok(())
}

/// Writes a checkpoint (with the online probe's variables, when given) from rank 0 only, then waits for every rank, so that no rank reads a
/// checkpoint (to resume, say) before it is whole. Returns the path on rank 0, `None` on the
/// others. Ranks hold the same weights and momentum after averaged steps; BatchNorm running
/// statistics are rank 0's unless the model uses [`super::synced_batch_stats`] (as with PyTorch's
/// DistributedDataParallel, which broadcasts rank 0's buffers).
pub fn save_checkpoint_rank0(
    comm: &dyn Communicator,
    checkpointer: &Checkpointer,
    varmap: &VarMap,
    probe: Option<&VarMap>,
    optimizer: &Sgd,
    state: &TrainState,
) -> Result<Option<PathBuf>> {
    let written = if comm.rank() == 0 {
        Some(checkpointer.save_with_probe(varmap, probe, optimizer, state))
    } else {
        None
    };
    // Wait even when the write failed, then report it, so the other ranks are not left hanging.
    let waited = comm.barrier();
    let path = written.transpose()?;
    waited?;
    Ok(path)
}

/// The rows of batch `batch` (of `global_batch` samples, in the order of the epoch's seeded
/// permutation) that rank `rank` of `world` trains on: `rank, rank + world, ...`. The union
/// over ranks is the single-process batch.
pub fn shard_rows(global_batch: usize, rank: usize, world: usize) -> Vec<usize> {
    (rank..global_batch).step_by(world.max(1)).collect()
}

/// Rank `rank`'s part of another source's batches: rows `rank, rank + world, ...` of each
/// global batch, so the union over ranks of a step's batches is the single-process batch and
/// every rank takes the same number of steps per epoch (the global batch's). A global batch
/// must hold at least `world` images.
///
/// Each rank builds (decodes and augments) the whole global batch and keeps its rows, which
/// costs `world` times the loading work of a sharded loader but needs nothing from the source:
/// `simsiam-data`'s views depend only on (seed, epoch, sample), so the rows are exactly the
/// ones a single process would use.
pub struct ShardedBatches<D> {
    inner: D,
    rank: usize,
    world: usize,
}

impl<D: TwoViewBatches> ShardedBatches<D> {
    /// Rank `rank` of `world` over `inner`'s global batches.
    pub fn new(inner: D, rank: usize, world: usize) -> Result<Self> {
        if world == 0 || rank >= world {
            return Err(TrainError::Config(format!("rank {rank} is not in a group of {world}")));
        }
        if inner.batch_size() < world {
            return Err(TrainError::Config(format!(
                "a global batch of {} cannot be split over {world} workers",
                inner.batch_size()
            )));
        }
        Ok(Self { inner, rank, world })
    }

    /// The global source.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D: TwoViewBatches> TwoViewBatches for ShardedBatches<D> {
    fn batches_per_epoch(&self) -> usize {
        self.inner.batches_per_epoch()
    }

    fn batch_size(&self) -> usize {
        shard_rows(self.inner.batch_size(), self.rank, self.world).len()
    }

    fn batches(&self, epoch: u64, skip: usize) -> Result<EpochBatches<'_>> {
        let (rank, world) = (self.rank, self.world);
        let batches = self.inner.batches(epoch, skip)?.map(move |batch| {
            let ViewPair { x0, x1, labels } = batch?;
            let rows = shard_rows(x0.dim(0)?, rank, world);
            let labels = if labels.is_empty() {
                labels
            } else {
                rows.iter().map(|&r| labels.get(r).copied().flatten()).collect()
            };
            if rows.is_empty() {
                return Err(TrainError::Config(format!(
                    "a batch of {} images leaves rank {rank} of {world} without any",
                    x0.dim(0)?
                )));
            }
            let rows = Tensor::from_vec(
                rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
                rows.len(),
                x0.device(),
            )?;
            Ok(ViewPair { x0: x0.index_select(&rows, 0)?, x1: x1.index_select(&rows, 0)?, labels })
        });
        Ok(Box::new(batches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_batch() {
        let mut all: Vec<usize> = (0..3).flat_map(|r| shard_rows(10, r, 3)).collect();
        assert_eq!(shard_rows(10, 1, 3), vec![1, 4, 7]);
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }
}
