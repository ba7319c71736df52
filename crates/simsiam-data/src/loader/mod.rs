//! Loaders: batches of augmented views (pretraining) and of plain images (evaluation), built on
//! worker threads ahead of the consumer, in an order and with values that do not depend on the
//! number of workers.
//!
//! - `workers`: the prefetching engine, generic over what a batch is.
//! - `augmented`: what the two augmenting loaders share (workers, order, decoding and
//!   augmenting a batch).
//! - `order`: the shuffled order of an epoch.
//! - `batch_transform`: the multi-view augmentation interface the two-view loader needs.
//! - `two_view`: [`TwoViewLoader`], for pretraining.
//! - `eval`: [`EvalLoader`], for embeddings, kNN and linear evaluation.
//! - `labelled`: [`LabelledLoader`], one augmented view per image with its label, for training
//!   a classifier on augmented crops.

mod augmented;
mod batch_transform;
mod eval;
mod labelled;
mod order;
mod two_view;
mod workers;

pub use batch_transform::BatchTransform;
pub use eval::{EvalBatch, EvalConfig, EvalLoader, EvalTransform};
pub use labelled::{LabelledBatch, LabelledLoader};
pub use order::epoch_permutation;
pub use two_view::{LoaderConfig, TwoViewBatch, TwoViewLoader};
pub use workers::Batches;
