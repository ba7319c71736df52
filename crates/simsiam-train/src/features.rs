//! Backbone features of a whole dataset, for kNN, linear evaluation and embeddings.

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
pub fn extract_features<M, I>(backbone: &M, batches: I) -> Result<Features>
where
    M: ModuleT + ?Sized,
    I: IntoIterator<Item = Result<(Tensor, Vec<Option<usize>>, Vec<String>)>>,
{
    let mut chunks = Vec::new();
    let mut labels = Vec::new();
    let mut names = Vec::new();
    for batch in batches {
        let (x, l, n) = batch?;
        chunks.push(backbone.forward_t(&x, false)?.detach().to_dtype(candle::DType::F32)?);
        labels.extend(l);
        names.extend(n);
    }
    if chunks.is_empty() {
        return Err(crate::TrainError::Config("no samples to extract features from".into()));
    }
    Ok(Features { features: Tensor::cat(&chunks, 0)?, labels, names })
}
