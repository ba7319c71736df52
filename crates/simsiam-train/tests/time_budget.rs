//! The training clock and the time budget in a real fit: a spent budget ends the fit after a
//! step with its checkpoint, the clock survives the resume, and evaluation is off the clock.

mod common;

use std::time::{Duration, Instant};

use common::{config, data, finished, trainer};
use simsiam_train::{
    Checkpointer, MetricsLog, MinuteMarks, Result, TimeBudgetObserver, TrainError, TrainOutcome,
    read_train_state,
};

fn events(path: &std::path::Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    Ok(text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect())
}

fn named<'a>(lines: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

#[test]
fn a_spent_budget_stops_after_the_step_with_a_checkpoint_and_a_resume_keeps_the_clock() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
    let (ckpt, metrics) = (dir.path().join("ckpt"), dir.path().join("metrics.jsonl"));
    // A budget of a microsecond and a mark at minute 0: both due at the first step's end.
    let observer = TimeBudgetObserver::new(MinuteMarks::new(1e-8, &[0.0])?, 8)
        .with_knn(Box::new(|_| Ok(0.5)))
        .with_metrics(&metrics);
    let mut t = trainer(config(2))?
        .with_checkpoints(Checkpointer::new(&ckpt, 3)?)
        .with_metrics(MetricsLog::append(&metrics)?)
        .with_observer(observer);
    let summary = match t.fit(&data())? {
        TrainOutcome::TimeUp(summary) => summary,
        other => panic!("expected the budget to stop the fit, got {other:?}"),
    };
    assert_eq!((summary.epochs, summary.steps), (0, 1));
    let saved = Checkpointer::new(&ckpt, 3)?.latest()?.expect("the stop's checkpoint");
    let state = read_train_state(&saved)?;
    assert_eq!(state.step, 1);
    assert!(state.train_seconds > 0.0, "{state:?}");
    let lines = events(&metrics)?;
    let (marks, stops) = (named(&lines, "knn_mark"), named(&lines, "time_up"));
    assert_eq!((marks.len(), stops.len()), (1, 1), "{lines:?}");
    assert_eq!((marks[0]["step"].as_u64(), marks[0]["images"].as_u64()), (Some(1), Some(8)));
    assert_eq!((marks[0]["knn_top1"].as_f64(), stops[0]["step"].as_u64()), (Some(0.5), Some(1)));

    // Resumed without a limit: the clock goes on from the checkpoint's, the mark it passed is
    // not evaluated again, and the fit runs to its end.
    let observer = TimeBudgetObserver::new(MinuteMarks::new(0.0, &[0.0])?, 8)
        .with_knn(Box::new(|_| panic!("the mark was evaluated before the stop")))
        .with_metrics(&metrics);
    let mut t = trainer(config(2))?
        .with_checkpoints(Checkpointer::new(&ckpt, 3)?)
        .with_metrics(MetricsLog::append(&metrics)?)
        .with_observer(observer);
    assert_eq!(t.resume_latest()?.map(|s| s.step), Some(1));
    let summary = finished(t.fit(&data())?);
    assert_eq!(summary.steps, 6);
    assert!(t.state().train_seconds > state.train_seconds);
    let lines = events(&metrics)?;
    let clocks = named(&lines, "epoch_clock");
    assert_eq!(clocks.len(), 2, "{lines:?}");
    let seconds: Vec<f64> = clocks.iter().filter_map(|l| l["train_seconds"].as_f64()).collect();
    assert!(seconds[0] > state.train_seconds && seconds[1] > seconds[0], "{seconds:?}");
    assert_eq!(named(&lines, "knn_mark").len(), 1);
    Ok(())
}

#[test]
fn evaluation_at_marks_and_epoch_ends_is_off_the_clock() -> Result<()> {
    let nap = Duration::from_millis(300);
    let sleepy = move |_: &_| {
        std::thread::sleep(nap);
        Ok(0.5)
    };
    let mut cfg = config(2);
    cfg.knn_every = 1;
    let observer =
        TimeBudgetObserver::new(MinuteMarks::new(0.0, &[0.0, 1e-8])?, 8).with_knn(Box::new(sleepy));
    let mut t = trainer(cfg)?.with_knn_monitor(Box::new(sleepy)).with_observer(observer);
    let started = Instant::now();
    let summary = finished(t.fit(&data())?);
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(summary.knn_top1, Some(0.5));
    // Two marks and two epoch ends slept 1.2 s in all, none of it on the clock.
    let clock = t.state().train_seconds;
    assert!(clock > 0.0 && clock <= wall - 4.0 * nap.as_secs_f64(), "clock {clock} s, wall {wall} s");
    Ok(())
}
