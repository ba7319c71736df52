//! Checkpoints: `read_train_state` and `load_checkpoint` (into a small model and its
//! optimiser), which `--resume` and `evaluate` call on whatever file they are given.
//!
//! Input: the checkpoint file.

use std::path::Path;

use candle::{DType, Device, Tensor};
use candle_nn::{Init, VarMap};
use simsiam::train::{
    Checkpointer, ParamGroup, Sgd, SgdConfig, TrainState, load_checkpoint, read_train_state,
};

use super::{Outcome, Target, refused};

pub const TARGET: Target = Target {
    name: "checkpoint",
    seeds,
    run,
    tokens: &[
        b"simsiam.train_state",
        b"__metadata__",
        b"model.a.weight",
        b"model.b.bias",
        b"optim.momentum.",
        b"dtype",
        b"\"F32\"",
        b"\"F16\"",
        b"\"BF16\"",
        b"\"I64\"",
        b"shape",
        b"data_offsets",
        b"[2,3]",
        b"[3]",
        b"\\\"epoch\\\"",
        b"\\\"step\\\"",
        b"\\\"config\\\"",
    ],
};

/// A model of two variables and its optimiser; every value starts at `fill`.
fn model(fill: f64) -> (VarMap, Sgd) {
    let varmap = VarMap::new();
    let mut params = Vec::new();
    for (name, shape) in [("a.weight", &[2usize, 3][..]), ("b.bias", &[3][..])] {
        varmap
            .get(shape, name, Init::Const(fill), DType::F32, &Device::Cpu)
            .expect("a variable of the fuzz model");
        let data = varmap.data().lock().expect("the variable map");
        params.push((name.to_owned(), data.get(name).expect("the variable just made").clone()));
    }
    let sgd = Sgd::new(vec![ParamGroup { params, lr: 0.1, fixed_lr: false }], SgdConfig::default())
        .expect("the fuzz model's optimiser");
    (varmap, sgd)
}

fn values(varmap: &VarMap) -> Vec<(String, Vec<f32>)> {
    let data = varmap.data().lock().expect("the variable map");
    let mut out: Vec<_> = data
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().flatten_all().and_then(|t| t.to_vec1()).expect("values")))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn run(dir: &Path, data: &[u8]) -> Outcome {
    let path = dir.join("checkpoint-000001.safetensors");
    std::fs::write(&path, data).expect("the checkpoint file");
    let state = read_train_state(&path);
    let (varmap, mut sgd) = model(7.0);
    let before = values(&varmap);
    match load_checkpoint(&path, &varmap, Some(&mut sgd)) {
        Ok(loaded) => {
            let state = state.expect("the state of a checkpoint that loads");
            assert_eq!(state, loaded, "two readers of one checkpoint disagree");
            Outcome::Accepted
        }
        Err(e) => {
            assert_eq!(values(&varmap), before, "a refused checkpoint changed the model");
            refused(&e, &path)
        }
    }
}

fn state(step: usize) -> TrainState {
    serde_json::from_value(serde_json::json!({
        "epoch": 1,
        "step": step,
        "seed": 42,
        "config": { "train": { "epochs": 2 } },
        "library_version": "0.1.0",
        "batches_per_epoch": step,
    }))
    .expect("a train state")
}

/// A checkpoint written by the real `Checkpointer`, after `steps` optimiser steps.
fn saved(steps: usize) -> Vec<u8> {
    let (varmap, mut sgd) = model(0.5);
    for _ in 0..steps {
        let loss = varmap
            .all_vars()
            .iter()
            .map(|v| v.as_tensor().sqr().and_then(|t| t.sum_all()))
            .reduce(|a, b| a.and_then(|a| a + b?))
            .expect("two variables")
            .expect("the loss");
        sgd.step(&loss.backward().expect("gradients")).expect("a step");
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = Checkpointer::new(dir.path(), 1)
        .and_then(|c| c.save(&varmap, &sgd, &state(steps)))
        .expect("a checkpoint");
    std::fs::read(path).expect("the checkpoint just written")
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let fresh = saved(0);
    let stepped = saved(2);
    let tensors = [("model.a.weight", Tensor::zeros((3, 2), DType::F32, &Device::Cpu).expect("zeros"))];
    let wrong = safetensors::serialize(
        tensors.iter().map(|(n, t)| (*n, t)),
        Some(std::collections::HashMap::from([(
            "simsiam.train_state".to_owned(),
            serde_json::to_string(&state(1)).expect("json"),
        )])),
    )
    .expect("a safetensors file");
    vec![
        ("ok-fresh".into(), fresh.clone()),
        ("ok-stepped".into(), stepped.clone()),
        ("err-truncated".into(), stepped[..stepped.len() - 5].to_vec()),
        ("err-header-only".into(), fresh[..fresh.len() / 2].to_vec()),
        ("err-wrong-shape".into(), wrong),
        ("err-empty".into(), Vec::new()),
    ]
}
