//! `simsiam eval knn`, `simsiam eval linear` and `simsiam embed`: a checkpoint's backbone on
//! the configured dataset.

use std::path::Path;

use anyhow::{Context, Result, bail};
use simsiam_models::{ResNet, SimSiam};
use simsiam_train::{
    KnnResult, LinearEvalConfig, LinearEvalResult, knn_evaluate, linear_eval, load_checkpoint,
    loader_features, read_train_state, write_embeddings_csv, write_embeddings_safetensors,
};

use crate::config::RunConfig;
use crate::outputs::{OutputKind, check_output};
use crate::run::{Datasets, build_model, eval_loader, open_datasets};

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

fn labelled(data: &Datasets) -> Result<(&std::sync::Arc<dyn simsiam_data::Dataset>, usize)> {
    match (&data.test, data.classes) {
        (Some(test), Some(classes)) => Ok((test, classes)),
        _ => bail!("evaluation needs a labelled dataset with a test split (cifar10 or cifar100)"),
    }
}

/// Weighted kNN accuracy of the checkpoint's backbone (of the random network without one).
pub fn knn(run: &RunConfig, checkpoint: Option<&Path>) -> Result<KnnResult> {
    let model = load_model(run, checkpoint)?;
    let dev = run.train.device.open()?;
    let data = open_datasets(&run.data, run.train.seed)?;
    let (test, classes) = labelled(&data)?;
    let bank = eval_loader(run, data.train.clone(), &dev)?;
    let queries = eval_loader(run, test.clone(), &dev)?;
    Ok(knn_evaluate(model.backbone(), &bank, &queries, classes, &run.knn_config())?)
}

/// Linear evaluation of the checkpoint's frozen backbone (of `model.init`'s without one).
pub fn linear(
    run: &RunConfig,
    checkpoint: Option<&Path>,
    config: &LinearEvalConfig,
) -> Result<LinearEvalResult> {
    let model = load_model(run, checkpoint)?;
    let dev = run.train.device.open()?;
    let data = open_datasets(&run.data, run.train.seed)?;
    let (test, classes) = labelled(&data)?;
    let train = loader_features(model.backbone(), &eval_loader(run, data.train.clone(), &dev)?)?;
    let test = loader_features(model.backbone(), &eval_loader(run, test.clone(), &dev)?)?;
    Ok(linear_eval(
        &train.features,
        &train.required_labels()?,
        &test.features,
        &test.required_labels()?,
        classes,
        config,
    )?)
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
