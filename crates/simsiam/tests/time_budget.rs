//! `simsiam pretrain` with `train.minutes` and `train.knn_at_minutes` on a tiny fake CIFAR-10:
//! kNN rows at the marks, a stop on the budget with its checkpoint, and a resume that goes on
//! from the stored clock.

mod common;

use std::path::Path;

use common::{fake_cifar, simsiam, stderr, tiny_run_args};

fn events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("metrics.jsonl");
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

fn named<'a>(lines: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

fn run(args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = simsiam(&args);
    assert!(out.status.success(), "simsiam {args:?} failed: {}", stderr(&out));
    stderr(&out)
}

#[test]
fn a_run_logs_knn_at_the_marks_stops_on_the_budget_and_resumes_the_clock() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = fake_cifar(&tmp.path().join("cifar"), 64);
    let out = tmp.path().join("run");
    let mut args = tiny_run_args(&data.display().to_string(), &out.display().to_string());
    // 20 steps an epoch for 50 epochs: far more than a budget of 0.12 s allows.
    args.extend(["--set", "train.epochs=50", "--set", "train.knn_at_minutes=[0, 0.001]"].map(String::from));
    let budget = |minutes: &str| ["--set".to_owned(), format!("train.minutes={minutes}")];

    let log = run(&[args.clone(), budget("0.002").to_vec()].concat());
    assert!(log.contains("the time budget of 0.002 min is spent"), "{log}");
    // Stopped before an epoch ended, the summary has no epoch loss to print.
    assert!(!log.contains("NaN"), "{log}");
    let lines = events(&out.join("metrics.jsonl"));
    let marks = named(&lines, "knn_mark");
    let minutes: Vec<f64> = marks.iter().filter_map(|m| m["minute"].as_f64()).collect();
    assert_eq!(minutes, [0.0, 0.001], "{lines:?}");
    for mark in &marks {
        let (step, images) = (mark["step"].as_u64().expect("step"), mark["images"].as_u64().expect("images"));
        assert_eq!(images, 16 * step);
        assert!(mark["epoch"].is_u64() && (0.0..=1.0).contains(&mark["knn_top1"].as_f64().expect("kNN")));
    }
    assert!(marks[1]["train_seconds"].as_f64() >= Some(0.06));
    let stops = named(&lines, "time_up");
    assert_eq!(stops.len(), 1, "{lines:?}");
    let stopped_at = stops[0]["step"].as_u64().expect("step");
    assert!(stops[0]["train_seconds"].as_f64() >= Some(0.12) && stopped_at < 1000, "{:?}", stops[0]);
    let checkpoints = std::fs::read_dir(out.join("checkpoints")).expect("checkpoints");
    let newest = checkpoints.filter_map(|e| e.ok()).map(|e| e.path()).max().expect("a checkpoint");
    let state = simsiam_train::read_train_state(&newest).expect("train state");
    assert_eq!(state.step as u64, stopped_at);
    assert!(state.train_seconds >= 0.12);

    // A larger budget continues from the stored clock: no mark again, a later stop.
    let mut resumed = [args, budget("0.004").to_vec()].concat();
    resumed.push("--resume".into());
    let log = run(&resumed);
    assert!(log.contains("the time budget of 0.004 min is spent"), "{log}");
    let lines = events(&out.join("metrics.jsonl"));
    assert_eq!(named(&lines, "knn_mark").len(), 2, "{lines:?}");
    let stops = named(&lines, "time_up");
    assert_eq!(stops.len(), 2, "{lines:?}");
    assert!(stops[1]["step"].as_u64() > Some(stopped_at));
    assert!(stops[1]["train_seconds"].as_f64() >= Some(0.24));
}
