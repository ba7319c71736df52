//! The metrics file: the repair a resume makes (`MetricsLog::rewind`), then `read_metrics`,
//! the reader of `simsiam plot`, on `metrics.jsonl` as `MetricsLog` writes it, then the plot
//! drawn from what was read.
//!
//! Input: the file.

use std::path::Path;

use simsiam::figures::{PlotOptions, plot_metrics, read_metrics};
use simsiam::train::{MetricEvent, MetricsLog};

use super::{Outcome, Target, refused, written};

pub const TARGET: Target = Target {
    name: "metrics",
    seeds,
    run,
    tokens: &[
        b"{\"event\":\"step\",",
        b"{\"event\":\"epoch\",",
        b"\"epoch\":",
        b"\"step\":",
        b"\"loss\":",
        b"\"lr\":",
        b"\"collapse\":",
        b"\"images_per_s\":",
        b"\"seconds\":",
        b"\"knn_top1\":",
        b"null",
        b"}\n",
    ],
};

fn run(dir: &Path, data: &[u8]) -> Outcome {
    let path = dir.join("metrics.jsonl");
    std::fs::write(&path, data).expect("the metrics file");
    // A resume to step 7 first, on a copy: on any bytes it must neither panic nor grow the
    // file by more than a final newline.
    let copy = dir.join("rewound.jsonl");
    std::fs::write(&copy, data).expect("the copy");
    if let Ok(mut log) = MetricsLog::append(&copy) {
        let _ = log.rewind(Some(7));
        let kept = std::fs::read(&copy).expect("the rewound file");
        assert!(kept.len() <= data.len() + 1, "rewinding grew the file");
    }
    match read_metrics(&path) {
        Ok(metrics) => {
            assert!(!metrics.steps.is_empty() || !metrics.epochs.is_empty(), "no records accepted");
            assert!(metrics.steps.windows(2).all(|w| w[0].step < w[1].step), "steps out of order");
            // What `simsiam plot` does next, small and without text to keep the loop fast.
            let options = PlotOptions { width: 160, height: 120, text: false };
            plot_metrics(&metrics, &options).expect("a plot of accepted metrics");
            Outcome::Accepted
        }
        Err(e) => refused(&e, &path),
    }
}

fn events(path: &Path, events: &[MetricEvent]) {
    let mut log = MetricsLog::append(path).expect("a metrics log");
    for event in events {
        log.log(event).expect("an event");
    }
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let step =
        |step| MetricEvent::Step { epoch: 0, step, loss: -0.5, lr: 0.06, collapse: 0.1, images_per_s: 900.0 };
    let epoch = |epoch, knn_top1| MetricEvent::Epoch {
        epoch,
        step: 10 * (epoch + 1),
        loss: -0.9,
        lr: 0.05,
        collapse: 0.2,
        seconds: 12.5,
        knn_top1,
        probe_train_top1: None,
        probe_train_top5: None,
        probe_test_top1: None,
        probe_test_top5: None,
    };
    let whole = written(|p| events(p, &[step(5), step(10), epoch(0, Some(0.4)), step(15), epoch(1, None)]));
    // A resumed run appends steps it had already logged.
    let resumed = written(|p| events(p, &[step(5), step(10), step(5), step(10), epoch(0, None)]));
    let torn = [whole.as_slice(), b"{\"event\":\"step\",\"epo"].concat();
    vec![
        ("ok-run".into(), whole.clone()),
        ("ok-resumed".into(), resumed),
        ("ok-blank-lines".into(), [b"\n\n".as_slice(), &whole, b"\n"].concat()),
        ("ok-other-event".into(), [whole.as_slice(), b"{\"event\":\"note\"}\n"].concat()),
        // A torn last line: refused today; issue #16 makes `plot` skip it with a warning.
        ("any-torn".into(), torn),
        ("err-not-json".into(), b"loss=1\n".to_vec()),
        ("err-no-event".into(), b"{\"step\": 1}\n".to_vec()),
        ("err-empty".into(), Vec::new()),
    ]
}
