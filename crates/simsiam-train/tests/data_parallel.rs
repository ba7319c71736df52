//! Data parallelism on the CPU with the in-process communicator: two workers with batch 32 and
//! synchronised batch norm take the same steps as one worker with batch 64 (SGD with momentum
//! and weight decay), plain per-rank batch norm does not, and a checkpoint written by rank 0
//! resumes on one or two workers as if training had not stopped.
//!
//! No PyTorch fixture here: the reference is our own single-process run, the property
//! PyTorch's `SyncBatchNorm` + `DistributedDataParallel` guarantee.

mod common;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use candle::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarMap};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use simsiam_models::{BatchNorm, BatchNormConfig, batch_norm, seeded_var_builder};
use simsiam_train::distributed::{
    Communicator, LocalCommunicator, ShardedBatches, average_gradients, save_checkpoint_rank0, shard_rows,
    synced_batch_stats,
};
use simsiam_train::{
    Checkpointer, ParamGroup, Result, Sgd, SgdConfig, TrainError, TrainState, load_checkpoint,
};

const GLOBAL_BATCH: usize = 64;
const SEED: u64 = 11;
const SIZE: usize = 6;

/// conv 3->8 (3x3, padding 1) -> batch norm -> ReLU -> linear 288->16 -> batch norm -> ReLU ->
/// linear 16->4: two batch norms in a row, 4-D and 2-D, so that the gradient of one crosses
/// ranks through the other.
struct Net {
    conv: Conv2d,
    bn1: BatchNorm,
    fc1: Linear,
    bn2: BatchNorm,
    fc2: Linear,
}

impl Net {
    /// Weights seeded identically on every rank; batch norm statistics over `bn_comm`.
    fn new(varmap: &VarMap, bn_comm: Arc<dyn Communicator>) -> candle::Result<Self> {
        let vb = seeded_var_builder(varmap, SEED, DType::F32, &Device::Cpu);
        let conv_cfg = Conv2dConfig { padding: 1, ..Default::default() };
        let bn = BatchNormConfig::default().with_stats(synced_batch_stats(bn_comm));
        Ok(Self {
            conv: candle_nn::conv2d_no_bias(3, 8, 3, conv_cfg, vb.pp("conv"))?,
            bn1: batch_norm(8, bn.clone(), vb.pp("bn1"))?,
            fc1: candle_nn::linear(8 * SIZE * SIZE, 16, vb.pp("fc1"))?,
            bn2: batch_norm(16, bn, vb.pp("bn2"))?,
            fc2: candle_nn::linear(16, 4, vb.pp("fc2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle::Result<Tensor> {
        let h = self.bn1.forward_t(&self.conv.forward(x)?, true)?.relu()?; // [b, 8, 6, 6]
        let h = self.fc1.forward(&h.flatten_from(1)?)?; // [b, 16]
        self.fc2.forward(&self.bn2.forward_t(&h, true)?.relu()?) // [b, 4]
    }
}

/// Step `step`'s global batch: inputs `[64, 3, 6, 6]` and targets `[64, 4]`.
fn global_batch(step: usize) -> candle::Result<(Tensor, Tensor)> {
    let mut rng = ChaCha8Rng::seed_from_u64(1000 + step as u64);
    let mut draw = |n: usize, scale: f32, shift: f32| -> Vec<f32> {
        (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale + shift).collect()
    };
    let x = Tensor::from_vec(
        draw(GLOBAL_BATCH * 3 * SIZE * SIZE, 2.0, 0.5),
        (GLOBAL_BATCH, 3, SIZE, SIZE),
        &Device::Cpu,
    )?;
    let t = Tensor::from_vec(draw(GLOBAL_BATCH * 4, 1.0, 0.0), (GLOBAL_BATCH, 4), &Device::Cpu)?;
    Ok((x, t))
}

/// How a worker runs: which steps, with which batch norm, from and to which checkpoints.
struct Plan<'a> {
    steps: Range<usize>,
    sync_bn: bool,
    resume: Option<&'a Path>,
    save_after: Option<(&'a Checkpointer, usize)>,
}

/// What a worker ends with: every variable by name, and the checkpoint it wrote, if any.
type Outcome = (Vec<(String, Tensor)>, Option<std::path::PathBuf>);

/// One worker: SGD (lr 0.1, momentum 0.9, weight decay 5e-4) on its rows of each global
/// batch, gradients averaged over `comm`.
fn worker(comm: Arc<dyn Communicator>, plan: &Plan) -> Result<Outcome> {
    let varmap = VarMap::new();
    let bn_comm: Arc<dyn Communicator> =
        if plan.sync_bn { comm.clone() } else { Arc::new(LocalCommunicator::single()) };
    let net = Net::new(&varmap, bn_comm)?;
    let params: Vec<(String, candle::Var)> = {
        let vars = varmap.data().lock().expect("lock");
        let mut params: Vec<_> = vars
            .iter()
            .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        params
    };
    let group = ParamGroup { params: params.clone(), lr: 0.1, fixed_lr: false };
    let mut sgd = Sgd::new(vec![group], SgdConfig { momentum: 0.9, weight_decay: 5e-4, nesterov: false })?;
    if let Some(path) = plan.resume {
        let state = load_checkpoint(path, &varmap, Some(&mut sgd))?;
        assert_eq!(state.step, plan.steps.start, "resuming at the checkpoint's step");
    }
    let (rank, world) = (comm.rank(), comm.world_size());
    let rows = shard_rows(GLOBAL_BATCH, rank, world);
    let rows =
        Tensor::from_vec(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), rows.len(), &Device::Cpu)?;
    let mut written = None;
    for step in plan.steps.clone() {
        let (x, t) = global_batch(step)?;
        let (x, t) = (x.index_select(&rows, 0)?, t.index_select(&rows, 0)?);
        let loss = (net.forward(&x)? - t)?.sqr()?.mean_all()?;
        let mut grads = loss.backward()?;
        average_gradients(&comm, &mut grads, &params)?;
        sgd.step(&grads)?;
        if let Some((checkpointer, after)) = plan.save_after
            && step + 1 == after
        {
            let state = TrainState {
                epoch: 0,
                step: step + 1,
                seed: SEED,
                config: serde_json::json!({ "test": "data parallel" }),
                library_version: "test".into(),
                batches_per_epoch: 0,
                train_seconds: 0.0,
            };
            written = save_checkpoint_rank0(comm.as_ref(), checkpointer, &varmap, None, &sgd, &state)?;
        }
    }
    let vars = varmap.data().lock().expect("lock");
    let mut out: Vec<(String, Tensor)> =
        vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, written))
}

/// Runs `world` workers as threads; their outcomes in rank order.
fn run(world: usize, plan: &Plan) -> Result<Vec<Outcome>> {
    let group = LocalCommunicator::group(world)?;
    std::thread::scope(|s| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|comm| {
                let comm: Arc<dyn Communicator> = Arc::new(comm);
                s.spawn(move || worker(comm, plan))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(TrainError::Distributed("a worker panicked".into()))))
            .collect()
    })
}

/// The largest per-tensor relative error `|a - b| / |b|` over all variables.
fn max_rel_error(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> Result<(f64, String)> {
    assert_eq!(a.len(), b.len());
    let mut worst = (0f64, String::new());
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        let diff =
            (ta.to_dtype(DType::F64)? - tb.to_dtype(DType::F64)?)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        let norm = tb.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        let e = (diff / norm.max(1e-30)).sqrt();
        if e > worst.0 {
            worst = (e, na.clone());
        }
    }
    Ok(worst)
}

fn identical(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> Result<bool> {
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        if na != nb || ta.flatten_all()?.to_vec1::<f32>()? != tb.flatten_all()?.to_vec1::<f32>()? {
            return Ok(false);
        }
    }
    Ok(a.len() == b.len())
}

fn plan(steps: Range<usize>, sync_bn: bool) -> Plan<'static> {
    Plan { steps, sync_bn, resume: None, save_after: None }
}

#[test]
fn two_workers_with_sync_bn_equal_one_worker_with_the_whole_batch() -> Result<()> {
    for steps in [1, 4] {
        let single = run(1, &plan(0..steps, true))?.remove(0).0;
        let pair = run(2, &plan(0..steps, true))?;
        assert!(identical(&pair[0].0, &pair[1].0)?, "ranks disagree after {steps} steps");
        let (e, name) = max_rel_error(&pair[0].0, &single)?;
        eprintln!("{steps} steps, 2 x 32 with SyncBN vs 1 x 64: worst `{name}` {e:e}");
        // Parameters, momentum-driven updates and running statistics alike.
        assert!(e < 1e-5, "{steps} steps: `{name}` differs by {e:e} from the single worker");
        // The update is not trivially small: the weights moved from their initial values.
        let init = run(1, &plan(0..0, true))?.remove(0).0;
        assert!(max_rel_error(&single, &init)?.0 > 1e-3);
    }
    Ok(())
}

#[test]
fn without_sync_bn_two_workers_differ_from_one() -> Result<()> {
    let single = run(1, &plan(0..1, true))?.remove(0).0;
    let local_bn = run(2, &plan(0..1, false))?;
    // Parameters still agree across ranks (averaged gradients), running statistics do not.
    let (e, name) = max_rel_error(&local_bn[0].0, &single)?;
    eprintln!("1 step, 2 x 32 with per-rank BN vs 1 x 64: worst `{name}` {e:e}");
    assert!(e > 1e-3, "per-rank batch norm should differ from the single worker: `{name}` {e:e}");
    let params = |w: &[(String, Tensor)]| -> Vec<(String, Tensor)> {
        w.iter().filter(|(n, _)| !n.contains("running_")).cloned().collect()
    };
    let (e, name) = max_rel_error(&params(&local_bn[0].0), &params(&single))?;
    assert!(e > 1e-4, "the parameter update itself should differ: `{name}` {e:e}");
    Ok(())
}

#[test]
fn a_rank0_checkpoint_resumes_on_one_or_two_workers() -> Result<()> {
    let straight = run(2, &plan(0..5, true))?.remove(0).0;

    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let checkpointer = Checkpointer::new(dir.path(), 3)?;
    let first = run(2, &Plan { save_after: Some((&checkpointer, 2)), ..plan(0..2, true) })?;
    let path = first[0].1.clone().expect("rank 0 wrote the checkpoint");
    assert!(first[1].1.is_none(), "rank 1 wrote nothing");
    assert_eq!(checkpointer.list()?, vec![path.clone()]);

    let two = run(2, &Plan { resume: Some(&path), ..plan(2..5, true) })?;
    assert!(identical(&two[0].0, &straight)?, "two workers resumed differ from the straight run");
    assert!(identical(&two[1].0, &straight)?);

    let one = run(1, &Plan { resume: Some(&path), ..plan(2..5, true) })?.remove(0).0;
    let (e, name) = max_rel_error(&one, &straight)?;
    eprintln!("resumed on 1 worker vs 2 straight: worst `{name}` {e:e}");
    assert!(e < 1e-5, "one worker resumed: `{name}` differs by {e:e}");
    Ok(())
}

/// The trainer with a communicator: SimSiam on a tiny ResNet (whose batch norms are per rank),
/// two ranks on halves of each global batch of 8.
#[test]
fn the_trainer_keeps_ranks_in_step_and_resumes_from_rank0_checkpoints() -> Result<()> {
    use common::{config, data, trainer, weights};

    let run_trainer = |world: usize, until: usize, dir: &Path, resume: bool| -> Result<Vec<_>> {
        let group = LocalCommunicator::group(world)?;
        std::thread::scope(|s| {
            let handles: Vec<_> = group
                .into_iter()
                .map(|comm| {
                    s.spawn(move || -> Result<_> {
                        let (rank, world) = (comm.rank(), comm.world_size());
                        let mut t = trainer(config(2))?
                            .with_communicator(Arc::new(comm))
                            .with_checkpoints(Checkpointer::new(dir, 5)?);
                        if resume {
                            t.resume_latest()?.expect("a checkpoint");
                        }
                        let summary =
                            common::finished(t.fit_until(&ShardedBatches::new(data(), rank, world)?, until)?);
                        Ok((summary, weights(t.varmap())?))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| Err(TrainError::Distributed("a worker panicked".into())))
                })
                .collect()
        })
    };
    let params = |w: &[(String, Vec<f32>)]| -> Vec<(String, Vec<f32>)> {
        w.iter().filter(|(n, _)| !n.contains("running_")).cloned().collect()
    };

    let straight_dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let straight = run_trainer(2, 2, straight_dir.path(), false)?;
    assert_eq!((straight[0].0.epochs, straight[0].0.steps), (2, 6));
    assert!(params(&straight[0].1) == params(&straight[1].1), "ranks' parameters drifted apart");
    // Rank 0 alone wrote: one checkpoint per epoch.
    assert_eq!(Checkpointer::new(straight_dir.path(), 5)?.list()?.len(), 2);

    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    run_trainer(2, 1, dir.path(), false)?;
    let resumed = run_trainer(2, 2, dir.path(), true)?;
    assert!(resumed[0].1 == straight[0].1, "two ranks resumed differ from the straight run");
    assert!(params(&resumed[1].1) == params(&straight[1].1));

    // One worker resumes the two-worker run with the whole global batch.
    let dir1 = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    run_trainer(2, 1, dir1.path(), false)?;
    let mut single = trainer(config(2))?.with_checkpoints(Checkpointer::new(dir1.path(), 5)?);
    assert_eq!(single.resume_latest()?.expect("a checkpoint").step, 3);
    let summary = common::finished(single.fit(&data())?);
    assert_eq!((summary.epochs, summary.steps), (2, 6));
    Ok(())
}
