//! Checkpoints that survive a kill: model weights, BatchNorm running statistics, optimiser
//! momentum and the train state in one safetensors file, written atomically.
//!
//! A checkpoint is `checkpoint-e{epoch}-s{step}.safetensors` holding `model.<name>` for every
//! variable of the model's `VarMap` (torchvision and Lightly names, running statistics
//! included), `optim.momentum.<name>` for every momentum buffer, and the [`TrainState`] as
//! JSON in the safetensors metadata under `simsiam.train_state`. It is written to a hidden
//! temporary file, fsynced and renamed, so a checkpoint on disk is always whole; the last
//! `keep_last` are kept.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::fs::atomic_write;
use crate::{Result, Sgd, TrainError};

const STATE_KEY: &str = "simsiam.train_state";
const MODEL_PREFIX: &str = "model.";
const MOMENTUM_PREFIX: &str = "optim.momentum.";

/// Where training stands, stored in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// The run's seed.
    pub seed: u64,
    /// The full configuration of the run.
    pub config: serde_json::Value,
    /// The simsiam-train version that wrote the checkpoint.
    pub library_version: String,
    /// Batches per epoch of the run, so that a mid-epoch resume skips the right number.
    #[serde(default)]
    pub batches_per_epoch: usize,
}

/// Writes checkpoints into a directory and finds the newest.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    dir: PathBuf,
    keep_last: usize,
}

impl Checkpointer {
    /// Checkpoints in `dir` (created if missing), keeping the newest `keep_last` (at least 1).
    /// Temporary files left by a write that was killed are removed.
    pub fn new(dir: impl Into<PathBuf>, keep_last: usize) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        for entry in fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))? {
            let path = entry.map_err(|e| TrainError::io(&dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(".checkpoint-") && name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(|e| TrainError::io(&path, e))?;
            }
        }
        Ok(Self { dir, keep_last: keep_last.max(1) })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Saves a checkpoint and prunes old ones; returns its path.
    pub fn save(&self, varmap: &VarMap, optimizer: &Sgd, state: &TrainState) -> Result<PathBuf> {
        let path = self.dir.join(format!("checkpoint-e{:05}-s{:09}.safetensors", state.epoch, state.step));
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        {
            let vars = varmap.data().lock().map_err(|_| poisoned(&path))?;
            for (name, var) in vars.iter() {
                tensors.push((format!("{MODEL_PREFIX}{name}"), var.as_tensor().to_device(&Device::Cpu)?));
            }
        }
        for (name, buf) in optimizer.momentum_buffers() {
            tensors.push((format!("{MOMENTUM_PREFIX}{name}"), buf.to_device(&Device::Cpu)?));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let json = serde_json::to_string(state).map_err(|e| invalid(&path, e.to_string()))?;
        let metadata = HashMap::from([(STATE_KEY.to_owned(), json)]);
        let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
            .map_err(|e| invalid(&path, e.to_string()))?;
        atomic_write(&path, &bytes)?;
        self.prune()?;
        Ok(path)
    }

    /// Checkpoints in the directory, oldest first.
    pub fn list(&self) -> Result<Vec<PathBuf>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| TrainError::io(&self.dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("checkpoint-") && name.ends_with(".safetensors") {
                found.push(path);
            }
        }
        found.sort(); // zero-padded epoch and step: lexical order is chronological
        Ok(found)
    }

    /// The newest checkpoint, if any.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        Ok(self.list()?.pop())
    }

    fn prune(&self) -> Result<()> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(self.keep_last);
        for old in &all[..excess] {
            fs::remove_file(old).map_err(|e| TrainError::io(old, e))?;
        }
        Ok(())
    }
}

/// Reads a checkpoint's train state without loading its tensors' values into a model.
pub fn read_train_state(path: &Path) -> Result<TrainState> {
    let bytes = fs::read(path).map_err(|e| TrainError::io(path, e))?;
    parse_state(path, &bytes)
}

fn parse_state(path: &Path, bytes: &[u8]) -> Result<TrainState> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| invalid(path, format!("not a safetensors file ({e})")))?;
    let json = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| invalid(path, "no train state: not a simsiam checkpoint".into()))?;
    serde_json::from_str(json).map_err(|e| invalid(path, format!("unreadable train state ({e})")))
}

/// Loads a checkpoint into `varmap` (every variable must be present with its shape) and, when
/// given, the optimiser's momentum; returns the train state. Nothing is changed on error.
pub fn load_checkpoint(path: &Path, varmap: &VarMap, optimizer: Option<&mut Sgd>) -> Result<TrainState> {
    let bytes = fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let state = parse_state(path, &bytes)?;
    let tensors = candle::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| invalid(path, format!("unreadable tensors ({e})")))?;
    let vars = varmap.data().lock().map_err(|_| poisoned(path))?;
    let mut updates = Vec::with_capacity(vars.len());
    for (name, var) in vars.iter() {
        let saved = tensors
            .get(&format!("{MODEL_PREFIX}{name}"))
            .ok_or_else(|| invalid(path, format!("has no `{name}`: was it written by another model?")))?;
        if saved.shape() != var.as_tensor().shape() {
            return Err(invalid(
                path,
                format!("`{name}` has shape {:?}, the model {:?}", saved.shape(), var.as_tensor().shape()),
            ));
        }
        let value = saved.to_device(var.as_tensor().device())?.to_dtype(var.as_tensor().dtype())?;
        updates.push((var.clone(), value));
    }
    let model_tensors = tensors.keys().filter(|k| k.starts_with(MODEL_PREFIX)).count();
    if model_tensors != vars.len() {
        return Err(invalid(
            path,
            format!("holds {model_tensors} model tensors, the model has {}", vars.len()),
        ));
    }
    drop(vars);
    if let Some(optimizer) = optimizer {
        let mut momentum = HashMap::new();
        for (key, tensor) in &tensors {
            if let Some(name) = key.strip_prefix(MOMENTUM_PREFIX) {
                momentum.insert(name.to_owned(), tensor.clone());
            }
        }
        let device = updates.first().map(|(v, _)| v.as_tensor().device().clone()).unwrap_or(Device::Cpu);
        let momentum = momentum
            .into_iter()
            .map(|(n, t)| Ok((n, t.to_device(&device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        optimizer.load_momentum_buffers(momentum).map_err(|e| invalid(path, e.to_string()))?;
    }
    for (var, value) in updates {
        var.set(&value)?;
    }
    Ok(state)
}

/// Saves the model's variables alone, under their own names (a torchvision/Lightly-style
/// state dict that `safetensors.torch.load_file` reads).
pub fn save_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    let vars = varmap.data().lock().map_err(|_| poisoned(path))?;
    let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(vars.len());
    for (name, var) in vars.iter() {
        tensors.push((name.clone(), var.as_tensor().to_device(&Device::Cpu)?));
    }
    drop(vars);
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)
        .map_err(|e| invalid(path, e.to_string()))?;
    atomic_write(path, &bytes)
}

fn invalid(path: &Path, reason: String) -> TrainError {
    TrainError::Checkpoint { path: path.to_owned(), reason }
}

fn poisoned(path: &Path) -> TrainError {
    invalid(path, "the model's variable map lock is poisoned".into())
}
