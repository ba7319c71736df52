//! Data-parallel training over several workers.
//!
//! - [`Communicator`]: rank, world size, all-reduce (sum) and barrier; [`LocalCommunicator`]
//!   runs `N` workers as threads of one process with a deterministic summation order, and
//!   `NcclCommunicator` (feature `nccl`) one process per GPU over NCCL.
//! - [`all_reduce_sum`]: a differentiable all-reduce on tensors (its backward pass
//!   all-reduces the gradient).
//! - [`average_gradients`]: one flattened all-reduce of every gradient per step, divided by the
//!   world size.
//! - [`ShardedBatches`] and [`shard_rows`]: rank `r` trains on rows `r, r + W, ...` of each
//!   global batch of the epoch's seeded order, so the union over ranks is the single-process
//!   batch.
//! - [`save_checkpoint_rank0`]: rank 0 writes, every rank waits; any number of workers can
//!   resume from the checkpoint, as long as the global batch is the same.
//! - [`synced_batch_stats`]: `simsiam-models`' batch norms with their statistics (and the
//!   reductions of the backward pass) over all ranks, so `W` workers with batch `b` compute
//!   what one worker with batch `W b` computes (PyTorch's `SyncBatchNorm`).
//!
//! [`crate::Trainer::with_communicator`] wires the first four into the training loop; a model
//! built with [`synced_batch_stats`] (as `simsiam pretrain --gpus N` builds it) normalises
//! over all ranks.

mod all_reduce;
mod communicator;
mod data_parallel;
#[cfg(feature = "nccl")]
mod nccl;
mod sync_bn;

pub use all_reduce::{all_reduce_sum, all_reduce_sum_detached};
pub use communicator::{Communicator, LocalCommunicator, is_primary};
pub use data_parallel::{ShardedBatches, average_gradients, save_checkpoint_rank0, shard_rows};
#[cfg(feature = "nccl")]
pub use nccl::{NcclCommunicator, NcclId};
pub use sync_bn::synced_batch_stats;
