//! The one error type of the trainer.

use std::path::PathBuf;

/// Everything that can go wrong while training, checkpointing or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle::Error),
    /// Loading data failed.
    #[error(transparent)]
    Data(#[from] simsiam_data::DataError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A checkpoint exists but cannot be used.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint file is damaged: not a safetensors file, its content does not match its
    /// checksum, or it holds NaN or infinite values. A resume skips it for an older one.
    #[error("checkpoint {path}: {reason}")]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A weights file to start from (`model.init`) does not fit the model.
    #[error("weights {path}: {reason}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong with it: the first tensor missing or of another shape.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The loss became NaN or infinite.
    #[error("the loss is {loss} at epoch {epoch}, step {step}; the last good checkpoint is kept")]
    NonFiniteLoss {
        /// The loss value.
        loss: f32,
        /// The epoch.
        epoch: usize,
        /// The global step.
        step: usize,
    },
    /// A collective operation between data-parallel workers failed (a peer left, buffers
    /// differ between ranks, NCCL reported an error).
    #[error("distributed training: {0}")]
    Distributed(String),
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// The trainer's result type.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
