//! A small model and deterministic synthetic views for trainer tests.

#![allow(dead_code)]

use std::path::Path;

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use simsiam_loss::NegativeCosineSimilarity;
use simsiam_models::{
    PredictionHeadConfig, ProjectionHeadConfig, ResNet, ResNetConfig, SimSiam, Stem, seeded_var_builder,
};
use simsiam_train::{
    EpochBatches, Result, ScheduleStep, TrainError, TrainOutcome, TrainSummary, Trainer, TrainerConfig,
    TwoViewBatches,
};

/// Two views per batch, each a fixed function of (epoch, batch index).
pub struct SyntheticViews {
    pub batches: usize,
    pub batch_size: usize,
    pub size: usize,
}

impl SyntheticViews {
    fn batch(&self, epoch: u64, index: usize) -> Result<(Tensor, Tensor)> {
        let mut rng = ChaCha8Rng::seed_from_u64(epoch * 1000 + index as u64);
        let n = self.batch_size * 3 * self.size * self.size;
        let mut view = || -> Result<Tensor> {
            let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
            Ok(Tensor::from_vec(v, (self.batch_size, 3, self.size, self.size), &Device::Cpu)?)
        };
        Ok((view()?, view()?))
    }
}

impl TwoViewBatches for SyntheticViews {
    fn batches_per_epoch(&self) -> usize {
        self.batches
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn batches(&self, epoch: u64, skip: usize) -> Result<EpochBatches<'_>> {
        Ok(Box::new((skip..self.batches).map(move |i| self.batch(epoch, i).map(Into::into))))
    }
}

pub fn data() -> SyntheticViews {
    SyntheticViews { batches: 3, batch_size: 8, size: 8 }
}

pub fn config(epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        lr: 0.05,
        weight_decay: 5e-4,
        schedule_step: ScheduleStep::Iteration,
        warmup_epochs: usize::from(epochs > 1),
        log_every: 2,
        knn_every: 0,
        seed: 7,
        ..TrainerConfig::default()
    }
}

/// A narrow CIFAR ResNet-18 with small heads, seeded.
pub fn trainer(config: TrainerConfig) -> Result<Trainer<ResNet>> {
    trainer_with_loss(config, Box::new(NegativeCosineSimilarity::default()))
}

/// [`trainer`] with another loss.
pub fn trainer_with_loss(
    config: TrainerConfig,
    loss: Box<dyn simsiam_loss::Similarity>,
) -> Result<Trainer<ResNet>> {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 7, DType::F32, &Device::Cpu);
    let backbone = ResNetConfig::resnet18(Stem::Cifar).with_width(4).init(vb.pp("backbone"))?;
    let model = SimSiam::new(
        backbone,
        &ProjectionHeadConfig::new(32, 32, 16),
        &PredictionHeadConfig::new(16, 8, 16),
        vb,
    )?;
    let json = serde_json::json!({ "test": "tiny resnet18", "epochs": config.epochs });
    Ok(Trainer::new(model, varmap, loss, config, json)?.with_progress_bar(false))
}

/// The summary of a fit that ran to its end; panics on an interruption.
pub fn finished(outcome: TrainOutcome) -> TrainSummary {
    match outcome {
        TrainOutcome::Finished(summary) => summary,
        TrainOutcome::Interrupted(summary) => panic!("the fit was interrupted: {summary:?}"),
        TrainOutcome::TimeUp(summary) => panic!("the fit ran out of time: {summary:?}"),
    }
}

/// Every variable's values, sorted by name.
pub fn weights(varmap: &VarMap) -> Result<Vec<(String, Vec<f32>)>> {
    let data = varmap.data().lock().expect("lock");
    let mut out = Vec::new();
    for (name, var) in data.iter() {
        out.push((name.clone(), var.as_tensor().flatten_all()?.to_vec1::<f32>()?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Each line's event, epoch and step; every line must be a whole JSON record.
pub fn event_keys(path: &Path) -> Result<Vec<(String, u64, u64)>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    assert!(text.ends_with('\n'), "{text}");
    let key = |line: &str| -> Option<(String, u64, u64)> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        Some((v["event"].as_str()?.to_owned(), v["epoch"].as_u64()?, v["step"].as_u64()?))
    };
    Ok(text.lines().map(|l| key(l).unwrap_or_else(|| panic!("not a whole record: {l}"))).collect())
}
