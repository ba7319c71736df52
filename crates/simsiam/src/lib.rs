//! SimSiam self-supervised pretraining in Rust: the facade over the `simsiam-*` crates and
//! the pieces of the `simsiam` command-line tool.
//!
//! - [`config::RunConfig`]: every knob in one TOML file, with presets (`lightly-example`,
//!   `lightly-cifar10-benchmark`, `satellite`, `cifar10-paper`, `imagenet-paper`, each one
//!   published recipe, and our `cifar10-cpu`; see `docs/presets.md`) and `section.key=value`
//!   overrides.
//! - [`run`]: datasets, loaders, model and loss from a config.
//! - [`pretrain::pretrain`]: a whole run with checkpoints, metrics and the kNN monitor, in a
//!   run folder that [`run_folder`] keeps: nothing the user has there is overwritten.
//! - [`outputs`]: no command writes its output over a file it reads or a file of another kind.
//! - [`launch`]: `simsiam pretrain --gpus N`, one process per GPU over NCCL.
//! - [`interrupt`]: SIGINT, SIGTERM and SIGHUP stop a run at a step with its checkpoint saved.
//! - `figures` (the `figures` feature, on by default): training curves, nearest-neighbour
//!   grids and embedding scatter plots as PNG.

pub mod config;
mod error_line;
pub mod evaluate;
#[cfg(feature = "figures")]
pub mod figures;
pub mod interrupt;
pub mod launch;
pub mod outputs;
pub mod pretrain;
pub mod run;
pub mod run_folder;

pub use error_line::error_line;

pub use simsiam_augment as augment;
pub use simsiam_data as data;
pub use simsiam_loss as loss;
pub use simsiam_models as models;
pub use simsiam_train as train;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
