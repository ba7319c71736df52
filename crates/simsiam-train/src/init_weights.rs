//! Starting weights from a file, and the backbone exported under torchvision's names.
//!
//! [`load_init_weights`] reads what `model.init` names: a simsiam checkpoint, a whole model
//! saved by [`crate::save_weights`] (`backbone.*`, `projection_head.*`, ...) or a torchvision
//! ResNet state dict saved as safetensors (`conv1.weight`, `bn1.running_mean`,
//! `layer1.0.conv1.weight`, ...), which sets the backbone alone (`fc.*` and
//! `num_batches_tracked` are ignored). [`save_backbone_torchvision`] writes the backbone the
//! other way, as `torchvision.models.resnet18().load_state_dict(..., strict=True)` takes it
//! once `fc` is replaced.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use candle::{Device, Tensor, Var};
use candle_nn::VarMap;
use safetensors::SafeTensors;

use crate::fs::atomic_write;
use crate::{Result, TrainError, load_checkpoint};

/// The prefix of the backbone's variables in a SimSiam model.
const BACKBONE: &str = "backbone.";

/// What a weights file held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitSource {
    /// A simsiam checkpoint: the whole model (its optimiser state and train state are not
    /// used).
    Checkpoint,
    /// A whole model under its own names (`model.safetensors`).
    Model,
    /// A torchvision ResNet state dict: the backbone; the heads keep their initialisation.
    Torchvision,
}

/// Loads the weights of `path` into `varmap` (a SimSiam model's variables): every variable of
/// the model (or, from a torchvision state dict, of its backbone) must be in the file with its
/// shape, and a torchvision file may hold nothing else but `fc.*` and `num_batches_tracked`.
/// Nothing is changed on error, and the error names the file and the first tensor at fault.
pub fn load_init_weights(path: &Path, varmap: &VarMap) -> Result<InitSource> {
    let bytes = fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| weights_error(path, format!("not a safetensors file ({e})")))?;
    if header.metadata().as_ref().is_some_and(|m| m.contains_key(crate::checkpoint::STATE_KEY)) {
        load_checkpoint(path, varmap, None)?;
        return Ok(InitSource::Checkpoint);
    }
    let tensors = candle::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| weights_error(path, format!("unreadable tensors ({e})")))?;
    let whole_model = tensors.keys().any(|k| k.starts_with(BACKBONE));
    let vars = varmap.data().lock().map_err(|_| weights_error(path, "poisoned VarMap".into()))?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut updates: Vec<(Var, Tensor)> = Vec::new();
    for name in names {
        let key = if whole_model {
            name.as_str()
        } else {
            match name.strip_prefix(BACKBONE) {
                Some(key) => key,
                None => continue, // a torchvision file has no heads
            }
        };
        let var = &vars[name];
        let expected = var.as_tensor().shape();
        let saved = tensors.get(key).ok_or_else(|| {
            weights_error(path, format!("has no tensor `{key}` (the model's `{name}`, shape {expected:?})"))
        })?;
        if saved.shape() != expected {
            return Err(weights_error(
                path,
                format!("tensor `{key}` has shape {:?}, the model's `{name}` {expected:?}", saved.shape()),
            ));
        }
        let value = saved.to_device(var.as_tensor().device())?.to_dtype(var.as_tensor().dtype())?;
        updates.push((var.clone(), value));
    }
    if !whole_model {
        let mut unused: Vec<&String> = tensors
            .keys()
            .filter(|k| !k.starts_with("fc.") && !k.ends_with("num_batches_tracked"))
            .filter(|k| !vars.contains_key(&format!("{BACKBONE}{k}")))
            .collect();
        unused.sort();
        if let Some(first) = unused.first() {
            return Err(weights_error(
                path,
                format!(
                    "holds `{first}` (shape {:?}), which this backbone has no place for: another architecture?",
                    tensors[*first].shape()
                ),
            ));
        }
        if updates.is_empty() {
            return Err(weights_error(path, "holds no backbone tensor".into()));
        }
    }
    drop(vars);
    for (var, value) in updates {
        var.set(&value)?;
    }
    Ok(if whole_model { InitSource::Model } else { InitSource::Torchvision })
}

/// Writes the backbone's variables of `varmap` under torchvision's names (`backbone.` taken
/// off), with a zero `num_batches_tracked` (int64) beside every batch norm, as
/// `torchvision.models.resnet18().state_dict()` holds them, less `fc`.
pub fn save_backbone_torchvision(varmap: &VarMap, path: &Path) -> Result<()> {
    let vars = varmap.data().lock().map_err(|_| weights_error(path, "poisoned VarMap".into()))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, var) in vars.iter() {
        let Some(key) = name.strip_prefix(BACKBONE) else { continue };
        tensors.insert(key.to_owned(), var.as_tensor().to_device(&Device::Cpu)?);
        if let Some(bn) = key.strip_suffix("running_mean") {
            tensors.insert(format!("{bn}num_batches_tracked"), Tensor::new(0i64, &Device::Cpu)?);
        }
    }
    drop(vars);
    if tensors.is_empty() {
        return Err(weights_error(path, "the model has no `backbone.` variables".into()));
    }
    let mut sorted: Vec<(String, Tensor)> = tensors.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes = safetensors::serialize(sorted.iter().map(|(n, t)| (n.as_str(), t)), None)
        .map_err(|e| weights_error(path, e.to_string()))?;
    atomic_write(path, &bytes)
}

fn weights_error(path: &Path, reason: String) -> TrainError {
    TrainError::Weights { path: path.to_owned(), reason }
}
