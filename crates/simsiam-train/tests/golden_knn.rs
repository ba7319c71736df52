//! Weighted kNN against the reference of `tools/golden/make_train_golden.py`: Lightly's
//! `knn_predict` (torch 2.9.1) on a fixed feature fixture, for k = 1, 20 and 200, t = 0.1.

use std::path::PathBuf;

use candle::Device;
use simsiam_train::{KnnConfig, Result, knn_classify, knn_scores};

#[test]
fn knn_matches_the_python_reference() -> Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/knn.safetensors");
    let fx = candle::safetensors::load(path, &Device::Cpu)?;
    let labels = |k: &str| -> Result<Vec<usize>> {
        Ok(fx[k].to_vec1::<i64>()?.into_iter().map(|l| l as usize).collect())
    };
    let (train_labels, test_labels) = (labels("train_labels")?, labels("test_labels")?);
    for k in [1, 20, 200] {
        let config = KnnConfig { k, temperature: 0.1, chunk_size: 64 };
        let result = knn_classify(&fx["train"], &train_labels, &fx["test"], &test_labels, 10, &config)?;
        let expected_pred = labels(&format!("k{k}.pred"))?;
        assert_eq!(result.predictions, expected_pred, "k = {k}");
        let accuracy = fx[&format!("k{k}.accuracy")].to_vec1::<f64>()?;
        assert!(
            (result.top1 - accuracy[0]).abs() < 1e-6,
            "k = {k}: top-1 {} vs {}",
            result.top1,
            accuracy[0]
        );
        if k > 1 {
            // Accuracies were stored as float32. With k = 1 nine classes tie at zero and top-5 depends on the tie order.
            assert!(
                (result.top5 - accuracy[1]).abs() < 1e-6,
                "k = {k}: top-5 {} vs {}",
                result.top5,
                accuracy[1]
            );
        }
        let scores = knn_scores(&fx["train"], &train_labels, &fx["test"], 10, &config)?;
        let expected = fx[&format!("k{k}.scores")].to_vec2::<f32>()?;
        for (ours, theirs) in scores.iter().flatten().zip(expected.iter().flatten()) {
            assert!(
                (ours - theirs).abs() <= 1e-4 * theirs.abs().max(1.0),
                "k = {k}: score {ours} vs {theirs}"
            );
        }
    }
    Ok(())
}
