//! Where the trainer's batches come from.

use candle::Tensor;

use crate::Result;

/// One batch of two views, `[n, 3, h, w]` each.
pub type ViewPair = (Tensor, Tensor);

/// The batches of one epoch.
pub type EpochBatches<'a> = Box<dyn Iterator<Item = Result<ViewPair>> + 'a>;

/// Two augmented views per image, batch by batch, reproducible per epoch. The loader of
/// `simsiam-data` implements it; so can anything else that yields `[n, 3, h, w]` pairs.
pub trait TwoViewBatches {
    /// Batches in each epoch (the same for every epoch).
    fn batches_per_epoch(&self) -> usize;

    /// Images in each batch, for throughput figures.
    fn batch_size(&self) -> usize;

    /// The batches of `epoch`, starting after the first `skip` (to resume mid-epoch). Each
    /// epoch must give the same batches every time it is asked for.
    fn batches(&self, epoch: u64, skip: usize) -> Result<EpochBatches<'_>>;
}
