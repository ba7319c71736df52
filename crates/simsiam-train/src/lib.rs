//! The SimSiam trainer: the recipe of Chen & He ("Exploring Simple Siamese Representation
//! Learning", CVPR 2021) and of the official code, with what a long run needs.
//!
//! - [`Sgd`]: SGD with momentum and weight decay with `torch.optim.SGD`'s semantics, parameter
//!   groups, a fixed learning rate for the predictor.
//! - [`CosineSchedule`] and [`scaled_lr`]: cosine decay with linear warmup, `lr * batch / 256`.
//! - [`Trainer`]: the loop over steps, returning a [`TrainOutcome`] (finished, or interrupted
//!   by a signal after saving a checkpoint); around it [`TrainObserver`]s, one concern each: a
//!   collapse monitor, a kNN monitor, an online linear probe ([`OnlineProbe`]), a progress bar (feature `progress`), JSON-lines metrics
//!   ([`MetricsLog`]), TensorBoard event files ([`TensorBoardObserver`], written by
//!   [`tensorboard`] without TensorFlow), atomic checkpoints ([`Checkpointer`]) with exact
//!   resume, and a training-time budget with kNN at minute marks ([`TimeBudgetObserver`], on
//!   the trainer's clock of steps and loading, evaluation excluded).
//! - Evaluation: weighted kNN ([`knn_classify`]) as Lightly's benchmarks define it, linear
//!   evaluation on cached frozen features ([`linear_eval`], the fast protocol) or as the official
//!   `main_lincls.py` does it on augmented crops with [`Lars`] ([`paper_linear_eval`]), embedding
//!   export ([`write_embeddings_csv`]).
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
mod init_weights;
mod knn;
mod lars;
mod linear_eval;
mod meter;
mod metrics;
mod observer;
mod observers;
mod online_probe;
mod outcome;
mod schedule;
mod sgd;
mod source;
mod stepper;
pub mod tensorboard;
mod trainer;

pub use checkpoint::{
    Checkpointer, TrainState, load_checkpoint, load_checkpoint_with_probe, read_train_state, save_weights,
};
pub use config::{ScheduleStep, TrainerConfig};
pub use data_source::{knn_evaluate, knn_monitor, loader_features, probe_test_set};
pub use embeddings::{
    Embeddings, read_embeddings_safetensors, write_embeddings_csv, write_embeddings_safetensors,
};
pub use error::{Result, TrainError};
pub use features::{Features, extract_features};
pub use fs::atomic_write;
pub use init_weights::{InitSource, load_init_weights, save_backbone_torchvision};
pub use knn::{KnnConfig, KnnResult, accuracy, knn_classify, knn_scores, l2_normalize};
pub use lars::{Lars, LarsConfig};
pub use linear_eval::{
    LinearClassifier, LinearEvalConfig, LinearEvalResult, PaperEpoch, PaperLinearConfig, PaperLinearTrainer,
    linear_eval, paper_linear_eval, paper_train_transform,
};
pub use metrics::{MetricEvent, MetricsLog, Rewound};
pub use observer::{
    EpochContext, EpochStart, FirstStep, FitContext, ProbeAccuracy, StepContext, TrainObserver, TrainView,
};
#[cfg(feature = "progress")]
pub use observers::ProgressObserver;
pub use observers::{
    CheckpointObserver, CollapseObserver, KnnMonitor, KnnObserver, MetricsObserver, MinuteMarks,
    OnlineProbeObserver, ProbeTestSet, TensorBoardObserver, TimeBudgetObserver,
};
pub use online_probe::{OnlineProbe, PROBE_PREFIX, TopK};
pub use outcome::{TrainOutcome, TrainSummary};
pub use schedule::{CosineSchedule, scaled_lr};
pub use sgd::{ParamGroup, Sgd, SgdConfig};
pub use source::{EpochBatches, TwoViewBatches, ViewPair};
pub use trainer::Trainer;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
