//! Weighted k-nearest-neighbour classification of features, as Lightly's benchmarks and the
//! InstDisc/MoCo kNN monitor define it: l2-normalised features, cosine similarity, the `k`
//! most similar training samples vote for their class with weight `exp(sim / t)`.

use candle::{D, DType, Device, Tensor};

use crate::{Result, TrainError};

/// The kNN classifier's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnConfig {
    /// Neighbours that vote (200 in Lightly's benchmarks).
    pub k: usize,
    /// Temperature of the vote weights `exp(sim / t)` (0.1).
    pub temperature: f64,
    /// Queries per similarity matrix: `chunk x bank` floats live at once.
    pub chunk_size: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self { k: 200, temperature: 0.1, chunk_size: 256 }
    }
}

/// Top-1 and top-5 accuracy and each query's predicted class.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnResult {
    /// Fraction of queries whose best class is their label.
    pub top1: f64,
    /// Fraction of queries whose label is among the five best classes.
    pub top5: f64,
    /// The best class of each query.
    pub predictions: Vec<usize>,
}

/// Row-wise l2 normalisation (`F.normalize(x, dim=1)`, eps 1e-12).
///
/// # Shapes
/// - `x`: `[n, d]`; returns `[n, d]`
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    Ok(x.broadcast_div(&norm)?)
}

/// The class scores of every query: the sum over its `k` nearest bank samples of
/// `exp(sim / t)`, per class. Features are normalised here.
///
/// # Shapes
/// - `bank`: `[n, d]`, `bank_labels`: `n` labels below `classes`
/// - `queries`: `[m, d]`; returns `m` rows of `classes` scores
pub fn knn_scores(
    bank: &Tensor,
    bank_labels: &[usize],
    queries: &Tensor,
    classes: usize,
    config: &KnnConfig,
) -> Result<Vec<Vec<f32>>> {
    let (n, d) = bank.dims2()?;
    let (m, dq) = queries.dims2()?;
    if d != dq || n != bank_labels.len() || n == 0 || classes == 0 {
        return Err(TrainError::Config(format!(
            "kNN: bank [{n}, {d}] with {} labels, queries [{m}, {dq}], {classes} classes",
            bank_labels.len()
        )));
    }
    if let Some(bad) = bank_labels.iter().find(|&&l| l >= classes) {
        return Err(TrainError::Config(format!("kNN: label {bad} is not below {classes} classes")));
    }
    if config.k == 0 || config.chunk_size == 0 || config.temperature.is_nan() || config.temperature <= 0.0 {
        return Err(TrainError::Config(format!("kNN: invalid settings {config:?}")));
    }
    let k = config.k.min(n);
    let bank_t = l2_normalize(&bank.to_dtype(DType::F32)?)?.t()?.contiguous()?; // [d, n]
    let queries = l2_normalize(&queries.to_dtype(DType::F32)?)?;
    let mut scores = Vec::with_capacity(m);
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for start in (0..m).step_by(config.chunk_size) {
        let len = config.chunk_size.min(m - start);
        let sim = queries.narrow(0, start, len)?.matmul(&bank_t)?.to_device(&Device::Cpu)?; // [len, n]
        for row in sim.to_vec2::<f32>()? {
            order.clear();
            order.extend(0..n);
            // The k most similar, in no particular order: a linear-time selection.
            if k < n {
                order.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
            }
            let mut class_scores = vec![0f32; classes];
            for &j in &order[..k] {
                class_scores[bank_labels[j]] += ((row[j] as f64) / config.temperature).exp() as f32;
            }
            scores.push(class_scores);
        }
    }
    Ok(scores)
}

/// Weighted kNN accuracy of `queries` against the labelled `bank`.
///
/// # Shapes
/// - `bank`: `[n, d]`, `queries`: `[m, d]`
pub fn knn_classify(
    bank: &Tensor,
    bank_labels: &[usize],
    queries: &Tensor,
    query_labels: &[usize],
    classes: usize,
    config: &KnnConfig,
) -> Result<KnnResult> {
    if queries.dim(0)? != query_labels.len() {
        return Err(TrainError::Config("kNN: one label per query is needed".into()));
    }
    let scores = knn_scores(bank, bank_labels, queries, classes, config)?;
    Ok(accuracy(&scores, query_labels))
}

/// Top-1 and top-5 accuracy of class scores; ties go to the lower class index.
pub fn accuracy(scores: &[Vec<f32>], labels: &[usize]) -> KnnResult {
    let mut top1 = 0usize;
    let mut top5 = 0usize;
    let mut predictions = Vec::with_capacity(scores.len());
    for (row, &label) in scores.iter().zip(labels) {
        let mut ranked: Vec<usize> = (0..row.len()).collect();
        ranked.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        predictions.push(ranked[0]);
        top1 += usize::from(ranked[0] == label);
        top5 += usize::from(ranked.iter().take(5).any(|&c| c == label));
    }
    let m = scores.len().max(1) as f64;
    KnnResult { top1: top1 as f64 / m, top5: top5 as f64 / m, predictions }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_neighbour_on_separated_clusters() -> Result<()> {
        let dev = Device::Cpu;
        let bank = Tensor::new(&[[1f32, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], &dev)?;
        let queries = Tensor::new(&[[5f32, 1.0], [1.0, 4.0]], &dev)?;
        let config = KnnConfig { k: 2, ..Default::default() };
        let r = knn_classify(&bank, &[0, 0, 1, 1], &queries, &[0, 1], 2, &config)?;
        assert_eq!(r.predictions, [0, 1]);
        assert_eq!(r.top1, 1.0);
        Ok(())
    }

    #[test]
    fn chunking_does_not_change_the_scores() -> Result<()> {
        let dev = Device::Cpu;
        let bank = Tensor::randn(0f32, 1.0, (50, 8), &dev)?;
        let labels: Vec<usize> = (0..50).map(|i| i % 3).collect();
        let queries = Tensor::randn(0f32, 1.0, (17, 8), &dev)?;
        let whole =
            knn_scores(&bank, &labels, &queries, 3, &KnnConfig { k: 7, temperature: 0.1, chunk_size: 100 })?;
        let chunked =
            knn_scores(&bank, &labels, &queries, 3, &KnnConfig { k: 7, temperature: 0.1, chunk_size: 4 })?;
        assert_eq!(whole, chunked);
        Ok(())
    }

    #[test]
    fn bad_inputs_are_errors() -> Result<()> {
        let dev = Device::Cpu;
        let bank = Tensor::zeros((3, 2), DType::F32, &dev)?;
        let q = Tensor::zeros((1, 2), DType::F32, &dev)?;
        assert!(knn_scores(&bank, &[0, 1], &q, 2, &KnnConfig::default()).is_err());
        assert!(knn_scores(&bank, &[0, 1, 5], &q, 2, &KnnConfig::default()).is_err());
        let zero_k = KnnConfig { k: 0, ..Default::default() };
        assert!(knn_scores(&bank, &[0, 1, 1], &q, 2, &zero_k).is_err());
        Ok(())
    }
}
