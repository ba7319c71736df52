//! Checkpoints that survive a kill: model weights, BatchNorm running statistics, optimiser
//! momentum and the train state in one safetensors file, written atomically and verified
//! when read.
//!
//! A checkpoint is `checkpoint-e{epoch}-s{step}.safetensors` holding `model.<name>` for every
//! variable of the model's `VarMap` (torchvision and Lightly names, running statistics
//! included), `optim.momentum.<name>` for every momentum buffer, and in the safetensors
//! metadata the [`TrainState`] as JSON under `simsiam.train_state` and a content checksum under
//! `simsiam.checksum`: a CRC-32 over every tensor's name, dtype, shape and bytes (in name
//! order) and the train state's JSON. With an online linear probe, its variables are there too
//! as `online_classifier.<name>` (and their momentum as `optim.momentum.online_classifier.<name>`);
//! a checkpoint without them loads into a run with a probe, which then starts its probe afresh. It is written to a hidden temporary file, fsynced and
//! renamed, so a checkpoint on disk is always whole; the last `keep_last` are kept.
//!
//! Reading one checks the checksum (a checkpoint written before checksums existed loads with a
//! warning) and loading one refuses NaN or infinite values: either is a
//! [`TrainError::CorruptCheckpoint`], which [`crate::Trainer::resume_latest`] answers by
//! falling back to the newest older checkpoint that verifies. Nothing non-finite is ever
//! saved, so the checkpoint just written always verifies and rotation, which never removes it,
//! never removes the last verified one.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use safetensors::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};

use crate::fs::atomic_write;
use crate::online_probe::PROBE_PREFIX;
use crate::{Result, Sgd, TrainError};

pub(crate) const STATE_KEY: &str = "simsiam.train_state";
const CHECKSUM_KEY: &str = "simsiam.checksum";
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
    /// Seconds on the training clock: the steps and the loading of their batches, without
    /// evaluation, checkpoints or anything else observers do (0 in checkpoints written before
    /// the clock existed), so that a time budget survives a resume.
    #[serde(default)]
    pub train_seconds: f64,
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

    /// Saves a checkpoint and prunes old ones; returns its path. A model or momentum holding
    /// NaN or infinite values is refused: nothing is written and nothing pruned.
    pub fn save(&self, varmap: &VarMap, optimizer: &Sgd, state: &TrainState) -> Result<PathBuf> {
        self.save_with_probe(varmap, None, optimizer, state)
    }

    /// [`Self::save`] with the online probe's variables, when given, under `online_classifier.`.
    pub fn save_with_probe(
        &self,
        varmap: &VarMap,
        probe: Option<&VarMap>,
        optimizer: &Sgd,
        state: &TrainState,
    ) -> Result<PathBuf> {
        let path = self.dir.join(format!("checkpoint-e{:05}-s{:09}.safetensors", state.epoch, state.step));
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (prefix, map) in [(MODEL_PREFIX, Some(varmap)), (PROBE_PREFIX, probe)] {
            let Some(map) = map else { continue };
            let vars = map.data().lock().map_err(|_| poisoned(&path))?;
            for (name, var) in vars.iter() {
                tensors.push((format!("{prefix}{name}"), var.as_tensor().to_device(&Device::Cpu)?));
            }
        }
        for (name, buf) in optimizer.momentum_buffers() {
            tensors.push((format!("{MOMENTUM_PREFIX}{name}"), buf.to_device(&Device::Cpu)?));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let json = serde_json::to_string(state).map_err(|e| invalid(&path, e.to_string()))?;
        let mut hash = ContentHash::new();
        for (name, tensor) in &tensors {
            if !all_finite(tensor)? {
                return Err(invalid(
                    &path,
                    format!(
                        "`{name}` holds NaN or infinite values: not saved, the older checkpoints are kept"
                    ),
                ));
            }
            hash.tensor(name, View::dtype(tensor), tensor.dims(), &View::data(tensor));
        }
        let checksum = hash.finish(&json);
        let metadata = HashMap::from([(STATE_KEY.to_owned(), json), (CHECKSUM_KEY.to_owned(), checksum)]);
        let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
            .map_err(|e| invalid(&path, e.to_string()))?;
        atomic_write(&path, &bytes)?;
        self.prune(&path)?;
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

    /// Removes the oldest checkpoints but the `keep_last` up to `written`, the one just saved
    /// (verified: its values were checked before writing). Checkpoints named after it are left
    /// alone: they are those a resume skipped as damaged, kept for the user to look at.
    fn prune(&self, written: &Path) -> Result<()> {
        let all = self.list()?;
        let upto = all.iter().position(|p| p == written).map_or(0, |i| i + 1);
        let excess = upto.saturating_sub(self.keep_last);
        for old in &all[..excess] {
            fs::remove_file(old).map_err(|e| TrainError::io(old, e))?;
        }
        Ok(())
    }
}

/// Reads a checkpoint's train state, after checking its content against its checksum, without
/// loading its tensors' values into a model.
pub fn read_train_state(path: &Path) -> Result<TrainState> {
    let bytes = fs::read(path).map_err(|e| TrainError::io(path, e))?;
    verified_state(path, &bytes)
}

/// The train state of a checkpoint whose bytes match its checksum. One written before
/// checksums existed has none: it is read with a warning.
fn verified_state(path: &Path, bytes: &[u8]) -> Result<TrainState> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| corrupt(path, format!("not a safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| corrupt(path, format!("not a safetensors file ({e})")))?;
    let metadata = header.metadata().as_ref();
    let json = metadata
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| corrupt(path, "no train state: not a simsiam checkpoint".into()))?;
    let state =
        serde_json::from_str(json).map_err(|e| corrupt(path, format!("unreadable train state ({e})")))?;
    let Some(stored) = metadata.and_then(|m| m.get(CHECKSUM_KEY)) else {
        tracing::warn!(path = %path.display(), "checkpoint written before checksums: its content is not verified");
        return Ok(state);
    };
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hash = ContentHash::new();
    for (name, view) in &tensors {
        hash.tensor(name, view.dtype(), view.shape(), view.data());
    }
    let actual = hash.finish(json);
    if *stored != actual {
        return Err(corrupt(
            path,
            format!("damaged: its content has checksum {actual}, it was written with {stored}"),
        ));
    }
    Ok(state)
}

/// The content checksum: CRC-32 over each tensor's name, dtype, shape and bytes, then the
/// train state's JSON, as `crc32:` and eight hex digits. Fields are length-prefixed so that no
/// two contents hash the same bytes.
struct ContentHash(crc32fast::Hasher);

impl ContentHash {
    fn new() -> Self {
        Self(crc32fast::Hasher::new())
    }

    fn tensor(&mut self, name: &str, dtype: Dtype, shape: &[usize], data: &[u8]) {
        self.bytes(name.as_bytes());
        self.bytes(format!("{dtype:?}").as_bytes());
        self.0.update(&(shape.len() as u64).to_le_bytes());
        for &dim in shape {
            self.0.update(&(dim as u64).to_le_bytes());
        }
        self.bytes(data);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn finish(mut self, state_json: &str) -> String {
        self.bytes(state_json.as_bytes());
        format!("crc32:{:08x}", self.0.finalize())
    }
}

/// Whether a tensor holds no NaN or infinity (integer tensors always).
fn all_finite(tensor: &Tensor) -> Result<bool> {
    let flat = tensor.flatten_all()?;
    Ok(match tensor.dtype() {
        DType::F64 => flat.to_vec1::<f64>()?.iter().all(|v| v.is_finite()),
        DType::F32 => flat.to_vec1::<f32>()?.iter().all(|v| v.is_finite()),
        // Half precision widens exactly: a value is finite in f32 if and only if it was.
        d if d.is_float() => flat.to_dtype(DType::F32)?.to_vec1::<f32>()?.iter().all(|v| v.is_finite()),
        _ => true,
    })
}

/// Loads a checkpoint into `varmap` (every variable must be present with its shape) and, when
/// given, the optimiser's momentum; returns the train state. Its content must match its
/// checksum and hold no NaN or infinity ([`TrainError::CorruptCheckpoint`] otherwise). Nothing
/// is changed on error.
pub fn load_checkpoint(path: &Path, varmap: &VarMap, optimizer: Option<&mut Sgd>) -> Result<TrainState> {
    load_checkpoint_with_probe(path, varmap, None, optimizer)
}

/// [`load_checkpoint`] with the online probe's variables into `probe`, when given: all of them
/// when the checkpoint has them (with their shapes), none when it was written without a probe
/// (the probe keeps its fresh weights; a warning says so). Without `probe`, the checkpoint's
/// probe and its momentum are ignored.
pub fn load_checkpoint_with_probe(
    path: &Path,
    varmap: &VarMap,
    probe: Option<&VarMap>,
    optimizer: Option<&mut Sgd>,
) -> Result<TrainState> {
    let bytes = fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let state = verified_state(path, &bytes)?;
    let tensors = candle::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| corrupt(path, format!("unreadable tensors ({e})")))?;
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        if !all_finite(&tensors[name])? {
            return Err(corrupt(path, format!("`{name}` holds NaN or infinite values")));
        }
    }
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
    let has_probe = tensors.keys().any(|k| k.starts_with(PROBE_PREFIX));
    match probe {
        Some(probe) if has_probe => {
            let vars = probe.data().lock().map_err(|_| poisoned(path))?;
            for (name, var) in vars.iter() {
                let saved = tensors
                    .get(&format!("{PROBE_PREFIX}{name}"))
                    .ok_or_else(|| invalid(path, format!("has no online probe `{name}`")))?;
                if saved.shape() != var.as_tensor().shape() {
                    return Err(invalid(
                        path,
                        format!(
                            "online probe `{name}` has shape {:?}, this run's {:?} (another number of classes?)",
                            saved.shape(),
                            var.as_tensor().shape()
                        ),
                    ));
                }
                let value = saved.to_device(var.as_tensor().device())?.to_dtype(var.as_tensor().dtype())?;
                updates.push((var.clone(), value));
            }
        }
        Some(_) => {
            tracing::warn!(path = %path.display(), "checkpoint without an online probe: the probe starts afresh")
        }
        None => {}
    }
    if let Some(optimizer) = optimizer {
        let mut momentum = HashMap::new();
        for (key, tensor) in &tensors {
            if let Some(name) = key.strip_prefix(MOMENTUM_PREFIX) {
                // A probe's momentum without a probe to restore it into is left behind.
                if probe.is_none() && name.starts_with(PROBE_PREFIX) {
                    continue;
                }
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

fn corrupt(path: &Path, reason: String) -> TrainError {
    TrainError::CorruptCheckpoint { path: path.to_owned(), reason }
}

fn poisoned(path: &Path) -> TrainError {
    invalid(path, "the model's variable map lock is poisoned".into())
}
