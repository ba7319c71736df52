//! `ScheduleStep::Clock`: each step's rate is the cosine at the training clock's reading before
//! it, over `clock_minutes`, and 0 once the clock passes the budget.

mod common;

use std::sync::{Arc, Mutex};

use common::{config, data, finished, trainer};
use simsiam_models::ResNet;
use simsiam_train::{Result, ScheduleStep, StepContext, TrainObserver, TrainView, TrainerConfig};

/// Records each step's rate and the training clock after it.
struct Clock(Arc<Mutex<Vec<(f64, f64)>>>);

impl TrainObserver<ResNet> for Clock {
    fn on_step(&mut self, ctx: &mut StepContext<'_>, _: &TrainView<'_, ResNet>) -> Result<()> {
        self.0.lock().expect("lock").push((ctx.lr, ctx.train_seconds));
        Ok(())
    }
}

/// Each step's rate and the clock after it, for nine steps on a `budget_s` clock schedule,
/// checked against the cosine at the clock's reading before the step.
fn clock_run(budget_s: f64) -> Result<Vec<(f64, f64)>> {
    let clock = TrainerConfig {
        schedule_step: ScheduleStep::Clock,
        clock_minutes: budget_s / 60.0,
        warmup_epochs: 0,
        ..config(3)
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    finished(trainer(clock)?.with_observer(Clock(seen.clone())).fit(&data())?);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 9);
    let mut before = 0.0;
    for &(lr, after) in &seen {
        let progress = f64::min(before / budget_s, 1.0);
        let want = 0.05 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        assert!((lr - want).abs() < 1e-12, "lr {lr} at {before} s, want {want}: {seen:?}");
        assert!(after > before, "the clock runs: {seen:?}");
        before = after;
    }
    assert_eq!(seen[0].0, 0.05, "the clock reads 0 before the first step");
    Ok(seen)
}

#[test]
fn a_clock_schedule_decays_with_the_training_clock() -> Result<()> {
    // A minute of budget: nine small steps stay inside it, each at a lower rate.
    let seen = clock_run(60.0)?;
    assert!(seen.windows(2).all(|w| 0.0 < w[1].0 && w[1].0 < w[0].0), "{seen:?}");
    Ok(())
}

#[test]
fn past_its_budget_a_clock_schedule_is_at_zero() -> Result<()> {
    // A tenth of a millisecond: the first step of a ResNet takes longer.
    let seen = clock_run(1e-4)?;
    assert!(seen[0].1 > 1e-4, "{seen:?}");
    assert!(seen[1..].iter().all(|(lr, _)| lr.abs() < 1e-15), "{seen:?}");
    Ok(())
}
