//! The SimSiam training loop: schedule, SGD, collapse monitoring, progress, metrics,
//! checkpoints, resume, interruption and the kNN monitor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use simsiam_loss::{CollapseMonitor, Similarity, symmetric_loss};
use simsiam_models::{Backbone, SimSiam};

use crate::checkpoint::{Checkpointer, TrainState, load_checkpoint};
use crate::distributed::{Communicator, average_gradients, save_checkpoint_rank0};
use crate::{
    CosineSchedule, MetricEvent, MetricsLog, ParamGroup, Result, Sgd, SgdConfig, TrainError, TwoViewBatches,
};

/// Whether the learning rate changes every iteration or every epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleStep {
    /// Once per optimiser step (smoother; Lightly's benchmarks).
    Iteration,
    /// Once per epoch (the official SimSiam code).
    Epoch,
}

/// Everything the loop needs besides the model and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerConfig {
    /// Epochs to train.
    pub epochs: usize,
    /// The learning rate at the start of the cosine decay (already scaled by batch / 256
    /// where the recipe asks for it: see [`crate::scaled_lr`]).
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Keep the prediction head at `lr` throughout (the paper's default, Section 4.4).
    pub fixed_predictor_lr: bool,
    /// Linear warmup length, in epochs.
    pub warmup_epochs: usize,
    /// Per-iteration or per-epoch schedule.
    pub schedule_step: ScheduleStep,
    /// Steps between progress log lines and metrics entries.
    pub log_every: usize,
    /// Epochs between checkpoints (the last epoch always gets one).
    pub checkpoint_every: usize,
    /// Checkpoints to keep.
    pub keep_checkpoints: usize,
    /// Epochs between kNN evaluations; 0 never (the last epoch always gets one when a
    /// monitor is set).
    pub knn_every: usize,
    /// The run's seed, stored in checkpoints.
    pub seed: u64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            epochs: 800,
            lr: 0.06,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
            fixed_predictor_lr: true,
            warmup_epochs: 0,
            schedule_step: ScheduleStep::Epoch,
            log_every: 20,
            checkpoint_every: 1,
            keep_checkpoints: 3,
            knn_every: 10,
            seed: 0,
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// Epochs completed, in this run and before it.
    pub epochs: usize,
    /// Optimiser steps taken in all.
    pub steps: usize,
    /// Mean loss of the last epoch.
    pub last_loss: f32,
    /// Collapse level at the end.
    pub collapse: f32,
    /// The last kNN accuracy, when a monitor ran.
    pub knn_top1: Option<f64>,
}

/// Computes kNN top-1 accuracy of the model's backbone; called every `knn_every` epochs.
pub type KnnMonitor<B> = Box<dyn FnMut(&SimSiam<B>) -> Result<f64>>;

/// The SimSiam training loop around a model, its variables, a loss and an optimiser.
pub struct Trainer<B: Backbone> {
    model: SimSiam<B>,
    varmap: VarMap,
    loss: Box<dyn Similarity>,
    optimizer: Sgd,
    config: TrainerConfig,
    run_config: serde_json::Value,
    checkpointer: Option<Checkpointer>,
    metrics: Option<MetricsLog>,
    knn: Option<KnnMonitor<B>>,
    interrupt: Arc<AtomicBool>,
    progress: bool,
    state: TrainState,
    comm: Option<Arc<dyn Communicator>>,
}

impl<B: Backbone> Trainer<B> {
    /// A trainer for `model`, whose variables all live in `varmap`. Parameters under
    /// `prediction_head.` form the predictor group; BatchNorm running statistics are left out
    /// of the optimiser. `run_config` is stored in every checkpoint.
    pub fn new(
        model: SimSiam<B>,
        varmap: VarMap,
        loss: Box<dyn Similarity>,
        config: TrainerConfig,
        run_config: serde_json::Value,
    ) -> Result<Self> {
        if config.epochs == 0 || config.log_every == 0 || config.checkpoint_every == 0 {
            return Err(TrainError::Config(format!(
                "epochs, log_every and checkpoint_every must be positive: {config:?}"
            )));
        }
        if config.warmup_epochs >= config.epochs {
            return Err(TrainError::Config(format!(
                "warmup_epochs ({}) must be below epochs ({})",
                config.warmup_epochs, config.epochs
            )));
        }
        if !(config.lr > 0.0 && config.lr.is_finite()) {
            return Err(TrainError::Config(format!("the learning rate must be positive, got {}", config.lr)));
        }
        let mut encoder = Vec::new();
        let mut predictor = Vec::new();
        {
            let vars = varmap.data().lock().map_err(|_| TrainError::Config("poisoned VarMap".into()))?;
            let mut names: Vec<&String> = vars.keys().collect();
            names.sort();
            for name in names {
                if name.ends_with("running_mean") || name.ends_with("running_var") {
                    continue;
                }
                let entry = (name.clone(), vars[name].clone());
                if name.starts_with("prediction_head.") { predictor.push(entry) } else { encoder.push(entry) }
            }
        }
        let groups = vec![
            ParamGroup { params: encoder, lr: config.lr, fixed_lr: false },
            ParamGroup { params: predictor, lr: config.lr, fixed_lr: config.fixed_predictor_lr },
        ];
        let sgd = SgdConfig {
            momentum: config.momentum,
            weight_decay: config.weight_decay,
            nesterov: config.nesterov,
        };
        let optimizer = Sgd::new(groups, sgd)?;
        let state = TrainState {
            epoch: 0,
            step: 0,
            seed: config.seed,
            config: run_config.clone(),
            library_version: env!("CARGO_PKG_VERSION").to_owned(),
            batches_per_epoch: 0,
        };
        Ok(Self {
            model,
            varmap,
            loss,
            optimizer,
            config,
            run_config,
            checkpointer: None,
            metrics: None,
            knn: None,
            interrupt: Arc::new(AtomicBool::new(false)),
            progress: true,
            state,
            comm: None,
        })
    }

    /// Writes checkpoints through `checkpointer`.
    pub fn with_checkpoints(mut self, checkpointer: Checkpointer) -> Self {
        self.checkpointer = Some(checkpointer);
        self
    }

    /// Appends metrics to `log`.
    pub fn with_metrics(mut self, log: MetricsLog) -> Self {
        self.metrics = Some(log);
        self
    }

    /// Runs `monitor` every `knn_every` epochs and after the last.
    pub fn with_knn_monitor(mut self, monitor: KnnMonitor<B>) -> Self {
        self.knn = Some(monitor);
        self
    }

    /// Trains data-parallel as one rank of `comm`: after each backward pass every gradient is
    /// averaged over the ranks (one flattened all-reduce), the loss that is logged and checked
    /// for NaN is the mean over ranks, an interruption on any rank stops every rank, only rank
    /// 0 writes checkpoints (every rank waits for the write) and metrics. Every rank must start
    /// from the same weights (the same seed) and get its own shard of each global batch
    /// ([`crate::distributed::ShardedBatches`]); every rank gets a checkpointer for the same
    /// directory (or none), so that all can resume, with any number of workers, from it.
    pub fn with_communicator(mut self, comm: Arc<dyn Communicator>) -> Self {
        self.comm = Some(comm);
        self
    }

    /// Shows (default) or hides the progress bar; it is hidden anyway when stderr is not a
    /// terminal, and log lines go through `tracing` either way.
    pub fn with_progress_bar(mut self, show: bool) -> Self {
        self.progress = show;
        self
    }

    /// The flag that stops training: set it (from a Ctrl-C handler, say) and the loop saves a
    /// checkpoint after the current step and returns [`TrainError::Interrupted`].
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    /// The model.
    pub fn model(&self) -> &SimSiam<B> {
        &self.model
    }

    /// The model's variables.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Where training stands.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// Loads the newest checkpoint of the checkpointer, if there is one; returns its state.
    pub fn resume_latest(&mut self) -> Result<Option<TrainState>> {
        let Some(dir) = &self.checkpointer else { return Ok(None) };
        match dir.latest()? {
            Some(path) => self.resume_from(&path).map(Some),
            None => Ok(None),
        }
    }

    /// Loads the checkpoint at `path`: weights, running statistics, momentum and state.
    pub fn resume_from(&mut self, path: &std::path::Path) -> Result<TrainState> {
        let state = load_checkpoint(path, &self.varmap, Some(&mut self.optimizer))?;
        if state.seed != self.config.seed {
            return Err(TrainError::Checkpoint {
                path: path.to_owned(),
                reason: format!(
                    "was written with seed {}, this run has seed {}",
                    state.seed, self.config.seed
                ),
            });
        }
        tracing::info!(path = %path.display(), epoch = state.epoch, step = state.step, "resumed");
        self.state = state.clone();
        Ok(state)
    }

    /// Trains until `config.epochs` epochs are complete, from wherever the state stands.
    pub fn fit(&mut self, data: &dyn TwoViewBatches) -> Result<TrainSummary> {
        self.fit_until(data, self.config.epochs)
    }

    /// Trains until `until` epochs (at most `config.epochs`) are complete; the schedule still
    /// spans `config.epochs`, so a run split in parts equals one run.
    pub fn fit_until(&mut self, data: &dyn TwoViewBatches, until: usize) -> Result<TrainSummary> {
        let until = until.min(self.config.epochs);
        let per_epoch = data.batches_per_epoch();
        if per_epoch == 0 {
            return Err(TrainError::Config(
                "the data gives no batch per epoch: too few samples for the batch size".into(),
            ));
        }
        if self.state.batches_per_epoch != 0 && self.state.batches_per_epoch != per_epoch {
            return Err(TrainError::Config(format!(
                "the checkpoint was written with {} batches per epoch, the data now gives {per_epoch}: \
                 resume with the same dataset, sample limit and batch size",
                self.state.batches_per_epoch
            )));
        }
        self.state.batches_per_epoch = per_epoch;
        let (total, warmup) = match self.config.schedule_step {
            ScheduleStep::Iteration => {
                (self.config.epochs * per_epoch, self.config.warmup_epochs * per_epoch)
            }
            ScheduleStep::Epoch => (self.config.epochs, self.config.warmup_epochs),
        };
        let start_factor = if warmup > 0 { 1.0 / warmup as f64 } else { 1.0 };
        let schedule = CosineSchedule::with_warmup(self.config.lr, total, warmup, start_factor, 0.0)?;
        let out_dim = self.model.output_dim();
        let mut monitor = CollapseMonitor::new(out_dim);
        let bar = self.progress_bar(per_epoch);
        let mut last_loss = f32::NAN;
        let mut knn_top1 = None;
        let mut timed_first_step = false;
        let params: Vec<(String, candle::Var)> =
            self.optimizer.groups().iter().flat_map(|g| g.params.iter().cloned()).collect();

        while self.state.epoch < until {
            let epoch = self.state.epoch;
            let done = self.state.step.saturating_sub(epoch * per_epoch).min(per_epoch);
            bar.set_prefix(format!("epoch {}/{}", epoch + 1, self.config.epochs));
            bar.set_position(done as u64);
            bar.reset_eta();
            let started = Instant::now();
            let mut interval = (0f64, 0usize, Instant::now());
            let mut epoch_loss = (0f64, 0usize);
            let mut lr = schedule.lr(0);
            for batch in data.batches(epoch as u64, done)? {
                let (x0, x1) = batch?;
                let position = match self.config.schedule_step {
                    ScheduleStep::Iteration => self.state.step,
                    ScheduleStep::Epoch => epoch,
                };
                lr = schedule.lr(position);
                self.optimizer.set_lr(lr, self.config.lr);

                let out = self.model.forward_views(&x0, &x1, true)?;
                let loss = symmetric_loss(self.loss.as_ref(), &out.p0, &out.z1, &out.p1, &out.z0)?;
                let value = loss.to_dtype(candle::DType::F32)?.to_scalar::<f32>()?;
                let (value, interrupted) = self.agree(value)?;
                if !value.is_finite() {
                    return Err(TrainError::NonFiniteLoss { loss: value, epoch, step: self.state.step });
                }
                let mut grads = loss.backward()?;
                if let Some(comm) = &self.comm {
                    average_gradients(comm, &mut grads, &params)?;
                }
                self.optimizer.step(&grads)?;
                monitor.update(value, &out.p0)?;
                self.state.step += 1;
                if !timed_first_step {
                    timed_first_step = true;
                    let seconds = interval.2.elapsed().as_secs_f64();
                    let remaining = (until - epoch) * per_epoch - done - 1;
                    say(
                        &bar,
                        format!(
                            "first step {seconds:.2} s: about {} for the {remaining} steps left (evaluation not included)",
                            human_duration(seconds * remaining as f64)
                        ),
                    );
                }
                interval = (interval.0 + f64::from(value), interval.1 + 1, interval.2);
                epoch_loss = (epoch_loss.0 + f64::from(value), epoch_loss.1 + 1);

                let rate =
                    (interval.1 * data.batch_size()) as f64 / interval.2.elapsed().as_secs_f64().max(1e-9);
                bar.inc(1);
                bar.set_message(format!(
                    "loss {:.4} lr {lr:.4} collapse {:.3} {rate:.0} img/s",
                    monitor.avg_loss(),
                    monitor.level()
                ));
                if self.state.step % self.config.log_every == 0 {
                    let mean = (interval.0 / interval.1 as f64) as f32;
                    tracing::info!(
                        epoch,
                        step = self.state.step,
                        loss = mean,
                        lr,
                        collapse = monitor.level(),
                        images_per_s = rate
                    );
                    self.log(&MetricEvent::Step {
                        epoch,
                        step: self.state.step,
                        loss: mean,
                        lr,
                        collapse: monitor.level(),
                        images_per_s: rate,
                    })?;
                    interval = (0.0, 0, Instant::now());
                }
                if interrupted.unwrap_or_else(|| self.interrupt.load(Ordering::SeqCst)) {
                    bar.abandon();
                    let path = self.save_checkpoint()?;
                    tracing::warn!(path = ?path, "interrupted: checkpoint saved");
                    return Err(TrainError::Interrupted { epoch, step: self.state.step });
                }
            }
            self.state.epoch += 1;
            last_loss = (epoch_loss.0 / epoch_loss.1.max(1) as f64) as f32;
            let last_epoch = self.state.epoch == self.config.epochs;
            let run_knn =
                self.config.knn_every > 0 && self.state.epoch % self.config.knn_every == 0 || last_epoch;
            let knn = match (&mut self.knn, run_knn) {
                (Some(monitor_fn), true) => Some(monitor_fn(&self.model)?),
                _ => None,
            };
            knn_top1 = knn.or(knn_top1);
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(epoch, loss = last_loss, collapse = monitor.level(), seconds, knn_top1 = ?knn, "epoch done");
            say(
                &bar,
                format!(
                    "epoch {}/{}: loss {last_loss:.4}, collapse {:.3}, {seconds:.1} s{}",
                    self.state.epoch,
                    self.config.epochs,
                    monitor.level(),
                    knn.map(|a| format!(", kNN top-1 {:.2}%", 100.0 * a)).unwrap_or_default()
                ),
            );
            self.log(&MetricEvent::Epoch {
                epoch,
                step: self.state.step,
                loss: last_loss,
                lr,
                collapse: monitor.level(),
                seconds,
                knn_top1: knn,
            })?;
            if self.state.epoch % self.config.checkpoint_every == 0 || last_epoch {
                self.save_checkpoint()?;
            }
        }
        bar.finish_and_clear();
        Ok(TrainSummary {
            epochs: self.state.epoch,
            steps: self.state.step,
            last_loss,
            collapse: monitor.level(),
            knn_top1,
        })
    }

    /// The loss averaged over ranks and whether any rank was interrupted, when data-parallel;
    /// the loss as it is and `None` (read the flag later) otherwise.
    fn agree(&self, loss: f32) -> Result<(f32, Option<bool>)> {
        let Some(comm) = &self.comm else { return Ok((loss, None)) };
        let flag = if self.interrupt.load(Ordering::SeqCst) { 1.0 } else { 0.0 };
        let mut values = [loss, flag];
        comm.all_reduce_sum_f32(&mut values)?;
        Ok((values[0] / comm.world_size() as f32, Some(values[1] > 0.0)))
    }

    fn save_checkpoint(&mut self) -> Result<Option<std::path::PathBuf>> {
        if let Some(comm) = &self.comm {
            self.state.config = self.run_config.clone();
            return match &self.checkpointer {
                Some(checkpointer) => save_checkpoint_rank0(
                    comm.as_ref(),
                    checkpointer,
                    &self.varmap,
                    &self.optimizer,
                    &self.state,
                ),
                None => comm.barrier().map(|()| None),
            };
        }
        let Some(checkpointer) = &self.checkpointer else { return Ok(None) };
        self.state.config = self.run_config.clone();
        let path = checkpointer.save(&self.varmap, &self.optimizer, &self.state)?;
        tracing::debug!(path = %path.display(), "checkpoint saved");
        Ok(Some(path))
    }

    fn log(&mut self, event: &MetricEvent) -> Result<()> {
        if self.comm.as_ref().is_some_and(|c| c.rank() != 0) {
            return Ok(());
        }
        match &mut self.metrics {
            Some(log) => log.log(event),
            None => Ok(()),
        }
    }

    fn progress_bar(&self, len: usize) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len as u64); // draws to stderr, and only on a terminal
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    }
}

/// `1 h 05 min`, `12 min 30 s` or `42 s`.
fn human_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s:02} s"),
        (h, m, _) => format!("{h} h {m:02} min"),
    }
}

/// A line above the progress bar, or on stderr when the bar is hidden (not a terminal).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
}
