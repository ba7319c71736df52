//! Where the trainer's batches come from.

use candle::Tensor;

use crate::Result;

/// One batch of two views, `[n, 3, h, w]` each, with the images' classes where the data has
/// them (an online linear probe trains on them).
#[derive(Debug, Clone)]
pub struct ViewPair {
    /// First views, `[n, 3, h, w]`.
    pub x0: Tensor,
    /// Second views, `[n, 3, h, w]`.
    pub x1: Tensor,
    /// The class of each image, or `None` where it has none; empty when the source has no
    /// labels at all.
    pub labels: Vec<Option<usize>>,
}

impl ViewPair {
    /// Two views without labels.
    pub fn unlabelled(x0: Tensor, x1: Tensor) -> Self {
        Self { x0, x1, labels: Vec::new() }
    }
}

impl From<(Tensor, Tensor)> for ViewPair {
    fn from((x0, x1): (Tensor, Tensor)) -> Self {
        Self::unlabelled(x0, x1)
    }
}

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
