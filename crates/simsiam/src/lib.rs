//! SimSiam self-supervised pretraining in Rust: the facade over the `simsiam-*` crates and
//! the pieces of the `simsiam` command-line tool.
//!
//! - [`config::RunConfig`]: every knob in one TOML file, with presets (`lightly-example`,
//!   `lightly-cifar10-benchmark`, `satellite`, `cifar10-paper`, `imagenet-paper`; each one
//!   published recipe, see `docs/presets.md`) and `section.key=value` overrides.
//! - [`run`]: datasets, loaders, model and loss from a config.
//! - [`pretrain::pretrain`]: a whole run with checkpoints, metrics and the kNN monitor.
//! - [`launch`]: `simsiam pretrain --gpus N`, one process per GPU over NCCL.
//! - `figures` (the `figures` feature, on by default): training curves, nearest-neighbour
//!   grids and embedding scatter plots as PNG.

pub mod config;
pub mod evaluate;
#[cfg(feature = "figures")]
pub mod figures;
pub mod launch;
pub mod pretrain;
pub mod run;

pub use simsiam_augment as augment;
pub use simsiam_data as data;
pub use simsiam_loss as loss;
pub use simsiam_models as models;
pub use simsiam_train as train;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
