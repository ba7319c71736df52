//! Exact resume: a run split by a checkpoint, at an epoch boundary or mid-epoch after an
//! interruption, ends with bit-identical weights to an uninterrupted run.

mod common;

use std::sync::atomic::Ordering;

use common::{config, data, finished, trainer, weights};
use simsiam_train::{
    Checkpointer, MetricsLog, Result, TrainError, TrainOutcome, TrainSummary, read_train_state,
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
