//! The SimSiam trainer: the recipe of Chen & He ("Exploring Simple Siamese Representation
//! Learning", CVPR 2021) and of the official code, with what a long run needs.
//!
//! - [`Sgd`]: SGD with momentum and weight decay with `torch.optim.SGD`'s semantics, parameter
//!   groups, a fixed learning rate for the predictor.
//! - [`CosineSchedule`] and [`scaled_lr`]: cosine decay with linear warmup, `lr * batch / 256`.
//! - [`Trainer`]: the loop over steps, returning a [`TrainOutcome`] (finished, or interrupted
//!   by a signal after saving a checkpoint); around it [`TrainObserver`]s, one concern each: a
//!   collapse monitor, a kNN monitor, a progress bar (feature `progress`), JSON-lines metrics
//!   ([`MetricsLog`]), TensorBoard event files ([`TensorBoardObserver`], written by
//!   [`tensorboard`] without TensorFlow), atomic checkpoints ([`Checkpointer`]) with exact
//!   resume, and a training-time budget with kNN at minute marks ([`TimeBudgetObserver`], on
//!   the trainer's clock of steps and loading, evaluation excluded).
//! - Evaluation: weighted kNN ([`knn_classify`]) as Lightly's benchmarks define it, linear
//!   evaluation on frozen features ([`linear_eval`]), embedding export ([`write_embeddings_csv`]).
//! - [`TwoViewBatches`]: the data interface, implemented for `simsiam-data`'s loader.
//! - [`distributed`]: data parallelism behind a [`distributed::Communicator`] (in-process
//!   threads, or NCCL with the `nccl` feature), gradient averaging, sharded batches, rank-0
//!   checkpoints and synchronised batch norm.

mod checkpoint;
mod config;
mod data_source;
pub mod distributed;
mod embeddings;
mod error;
mod features;
mod fs;
mod knn;
mod linear_eval;
mod meter;
mod metrics;
mod observer;
mod observers;
mod outcome;
mod schedule;
mod sgd;
mod source;
mod stepper;
pub mod tensorboard;
mod trainer;

pub use checkpoint::{Checkpointer, TrainState, load_checkpoint, read_train_state, save_weights};
pub use config::{ScheduleStep, TrainerConfig};
pub use data_source::{knn_evaluate, knn_monitor, loader_features};
pub use embeddings::{
    Embeddings, read_embeddings_safetensors, write_embeddings_csv, write_embeddings_safetensors,
};
pub use error::{Result, TrainError};
pub use features::{Features, extract_features};
pub use fs::atomic_write;
pub use knn::{KnnConfig, KnnResult, accuracy, knn_classify, knn_scores, l2_normalize};
pub use linear_eval::{LinearEvalConfig, LinearEvalResult, linear_eval};
pub use metrics::{MetricEvent, MetricsLog, Rewound};
pub use observer::{EpochContext, EpochStart, FirstStep, FitContext, StepContext, TrainObserver, TrainView};
#[cfg(feature = "progress")]
pub use observers::ProgressObserver;
pub use observers::{
    CheckpointObserver, CollapseObserver, KnnMonitor, KnnObserver, MetricsObserver, MinuteMarks,
    TensorBoardObserver, TimeBudgetObserver,
};
pub use outcome::{TrainOutcome, TrainSummary};
pub use schedule::{CosineSchedule, scaled_lr};
pub use sgd::{ParamGroup, Sgd, SgdConfig};
pub use source::{EpochBatches, TwoViewBatches, ViewPair};
pub use trainer::Trainer;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
