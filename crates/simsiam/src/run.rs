//! Building a run from its [`RunConfig`]: device, datasets, loaders, model and trainer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use candle::{DType, Device};
use candle_nn::VarMap;
use simsiam_augment::{Normalization, SimSiamConfig};
use simsiam_data::{
    Cifar10, Cifar100, Dataset, DatasetExt, EvalConfig, EvalLoader, EvalTransform, ImageFolder,
    ImageFolderOptions, LoaderConfig, Split, TwoViewLoader,
};
use simsiam_loss::{NegativeCosineSimilarity, Similarity, SymmetrizedCrossEntropy};
use simsiam_models::{
    Precision, PredictionHeadConfig, ProjectionHeadConfig, ResNet, ResNetConfig, SimSiam, Stem,
    seeded_var_builder,
};

use crate::config::{AugmentConfig, DataConfig, ModelConfig, RunConfig};

/// `cpu`, `cuda`, `cuda:N` or `metal`; a build without the feature says so.
pub fn device(name: &str) -> Result<Device> {
    let device = match name {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(0).context("cannot use CUDA device 0 (is the `cuda` feature on?)")?,
        "metal" => {
            Device::new_metal(0).context("cannot use the Metal device (is the `metal` feature on?)")?
        }
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Device::new_cuda(n)
                .with_context(|| format!("cannot use CUDA device {n} (is the `cuda` feature on?)"))?,
            _ => bail!("unknown device `{other}`: use cpu, cuda, cuda:N or metal"),
        },
    };
    Ok(device)
}

/// `train.precision` on `device`: `auto` is bf16 on CUDA and f32 elsewhere.
pub fn precision(name: &str, device: &Device) -> Result<Precision> {
    match name {
        "auto" if device.is_cuda() => Ok(Precision::Bf16),
        "auto" => Ok(Precision::F32),
        other => Precision::parse(other)
            .with_context(|| format!("unknown precision `{other}`: use auto, f32 or bf16")),
    }
}

/// The training images, and the test images and class count when the dataset has them.
pub struct Datasets {
    /// Images to pretrain on (and the kNN memory bank).
    pub train: Arc<dyn Dataset>,
    /// Held-out labelled images for kNN and linear evaluation.
    pub test: Option<Arc<dyn Dataset>>,
    /// Number of classes, when labelled.
    pub classes: Option<usize>,
}

/// Opens the configured dataset; `limit` caps the training images (and the test images at a
/// fifth of it, at least 100) for quick tries.
pub fn open_datasets(config: &DataConfig) -> Result<Datasets> {
    let limit = config.limit;
    let cap = |d: Arc<dyn Dataset>, n: usize| -> Arc<dyn Dataset> {
        if n == 0 || n >= d.len() { d } else { Arc::new(d.take(n)) }
    };
    let test_cap = if limit == 0 { 0 } else { (limit / 5).max(100) };
    match config.dataset.as_str() {
        "cifar10" | "cifar100" => {
            let load = |split| {
                if config.dataset == "cifar10" {
                    Cifar10::load(&config.path, split)
                } else {
                    Cifar100::load(&config.path, split)
                }
            };
            let train = load(Split::Train).with_context(|| {
                format!(
                    "cannot load {} from {} (download it with `cargo xtask download-cifar` or `simsiam download`)",
                    config.dataset,
                    config.path.display()
                )
            })?;
            let classes = train.num_classes();
            let test = load(Split::Test)?;
            Ok(Datasets {
                train: cap(Arc::new(train), limit),
                test: Some(cap(Arc::new(test), test_cap)),
                classes: Some(classes),
            })
        }
        "folder" => {
            let options =
                ImageFolderOptions { labels_from_subfolders: true, ..ImageFolderOptions::default() };
            let folder = ImageFolder::open(&config.path, options)
                .with_context(|| format!("cannot open the image folder {}", config.path.display()))?;
            let classes = folder.class_names().len();
            Ok(Datasets {
                train: cap(Arc::new(folder), limit),
                test: None,
                classes: (classes > 1).then_some(classes),
            })
        }
        other => bail!("unknown dataset `{other}`: use cifar10, cifar100 or folder"),
    }
}

fn normalization(name: &str) -> Result<Normalization> {
    match name {
        "cifar10" => Ok(Normalization::CIFAR10),
        "imagenet" => Ok(Normalization::IMAGENET),
        other => bail!("unknown normalisation `{other}`: use cifar10 or imagenet"),
    }
}

/// The augmentation of the config, on Lightly's defaults.
pub fn simsiam_transform(config: &AugmentConfig) -> Result<SimSiamConfig> {
    Ok(SimSiamConfig {
        input_size: config.input_size,
        cj_prob: config.cj_prob,
        cj_strength: config.cj_strength,
        min_scale: config.min_scale,
        random_gray_scale: config.random_gray_scale,
        gaussian_blur: config.gaussian_blur,
        hf_prob: config.hf_prob,
        vf_prob: config.vf_prob,
        rr_prob: config.rr_prob,
        normalize: Some(normalization(&config.normalize)?),
        ..SimSiamConfig::default()
    })
}

/// The evaluation preprocessing: CIFAR images as they are, others resized and centre-cropped.
pub fn eval_transform(data: &DataConfig, augment: &AugmentConfig) -> Result<EvalTransform> {
    let normalization = normalization(&augment.normalize)?;
    Ok(if data.dataset.starts_with("cifar") {
        EvalTransform { resize: None, center_crop: None, normalization }
    } else {
        EvalTransform { normalization, ..EvalTransform::imagenet(augment.input_size) }
    })
}

/// The two-view training loader.
pub fn train_loader(run: &RunConfig, dataset: Arc<dyn Dataset>, device: &Device) -> Result<TwoViewLoader> {
    let transform = simsiam_transform(&run.augment)?.build().context("invalid augmentation settings")?;
    let config = LoaderConfig {
        batch_size: run.train.batch_size,
        seed: run.train.seed,
        drop_last: true,
        workers: run.data.workers,
        ..LoaderConfig::default()
    };
    Ok(TwoViewLoader::new(dataset, transform, config, device.clone())?)
}

/// An evaluation loader (no augmentation, fixed order).
pub fn eval_loader(run: &RunConfig, dataset: Arc<dyn Dataset>, device: &Device) -> Result<EvalLoader> {
    let config = EvalConfig { batch_size: 256, workers: run.data.workers, ..EvalConfig::default() };
    Ok(EvalLoader::new(dataset, eval_transform(&run.data, &run.augment)?, config, device.clone())?)
}

/// The backbone's architecture.
pub fn resnet_config(model: &ModelConfig) -> Result<ResNetConfig> {
    let stem = match model.stem.as_str() {
        "imagenet" => Stem::ImageNet,
        "cifar" => Stem::Cifar,
        other => bail!("unknown stem `{other}`: use imagenet or cifar"),
    };
    let config = match model.backbone.as_str() {
        "resnet18" => ResNetConfig::resnet18(stem),
        "resnet34" => ResNetConfig::resnet34(stem),
        "resnet50" => ResNetConfig::resnet50(stem),
        other => bail!("unknown backbone `{other}`: use resnet18, resnet34 or resnet50"),
    };
    Ok(config.with_width(model.width).with_zero_init_residual(model.zero_init_residual))
}

/// The SimSiam model with seeded weights, its variables in a new `VarMap`.
pub fn build_model(run: &RunConfig, device: &Device) -> Result<(SimSiam<ResNet>, VarMap)> {
    let m = &run.model;
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, run.train.seed, DType::F32, device);
    let p = precision(&run.train.precision, device)?;
    let resnet = resnet_config(m)?.with_precision(p);
    let backbone = resnet.init(vb.pp("backbone")).context("invalid backbone settings")?;
    let projection = ProjectionHeadConfig {
        input_dim: resnet.feature_dim(),
        hidden_dim: m.proj_hidden_dim,
        output_dim: m.proj_output_dim,
        num_layers: m.proj_layers,
        last_bn_affine: m.proj_last_bn_affine,
        precision: p,
        batch_norm: Default::default(),
    };
    let prediction =
        PredictionHeadConfig::new(m.proj_output_dim, m.pred_hidden_dim, m.proj_output_dim).with_precision(p);
    let model = SimSiam::new(backbone, &projection, &prediction, vb).context("invalid head settings")?;
    Ok((model, varmap))
}

/// The configured loss.
pub fn loss(model: &ModelConfig) -> Result<Box<dyn Similarity>> {
    match model.loss.as_str() {
        "negative_cosine" => Ok(Box::new(NegativeCosineSimilarity::default())),
        "symmetrized_cross_entropy" => Ok(Box::new(SymmetrizedCrossEntropy)),
        other => bail!("unknown loss `{other}`: use negative_cosine or symmetrized_cross_entropy"),
    }
}

/// The run's output files.
pub struct OutputPaths {
    /// The run directory.
    pub dir: PathBuf,
    /// Checkpoints.
    pub checkpoints: PathBuf,
    /// JSON-lines metrics.
    pub metrics: PathBuf,
    /// The config as TOML.
    pub config: PathBuf,
    /// Final weights (torchvision/Lightly names).
    pub weights: PathBuf,
    /// Loss, collapse level, learning rate and kNN accuracy over the run, drawn at its end.
    pub plot: PathBuf,
}

impl OutputPaths {
    /// The files under `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            checkpoints: dir.join("checkpoints"),
            metrics: dir.join("metrics.jsonl"),
            config: dir.join("config.toml"),
            plot: dir.join("plot.png"),
            weights: dir.join("model.safetensors"),
        }
    }
}
