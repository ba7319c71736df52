//! `simsiam pretrain`: the whole run, from the config to the final kNN accuracy.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use candle::Device;
use simsiam_models::Backbone;
use simsiam_models::BatchStats;
use simsiam_train::distributed::{Communicator, ShardedBatches, synced_batch_stats};
use simsiam_train::{
    Checkpointer, EpochContext, MetricsLog, StepContext, TensorBoardObserver, TimeBudgetObserver,
    TrainObserver, TrainOutcome, TrainSummary, TrainView, Trainer, TwoViewBatches, knn_monitor,
    probe_test_set, save_weights,
};

use crate::config::RunConfig;
use crate::interrupt::{Interrupt, Interrupted, Signal};
use crate::launch::Rank;
use crate::run::{OutputPaths, build_model_with_batch_stats, eval_loader, open_datasets, train_loader};
use crate::run_folder::{RunStart, check_resume, check_run_folder, latest_checkpoint, write_config};

/// Trains as configured, resuming from the newest checkpoint when `resume` is set; `None` when
/// the run resumed had already done all its epochs (nothing is trained or written then).
///
/// Every check (the config, the run folder as [`crate::run_folder`] sets out, the data, the
/// model, the checkpoint's compatibility) runs before the first byte is written, so a refused
/// run leaves its folder as it was. Inside a group started by `simsiam pretrain --gpus N`
/// ([`crate::launch`], which checks the folder before it starts the ranks) it trains as one
/// rank on `cuda:RANK`; only rank 0 writes files.
///
/// SIGINT, SIGTERM and SIGHUP ([`crate::interrupt`]) stop training after the step in progress
/// with its checkpoint saved: the error is then an [`Interrupted`] naming the signal. A resume
/// skips damaged checkpoints for the newest that verifies, and brings `metrics.jsonl` back to
/// it.
pub fn pretrain(run: &RunConfig, resume: bool) -> Result<Option<TrainSummary>> {
    run.validate()?;
    let interrupt = Interrupt::install()?;
    let rank = Rank::from_env()?;
    let primary = rank.as_ref().is_none_or(|r| r.rank == 0);
    let device = rank.as_ref().map_or(run.train.device, Rank::device).open()?;
    let out = OutputPaths::new(&run.train.output_dir);
    let start = match (&rank, resume) {
        (None, _) => check_run_folder(&out, resume)?,
        (Some(_), true) => latest_checkpoint(&out)?.map_or(RunStart::Fresh, RunStart::Resume),
        (Some(_), false) => RunStart::Fresh,
    };
    let data = open_datasets(&run.data, run.train.seed)?;
    let loader = train_loader(run, data.train.clone(), &device)?;
    if loader.batches_per_epoch() == 0 {
        bail!(
            "{} training images make no full batch of {}: lower train.batch_size or raise data.limit",
            data.train.len(),
            run.train.batch_size
        );
    }
    // Under `--gpus N` every batch norm sums its statistics over the ranks, as the official
    // code's SyncBatchNorm does.
    let comm = rank.as_ref().map(|r| communicator(r, &device)).transpose()?;
    let batch_stats = comm.clone().map_or(BatchStats::Local, synced_batch_stats);
    // A resumed run's checkpoint holds every weight: the weights it started from (model.init)
    // are not read again, and may be gone.
    let model_run = match &start {
        RunStart::Resume(_) => {
            let mut model_run = run.clone();
            model_run.model.init = std::path::PathBuf::new();
            std::borrow::Cow::Owned(model_run)
        }
        RunStart::Fresh => std::borrow::Cow::Borrowed(run),
    };
    let (model, varmap) = build_model_with_batch_stats(&model_run, &device, batch_stats)?;
    let t = &run.train;
    let config = run.trainer_config();
    let run_json = serde_json::to_value(run).context("cannot store the config")?;
    let mut trainer = Trainer::new(model, varmap, run.model.loss.build(), config, run_json)?;
    if let (true, Some(test), Some(classes)) = (primary, &data.test, data.classes) {
        let knn = run.knn_config();
        let bank = eval_loader(run, data.train.clone(), &device)?;
        let queries = eval_loader(run, test.clone(), &device)?;
        trainer = trainer.with_knn_monitor(knn_monitor(bank, queries, classes, knn));
    }
    let dataset = format!("the {} dataset at {}", run.data.dataset, run.data.path.display());
    if let Some(classes) = t.online_probe.classes(data.classes, &dataset)? {
        // Rank 0 evaluates on the test split, as it runs the kNN monitor.
        let test = match (primary, &data.test) {
            (true, Some(test)) => Some(probe_test_set(eval_loader(run, test.clone(), &device)?)),
            _ => None,
        };
        trainer = trainer.with_online_probe(classes, test)?;
    }
    match &start {
        RunStart::Resume(_) => {
            // The newest checkpoint that verifies; damaged newer ones are named and skipped.
            let list = Checkpointer::new(&out.checkpoints, 1)?.list()?;
            let Some((path, state)) = trainer.resume_newest_of(&list)? else {
                bail!("{}: no checkpoint to resume from", out.checkpoints.display())
            };
            check_resume(run, &path, &state, loader.batches_per_epoch())?;
            if state.epoch >= t.epochs {
                if primary {
                    eprintln!(
                        "{} is already finished: {} of {} epochs, {} steps; nothing to do (raise \
                         train.epochs to train further)",
                        out.dir.display(),
                        state.epoch,
                        t.epochs,
                        state.step
                    );
                }
                return Ok(None);
            }
            eprintln!("resuming at epoch {}, step {}", state.epoch, state.step);
        }
        RunStart::Fresh if resume => {
            // Nothing to resume: the metrics of an attempt stopped before its first
            // checkpoint are brought back to step 0.
            trainer.start_afresh();
            eprintln!("no checkpoint in {}: starting a new run", out.checkpoints.display())
        }
        RunStart::Fresh => {}
    }

    // Every check has passed: from here on the run writes its folder.
    std::fs::create_dir_all(&out.dir).with_context(|| format!("cannot create {}", out.dir.display()))?;
    trainer = trainer
        .with_checkpoints(Checkpointer::new(&out.checkpoints, t.keep_checkpoints)?)
        .with_interrupt_flag(interrupt.flag());
    if primary {
        write_config(&out, run)?;
        trainer = trainer.with_metrics(MetricsLog::append(&out.metrics)?);
        // The same scalars for TensorBoard, in an event file beside metrics.jsonl.
        trainer = trainer.with_observer(TensorBoardObserver::create(&out.dir)?);
    }
    if let Some(comm) = comm {
        trainer = trainer.with_communicator(comm);
    }
    if !std::io::stderr().is_terminal() {
        trainer = trainer.with_observer(PlainProgress);
    }
    // Every rank follows the budget (rank 0's clock decides); rank 0 evaluates and logs.
    if let Some(marks) = run.minute_marks()? {
        let mut clock = TimeBudgetObserver::new(marks, t.batch_size);
        if let (true, Some(test), Some(classes)) = (primary, &data.test, data.classes) {
            let bank = eval_loader(run, data.train.clone(), &device)?;
            let queries = eval_loader(run, test.clone(), &device)?;
            clock = clock.with_knn(knn_monitor(bank, queries, classes, run.knn_config()));
        }
        if primary {
            clock = clock.with_metrics(&out.metrics);
        }
        trainer = trainer.with_observer(clock);
    }
    let batches = loader.batches_per_epoch();
    // Each rank keeps its rows of every global batch (seed-derived, the same on every rank).
    let source: Box<dyn TwoViewBatches> = match &rank {
        Some(r) => Box::new(ShardedBatches::new(loader, r.rank, r.world)?),
        None => Box::new(loader),
    };
    let images = data.train.len();
    let epochs_left = run.train.epochs.saturating_sub(trainer.state().epoch);
    eprintln!(
        "pretraining on {images} images, {epochs_left} epoch(s) left, {} batches of {} per epoch, lr {:.4}, output {}",
        batches,
        run.train.batch_size,
        run.lr(),
        out.dir.display()
    );
    if let Some(signal) = interrupt.signal() {
        let state = trainer.state();
        return Err(Interrupted { signal, epoch: state.epoch, step: state.step, saved: false }.into());
    }
    let summary = match trainer.fit(source.as_ref())? {
        TrainOutcome::Finished(summary) => summary,
        TrainOutcome::TimeUp(summary) => {
            if primary {
                eprintln!(
                    "the time budget of {} min is spent ({:.1} min on the training clock) at epoch {}, \
                     step {}: checkpoint saved; `--resume` with a larger train.minutes continues",
                    t.minutes,
                    trainer.state().train_seconds / 60.0,
                    summary.epochs,
                    summary.steps
                );
            }
            summary
        }
        // Data-parallel, a rank stops when another got the signal (Ctrl-C reaches them all).
        TrainOutcome::Interrupted(at) => {
            let signal = interrupt.signal().unwrap_or(Signal::INTERRUPT);
            return Err(Interrupted { signal, epoch: at.epochs, step: at.steps, saved: true }.into());
        }
    };
    if !primary {
        return Ok(Some(summary));
    }
    save_weights(trainer.varmap(), &out.weights)?;
    // The run is saved by now: a figure that cannot be drawn is a warning, not a failure.
    let plot = match draw_plot(&out) {
        Ok(()) => format!(", plot in {}", out.plot.display()),
        Err(e) => {
            eprintln!("warning: no plot: {e:#}");
            String::new()
        }
    };
    // A run stopped (time budget, signal) before its first epoch ended has no epoch loss.
    let loss = if summary.last_loss.is_nan() {
        "no epoch completed".to_owned()
    } else {
        format!("loss {:.4}", summary.last_loss)
    };
    eprintln!(
        "done: {} epochs, {} steps, {loss}, collapse {:.3}{}; weights in {}, metrics in {}{plot}",
        summary.epochs,
        summary.steps,
        summary.collapse,
        knn_phrase(&summary),
        out.weights.display(),
        out.metrics.display()
    );
    Ok(Some(summary))
}

/// The summary line's kNN part; it names the epoch it was measured after when that is not
/// the last one (`knn_every` skipped the last epochs, or a budget or signal stopped the run).
fn knn_phrase(summary: &TrainSummary) -> String {
    match (summary.knn_top1, summary.knn_epochs) {
        (Some(a), Some(e)) if e != summary.epochs => {
            format!(", kNN top-1 {:.2}% (after epoch {e})", 100.0 * a)
        }
        (Some(a), _) => format!(", kNN top-1 {:.2}%", 100.0 * a),
        (None, _) => String::new(),
    }
}

/// The progress bar's lines (the first step's estimate, one line per epoch) as plain lines on
/// stderr, where stderr is no terminal and the bar is not drawn (a log file, CI).
struct PlainProgress;

impl<B: Backbone> TrainObserver<B> for PlainProgress {
    fn on_step(&mut self, ctx: &mut StepContext<'_>, _: &TrainView<'_, B>) -> simsiam_train::Result<()> {
        if let Some(first) = &ctx.first_step {
            eprintln!("{first}");
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, ctx: &mut EpochContext, _: &TrainView<'_, B>) -> simsiam_train::Result<()> {
        eprintln!("{}", ctx.report_line());
        Ok(())
    }
}

/// Rank `r`'s NCCL communicator: rank 0 makes the group's id and publishes it in the run
/// directory, the others read it.
#[cfg(feature = "nccl")]
fn communicator(r: &Rank, device: &Device) -> Result<Arc<dyn Communicator>> {
    use simsiam_train::distributed::{NcclCommunicator, NcclId};
    let id = if r.rank == 0 {
        let id = NcclId::new()?;
        crate::launch::publish_id(&r.id_file, &id.to_bytes())?;
        id
    } else {
        NcclId::from_bytes(&crate::launch::read_id(&r.id_file, std::time::Duration::from_secs(300))?)?
    };
    Ok(Arc::new(NcclCommunicator::new(device, r.rank, r.world, id)?))
}

#[cfg(not(feature = "nccl"))]
fn communicator(r: &Rank, _: &Device) -> Result<Arc<dyn Communicator>> {
    bail!("rank {} of {}: this build has no `nccl` feature", r.rank, r.world)
}

/// `simsiam plot` of the run's metrics into its directory.
#[cfg(feature = "figures")]
fn draw_plot(out: &OutputPaths) -> Result<()> {
    crate::figures::draw_plot(&out.metrics, &out.plot, &crate::figures::PlotOptions::default())
}

#[cfg(not(feature = "figures"))]
fn draw_plot(_: &OutputPaths) -> Result<()> {
    bail!("this simsiam was built without the `figures` feature")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_epoch_of_an_earlier_knn() {
        let summary = |knn_top1, knn_epochs| TrainSummary {
            epochs: 84,
            steps: 32894,
            last_loss: -0.8,
            collapse: 0.002,
            knn_top1,
            knn_epochs,
        };
        assert_eq!(knn_phrase(&summary(Some(0.5145), Some(80))), ", kNN top-1 51.45% (after epoch 80)");
        assert_eq!(knn_phrase(&summary(Some(0.5145), Some(84))), ", kNN top-1 51.45%");
        assert_eq!(knn_phrase(&summary(None, None)), "");
    }
}
