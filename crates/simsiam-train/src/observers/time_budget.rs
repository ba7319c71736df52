//! The training clock as an observer: kNN at fixed minutes of training, and a time budget
//! that ends the fit.
//!
//! The clock is the trainer's [`crate::TrainState::train_seconds`]: the steps and the loading
//! of their batches, kept across resumes. Everything observers do is off it: the kNN at the
//! marks (run here, inside a step's `on_step`), the kNN monitor, logging and checkpoints at
//! epoch ends. So two programs compared at a minute mark have trained for the same time.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use simsiam_models::Backbone;

use crate::observer::{EpochContext, FitContext, StepContext, TrainObserver, TrainView};
use crate::{KnnMonitor, MetricsLog, Result, TrainError};

/// Which minute marks a clock reading has passed, and whether the budget is spent: the pure
/// part of [`TimeBudgetObserver`], fed the clock's readings.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteMarks {
    /// Seconds of the budget; `None` without a limit.
    budget: Option<f64>,
    /// Seconds of each mark, ascending, without repeats.
    marks: Vec<f64>,
    /// Marks before this one have been passed.
    next: usize,
}

impl MinuteMarks {
    /// Marks at `minutes` (in any order; repeats count once) and a budget of `budget_minutes`
    /// (0: no limit). Negative or non-finite values are refused.
    pub fn new(budget_minutes: f64, minutes: &[f64]) -> Result<Self> {
        if let Some(bad) =
            std::iter::once(&budget_minutes).chain(minutes).find(|m| !(**m >= 0.0 && m.is_finite()))
        {
            return Err(TrainError::Config(format!(
                "training minutes must be zero or positive and finite, got {bad}"
            )));
        }
        let mut marks: Vec<f64> = minutes.iter().map(|m| m * 60.0).collect();
        marks.sort_by(f64::total_cmp);
        marks.dedup();
        let budget = (budget_minutes > 0.0).then_some(budget_minutes * 60.0);
        Ok(Self { budget, marks, next: 0 })
    }

    /// Continues from a clock at `seconds` (a resumed run): the marks below it were evaluated
    /// by the run that got there (a fresh start, at 0, still evaluates a mark at minute 0).
    pub fn resume_at(&mut self, seconds: f64) {
        self.next = self.marks.partition_point(|&m| m < seconds);
    }

    /// The marks, in minutes, that the clock passed since the last call, now at `seconds`;
    /// each is returned once.
    pub fn passed(&mut self, seconds: f64) -> Vec<f64> {
        let end = self.marks.partition_point(|&m| m <= seconds).max(self.next);
        let passed = self.marks[self.next..end].iter().map(|s| s / 60.0).collect();
        self.next = end;
        passed
    }

    /// Whether a clock at `seconds` has spent the budget.
    pub fn spent(&self, seconds: f64) -> bool {
        self.budget.is_some_and(|b| seconds >= b)
    }

    /// The budget in minutes, when there is one.
    pub fn budget_minutes(&self) -> Option<f64> {
        self.budget.map(|b| b / 60.0)
    }
}

/// A line of `metrics.jsonl` this observer writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum ClockEvent {
    /// kNN when the clock passed a minute mark.
    KnnMark {
        minute: f64,
        epoch: usize,
        step: usize,
        images: usize,
        train_seconds: f64,
        knn_top1: f64,
        /// The evaluation's own seconds (not on the clock).
        eval_seconds: f64,
    },
    /// The clock at the end of each epoch, with the kNN monitor's accuracy when it ran.
    EpochClock {
        epoch: usize,
        step: usize,
        images: usize,
        train_seconds: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        knn_top1: Option<f64>,
    },
    /// The budget was spent: the fit ends after this step.
    TimeUp { epoch: usize, step: usize, images: usize, train_seconds: f64, budget_minutes: f64 },
}

/// Evaluates a [`KnnMonitor`] at the first step end after the training clock passes each
/// minute mark, and ends the fit ([`StepContext::stop`], [`crate::TrainOutcome::TimeUp`]) at
/// the first step end after the budget (after that step's marks). Its lines go to
/// `metrics.jsonl`: `knn_mark` (the minute, epoch, step, images seen, clock and accuracy),
/// `epoch_clock` at every epoch end and `time_up`.
///
/// Data-parallel, every rank needs one (with or without a monitor and a log: rank 0 evaluates
/// and writes); with a budget, rank 0's clock decides when all stop (one small all-reduce a
/// step).
pub struct TimeBudgetObserver<B: Backbone> {
    marks: MinuteMarks,
    monitor: Option<KnnMonitor<B>>,
    log_path: Option<PathBuf>,
    log: Option<MetricsLog>,
    images_per_step: usize,
}

impl<B: Backbone> TimeBudgetObserver<B> {
    /// `marks` and a budget, for steps of `images_per_step` images (the global batch).
    pub fn new(marks: MinuteMarks, images_per_step: usize) -> Self {
        Self { marks, monitor: None, log_path: None, log: None, images_per_step }
    }

    /// Evaluates `monitor` at the marks (without one, the marks are not evaluated).
    pub fn with_knn(mut self, monitor: KnnMonitor<B>) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// Appends its lines to the metrics file at `path` (opened when the fit starts, after
    /// the trainer brought the file back to its checkpoint).
    pub fn with_metrics(mut self, path: &Path) -> Self {
        self.log_path = Some(path.to_owned());
        self
    }

    fn write(&mut self, event: &ClockEvent, run: &TrainView<'_, B>) -> Result<()> {
        match &mut self.log {
            Some(log) if run.is_primary() => log.log(event),
            _ => Ok(()),
        }
    }

    /// Whether to stop: this worker's reading alone, or rank 0's for every rank.
    fn agree(&self, spent: bool, run: &TrainView<'_, B>) -> Result<bool> {
        let Some(comm) = run.comm else { return Ok(spent) };
        let mut vote = [if spent && comm.rank() == 0 { 1.0 } else { 0.0 }];
        comm.all_reduce_sum_f32(&mut vote)?;
        Ok(vote[0] > 0.0)
    }
}

impl<B: Backbone> TrainObserver<B> for TimeBudgetObserver<B> {
    fn on_fit_start(&mut self, _: &FitContext, run: &TrainView<'_, B>) -> Result<()> {
        self.marks.resume_at(run.state.train_seconds);
        if let Some(path) = self.log_path.as_ref().filter(|_| run.is_primary() && self.log.is_none()) {
            self.log = Some(MetricsLog::append(path)?);
        }
        Ok(())
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>, run: &TrainView<'_, B>) -> Result<()> {
        let (epoch, step, train_seconds) = (ctx.epoch, ctx.step, ctx.train_seconds);
        let images = step * self.images_per_step;
        for minute in self.marks.passed(train_seconds) {
            let Some(monitor) = self.monitor.as_mut() else { continue };
            let started = Instant::now();
            let knn_top1 = monitor(run.model)?;
            let eval_seconds = started.elapsed().as_secs_f64();
            tracing::info!(
                minute,
                epoch,
                step,
                images,
                train_seconds,
                knn_top1,
                eval_seconds,
                "kNN at a minute mark"
            );
            let event =
                ClockEvent::KnnMark { minute, epoch, step, images, train_seconds, knn_top1, eval_seconds };
            self.write(&event, run)?;
        }
        if let Some(budget_minutes) = self.marks.budget_minutes()
            && self.agree(self.marks.spent(train_seconds), run)?
        {
            tracing::info!(budget_minutes, epoch, step, train_seconds, "time budget spent: stopping");
            self.write(&ClockEvent::TimeUp { epoch, step, images, train_seconds, budget_minutes }, run)?;
            ctx.stop = true;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, ctx: &mut EpochContext, run: &TrainView<'_, B>) -> Result<()> {
        let event = ClockEvent::EpochClock {
            epoch: ctx.epoch,
            step: ctx.step,
            images: ctx.step * self.images_per_step,
            train_seconds: run.state.train_seconds,
            knn_top1: ctx.knn_top1,
        };
        self.write(&event, run)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use candle::{DType, Device, Tensor};

    use super::*;
    use crate::distributed::{Communicator, LocalCommunicator};
    use crate::observers::testing::{Tiny, epoch_context, fit_context, step_context};

    #[test]
    fn marks_pass_once_in_order_and_the_budget_is_spent_at_its_second() -> Result<()> {
        let mut marks = MinuteMarks::new(2.0, &[1.5, 0.5, 1.0, 1.0])?;
        // A fake clock: the readings at successive step ends, in seconds.
        let mut seen = Vec::new();
        for reading in [10.0, 29.9, 30.0, 31.0, 95.0, 119.9] {
            seen.push(marks.passed(reading));
            assert!(!marks.spent(reading), "{reading}");
        }
        assert_eq!(seen, [vec![], vec![], vec![0.5], vec![], vec![1.0, 1.5], vec![]]);
        assert!(marks.spent(120.0) && marks.spent(500.0));
        assert_eq!(marks.passed(1000.0), Vec::<f64>::new());
        assert_eq!(marks.budget_minutes(), Some(2.0));

        let mut unlimited = MinuteMarks::new(0.0, &[1.0])?;
        assert!(!unlimited.spent(1e9) && unlimited.budget_minutes().is_none());
        // A resumed clock skips the marks the earlier run evaluated.
        unlimited.resume_at(60.5);
        assert_eq!(unlimited.passed(61.0), Vec::<f64>::new());
        let mut fresh = MinuteMarks::new(0.0, &[0.0])?;
        fresh.resume_at(0.0);
        assert_eq!(fresh.passed(0.1), [0.0]);
        let mut resumed = MinuteMarks::new(0.0, &[1.0, 2.0])?;
        resumed.resume_at(59.0);
        assert_eq!(resumed.passed(130.0), [1.0, 2.0]);

        for (budget, marks) in
            [(-1.0, vec![]), (f64::NAN, vec![]), (1.0, vec![f64::INFINITY]), (1.0, vec![-2.0])]
        {
            assert!(
                matches!(MinuteMarks::new(budget, &marks), Err(TrainError::Config(_))),
                "{budget} {marks:?}"
            );
        }
        Ok(())
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    }

    #[test]
    fn evaluates_at_the_marks_logs_the_clock_and_stops_on_the_budget() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let path = dir.path().join("metrics.jsonl");
        let tiny = Tiny::new()?;
        let models_seen = Arc::new(Mutex::new(0));
        let seen = models_seen.clone();
        let monitor: KnnMonitor<_> = Box::new(move |model| {
            assert_eq!(model.output_dim(), 16);
            let mut n = seen.lock().expect("lock");
            *n += 1;
            Ok(0.25 * *n as f64)
        });
        let mut observer = TimeBudgetObserver::new(MinuteMarks::new(1.0, &[0.5, 1.0])?, 8)
            .with_knn(monitor)
            .with_metrics(&path);
        observer.on_fit_start(&fit_context(), &tiny.view())?;
        let p = Tensor::zeros((2, 16), DType::F32, &Device::Cpu)?;
        let mut stops = Vec::new();
        for (step, clock) in [(1, 20.0), (2, 45.0), (3, 61.0)] {
            let mut ctx = StepContext { step, train_seconds: clock, ..step_context(&p, -0.5) };
            observer.on_step(&mut ctx, &tiny.view())?;
            stops.push(ctx.stop);
        }
        let mut end = EpochContext { knn_top1: Some(0.75), ..epoch_context(0, 2) };
        observer.on_epoch_end(&mut end, &tiny.view())?;
        assert_eq!(stops, [false, false, true]);
        assert_eq!(*models_seen.lock().expect("lock"), 2);
        let written = lines(&path);
        let events: Vec<&str> = written.iter().filter_map(|l| l["event"].as_str()).collect();
        assert_eq!(events, ["knn_mark", "knn_mark", "time_up", "epoch_clock"]);
        assert_eq!((written[0]["minute"].as_f64(), written[0]["step"].as_u64()), (Some(0.5), Some(2)));
        assert_eq!(
            (written[0]["images"].as_u64(), written[0]["train_seconds"].as_f64()),
            (Some(16), Some(45.0))
        );
        assert_eq!((written[1]["minute"].as_f64(), written[1]["knn_top1"].as_f64()), (Some(1.0), Some(0.5)));
        assert_eq!(
            (written[2]["step"].as_u64(), written[2]["budget_minutes"].as_f64()),
            (Some(3), Some(1.0))
        );
        assert_eq!(written[3]["knn_top1"].as_f64(), Some(0.75));
        assert_eq!(written[3]["train_seconds"].as_f64(), Some(tiny.state.train_seconds));
        Ok(())
    }

    #[test]
    fn a_resumed_clock_evaluates_only_the_marks_ahead() -> Result<()> {
        let mut tiny = Tiny::new()?;
        tiny.state.train_seconds = 70.0;
        let calls = Arc::new(Mutex::new(Vec::new()));
        let record = calls.clone();
        let mut observer =
            TimeBudgetObserver::new(MinuteMarks::new(0.0, &[1.0, 2.0])?, 8).with_knn(Box::new(move |_| {
                record.lock().expect("lock").push(());
                Ok(0.5)
            }));
        observer.on_fit_start(&fit_context(), &tiny.view())?;
        let p = Tensor::zeros((2, 16), DType::F32, &Device::Cpu)?;
        let mut ctx = StepContext { train_seconds: 80.0, ..step_context(&p, -0.5) };
        observer.on_step(&mut ctx, &tiny.view())?;
        assert!(calls.lock().expect("lock").is_empty() && !ctx.stop);
        ctx.train_seconds = 121.0;
        observer.on_step(&mut ctx, &tiny.view())?;
        assert_eq!(calls.lock().expect("lock").len(), 1);
        Ok(())
    }

    #[test]
    fn data_parallel_ranks_stop_on_rank_zeros_clock() -> Result<()> {
        let group = LocalCommunicator::group(2)?;
        let stops: Vec<Result<bool>> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|comm| {
                    s.spawn(move || -> Result<bool> {
                        let tiny = Tiny::new()?;
                        let comm: &dyn Communicator = comm;
                        let view = TrainView { comm: Some(comm), ..tiny.view() };
                        let mut observer: TimeBudgetObserver<_> =
                            TimeBudgetObserver::new(MinuteMarks::new(1.0, &[])?, 8);
                        let p = Tensor::zeros((2, 16), DType::F32, &Device::Cpu)?;
                        // Rank 1's clock has passed the budget, rank 0's has not: neither stops.
                        let clock = if comm.rank() == 0 { 59.0 } else { 61.0 };
                        let mut ctx = StepContext { train_seconds: clock, ..step_context(&p, -0.5) };
                        observer.on_step(&mut ctx, &view)?;
                        let first = ctx.stop;
                        // Then rank 0's passes it: both stop.
                        ctx.train_seconds = if comm.rank() == 0 { 60.0 } else { 0.0 };
                        observer.on_step(&mut ctx, &view)?;
                        Ok(!first && ctx.stop)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a rank thread")).collect()
        });
        for stopped in stops {
            assert!(stopped?);
        }
        Ok(())
    }
}
