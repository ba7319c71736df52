//! Checkpoints survive SIGKILL: a training process killed at random moments, during steps
//! and during checkpoint writes, always leaves only whole checkpoints, resumes from the
//! newest (mid-epoch too), and ends with the weights and metrics of an uninterrupted run. The
//! test checks that its kills did land in each of those places.
//!
//! The killed processes are this test binary itself, re-run on the `#[ignore]`d
//! `child_*` entry points below with `SIMSIAM_KILL_TEST_DIR` set.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candle::{DType, Device};
use candle_nn::VarMap;
use common::{config, data, event_keys, finished, trainer, weights};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use simsiam_models::{Backbone, ResNetConfig, Stem, seeded_var_builder};
use simsiam_train::{
    CheckpointObserver, Checkpointer, MetricsLog, Result, Sgd, SgdConfig, StepContext, TrainError,
    TrainObserver, TrainState, TrainView, load_checkpoint, read_train_state,
};

const DIR_VAR: &str = "SIMSIAM_KILL_TEST_DIR";
const EPOCHS: usize = 6;

fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var(DIR_VAR).expect("run by the kill tests, which set SIMSIAM_KILL_TEST_DIR"))
}

/// Resumes from the newest checkpoint and trains to the end, a checkpoint after every step,
/// with metrics beside the checkpoints.
#[test]
#[ignore = "child process of the kill tests"]
fn child_training_run() -> Result<()> {
    let checkpoints = Checkpointer::new(child_dir(), 2)?;
    let mut t = trainer(config(EPOCHS))?
        .with_checkpoints(checkpoints.clone())
        .with_metrics(MetricsLog::append(&child_dir().join("metrics.jsonl"))?)
        .with_observer(EveryStep(CheckpointObserver::new(Some(checkpoints), 1)));
    t.resume_latest()?;
    finished(t.fit(&data())?);
    Ok(())
}

/// Saves a checkpoint after every step but an epoch's last (whose checkpoint follows, after
/// the epoch's metrics), so that kills land during writes and after mid-epoch checkpoints.
struct EveryStep(CheckpointObserver);

impl<B: Backbone> TrainObserver<B> for EveryStep {
    fn on_step(&mut self, ctx: &mut StepContext<'_>, run: &TrainView<'_, B>) -> Result<()> {
        if ctx.step % run.state.batches_per_epoch != 0 {
            self.0.save(run)?;
        }
        Ok(())
    }
}

/// Writes checkpoints of a wider model back to back, so that kills land mid-write.
#[test]
#[ignore = "child process of the kill tests"]
fn child_checkpoint_writer() -> Result<()> {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 1, DType::F32, &Device::Cpu);
    ResNetConfig::resnet18(Stem::Cifar).with_width(64).init(vb.pp("backbone"))?;
    let sgd = Sgd::new(vec![], SgdConfig::default())?;
    let checkpointer = Checkpointer::new(child_dir(), 3)?;
    for step in 0.. {
        let state = TrainState {
            epoch: step,
            step,
            seed: 1,
            config: serde_json::json!({ "writer": step }),
            library_version: "test".into(),
            batches_per_epoch: 1,
            train_seconds: 0.0,
        };
        checkpointer.save(&varmap, &sgd, &state)?;
    }
    Ok(())
}

fn spawn(child: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", child, "--test-threads=1"])
        .env(DIR_VAR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child test process")
}

/// SIGKILL, then reap.
fn kill(mut child: Child) {
    let _ = child.kill(); // fails only when the child has exited already
    child.wait().expect("reap the child process");
}

/// Every checkpoint on disk loads whole; returns how many there are.
fn assert_all_checkpoints_whole(dir: &Path, varmap: &VarMap) -> usize {
    let checkpoints = Checkpointer::new(dir, 100).and_then(|c| c.list()).expect("list checkpoints");
    for path in &checkpoints {
        if let Err(e) = load_checkpoint(path, varmap, None) {
            panic!("a checkpoint on disk is broken: {e}");
        }
    }
    checkpoints.len()
}

/// Where the kills of training runs landed.
#[derive(Debug, Default)]
struct Landings {
    /// During a checkpoint write (its temporary was left), after a checkpoint existed.
    mid_write: usize,
    /// Between writes, in a run that had trained and saved since it started: in a step.
    mid_step: usize,
    /// After a mid-epoch checkpoint, which the next run resumes from.
    mid_epoch: usize,
}

impl Landings {
    fn all_seen(&self) -> bool {
        self.mid_write > 0 && self.mid_step > 0 && self.mid_epoch > 0
    }
}

#[test]
fn killed_training_always_resumes_to_the_uninterrupted_result() -> Result<()> {
    let straight_metrics = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let straight_metrics = straight_metrics.path().join("metrics.jsonl");
    let straight = {
        let mut t = trainer(config(EPOCHS))?.with_metrics(MetricsLog::append(&straight_metrics)?);
        finished(t.fit(&data())?);
        weights(t.varmap())?
    };
    // Kills land within the time a whole child run takes on this machine (0.2 s to several
    // seconds, with the machine's speed and load), so that they hit steps and writes.
    let timing = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let started = Instant::now();
    let status = spawn("child_training_run", timing.path()).wait().map_err(|e| TrainError::io("child", e))?;
    assert!(status.success(), "a whole child run failed: {status}");
    let whole_ms = (started.elapsed().as_millis() as u64).max(40);

    // Runs killed until kills have landed mid-write, mid-step and after a mid-epoch checkpoint
    // (where a kill lands depends on the machine's speed and load); a run that completes first
    // is checked, and a fresh one follows.
    let probe = trainer(config(EPOCHS))?;
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut landed, mut kills, mut runs) = (Landings::default(), 0, 0);
    while runs == 0 || (!landed.all_seen() && Instant::now() < deadline) {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        kills += kill_then_complete(dir.path(), whole_ms, &mut rng, probe.varmap(), &mut landed)?;
        runs += 1;
        let mut resumed = trainer(config(EPOCHS))?.with_checkpoints(Checkpointer::new(dir.path(), 2)?);
        let state = resumed.resume_latest()?.expect("a final checkpoint");
        assert_eq!(state.epoch, EPOCHS);
        assert!(
            weights(resumed.varmap())? == straight,
            "after {kills} kills the weights differ from a straight run"
        );
        // Each resume dropped the events written past its checkpoint and any torn line.
        assert_eq!(
            event_keys(&dir.path().join("metrics.jsonl"))?,
            event_keys(&straight_metrics)?,
            "after {kills} kills the metrics differ from a straight run's"
        );
    }
    assert!(landed.all_seen(), "{kills} kills in {runs} runs did not land everywhere: {landed:?}");
    Ok(())
}

/// Kills a training run in `dir` up to 8 times at random moments, each time checking every
/// checkpoint and noting where the kill landed, then lets it complete; returns the kills.
fn kill_then_complete(
    dir: &Path,
    whole_ms: u64,
    rng: &mut ChaCha8Rng,
    varmap: &VarMap,
    landed: &mut Landings,
) -> Result<usize> {
    let mut kills = 0;
    while kills < 8 {
        let before = newest_step(dir)?;
        let mut child = spawn("child_training_run", dir);
        std::thread::sleep(Duration::from_millis(rng.random_range(whole_ms / 10..whole_ms * 3 / 4)));
        if child.try_wait().expect("poll the child process").is_some() {
            break; // finished before the kill: the run is complete
        }
        kill(child);
        kills += 1;
        // Count a killed write's temporary before opening the directory removes it.
        let writing = checkpoint_temporaries(dir)? > 0;
        assert_all_checkpoints_whole(dir, varmap);
        let after = newest_step(dir)?;
        if after.is_some() && writing {
            landed.mid_write += 1;
        } else if after > before {
            landed.mid_step += 1;
        }
        if after.is_some_and(|step| step % data().batches != 0) {
            landed.mid_epoch += 1;
        }
    }
    let status = spawn("child_training_run", dir).wait().map_err(|e| TrainError::io("child", e))?;
    assert!(status.success(), "the final resumed run failed: {status}");
    Ok(kills)
}

/// The step of the newest checkpoint in `dir`, if any.
fn newest_step(dir: &Path) -> Result<Option<usize>> {
    let newest = Checkpointer::new(dir, 100)?.latest()?;
    Ok(newest.map(|path| read_train_state(&path)).transpose()?.map(|state| state.step))
}

/// Hidden temporary files of interrupted checkpoint writes.
fn checkpoint_temporaries(dir: &Path) -> Result<usize> {
    let entries = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
    let names = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned());
    Ok(names.filter(|n| n.starts_with(".checkpoint-") && n.ends_with(".tmp")).count())
}

#[test]
fn kills_during_checkpoint_writes_leave_no_half_written_checkpoint() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 9, DType::F32, &Device::Cpu);
    ResNetConfig::resnet18(Stem::Cifar).with_width(64).init(vb.pp("backbone"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut seen, mut mid_write) = (0, 0);
    // Ten kills, more while none has landed mid-write yet: where a kill lands depends on how
    // fast the child starts and writes, which varies with the machine's load.
    for attempt in 0..40 {
        if attempt >= 10 && seen > 0 && mid_write > 0 {
            break;
        }
        let child = spawn("child_checkpoint_writer", dir.path());
        std::thread::sleep(Duration::from_millis(rng.random_range(900..2500)));
        kill(child);
        // Count a killed write's temporary before opening the directory removes it.
        mid_write += usize::from(temporaries(dir.path())? > 0);
        seen += assert_all_checkpoints_whole(dir.path(), &varmap);
    }
    assert!(seen > 0, "the writer never finished a checkpoint");
    assert!(mid_write > 0, "no kill landed during a write");
    // A killed write leaves its hidden temporary file, which never counts as a checkpoint;
    // opening the directory for training removes it.
    Checkpointer::new(dir.path(), 3)?;
    assert_eq!(temporaries(dir.path())?, 0);
    Ok(())
}

/// Hidden temporary files of interrupted writes.
fn temporaries(dir: &Path) -> Result<usize> {
    let entries = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
    Ok(entries.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).count())
}
