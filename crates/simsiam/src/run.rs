//! Building a run from its [`RunConfig`]: datasets, loaders and model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use candle::{DType, Device};
use candle_nn::VarMap;
use simsiam_data::{
    Cifar10, Cifar100, Dataset, DatasetExt, EvalLoader, ImageFolder, ImageFolderOptions, Split,
    TwoViewLoader, fetch_cifar10, fetch_cifar100,
};
use simsiam_models::{BatchNormConfig, BatchStats, ResNet, SimSiam, seeded_var_builder};
use simsiam_train::load_init_weights;

use crate::config::{DataConfig, DatasetKind, RunConfig};

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
/// fifth of it, at least 100) for quick tries, picked at random from `seed` (the run's) so a
/// class-per-folder dataset keeps all its classes.
pub fn open_datasets(config: &DataConfig, seed: u64) -> Result<Datasets> {
    let limit = config.limit;
    // Stream 0 picks the training images, stream 1 the test images.
    let cap = |d: Arc<dyn Dataset>, n: usize, stream: u64| -> Arc<dyn Dataset> {
        if n == 0 || n >= d.len() { d } else { Arc::new(d.random_subset(n, seed, stream)) }
    };
    let test_cap = if limit == 0 { 0 } else { (limit / 5).max(100) };
    match config.dataset {
        kind @ (DatasetKind::Cifar10 | DatasetKind::Cifar100) => {
            let load = |split| {
                if kind == DatasetKind::Cifar10 {
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
                train: cap(Arc::new(train), limit, 0),
                test: Some(cap(Arc::new(test), test_cap, 1)),
                classes: Some(classes),
            })
        }
        DatasetKind::Folder => {
            let options =
                ImageFolderOptions { labels_from_subfolders: true, ..ImageFolderOptions::default() };
            // The error names the folder (or the file in it) already.
            let folder = ImageFolder::open(&config.path, options)?;
            let classes = folder.class_names().len();
            Ok(Datasets {
                train: cap(Arc::new(folder), limit, 0),
                test: None,
                classes: (classes > 1).then_some(classes),
            })
        }
    }
}

/// `simsiam download`: fetches (or copies from `from`, an archive path or URL) and verifies
/// CIFAR-10 or CIFAR-100 under `dir`; returns the dataset's folder.
pub fn download(dataset: DatasetKind, dir: &Path, from: Option<&str>) -> Result<PathBuf> {
    Ok(match dataset {
        DatasetKind::Cifar10 => fetch_cifar10(dir, from)?,
        DatasetKind::Cifar100 => fetch_cifar100(dir, from)?,
        DatasetKind::Folder => bail!("unknown dataset `folder`: use cifar10 or cifar100"),
    })
}

/// The two-view training loader.
pub fn train_loader(run: &RunConfig, dataset: Arc<dyn Dataset>, device: &Device) -> Result<TwoViewLoader> {
    let transform = run.augment.simsiam()?.build().context("invalid augmentation settings")?;
    Ok(TwoViewLoader::new(dataset, transform, run.loader_config(), device.clone())?)
}

/// An evaluation loader (no augmentation, fixed order).
pub fn eval_loader(run: &RunConfig, dataset: Arc<dyn Dataset>, device: &Device) -> Result<EvalLoader> {
    Ok(EvalLoader::new(dataset, run.eval_transform(), run.eval_loader_config(), device.clone())?)
}

/// The SimSiam model with seeded weights, or those of `model.init` when it names a file, its
/// variables in a new `VarMap`.
pub fn build_model(run: &RunConfig, device: &Device) -> Result<(SimSiam<ResNet>, VarMap)> {
    build_model_with_batch_stats(run, device, BatchStats::Local)
}

/// [`build_model`] with every batch norm's training statistics from `batch_stats`: under
/// data parallelism, `simsiam_train::distributed::synced_batch_stats` gives the official
/// code's synchronised batch norm.
pub fn build_model_with_batch_stats(
    run: &RunConfig,
    device: &Device,
    batch_stats: BatchStats,
) -> Result<(SimSiam<ResNet>, VarMap)> {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, run.train.seed, DType::F32, device);
    let precision = run.train.precision.resolve(device);
    let bn = BatchNormConfig::default().with_stats(batch_stats);
    let resnet = run.model.resnet(precision).with_batch_norm(bn.clone());
    let backbone = resnet.init(vb.pp("backbone")).context("invalid backbone settings")?;
    let projection = run.model.projection_head(resnet.feature_dim(), precision).with_batch_norm(bn.clone());
    let prediction = run.model.prediction_head(precision).with_batch_norm(bn);
    let model = SimSiam::new(backbone, &projection, &prediction, vb).context("invalid head settings")?;
    if let Some(init) = run.model.init_path() {
        // The error names the file and the first tensor that does not fit.
        let source = load_init_weights(init, &varmap)?;
        tracing::info!(path = %init.display(), ?source, "initial weights loaded");
    }
    Ok((model, varmap))
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
