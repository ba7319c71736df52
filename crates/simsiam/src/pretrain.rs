//! `simsiam pretrain`: the whole run, from the config to the final kNN accuracy.

use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use simsiam_train::{
    Checkpointer, KnnConfig, MetricsLog, ScheduleStep, TrainError, TrainSummary, Trainer, TrainerConfig,
    atomic_write, knn_monitor, save_weights,
};

use crate::config::RunConfig;
use crate::figures::{self, PlotOptions};
use crate::run::{OutputPaths, build_model, device, eval_loader, loss, open_datasets, train_loader};

/// Trains as configured, resuming from the newest checkpoint when `resume` is set.
///
/// Refuses to start over a run directory that already holds checkpoints unless resuming, so
/// nothing is overwritten.
pub fn pretrain(run: &RunConfig, resume: bool) -> Result<TrainSummary> {
    run.validate()?;
    let device = device(&run.train.device)?;
    let out = OutputPaths::new(&run.train.output_dir);
    let existing = out.checkpoints.is_dir() && Checkpointer::new(&out.checkpoints, 1)?.latest()?.is_some();
    if existing && !resume {
        bail!(
            "{} already holds checkpoints: pass --resume to continue that run, or choose another train.output_dir",
            out.checkpoints.display()
        );
    }
    let data = open_datasets(&run.data)?;
    let loader = train_loader(run, data.train.clone(), &device)?;
    if loader.batches_per_epoch() == 0 {
        bail!(
            "{} training images make no full batch of {}: lower train.batch_size or raise data.limit",
            data.train.len(),
            run.train.batch_size
        );
    }
    let (model, varmap) = build_model(run, &device)?;
    let schedule_step = match run.train.schedule.as_str() {
        "epoch" => ScheduleStep::Epoch,
        "iteration" => ScheduleStep::Iteration,
        other => bail!("unknown schedule `{other}`: use epoch or iteration"),
    };
    let t = &run.train;
    let config = TrainerConfig {
        epochs: t.epochs,
        lr: run.lr(),
        momentum: t.momentum,
        weight_decay: t.weight_decay,
        nesterov: false,
        fixed_predictor_lr: t.fixed_predictor_lr,
        warmup_epochs: t.warmup_epochs,
        schedule_step,
        log_every: t.log_every,
        checkpoint_every: t.checkpoint_every,
        keep_checkpoints: t.keep_checkpoints,
        knn_every: t.knn_every,
        seed: t.seed,
    };
    let run_json = serde_json::to_value(run).context("cannot store the config")?;
    std::fs::create_dir_all(&out.dir).with_context(|| format!("cannot create {}", out.dir.display()))?;
    let mut trainer = Trainer::new(model, varmap, loss(&run.model)?, config, run_json)?
        .with_checkpoints(Checkpointer::new(&out.checkpoints, t.keep_checkpoints)?)
        .with_metrics(MetricsLog::append(&out.metrics)?);
    if let (Some(test), Some(classes)) = (&data.test, data.classes) {
        let knn = KnnConfig { k: t.knn_k, temperature: t.knn_t, ..KnnConfig::default() };
        let bank = eval_loader(run, data.train.clone(), &device)?;
        let queries = eval_loader(run, test.clone(), &device)?;
        trainer = trainer.with_knn_monitor(knn_monitor(bank, queries, classes, knn));
    }
    if resume {
        match trainer.resume_latest()? {
            Some(state) => eprintln!("resuming at epoch {}, step {}", state.epoch, state.step),
            None => eprintln!("no checkpoint in {}: starting a new run", out.checkpoints.display()),
        }
    }
    atomic_write(&out.config, run.to_toml()?.as_bytes())?;
    let flag = trainer.interrupt_flag();
    // Only the first handler of a process can be set; a second run in-process keeps it.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));

    let images = data.train.len();
    let epochs_left = run.train.epochs.saturating_sub(trainer.state().epoch);
    eprintln!(
        "pretraining on {images} images, {epochs_left} epoch(s) left, {} batches of {} per epoch, lr {:.4}, output {}",
        loader.batches_per_epoch(),
        run.train.batch_size,
        run.lr(),
        out.dir.display()
    );
    let summary = match trainer.fit(&loader) {
        Err(TrainError::Interrupted { epoch, step }) => {
            bail!("interrupted at epoch {epoch}, step {step}; the checkpoint is saved: rerun with --resume")
        }
        other => other?,
    };
    save_weights(trainer.varmap(), &out.weights)?;
    // The run is saved by now: a figure that cannot be drawn is a warning, not a failure.
    let plot = match draw_plot(&out) {
        Ok(()) => format!(", plot in {}", out.plot.display()),
        Err(e) => {
            eprintln!("warning: no plot: {e:#}");
            String::new()
        }
    };
    eprintln!(
        "done: {} epochs, {} steps, loss {:.4}, collapse {:.3}{}; weights in {}, metrics in {}{plot}",
        summary.epochs,
        summary.steps,
        summary.last_loss,
        summary.collapse,
        summary.knn_top1.map(|a| format!(", kNN top-1 {:.2}%", 100.0 * a)).unwrap_or_default(),
        out.weights.display(),
        out.metrics.display()
    );
    Ok(summary)
}

/// `simsiam plot` of the run's metrics into its directory.
fn draw_plot(out: &OutputPaths) -> Result<()> {
    let records = figures::read_metrics(&out.metrics)?;
    figures::save_png(&figures::plot_metrics(&records, &PlotOptions::default())?, &out.plot)
}
