//! The SimSiam training loop: the schedule and the steps, with everything around them
//! (collapse monitor, kNN monitor, progress bar, metrics, checkpoints) as observers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_nn::VarMap;
use simsiam_loss::Similarity;
use simsiam_models::{Backbone, SimSiam};

use crate::checkpoint::{Checkpointer, TrainState, load_checkpoint_with_probe};
use crate::distributed::Communicator;
use crate::meter::EpochMeter;
use crate::observer::{EpochContext, EpochStart, FitContext, StepContext, TrainObserver};
use crate::observers::{
    CheckpointObserver, CollapseObserver, KnnMonitor, KnnObserver, MetricsObserver, Observers,
    OnlineProbeObserver, ProbeTestSet,
};
use crate::stepper::Stepper;
use crate::{
    CosineSchedule, MetricsLog, OnlineProbe, ParamGroup, Result, ScheduleStep, Sgd, SgdConfig, TrainError,
    TrainOutcome, TrainSummary, TrainerConfig, TwoViewBatches,
};

/// The SimSiam training loop around a model, its variables, a loss and an optimiser.
pub struct Trainer<B: Backbone> {
    stepper: Stepper<B>,
    observers: Observers<B>,
    config: TrainerConfig,
    run_config: serde_json::Value,
    /// The step a resume left the state at (0 when it found no checkpoint), until the next fit
    /// brings the metrics file back to it.
    resumed_at: Option<usize>,
}

/// What a fit runs to: its schedule, its last epoch and the step it started from.
struct Plan {
    schedule: CosineSchedule,
    until: usize,
    start_step: usize,
    /// The step where a constant schedule stops its warmup.
    constant_from: usize,
    /// The training-clock seconds a clock schedule spans.
    clock_seconds: f64,
}

/// How an epoch's steps ended. An interruption at the epoch's last step completes the epoch
/// (its record, its checkpoint) and then stops: resuming an epoch with no step left would log
/// an empty epoch.
enum EpochEnd {
    Completed { loss: f32, lr: f64, seconds: f64, stop: Option<Stop> },
    Stopped(Stop),
}

/// Why a fit stops before its last epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The interrupt flag (a signal).
    Interrupt,
    /// An observer's time budget ([`StepContext::stop`]).
    TimeUp,
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
        config.validate()?;
        let optimizer = optimizer(&varmap, &config)?;
        let state = TrainState {
            epoch: 0,
            step: 0,
            seed: config.seed,
            config: run_config.clone(),
            library_version: env!("CARGO_PKG_VERSION").to_owned(),
            batches_per_epoch: 0,
            train_seconds: 0.0,
        };
        let observers = Observers {
            collapse: CollapseObserver::new(model.output_dim()),
            knn: None,
            probe: OnlineProbeObserver::new(None),
            #[cfg(feature = "progress")]
            progress: crate::observers::ProgressObserver::new(true),
            metrics: MetricsObserver::new(None),
            checkpoint: CheckpointObserver::new(None, config.checkpoint_every),
            extra: Vec::new(),
        };
        let stepper = Stepper::new(model, varmap, loss, optimizer, state, config.lr);
        Ok(Self { stepper, observers, config, run_config, resumed_at: None })
    }

    /// Writes checkpoints through `checkpointer`.
    pub fn with_checkpoints(mut self, checkpointer: Checkpointer) -> Self {
        self.observers.checkpoint = CheckpointObserver::new(Some(checkpointer), self.config.checkpoint_every);
        self
    }

    /// Appends metrics to `log`.
    pub fn with_metrics(mut self, log: MetricsLog) -> Self {
        self.observers.metrics = MetricsObserver::new(Some(log));
        self
    }

    /// Runs `monitor` every `knn_every` epochs and after the last.
    pub fn with_knn_monitor(mut self, monitor: KnnMonitor<B>) -> Self {
        self.observers.knn = Some(KnnObserver::new(monitor, self.config.knn_every));
        self
    }

    /// Trains an online linear probe (Lightly's `OnlineLinearClassifier`) on the detached
    /// backbone features of both views of each batch and the images' labels, with the model in
    /// the same optimiser step (a group of its own, weight decay 0, the scheduled rate): its
    /// running training accuracy and, with `test`, its test accuracy are filled in every epoch
    /// ([`crate::EpochContext::probe`]). It is saved in checkpoints under
    /// `online_classifier.*` and restored on resume; call it before resuming.
    pub fn with_online_probe(mut self, classes: usize, test: Option<ProbeTestSet<B>>) -> Result<Self> {
        let device =
            self.stepper.varmap.all_vars().first().map_or(candle::Device::Cpu, |v| v.device().clone());
        let feature_dim = self.stepper.model.backbone().feature_dim();
        let probe = OnlineProbe::new(feature_dim, classes, self.config.seed, &device)?;
        self.stepper.attach_probe(probe)?;
        self.observers.probe = OnlineProbeObserver::new(test);
        Ok(self)
    }

    /// The online probe, when one is trained.
    pub fn online_probe(&self) -> Option<&OnlineProbe> {
        self.stepper.probe.as_ref()
    }

    /// Calls `observer` too, after the trainer's own observers (whose measurements, the
    /// collapse level and kNN accuracy, it can read in the contexts).
    pub fn with_observer(mut self, observer: impl TrainObserver<B> + 'static) -> Self {
        self.observers.extra.push(Box::new(observer));
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
        self.stepper.comm = Some(comm);
        self
    }

    /// Shows (default) or hides the progress bar. The bar needs the `progress` feature (without
    /// it there is none) and a terminal on stderr; log lines go through `tracing` either way.
    #[cfg_attr(not(feature = "progress"), allow(unused_mut, unused_variables))]
    pub fn with_progress_bar(mut self, show: bool) -> Self {
        #[cfg(feature = "progress")]
        {
            self.observers.progress = crate::observers::ProgressObserver::new(show);
        }
        self
    }

    /// The flag that stops training: set it (from a Ctrl-C handler, say) and the loop saves a
    /// checkpoint after the current step and returns [`TrainOutcome::Interrupted`].
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.stepper.interrupt_flag()
    }

    /// Stops on `flag` instead of a flag of its own: one a signal handler installed before the
    /// trainer existed sets.
    pub fn with_interrupt_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stepper.set_interrupt_flag(flag);
        self
    }

    /// The model.
    pub fn model(&self) -> &SimSiam<B> {
        &self.stepper.model
    }

    /// The model's variables.
    pub fn varmap(&self) -> &VarMap {
        &self.stepper.varmap
    }

    /// Where training stands.
    pub fn state(&self) -> &TrainState {
        &self.stepper.state
    }

    /// Loads the newest checkpoint of the checkpointer that verifies, if there is one; returns
    /// its state. A damaged checkpoint ([`TrainError::CorruptCheckpoint`]: unreadable, checksum
    /// mismatch, NaN or infinite values) is skipped with a warning naming it, for the next
    /// older one; it is left on disk. Any other error (another model, another seed), or every
    /// checkpoint damaged, is returned.
    pub fn resume_latest(&mut self) -> Result<Option<TrainState>> {
        let Some(dir) = self.observers.checkpoint.checkpointer() else { return Ok(None) };
        let list = dir.list()?;
        Ok(self.resume_newest_of(&list)?.map(|(_, state)| state))
    }

    /// [`Self::resume_latest`] over `checkpoints` (oldest first, as [`Checkpointer::list`]
    /// gives them), for a caller that has not attached the checkpointer yet; the path resumed
    /// from and its state.
    pub fn resume_newest_of(&mut self, checkpoints: &[PathBuf]) -> Result<Option<(PathBuf, TrainState)>> {
        let mut first_damage = None;
        for path in checkpoints.iter().rev() {
            match self.resume_from(path) {
                Ok(state) => return Ok(Some((path.clone(), state))),
                Err(e @ TrainError::CorruptCheckpoint { .. }) => {
                    tracing::warn!("skipping a damaged checkpoint for an older one: {e}");
                    first_damage.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match first_damage {
            Some(e) => Err(e),
            None => {
                self.start_afresh();
                Ok(None)
            }
        }
    }

    /// Nothing to resume from: the next fit starts at the current step and brings the metrics
    /// file back to it (dropping what an attempt stopped before its first checkpoint logged).
    pub fn start_afresh(&mut self) {
        self.resumed_at = Some(self.stepper.state.step);
    }

    /// Loads the checkpoint at `path`: weights, running statistics, the online probe (when
    /// there is one and the checkpoint has it), momentum and state.
    pub fn resume_from(&mut self, path: &Path) -> Result<TrainState> {
        let s = &mut self.stepper;
        let probe = s.probe.as_ref().map(OnlineProbe::varmap);
        let state = load_checkpoint_with_probe(path, &s.varmap, probe, Some(&mut s.optimizer))?;
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
        s.state = state.clone();
        self.resumed_at = Some(state.step);
        Ok(state)
    }

    /// Trains until `config.epochs` epochs are complete, from wherever the state stands.
    pub fn fit(&mut self, data: &dyn TwoViewBatches) -> Result<TrainOutcome> {
        self.fit_until(data, self.config.epochs)
    }

    /// Trains until `until` epochs (at most `config.epochs`) are complete; the schedule still
    /// spans `config.epochs` (or a clock schedule's minutes), so a run split in parts equals
    /// one run. An interruption ends the fit early with [`TrainOutcome::Interrupted`], every
    /// rank at the same step; an observer's spent time budget with [`TrainOutcome::TimeUp`].
    pub fn fit_until(&mut self, data: &dyn TwoViewBatches, until: usize) -> Result<TrainOutcome> {
        let until = until.min(self.config.epochs);
        let per_epoch = self.batches_per_epoch(data)?;
        let plan = Plan {
            schedule: self.schedule(per_epoch)?,
            until,
            start_step: self.stepper.state.step,
            constant_from: self.config.warmup_epochs * per_epoch,
            clock_seconds: self.config.clock_minutes * 60.0,
        };
        self.stepper.state.config = self.run_config.clone(); // what checkpoints store
        let fit = FitContext { epochs: self.config.epochs, until, batches_per_epoch: per_epoch };
        let view = self.stepper.view();
        self.observers.metrics.rewind(self.resumed_at.take(), &view)?;
        self.observers.each(|o| o.on_fit_start(&fit, &view))?;
        // The last kNN accuracy, with the epochs completed when it was measured.
        let (mut last_loss, mut knn) = (f32::NAN, None);
        while self.stepper.state.epoch < until {
            let epoch = self.stepper.state.epoch;
            let (loss, lr, seconds, stop) = match self.train_epoch(data, &plan)? {
                EpochEnd::Completed { loss, lr, seconds, stop } => (loss, lr, seconds, stop),
                EpochEnd::Stopped(why) => return self.stop_early(why, last_loss, knn),
            };
            self.stepper.state.epoch += 1;
            let (epochs, step) = (self.config.epochs, self.stepper.state.step);
            let mut ctx = EpochContext {
                epoch,
                epochs,
                step,
                loss,
                lr,
                seconds,
                collapse: 0.0,
                knn_top1: None,
                probe: None,
            };
            self.observers.each(|o| o.on_epoch_end(&mut ctx, &self.stepper.view()))?;
            last_loss = ctx.loss;
            knn = ctx.knn_top1.map(|a| (self.stepper.state.epoch, a)).or(knn);
            if let Some(why) = stop.filter(|_| self.stepper.state.epoch < until) {
                return self.stop_early(why, last_loss, knn);
            }
        }
        self.observers.each(|o| o.on_fit_end(&self.stepper.view()))?;
        Ok(TrainOutcome::Finished(self.summary(last_loss, knn)))
    }

    /// Ends the fit before its last epoch: the observers' `on_interrupt` (the checkpoint),
    /// then the outcome that says why.
    fn stop_early(&mut self, why: Stop, last_loss: f32, knn: Option<(usize, f64)>) -> Result<TrainOutcome> {
        self.observers.each(|o| o.on_interrupt(&self.stepper.view()))?;
        let summary = self.summary(last_loss, knn);
        Ok(match why {
            Stop::Interrupt => TrainOutcome::Interrupted(summary),
            Stop::TimeUp => TrainOutcome::TimeUp(summary),
        })
    }

    /// The steps of the epoch in progress, from where the state stands in it. The training
    /// clock ([`TrainState::train_seconds`]) runs from the request for each batch to the end
    /// of its step: the observers' work (evaluation, logging, checkpoints) is not on it.
    fn train_epoch(&mut self, data: &dyn TwoViewBatches, plan: &Plan) -> Result<EpochEnd> {
        let per_epoch = self.stepper.state.batches_per_epoch;
        let epoch = self.stepper.state.epoch;
        let done = self.stepper.state.step.saturating_sub(epoch * per_epoch).min(per_epoch);
        let start = EpochStart { epoch, epochs: self.config.epochs, batches_done: done };
        self.observers.each(|o| o.on_epoch_start(&start, &self.stepper.view()))?;
        if let Some(probe) = &mut self.stepper.probe {
            probe.reset_train_accuracy();
        }
        let mut meter = EpochMeter::start();
        let mut lr = plan.schedule.lr(0);
        let mut stop = None;
        let mut lap = Instant::now();
        for batch in data.batches(epoch as u64, done)? {
            let batch = batch?;
            lr = match self.config.schedule_step {
                ScheduleStep::Iteration => plan.schedule.lr(self.stepper.state.step),
                ScheduleStep::Epoch => plan.schedule.lr(epoch),
                // The decay would start after the warmup: hold the step there.
                ScheduleStep::Constant => plan.schedule.lr(self.stepper.state.step.min(plan.constant_from)),
                // The clock schedule's one step is the whole budget.
                ScheduleStep::Clock => {
                    plan.schedule.lr_at(self.stepper.state.train_seconds / plan.clock_seconds)
                }
            };
            let out = self.stepper.step(&batch.x0, &batch.x1, &batch.labels, lr)?;
            self.stepper.state.train_seconds += lap.elapsed().as_secs_f64();
            meter.record(out.loss);
            let step = self.stepper.state.step;
            let mut ctx = StepContext {
                epoch,
                step,
                loss: out.loss,
                lr,
                prediction: &out.prediction,
                interval_loss: meter.interval_loss(),
                images_per_s: meter.images_per_s(data.batch_size()),
                log_due: step % self.config.log_every == 0,
                first_step: (step == plan.start_step + 1)
                    .then(|| meter.first_step((plan.until - epoch) * per_epoch - done - 1)),
                collapse: 0.0,
                smoothed_loss: 0.0,
                train_seconds: self.stepper.state.train_seconds,
                stop: false,
            };
            self.observers.each(|o| o.on_step(&mut ctx, &self.stepper.view()))?;
            lap = Instant::now();
            if ctx.log_due {
                meter.restart_interval();
            }
            stop = if out.interrupted { Some(Stop::Interrupt) } else { ctx.stop.then_some(Stop::TimeUp) };
            if let Some(why) = stop {
                if step < (epoch + 1) * per_epoch {
                    return Ok(EpochEnd::Stopped(why));
                }
                break; // at the epoch's last step: the epoch completes, then the fit stops
            }
        }
        Ok(EpochEnd::Completed { loss: meter.epoch_loss(), lr, seconds: meter.seconds(), stop })
    }

    /// The data's batches per epoch, which must be those of the checkpoint resumed from.
    fn batches_per_epoch(&mut self, data: &dyn TwoViewBatches) -> Result<usize> {
        let per_epoch = data.batches_per_epoch();
        if per_epoch == 0 {
            return Err(TrainError::Config(
                "the data gives no batch per epoch: too few samples for the batch size".into(),
            ));
        }
        let state = &mut self.stepper.state;
        if state.batches_per_epoch != 0 && state.batches_per_epoch != per_epoch {
            return Err(TrainError::Config(format!(
                "the checkpoint was written with {} batches per epoch, the data now gives {per_epoch}: \
                 resume with the same dataset, sample limit and batch size",
                state.batches_per_epoch
            )));
        }
        state.batches_per_epoch = per_epoch;
        Ok(per_epoch)
    }

    /// Cosine decay over the whole run, after a linear warmup, in steps, in epochs or in
    /// budgets of training clock (one; a constant schedule reads it at the end of the warmup
    /// only).
    fn schedule(&self, per_epoch: usize) -> Result<CosineSchedule> {
        let c = &self.config;
        let (total, warmup) = match c.schedule_step {
            ScheduleStep::Iteration | ScheduleStep::Constant => {
                (c.epochs * per_epoch, c.warmup_epochs * per_epoch)
            }
            ScheduleStep::Epoch => (c.epochs, c.warmup_epochs),
            ScheduleStep::Clock => (1, 0),
        };
        let start_factor = if warmup > 0 { 1.0 / warmup as f64 } else { 1.0 };
        CosineSchedule::with_warmup(c.lr, total, warmup, start_factor, 0.0)
    }

    fn summary(&self, last_loss: f32, knn: Option<(usize, f64)>) -> TrainSummary {
        let state = &self.stepper.state;
        let collapse = self.observers.collapse.level();
        let (knn_epochs, knn_top1) = (knn.map(|k| k.0), knn.map(|k| k.1));
        TrainSummary { epochs: state.epoch, steps: state.step, last_loss, collapse, knn_top1, knn_epochs }
    }
}

/// SGD over the model's parameters: the predictor (`prediction_head.`) in a group of its own,
/// BatchNorm running statistics left out.
fn optimizer(varmap: &VarMap, config: &TrainerConfig) -> Result<Sgd> {
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
    let sgd =
        SgdConfig { momentum: config.momentum, weight_decay: config.weight_decay, nesterov: config.nesterov };
    Sgd::new(groups, sgd)
}
