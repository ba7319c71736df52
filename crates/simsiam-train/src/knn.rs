//! Weighted k-nearest-neighbour classification of features, as Lightly's benchmarks and the
//! InstDisc/MoCo kNN monitor define it: l2-normalised features, cosine similarity, the `k`
//! most similar training samples vote for their class with weight `exp(sim / t)`.

mod top_k;

use std::time::{Duration, Instant};

use candle::{D, DType, Device, Tensor};
use rayon::prelude::*;

use self::top_k::TopK;

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
/// The `k` nearest are the head of a stable descending sort of the similarities: of equal
/// similarities the lower bank index wins, so the result is deterministic (PyTorch's `topk`
/// leaves that choice open). The sums run in `f64`, most similar first, and are rounded to
/// `f32`. Each query is scored on its own, in parallel on rayon's pool: the bits do not
/// depend on the number of threads. Logs (`tracing`, debug) the seconds of the matrix
/// products and of the selection.
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
    if u32::try_from(n).is_err() {
        return Err(TrainError::Config(format!("kNN: a bank of {n} samples is over u32::MAX")));
    }
    let bank_t = l2_normalize(&bank.to_dtype(DType::F32)?)?.t()?.contiguous()?; // [d, n]
    let queries = l2_normalize(&queries.to_dtype(DType::F32)?)?;
    let mut scores = Vec::with_capacity(m);
    let (mut similarity, mut selection) = (Duration::ZERO, Duration::ZERO);
    for start in (0..m).step_by(config.chunk_size) {
        let started = Instant::now();
        let len = config.chunk_size.min(m - start);
        let sim = queries.narrow(0, start, len)?.matmul(&bank_t)?.to_device(&Device::Cpu)?; // [len, n]
        let multiplied = Instant::now();
        similarity += multiplied - started;
        let rows: Vec<Vec<f32>> = with_cpu_slice(&sim, |sim| {
            // Each query on its own: the scores are the same for any number of threads.
            sim.par_chunks(n)
                .map_init(TopK::default, |top, row| {
                    vote(row, top.select(row, config.k), bank_labels, classes, config.temperature)
                })
                .collect()
        })?;
        scores.extend(rows);
        selection += multiplied.elapsed();
    }
    tracing::debug!(
        queries = m,
        bank = n,
        similarity_s = similarity.as_secs_f64(),
        selection_s = selection.as_secs_f64(),
        "kNN scores"
    );
    Ok(scores)
}

/// One query's class scores: the sum of `exp(sim / t)` over its `neighbours`, per class, in
/// `f64` and in the neighbours' order (most similar first), rounded to `f32` at the end.
fn vote(
    row: &[f32],
    neighbours: impl Iterator<Item = usize>,
    labels: &[usize],
    classes: usize,
    temperature: f64,
) -> Vec<f32> {
    let mut sums = vec![0f64; classes];
    for j in neighbours {
        sums[labels[j]] += (f64::from(row[j]) / temperature).exp();
    }
    sums.into_iter().map(|s| s as f32).collect()
}

/// Runs `f` on the elements of a contiguous `f32` tensor on the CPU, without copying them.
fn with_cpu_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (candle::Storage::Cpu(cpu), Some((from, to))) = (&*storage, layout.contiguous_offsets()) else {
        return Err(TrainError::Config("kNN: similarities must be a contiguous CPU tensor".into()));
    };
    Ok(f(&cpu.as_slice::<f32>()?[from..to]))
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

    /// The reference: every row fully sorted (stable, most similar first), the first k vote.
    fn brute_force_scores(
        bank: &Tensor,
        labels: &[usize],
        queries: &Tensor,
        k: usize,
        t: f64,
    ) -> Result<Vec<Vec<f32>>> {
        let bank = l2_normalize(bank)?;
        let sim = l2_normalize(queries)?.matmul(&bank.t()?.contiguous()?)?.to_vec2::<f32>()?;
        Ok(sim
            .iter()
            .map(|row| {
                let mut order: Vec<usize> = (0..row.len()).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                let mut sums = [0f64; 3];
                for &j in order.iter().take(k) {
                    sums[labels[j]] += (f64::from(row[j]) / t).exp();
                }
                sums.iter().map(|&s| s as f32).collect()
            })
            .collect())
    }

    #[test]
    fn scores_equal_a_full_sort_with_ties_and_any_k() -> Result<()> {
        let dev = Device::Cpu;
        // Rounded features repeat bank rows and similarities: ties at the k-th place.
        let bank = (Tensor::randn(0f32, 1.0, (300, 4), &dev)? * 2.0)?.round()?;
        let labels: Vec<usize> = (0..300).map(|i| (i * 7) % 3).collect();
        let queries = (Tensor::randn(0f32, 1.0, (40, 4), &dev)? * 2.0)?.round()?;
        for k in [1, 5, 200, 299, 300, 1000] {
            let config = KnnConfig { k, temperature: 0.1, chunk_size: 16 };
            let ours = knn_scores(&bank, &labels, &queries, 3, &config)?;
            assert_eq!(ours, brute_force_scores(&bank, &labels, &queries, k, 0.1)?, "k = {k}");
        }
        Ok(())
    }

    #[test]
    fn scores_have_the_same_bits_on_any_number_of_threads() -> Result<()> {
        let dev = Device::Cpu;
        let bank = Tensor::randn(0f32, 1.0, (500, 8), &dev)?;
        let labels: Vec<usize> = (0..500).map(|i| i % 3).collect();
        let queries = Tensor::randn(0f32, 1.0, (64, 8), &dev)?;
        let config = KnnConfig { k: 20, temperature: 0.1, chunk_size: 32 };
        let on = |threads: usize| -> Result<Vec<Vec<f32>>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| TrainError::Config(e.to_string()))?;
            pool.install(|| knn_scores(&bank, &labels, &queries, 3, &config))
        };
        let one = on(1)?;
        assert_eq!(one, on(3)?);
        assert_eq!(one, on(4)?);
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
