//! Exact resume: a run split by a checkpoint, at an epoch boundary or mid-epoch after an
//! interruption, ends with bit-identical weights to an uninterrupted run.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;

use common::{config, data, event_keys, finished, trainer, weights};
use simsiam_train::{
    Checkpointer, MetricsLog, Result, Sgd, SgdConfig, TrainError, TrainOutcome, TrainState, TrainSummary,
    read_train_state,
};

#[test]
fn two_epochs_equal_one_epoch_resume_one_epoch() -> Result<()> {
    let straight = {
        let mut t = trainer(config(2))?;
        let summary = finished(t.fit(&data())?);
        assert_eq!((summary.epochs, summary.steps), (2, 6));
        weights(t.varmap())?
    };

    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    {
        let mut t = trainer(config(2))?.with_checkpoints(Checkpointer::new(dir.path(), 2)?);
        let summary = finished(t.fit_until(&data(), 1)?);
        assert_eq!(summary.epochs, 1);
    }
    let mut resumed = trainer(config(2))?.with_checkpoints(Checkpointer::new(dir.path(), 2)?);
    let state = resumed.resume_latest()?.expect("a checkpoint");
    assert_eq!((state.epoch, state.step, state.seed), (1, 3, 7));
    assert_eq!(state.config["test"], "tiny resnet18");
    finished(resumed.fit(&data())?);
    assert!(weights(resumed.varmap())? == straight, "resumed weights differ from the straight run");
    Ok(())
}

#[test]
fn an_interrupted_run_saves_and_resumes_mid_epoch_exactly() -> Result<()> {
    let straight = {
        let mut t = trainer(config(2))?;
        finished(t.fit(&data())?);
        weights(t.varmap())?
    };
    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let metrics = dir.path().join("metrics.jsonl");
    {
        let mut t = trainer(config(2))?
            .with_checkpoints(Checkpointer::new(dir.path().join("ckpt"), 3)?)
            .with_metrics(MetricsLog::append(&metrics)?);
        t.interrupt_flag().store(true, Ordering::SeqCst); // as a Ctrl-C before the first step ends
        match t.fit(&data())? {
            TrainOutcome::Interrupted(TrainSummary { epochs: 0, steps: 1, .. }) => {}
            other => panic!("expected an interruption after step 1, got {other:?}"),
        }
    }
    let checkpointer = Checkpointer::new(dir.path().join("ckpt"), 3)?;
    let latest = checkpointer.latest()?.expect("a checkpoint written on interruption");
    assert_eq!(read_train_state(&latest)?.step, 1);
    let mut resumed =
        trainer(config(2))?.with_checkpoints(checkpointer).with_metrics(MetricsLog::append(&metrics)?);
    resumed.resume_latest()?;
    finished(resumed.fit(&data())?);
    assert!(weights(resumed.varmap())? == straight, "mid-epoch resume differs from the straight run");
    let lines = std::fs::read_to_string(&metrics).map_err(|e| TrainError::io(&metrics, e))?;
    assert_eq!(lines.lines().filter(|l| l.contains(r#""event":"epoch""#)).count(), 2);
    Ok(())
}

#[test]
fn a_checkpoint_of_another_model_is_refused_and_changes_nothing() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let mut t = trainer(config(1))?.with_checkpoints(Checkpointer::new(dir.path(), 1)?);
    finished(t.fit(&data())?);
    let path = Checkpointer::new(dir.path(), 1)?.latest()?.expect("checkpoint");

    // Same model, other seed: refused by name of the seed.
    let mut other_seed = trainer(simsiam_train::TrainerConfig { seed: 8, ..config(1) })?;
    let err = other_seed.resume_from(&path).expect_err("seed mismatch");
    assert!(err.to_string().contains("seed"), "{err}");

    // A wider model: refused naming the tensor, its weights untouched.
    let varmap = candle_nn::VarMap::new();
    let vb = simsiam_models::seeded_var_builder(&varmap, 1, candle::DType::F32, &candle::Device::Cpu);
    simsiam_models::ResNetConfig::resnet18(simsiam_models::Stem::Cifar)
        .with_width(8)
        .init(vb.pp("backbone"))?;
    let before = weights(&varmap)?;
    let err = simsiam_train::load_checkpoint(&path, &varmap, None).expect_err("shape mismatch");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert!(weights(&varmap)? == before);

    // Garbage: a clear error naming the file.
    let bad = dir.path().join("checkpoint-e00009-s000000009.safetensors");
    std::fs::write(&bad, b"not a checkpoint").map_err(|e| TrainError::io(&bad, e))?;
    let err = t.resume_from(&bad).expect_err("corrupt");
    assert!(err.to_string().contains("not a safetensors file"), "{err}");
    Ok(())
}

/// Flips every bit of one byte `from_end` bytes before the end of `path` (tensor data, past
/// the header): what a bad disk or a bad copy leaves.
fn flip_byte(path: &Path, from_end: usize) -> Result<()> {
    let mut bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let at = bytes.len() - from_end;
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).map_err(|e| TrainError::io(path, e))
}

fn file_names(dir: &Path) -> Result<Vec<String>> {
    let list = Checkpointer::new(dir, 100)?.list()?;
    Ok(list.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect())
}

#[test]
fn a_damaged_newest_checkpoint_is_skipped_kept_out_of_rotation_and_the_run_ends_exactly() -> Result<()> {
    let straight = {
        let mut t = trainer(config(3))?;
        finished(t.fit(&data())?);
        weights(t.varmap())?
    };
    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    {
        let mut t = trainer(config(3))?.with_checkpoints(Checkpointer::new(dir.path(), 3)?);
        finished(t.fit_until(&data(), 2)?);
    }
    let newest = Checkpointer::new(dir.path(), 3)?.latest()?.expect("the checkpoint of epoch 2");
    flip_byte(&newest, 64)?;
    match read_train_state(&newest) {
        Err(e @ TrainError::CorruptCheckpoint { .. }) => assert!(e.to_string().contains("checksum"), "{e}"),
        other => panic!("a damaged checkpoint must be refused, got {other:?}"),
    }

    // The resume falls back to epoch 1, then is interrupted after one step, keeping one
    // checkpoint: rotation removes epoch 1's, never the new one, and leaves the damaged one.
    let mut t = trainer(config(3))?.with_checkpoints(Checkpointer::new(dir.path(), 1)?);
    let state = t.resume_latest()?.expect("the previous checkpoint");
    assert_eq!((state.epoch, state.step), (1, 3));
    t.interrupt_flag().store(true, Ordering::SeqCst);
    assert!(t.fit(&data())?.is_interrupted());
    assert_eq!(
        file_names(dir.path())?,
        ["checkpoint-e00001-s000000004.safetensors", "checkpoint-e00002-s000000006.safetensors"]
    );

    let mut t = trainer(config(3))?.with_checkpoints(Checkpointer::new(dir.path(), 1)?);
    assert_eq!(t.resume_latest()?.expect("the interruption's checkpoint").step, 4);
    finished(t.fit(&data())?);
    assert!(weights(t.varmap())? == straight, "the run from the fallback differs from a straight run");
    assert_eq!(file_names(dir.path())?, ["checkpoint-e00003-s000000009.safetensors"]);
    Ok(())
}

#[test]
fn every_checkpoint_damaged_is_an_error_not_a_fresh_start() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let mut t = trainer(config(1))?.with_checkpoints(Checkpointer::new(dir.path(), 1)?);
    finished(t.fit(&data())?);
    let only = Checkpointer::new(dir.path(), 1)?.latest()?.expect("checkpoint");
    flip_byte(&only, 8)?;
    let err = trainer(config(1))?
        .with_checkpoints(Checkpointer::new(dir.path(), 1)?)
        .resume_latest()
        .expect_err("no checkpoint verifies");
    assert!(err.to_string().contains(&only.display().to_string()), "{err}");
    Ok(())
}

/// `path`'s checkpoint rewritten through `edit` (name, dtype, shape, bytes) with only the train
/// state in its metadata, as checkpoints were written before they carried a checksum.
fn rewrite_without_checksum(path: &Path, out: &Path, edit: impl Fn(&str, &mut Vec<u8>)) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let parse = |e: safetensors::SafeTensorError| TrainError::Config(e.to_string());
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(parse)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(parse)?;
    let state = header.metadata().as_ref().and_then(|m| m.get("simsiam.train_state")).expect("state").clone();
    let mut owned = Vec::new();
    for (name, view) in file.tensors() {
        let mut data = view.data().to_vec();
        edit(&name, &mut data);
        owned.push((name, view.dtype(), view.shape().to_vec(), data));
    }
    let views = owned
        .iter()
        .map(|(n, d, s, data)| {
            Ok((n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), data).map_err(parse)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = std::collections::HashMap::from([("simsiam.train_state".to_owned(), state)]);
    let written = safetensors::serialize(views, Some(metadata)).map_err(parse)?;
    std::fs::write(out, written).map_err(|e| TrainError::io(out, e))
}

#[test]
fn old_checkpoints_load_but_nan_weights_are_refused_and_never_saved() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let mut t = trainer(config(1))?.with_checkpoints(Checkpointer::new(dir.path().join("ckpt"), 1)?);
    finished(t.fit(&data())?);
    let good = Checkpointer::new(dir.path().join("ckpt"), 1)?.latest()?.expect("checkpoint");
    let trained = weights(t.varmap())?;

    // Without a checksum (an older version's checkpoint): loads, with a warning.
    let old = dir.path().join("old.safetensors");
    rewrite_without_checksum(&good, &old, |_, _| {})?;
    let fresh = trainer(config(1))?;
    simsiam_train::load_checkpoint(&old, fresh.varmap(), None)?;
    assert!(weights(fresh.varmap())? == trained);

    // Without a checksum and with a NaN: refused, naming the tensor, the model untouched.
    let nan = dir.path().join("nan.safetensors");
    rewrite_without_checksum(&good, &nan, |name, data| {
        if name == "model.backbone.conv1.weight" {
            data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
    })?;
    let fresh = trainer(config(1))?;
    let before = weights(fresh.varmap())?;
    match simsiam_train::load_checkpoint(&nan, fresh.varmap(), None) {
        Err(e @ TrainError::CorruptCheckpoint { .. }) => {
            assert!(e.to_string().contains("backbone.conv1.weight") && e.to_string().contains("NaN"), "{e}")
        }
        other => panic!("NaN weights must be refused, got {other:?}"),
    }
    assert!(weights(fresh.varmap())? == before);

    // A model holding a NaN is never saved: no file, the older checkpoint kept.
    {
        let vars = t.varmap().data().lock().expect("lock");
        let var = &vars["backbone.conv1.weight"];
        let poisoned = (var.as_tensor() * f64::NAN)?;
        var.set(&poisoned)?;
    }
    let checkpointer = Checkpointer::new(dir.path().join("ckpt"), 1)?;
    let state = TrainState { step: 99, epoch: 9, ..read_train_state(&good)? };
    let err =
        checkpointer.save(t.varmap(), &Sgd::new(vec![], SgdConfig::default())?, &state).expect_err("NaN");
    assert!(err.to_string().contains("NaN"), "{err}");
    assert_eq!(checkpointer.list()?, [good]);
    Ok(())
}

#[test]
fn metrics_after_a_kill_and_a_resume_hold_each_event_once() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let straight = dir.path().join("straight.jsonl");
    finished(trainer(config(2))?.with_metrics(MetricsLog::append(&straight)?).fit(&data())?);

    let (metrics, ckpt) = (dir.path().join("metrics.jsonl"), dir.path().join("ckpt"));
    let run = || -> Result<_> {
        Ok(trainer(config(2))?
            .with_checkpoints(Checkpointer::new(&ckpt, 3)?)
            .with_metrics(MetricsLog::append(&metrics)?))
    };
    finished(run()?.fit(&data())?);
    // Killed after writing epoch 2's metrics and a torn line, before epoch 2's checkpoint.
    let last = Checkpointer::new(&ckpt, 3)?.latest()?.expect("checkpoint");
    std::fs::remove_file(&last).map_err(|e| TrainError::io(&last, e))?;
    let mut file =
        std::fs::OpenOptions::new().append(true).open(&metrics).map_err(|e| TrainError::io(&metrics, e))?;
    std::io::Write::write_all(&mut file, br#"{"event":"step","epoch":1,"st"#)
        .map_err(|e| TrainError::io(&metrics, e))?;

    let mut resumed = run()?;
    assert_eq!(resumed.resume_latest()?.expect("epoch 1's checkpoint").step, 3);
    finished(resumed.fit(&data())?);
    assert_eq!(event_keys(&metrics)?, event_keys(&straight)?);
    Ok(())
}

#[test]
fn a_resume_that_finds_no_checkpoint_starts_the_metrics_afresh() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let straight = dir.path().join("straight.jsonl");
    finished(trainer(config(1))?.with_metrics(MetricsLog::append(&straight)?).fit(&data())?);
    // A run killed before its first checkpoint left these metrics.
    let metrics = dir.path().join("metrics.jsonl");
    std::fs::copy(&straight, &metrics).map_err(|e| TrainError::io(&metrics, e))?;
    let mut t = trainer(config(1))?
        .with_checkpoints(Checkpointer::new(dir.path().join("ckpt"), 1)?)
        .with_metrics(MetricsLog::append(&metrics)?);
    assert!(t.resume_latest()?.is_none());
    finished(t.fit(&data())?);
    assert_eq!(event_keys(&metrics)?, event_keys(&straight)?);
    Ok(())
}
