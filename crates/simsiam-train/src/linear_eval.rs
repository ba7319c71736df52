//! Linear evaluation, two protocols reporting top-1 and top-5 accuracy:
//!
//! - fast ([`linear_eval`], this file): a linear classifier trained with SGD on frozen backbone
//!   features computed once (no augmentation), standardised;
//! - paper ([`paper_linear_eval`], `paper.rs`): the official `main_lincls.py`, new augmented
//!   crops through the frozen backbone every epoch, LARS, `fc` from N(0, 0.01)
//!   ([`LinearClassifier`], `classifier.rs`).

mod classifier;
mod paper;

pub use classifier::LinearClassifier;
pub use paper::{
    PaperEpoch, PaperLinearConfig, PaperLinearTrainer, paper_linear_eval, paper_train_transform,
};

use candle::{D, DType, Device, Tensor, Var};
use candle_nn::loss::cross_entropy;
use candle_nn::{Init, VarMap};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use simsiam_models::seeded_var_builder;

use crate::knn::accuracy;
use crate::{CosineSchedule, ParamGroup, Result, Sgd, SgdConfig, TrainError};

/// The classifier's training settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearEvalConfig {
    /// Passes over the cached training features.
    pub epochs: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// Initial learning rate, decayed with a cosine schedule per epoch.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay.
    pub weight_decay: f64,
    /// Seed of the shuffling and of the weight initialisation.
    pub seed: u64,
}

impl Default for LinearEvalConfig {
    fn default() -> Self {
        Self { epochs: 100, batch_size: 256, lr: 0.1, momentum: 0.9, weight_decay: 0.0, seed: 0 }
    }
}

/// The classifier's accuracy on the test features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearEvalResult {
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-5 accuracy.
    pub top5: f64,
}

/// Trains `Linear(d, classes)` on standardised training features and evaluates it.
///
/// Features are standardised with the training set's per-dimension mean and standard
/// deviation (a parameter-free BatchNorm in front of the classifier, which lets one learning
/// rate suit any backbone).
///
/// # Shapes
/// - `train`: `[n, d]` with `n` labels; `test`: `[m, d]` with `m` labels
pub fn linear_eval(
    train: &Tensor,
    train_labels: &[usize],
    test: &Tensor,
    test_labels: &[usize],
    classes: usize,
    config: &LinearEvalConfig,
) -> Result<LinearEvalResult> {
    let (n, d) = train.dims2()?;
    if n != train_labels.len() || test.dim(0)? != test_labels.len() || test.dim(1)? != d || n == 0 {
        return Err(TrainError::Config("linear eval: features and labels disagree in shape".into()));
    }
    if train_labels.iter().chain(test_labels).any(|&l| l >= classes) {
        return Err(TrainError::Config(format!("linear eval: a label is not below {classes} classes")));
    }
    if config.epochs == 0 || config.batch_size == 0 {
        return Err(TrainError::Config(format!("linear eval: invalid settings {config:?}")));
    }
    let dev = train.device().clone();
    let train = train.to_dtype(DType::F32)?;
    let mean = train.mean_keepdim(0)?;
    let std = (train.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)? + 1e-6)?.sqrt()?;
    let standardise = |x: &Tensor| -> Result<Tensor> {
        Ok(x.to_dtype(DType::F32)?.broadcast_sub(&mean)?.broadcast_div(&std)?)
    };
    let train = standardise(&train)?;
    let test = standardise(test)?;

    // The classifier's weights come from the project's seeded initialisation, N(0, 0.01) as
    // the official linear evaluation, bias 0.
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, config.seed, DType::F32, &dev);
    let weight = Var::from_tensor(&vb.get_with_hints(
        (classes, d),
        "weight",
        Init::Randn { mean: 0.0, stdev: 0.01 },
    )?)?;
    let bias = Var::from_tensor(&vb.get_with_hints(classes, "bias", Init::Const(0.0))?)?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let group = ParamGroup {
        params: vec![("weight".into(), weight.clone()), ("bias".into(), bias.clone())],
        lr: config.lr,
        fixed_lr: false,
    };
    let sgd_config =
        SgdConfig { momentum: config.momentum, weight_decay: config.weight_decay, nesterov: false };
    let mut sgd = Sgd::new(vec![group], sgd_config)?;
    let schedule = CosineSchedule::new(config.lr, config.epochs)?;
    let labels = Tensor::from_vec(train_labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), n, &dev)?;
    let mut order: Vec<u32> = (0..n as u32).collect();
    for epoch in 0..config.epochs {
        sgd.set_lr(schedule.lr(epoch), config.lr);
        order.shuffle(&mut rng);
        for batch in order.chunks(config.batch_size) {
            let idx = Tensor::from_slice(batch, batch.len(), &dev)?;
            let x = train.index_select(&idx, 0)?;
            let y = labels.index_select(&idx, 0)?;
            let logits = x.matmul(&weight.as_tensor().t()?)?.broadcast_add(bias.as_tensor())?;
            let loss = cross_entropy(&logits, &y)?;
            sgd.step(&loss.backward()?)?;
        }
    }
    let logits = test.matmul(&weight.as_tensor().t()?)?.broadcast_add(bias.as_tensor())?;
    let scores: Vec<Vec<f32>> = logits.to_device(&Device::Cpu)?.to_vec2()?;
    let result = accuracy(&scores, test_labels);
    debug_assert_eq!(logits.dim(D::Minus1)?, classes);
    Ok(LinearEvalResult { top1: result.top1, top5: result.top5 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test data: a standard normal draw (Box-Muller).
    fn normal(rng: &mut ChaCha8Rng) -> f32 {
        use rand::RngExt;
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    #[test]
    fn separable_features_are_classified() -> Result<()> {
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut make = |n: usize| -> Result<(Tensor, Vec<usize>)> {
            let labels: Vec<usize> = (0..n).map(|i| i % 4).collect();
            let mut data = Vec::with_capacity(n * 6);
            for &l in &labels {
                for j in 0..6 {
                    data.push(if j == l { 3.0 } else { 0.0 } + 0.5 * normal(&mut rng));
                }
            }
            Ok((Tensor::from_vec(data, (n, 6), &dev)?, labels))
        };
        let (train, train_labels) = make(200)?;
        let (test, test_labels) = make(80)?;
        let config = LinearEvalConfig { epochs: 20, batch_size: 32, ..Default::default() };
        let r = linear_eval(&train, &train_labels, &test, &test_labels, 4, &config)?;
        assert!(r.top1 > 0.95, "{r:?}");
        assert_eq!(r.top5, 1.0);
        Ok(())
    }
}
