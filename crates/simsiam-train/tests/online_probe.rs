//! The online linear probe (Lightly's `OnlineLinearClassifier`): it learns the classes of a
//! separable labelled set, its gradient never reaches the network, and it survives a
//! checkpoint.

mod common;

use std::sync::{Arc, Mutex};

use candle::{Device, ModuleT, Tensor};
use candle_nn::VarMap;
use common::{config, finished, trainer, weights};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use simsiam_models::{ResNet, SimSiam};
use simsiam_train::{
    Checkpointer, EpochBatches, EpochContext, Features, ProbeAccuracy, Result, TrainError, TrainObserver,
    TrainView, TwoViewBatches, ViewPair, load_checkpoint, load_checkpoint_with_probe,
};

const CLASSES: usize = 4;

/// Images of four classes, each a colour of its own plus noise: linearly separable by any
/// reasonable features. Both views are noisy copies of the same colour.
struct ColouredViews {
    batches: usize,
    batch_size: usize,
}

/// Per class, the value of each channel.
const COLOURS: [[f32; 3]; CLASSES] =
    [[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]];

/// `n` images of 8x8 with their classes, from `seed`.
fn images(n: usize, seed: u64) -> Result<(Tensor, Tensor, Vec<usize>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + seed as usize) % CLASSES).collect();
    let view = |rng: &mut ChaCha8Rng| -> Result<Tensor> {
        let mut v = Vec::with_capacity(n * 3 * 64);
        for &l in &labels {
            for &channel in &COLOURS[l] {
                v.extend((0..64).map(|_| channel + 0.5 * (rng.random::<f32>() - 0.5)));
            }
        }
        Ok(Tensor::from_vec(v, (n, 3, 8, 8), &Device::Cpu)?)
    };
    let (x0, x1) = (view(&mut rng)?, view(&mut rng)?);
    Ok((x0, x1, labels))
}

impl TwoViewBatches for ColouredViews {
    fn batches_per_epoch(&self) -> usize {
        self.batches
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn batches(&self, epoch: u64, skip: usize) -> Result<EpochBatches<'_>> {
        Ok(Box::new((skip..self.batches).map(move |i| {
            let (x0, x1, labels) = images(self.batch_size, 1000 * epoch + i as u64)?;
            Ok(ViewPair { x0, x1, labels: labels.into_iter().map(Some).collect() })
        })))
    }
}

/// Eight batches of 16 an epoch, 512 images over six epochs.
fn coloured() -> ColouredViews {
    ColouredViews { batches: 8, batch_size: 16 }
}

/// Keeps every epoch's probe accuracy.
#[derive(Clone, Default)]
struct Accuracies(Arc<Mutex<Vec<Option<ProbeAccuracy>>>>);

impl TrainObserver<ResNet> for Accuracies {
    fn on_epoch_end(&mut self, ctx: &mut EpochContext, _: &TrainView<'_, ResNet>) -> Result<()> {
        self.0.lock().expect("lock").push(ctx.probe);
        Ok(())
    }
}

/// The backbone's features of 64 held-out images.
fn held_out() -> simsiam_train::ProbeTestSet<ResNet> {
    Box::new(|model: &SimSiam<ResNet>| {
        let (x, _, labels) = images(64, 999_999)?;
        let features = model.backbone().forward_t(&x, false)?;
        Ok(Features {
            features,
            labels: labels.into_iter().map(Some).collect(),
            names: vec![String::new(); 64],
        })
    })
}

fn probe_weights(varmap: &VarMap) -> Result<Vec<(String, Vec<f32>)>> {
    weights(varmap)
}

#[test]
fn the_probe_learns_a_separable_labelled_set() -> Result<()> {
    let seen = Accuracies::default();
    let mut t = trainer(config(6))?.with_online_probe(CLASSES, Some(held_out()))?.with_observer(seen.clone());
    finished(t.fit(&coloured())?);
    let seen = seen.0.lock().expect("lock").clone();
    assert_eq!(seen.len(), 6);
    let last = seen.last().copied().flatten().expect("the probe's accuracy");
    let test = last.test.expect("a test set");
    // Chance is 25%. The bar is 70%, not 90%: whether the backbone, a SimSiam training of six
    // epochs on 512 tiny images, keeps all four colours apart turns on rounding (over init
    // seeds 1-10, the last epoch reached 75% in some runs, one pair of colours merged, and
    // 100% in most; every run measured ended at 74% or above). A probe that does not learn
    // (its loss multiplied by zero, tried) stays at 40-53%.
    assert!(last.train_top1 >= 0.7, "train top-1 {}: {seen:?}", last.train_top1);
    assert!(test.top1 >= 0.7, "test top-1 {}: {seen:?}", test.top1);
    assert_eq!(test.top5, 1.0, "4 classes are all in the top 5");
    let first = seen[0].expect("epoch 0").train_top1;
    assert!(first < last.train_top1, "accuracy rises: {seen:?}");
    Ok(())
}

#[test]
fn the_probe_changes_nothing_in_the_model() -> Result<()> {
    let mut plain = trainer(config(1))?;
    finished(plain.fit(&coloured())?);
    let mut probed = trainer(config(1))?.with_online_probe(CLASSES, None)?;
    let before = probe_weights(probed.online_probe().expect("a probe").varmap())?;
    finished(probed.fit(&coloured())?);
    // Identical weights after the same steps: the backbone's (and heads') gradients are those
    // of SimSiam's loss alone, whatever the probe's cross-entropy adds.
    assert!(weights(plain.varmap())? == weights(probed.varmap())?, "the probe's gradient reached the model");
    let after = probe_weights(probed.online_probe().expect("a probe").varmap())?;
    assert!(before != after, "the probe trained");
    Ok(())
}

#[test]
fn the_probe_survives_a_checkpoint_and_old_checkpoints_still_load() -> Result<()> {
    let straight = {
        let mut t = trainer(config(2))?.with_online_probe(CLASSES, None)?;
        finished(t.fit(&coloured())?);
        (weights(t.varmap())?, probe_weights(t.online_probe().expect("probe").varmap())?)
    };
    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    {
        let mut t = trainer(config(2))?
            .with_online_probe(CLASSES, None)?
            .with_checkpoints(Checkpointer::new(dir.path(), 2)?);
        finished(t.fit_until(&coloured(), 1)?);
    }
    let mut resumed = trainer(config(2))?
        .with_online_probe(CLASSES, None)?
        .with_checkpoints(Checkpointer::new(dir.path(), 2)?);
    let fresh_probe = probe_weights(resumed.online_probe().expect("probe").varmap())?;
    resumed.resume_latest()?.expect("a checkpoint");
    let restored = probe_weights(resumed.online_probe().expect("probe").varmap())?;
    assert!(restored != fresh_probe, "the probe was restored from the checkpoint");
    finished(resumed.fit(&coloured())?);
    let split = (weights(resumed.varmap())?, probe_weights(resumed.online_probe().expect("probe").varmap())?);
    assert!(split == straight, "a resumed run with a probe differs from the straight run");

    // The checkpoint with a probe loads where there is none (momentum included).
    let latest = Checkpointer::new(dir.path(), 2)?.latest()?.expect("a checkpoint");
    let mut plain = trainer(config(2))?;
    plain.resume_from(&latest)?;
    assert!(weights(plain.varmap())? == straight.0);
    load_checkpoint(&latest, plain.varmap(), None)?;

    // A checkpoint without a probe loads into a run with one, whose probe starts afresh.
    let old_dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    {
        let mut t = trainer(config(2))?.with_checkpoints(Checkpointer::new(old_dir.path(), 2)?);
        finished(t.fit_until(&coloured(), 1)?);
    }
    let old = Checkpointer::new(old_dir.path(), 2)?.latest()?.expect("a checkpoint");
    let mut probed = trainer(config(2))?.with_online_probe(CLASSES, None)?;
    let fresh = probe_weights(probed.online_probe().expect("probe").varmap())?;
    assert_eq!(probed.resume_from(&old)?.epoch, 1);
    assert!(probe_weights(probed.online_probe().expect("probe").varmap())? == fresh);
    finished(probed.fit(&coloured())?);

    // Another number of classes is refused, naming the probe.
    let other = simsiam_train::OnlineProbe::new(32, CLASSES + 1, 7, &Device::Cpu)?;
    let e = load_checkpoint_with_probe(&latest, plain.varmap(), Some(other.varmap()), None)
        .expect_err("10 classes")
        .to_string();
    assert!(e.contains("online probe") && e.contains("classification_head"), "{e}");
    Ok(())
}

#[test]
fn data_parallel_ranks_keep_their_probes_in_step() -> Result<()> {
    use std::sync::Arc;

    use simsiam_train::distributed::{Communicator, LocalCommunicator, ShardedBatches};

    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let group = LocalCommunicator::group(2)?;
    let probes: Vec<Result<_>> = std::thread::scope(|s| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|comm| {
                let dir = dir.path();
                s.spawn(move || -> Result<_> {
                    let (rank, world) = (comm.rank(), comm.world_size());
                    let mut t = trainer(config(1))?
                        .with_online_probe(CLASSES, None)?
                        .with_communicator(Arc::new(comm))
                        .with_checkpoints(Checkpointer::new(dir, 2)?);
                    finished(t.fit(&ShardedBatches::new(coloured(), rank, world)?)?);
                    probe_weights(t.online_probe().expect("probe").varmap())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(TrainError::Config("panic".into()))))
            .collect()
    });
    let probes: Vec<_> = probes.into_iter().collect::<Result<_>>()?;
    // Averaged gradients: each rank's probe saw half of every batch, and all end equal.
    assert!(probes[0] == probes[1], "the ranks' probes drifted apart");
    // Rank 0's checkpoint holds the probe.
    let mut resumed = trainer(config(1))?.with_online_probe(CLASSES, None)?;
    let latest = Checkpointer::new(dir.path(), 2)?.latest()?.expect("a checkpoint");
    resumed.resume_from(&latest)?;
    assert!(probe_weights(resumed.online_probe().expect("probe").varmap())? == probes[0]);
    Ok(())
}
