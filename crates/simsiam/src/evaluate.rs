//! `simsiam eval knn`, `simsiam eval linear` and `simsiam embed`: a checkpoint's backbone on
//! the configured dataset.
//!
//! Evaluation needs labelled training and test images: CIFAR's two splits, or a folder dataset
//! labelled by class sub-folder with a second folder of the same classes as its test set
//! (`--test DIR`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use simsiam_data::{Dataset, DatasetExt, ImageFolder, ImageFolderOptions, LabelledLoader, LoaderConfig};
use simsiam_models::{ResNet, SimSiam};
use simsiam_train::{
    KnnResult, LinearEvalConfig, LinearEvalResult, PaperEpoch, PaperLinearConfig, knn_evaluate, linear_eval,
    load_checkpoint, loader_features, paper_linear_eval, paper_train_transform, read_train_state,
    write_embeddings_csv, write_embeddings_safetensors,
};

use crate::config::{DatasetKind, RunConfig};
use crate::outputs::{OutputKind, check_output};
use crate::run::{build_model, eval_loader, open_datasets};

/// The config stored in a checkpoint, with overrides applied (and no `model.init`: the
/// checkpoint's weights replace any).
pub fn checkpoint_config(checkpoint: &Path, overrides: &[String]) -> Result<RunConfig> {
    let state = read_train_state(checkpoint)?;
    let run: RunConfig = serde_json::from_value(state.config).with_context(|| {
        format!("{}: the stored config is not a simsiam run config", checkpoint.display())
    })?;
    let mut run = run.with_overrides(overrides)?;
    // The checkpoint holds every weight: the weights its run started from are not read again.
    run.model.init = std::path::PathBuf::new();
    Ok(run)
}

/// The model of a checkpoint with its weights, or without one the model `model.init` names
/// (the seeded random model when it names none).
pub fn load_model(run: &RunConfig, checkpoint: Option<&Path>) -> Result<SimSiam<ResNet>> {
    let (model, varmap) = build_model(run, &run.train.device.open()?)?;
    if let Some(checkpoint) = checkpoint {
        load_checkpoint(checkpoint, &varmap, None)?;
    }
    Ok(model)
}

/// Labelled training and test images and the number of classes.
pub struct LabelledSplits {
    /// The training images (the kNN memory bank, the classifier's training set).
    pub train: Arc<dyn Dataset>,
    /// The test images.
    pub test: Arc<dyn Dataset>,
    /// Number of classes; labels are below it on both sides.
    pub classes: usize,
}

/// The run's labelled training and test images: CIFAR's train and test splits, or, for a
/// folder dataset, `data.path` and the folder `test`, both labelled by class sub-folder (class
/// ids from the sorted sub-folder names, the same classes required on both sides). `data.limit`
/// caps both as [`open_datasets`] does.
pub fn labelled_splits(run: &RunConfig, test: Option<&Path>) -> Result<LabelledSplits> {
    let data = &run.data;
    match (data.dataset, test) {
        (DatasetKind::Folder, Some(test_dir)) => {
            let options =
                ImageFolderOptions { labels_from_subfolders: true, ..ImageFolderOptions::default() };
            let train = ImageFolder::open(&data.path, options.clone())?;
            let test = ImageFolder::open(test_dir, options)?;
            train.require_labels()?;
            test.require_labels()?;
            train.require_same_classes(&test)?;
            let classes = train.class_names().len();
            // As `open_datasets` caps a quick try: stream 0 for the training images, stream 1
            // for the test images, at a fifth of the limit (at least 100).
            let (seed, limit) = (run.train.seed, data.limit);
            let cap = |d: ImageFolder, n: usize, stream: u64| -> Arc<dyn Dataset> {
                if n == 0 || n >= d.len() { Arc::new(d) } else { Arc::new(d.random_subset(n, seed, stream)) }
            };
            let test_cap = if limit == 0 { 0 } else { (limit / 5).max(100) };
            Ok(LabelledSplits { train: cap(train, limit, 0), test: cap(test, test_cap, 1), classes })
        }
        (DatasetKind::Folder, None) => bail!(
            "evaluating a folder dataset needs its test images: --test DIR, a folder with the same class sub-folders as {}",
            data.path.display()
        ),
        (_, Some(dir)) => {
            bail!("--test {} is for folder datasets; {} has its own test split", dir.display(), data.dataset)
        }
        (_, None) => {
            let opened = open_datasets(data, run.train.seed)?;
            match (opened.test, opened.classes) {
                (Some(test), Some(classes)) => Ok(LabelledSplits { train: opened.train, test, classes }),
                _ => bail!("evaluation needs a labelled dataset with a test split"),
            }
        }
    }
}

/// Weighted kNN accuracy of the checkpoint's backbone (of the random network without one);
/// `test` is a folder dataset's test folder (see [`labelled_splits`]).
pub fn knn(run: &RunConfig, checkpoint: Option<&Path>, test: Option<&Path>) -> Result<KnnResult> {
    let data = labelled_splits(run, test)?;
    let model = load_model(run, checkpoint)?;
    let dev = run.train.device.open()?;
    let bank = eval_loader(run, data.train.clone(), &dev)?;
    let queries = eval_loader(run, data.test.clone(), &dev)?;
    Ok(knn_evaluate(model.backbone(), &bank, &queries, data.classes, &run.knn_config())?)
}

/// Linear evaluation of the checkpoint's frozen backbone (of `model.init`'s without one), the
/// fast protocol: a classifier on features computed once (see `simsiam_train::linear_eval`).
pub fn linear(
    run: &RunConfig,
    checkpoint: Option<&Path>,
    config: &LinearEvalConfig,
    test: Option<&Path>,
) -> Result<LinearEvalResult> {
    let data = labelled_splits(run, test)?;
    let classes = data.classes;
    let model = load_model(run, checkpoint)?;
    let dev = run.train.device.open()?;
    let train = loader_features(model.backbone(), &eval_loader(run, data.train.clone(), &dev)?)?;
    let test = loader_features(model.backbone(), &eval_loader(run, data.test.clone(), &dev)?)?;
    Ok(linear_eval(
        &train.features,
        &train.required_labels()?,
        &test.features,
        &test.required_labels()?,
        classes,
        config,
    )?)
}

/// The paper protocol's settings for this run: the defaults of `main_lincls.py` (90 epochs,
/// batch 4096, base lr 0.02 scaled by `batch / 256`, LARS) with the given overrides, seeded
/// as the run.
pub fn paper_linear_config(
    run: &RunConfig,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    base_lr: Option<f64>,
) -> PaperLinearConfig {
    let default = PaperLinearConfig::default();
    PaperLinearConfig {
        epochs: epochs.unwrap_or(default.epochs),
        batch_size: batch_size.unwrap_or(default.batch_size),
        base_lr: base_lr.unwrap_or(default.base_lr),
        seed: run.train.seed,
        ..default
    }
}

/// Linear evaluation of the checkpoint's frozen backbone (of `model.init`'s without one) as the official `main_lincls.py`:
/// each epoch new crops (`RandomResizedCrop(augment.input_size)`, horizontal flip, the run's
/// normalisation) through the backbone in eval mode, `fc` trained with LARS; evaluation with
/// the run's evaluation preprocessing. `on_epoch` hears about each epoch.
pub fn linear_paper(
    run: &RunConfig,
    checkpoint: Option<&Path>,
    config: &PaperLinearConfig,
    test: Option<&Path>,
    on_epoch: impl FnMut(&PaperEpoch),
) -> Result<LinearEvalResult> {
    let data = labelled_splits(run, test)?;
    let model = load_model(run, checkpoint)?;
    let dev = run.train.device.open()?;
    let eval = run.eval_transform();
    let transform = paper_train_transform(run.augment.input_size, eval.normalization)?;
    let loader_config = LoaderConfig {
        batch_size: config.batch_size,
        seed: run.train.seed,
        drop_last: false,
        workers: run.data.workers,
        // One batch in use and one being built: a 4096-image batch of 224-pixel crops is 2.4 GB.
        prefetch: 2,
    };
    let train = LabelledLoader::new(data.train.clone(), transform, loader_config, dev.clone())?;
    let test = eval_loader(run, data.test.clone(), &dev)?;
    Ok(paper_linear_eval(model.backbone(), &train, &test, data.classes, config, on_epoch)?)
}

/// Writes the training images' embeddings as Lightly's CSV (`.csv`) or safetensors, by the
/// checkpoint's backbone (by `model.init`'s without one).
///
/// Refuses, before any work, an `out` that is a file of another kind (the checkpoint, the
/// weights, a config, a dataset file, a CSV of the user's): see [`crate::outputs`].
pub fn embed(run: &RunConfig, checkpoint: Option<&Path>, out: &Path) -> Result<usize> {
    let kind = match out.extension().and_then(|e| e.to_str()) {
        Some("csv") => OutputKind::EmbeddingsCsv,
        Some("safetensors") => OutputKind::EmbeddingsSafetensors,
        _ => bail!("{}: the output must end in .csv or .safetensors", out.display()),
    };
    let inputs: Vec<&Path> = checkpoint.into_iter().chain(run.model.init_path()).collect();
    check_output(out, kind, &inputs)?;
    let model = load_model(run, checkpoint)?;
    let dev = run.train.device.open()?;
    let data = open_datasets(&run.data, run.train.seed)?;
    let f = loader_features(model.backbone(), &eval_loader(run, data.train.clone(), &dev)?)?;
    match kind {
        OutputKind::EmbeddingsCsv => write_embeddings_csv(out, &f.names, &f.features, &f.labels)?,
        _ => write_embeddings_safetensors(out, &f.names, &f.features, &f.labels)?,
    }
    Ok(f.names.len())
}
