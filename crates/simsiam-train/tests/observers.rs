//! The loop calls observers in order: a caller's observer, added last, sees every event of a
//! fit in sequence and reads the collapse level and kNN accuracy the trainer's own observers
//! filled in; an interruption ends the sequence with `on_interrupt` instead of `on_fit_end`.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use common::{config, data, finished, trainer};
use simsiam_models::ResNet;
use simsiam_train::{
    EpochContext, EpochStart, FitContext, Result, StepContext, TrainObserver, TrainOutcome, TrainView,
};

/// Writes one short line per event into a shared list.
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn push(&self, line: String) {
        self.0.lock().expect("lock").push(line);
    }
}

impl TrainObserver<ResNet> for Recorder {
    fn on_fit_start(&mut self, ctx: &FitContext, _: &TrainView<'_, ResNet>) -> Result<()> {
        self.push(format!("fit {}/{} x{}", ctx.until, ctx.epochs, ctx.batches_per_epoch));
        Ok(())
    }

    fn on_epoch_start(&mut self, ctx: &EpochStart, _: &TrainView<'_, ResNet>) -> Result<()> {
        self.push(format!("epoch {} from {}", ctx.epoch, ctx.batches_done));
        Ok(())
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>, run: &TrainView<'_, ResNet>) -> Result<()> {
        assert_eq!(run.state.step, ctx.step);
        assert!(ctx.collapse > 0.0 && ctx.collapse <= 1.0, "the collapse monitor ran first");
        assert!(ctx.loss.is_finite() && ctx.smoothed_loss != 0.0);
        let first = if ctx.first_step.is_some() { " first" } else { "" };
        let log = if ctx.log_due { " log" } else { "" };
        self.push(format!("step {}{first}{log}", ctx.step));
        Ok(())
    }

    fn on_epoch_end(&mut self, ctx: &mut EpochContext, run: &TrainView<'_, ResNet>) -> Result<()> {
        assert_eq!(run.state.epoch, ctx.completed());
        assert!(ctx.collapse > 0.0);
        self.push(format!("end {} knn {:?}", ctx.epoch, ctx.knn_top1));
        Ok(())
    }

    fn on_interrupt(&mut self, run: &TrainView<'_, ResNet>) -> Result<()> {
        self.push(format!("interrupted at {}", run.state.step));
        Ok(())
    }

    fn on_fit_end(&mut self, _: &TrainView<'_, ResNet>) -> Result<()> {
        self.push("done".into());
        Ok(())
    }
}

#[test]
fn a_callers_observer_sees_every_event_in_order_with_the_measurements() -> Result<()> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut t =
        trainer(config(2))?.with_knn_monitor(Box::new(|_| Ok(0.5))).with_observer(Recorder(events.clone()));
    let summary = finished(t.fit(&data())?);
    assert_eq!((summary.knn_top1, summary.knn_epochs, summary.epochs), (Some(0.5), Some(2), 2));
    let expected = [
        "fit 2/2 x3",
        "epoch 0 from 0",
        "step 1 first",
        "step 2 log",
        "step 3",
        "end 0 knn None",
        "epoch 1 from 0",
        "step 4 log",
        "step 5",
        "step 6 log",
        "end 1 knn Some(0.5)",
        "done",
    ];
    assert_eq!(*events.lock().expect("lock"), expected);
    Ok(())
}

#[test]
fn an_interruption_ends_the_events_and_the_fit_with_an_outcome() -> Result<()> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut t = trainer(config(2))?.with_observer(Recorder(events.clone()));
    t.interrupt_flag().store(true, Ordering::SeqCst);
    match t.fit(&data())? {
        TrainOutcome::Interrupted(summary) => assert_eq!((summary.epochs, summary.steps), (0, 1)),
        other => panic!("expected an interruption, got {other:?}"),
    }
    let expected = ["fit 2/2 x3", "epoch 0 from 0", "step 1 first", "interrupted at 1"];
    assert_eq!(*events.lock().expect("lock"), expected);
    Ok(())
}

/// Sets the trainer's interrupt flag during step `at`, as a signal handler would; the trainer
/// sees it at the next step.
struct InterruptAfter(usize, Arc<std::sync::atomic::AtomicBool>);

impl TrainObserver<ResNet> for InterruptAfter {
    fn on_step(&mut self, ctx: &mut StepContext<'_>, _: &TrainView<'_, ResNet>) -> Result<()> {
        if ctx.step == self.0 {
            self.1.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// An interruption at an epoch's last step completes that epoch (its record and checkpoint)
/// before stopping, so the resumed run starts the next epoch instead of an empty one.
#[test]
fn an_interruption_at_an_epochs_last_step_completes_the_epoch() -> Result<()> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let t = trainer(config(3))?;
    let flag = t.interrupt_flag();
    let mut t = t.with_observer(InterruptAfter(2, flag)).with_observer(Recorder(events.clone()));
    match t.fit(&data())? {
        TrainOutcome::Interrupted(summary) => assert_eq!((summary.epochs, summary.steps), (1, 3)),
        other => panic!("expected an interruption, got {other:?}"),
    }
    let seen = events.lock().expect("lock").clone();
    let tail: Vec<&str> = seen.iter().rev().take(2).rev().map(String::as_str).collect();
    assert_eq!(tail, ["end 0 knn None", "interrupted at 3"], "{seen:?}");
    assert_eq!(t.state().epoch, 1, "the epoch is counted");
    Ok(())
}
