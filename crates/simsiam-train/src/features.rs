//! Backbone features of a whole dataset, for kNN, linear evaluation and embeddings.

use std::time::{Duration, Instant};

use candle::{ModuleT, Tensor};

use crate::Result;

/// Features of every sample, in the loader's order.
#[derive(Debug, Clone)]
pub struct Features {
    /// `[n, d]`, f32.
    pub features: Tensor,
    /// The samples' labels.
    pub labels: Vec<Option<usize>>,
    /// The samples' file names.
    pub names: Vec<String>,
}

impl Features {
    /// The labels, or an error when a sample has none (kNN and linear evaluation need them).
    pub fn required_labels(&self) -> Result<Vec<usize>> {
        self.labels
            .iter()
            .zip(&self.names)
            .map(|(l, n)| l.ok_or_else(|| crate::TrainError::Config(format!("sample `{n}` has no label"))))
            .collect()
    }
}

/// Runs `backbone` in evaluation mode over `batches` of `(images, labels, names)`.
///
/// Logs (`tracing`, debug) the seconds spent waiting for batches and in the backbone.
pub fn extract_features<M, I>(backbone: &M, batches: I) -> Result<Features>
where
    M: ModuleT + Sync + ?Sized,
    I: IntoIterator<Item = Result<(Tensor, Vec<Option<usize>>, Vec<String>)>>,
{
    let mut chunks = Vec::new();
    let mut labels = Vec::new();
    let mut names = Vec::new();
    let (mut waiting, mut forward) = (Duration::ZERO, Duration::ZERO);
    let mut batches = batches.into_iter();
    loop {
        let started = Instant::now();
        let Some(batch) = batches.next() else { break };
        let (x, l, n) = batch?;
        let loaded = Instant::now();
        waiting += loaded - started;
        // On candle's compute pool, as a training step (`Stepper::step` says why).
        let features = x.device().with_context(|| backbone.forward_t(&x, false))?;
        chunks.push(features.detach().to_dtype(candle::DType::F32)?);
        forward += loaded.elapsed();
        labels.extend(l);
        names.extend(n);
    }
    if chunks.is_empty() {
        return Err(crate::TrainError::Config("no samples to extract features from".into()));
    }
    tracing::debug!(
        samples = labels.len(),
        loader_s = waiting.as_secs_f64(),
        forward_s = forward.as_secs_f64(),
        "features extracted"
    );
    Ok(Features { features: Tensor::cat(&chunks, 0)?, labels, names })
}
