//! The metrics file: one JSON object per line, appended and flushed as training goes, and
//! brought back in line with the checkpoint a run resumes from.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::fs::atomic_write;
use crate::{Result, TrainError};

/// One line of the metrics file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MetricEvent {
    /// Every logging interval.
    Step {
        /// Epoch in progress (0-based).
        epoch: usize,
        /// Optimiser steps taken.
        step: usize,
        /// Mean loss over the interval.
        loss: f32,
        /// Learning rate of the last step.
        lr: f64,
        /// Collapse level of the moving average, 0 healthy, 1 collapsed.
        collapse: f32,
        /// Throughput over the interval.
        images_per_s: f64,
    },
    /// At the end of each epoch.
    Epoch {
        /// The epoch completed (0-based).
        epoch: usize,
        /// Optimiser steps taken.
        step: usize,
        /// Mean loss over the epoch.
        loss: f32,
        /// Learning rate of the last step.
        lr: f64,
        /// Collapse level at the end of the epoch.
        collapse: f32,
        /// Seconds the epoch took.
        seconds: f64,
        /// kNN top-1 accuracy, when the monitor ran this epoch.
        #[serde(skip_serializing_if = "Option::is_none")]
        knn_top1: Option<f64>,
        /// The online probe's running top-1 over the epoch's training batches, when one is
        /// trained.
        #[serde(skip_serializing_if = "Option::is_none")]
        probe_train_top1: Option<f64>,
        /// The online probe's running top-5 over the epoch's training batches.
        #[serde(skip_serializing_if = "Option::is_none")]
        probe_train_top5: Option<f64>,
        /// The online probe's top-1 on the test split, when the dataset has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        probe_test_top1: Option<f64>,
        /// The online probe's top-5 on the test split.
        #[serde(skip_serializing_if = "Option::is_none")]
        probe_test_top5: Option<f64>,
    },
}

/// Appends [`MetricEvent`]s to a JSON-lines file.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending, creating it if missing (a resumed run continues the file).
    pub fn append(path: &Path) -> Result<Self> {
        let file =
            OpenOptions::new().create(true).append(true).open(path).map_err(|e| TrainError::io(path, e))?;
        Ok(Self { path: path.to_owned(), file })
    }

    /// Writes one event as a line and flushes it: a [`MetricEvent`], or an observer's own
    /// record (a JSON object with an `"event"` and, to be rewound with the rest, a `"step"`).
    pub fn log(&mut self, event: &impl Serialize) -> Result<()> {
        let mut line = serde_json::to_string(event).map_err(|e| TrainError::Config(e.to_string()))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(|e| TrainError::io(&self.path, e))?;
        self.file.flush().map_err(|e| TrainError::io(&self.path, e))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the file agree with a checkpoint at `step`: drops the events of later steps
    /// (written after that checkpoint by a run that was then killed, and about to be written
    /// again) and any line a kill tore (a record cut short, or glued to the next one, whose
    /// whole record at the end is kept). `None` drops no step, only torn lines. Lines without
    /// a step are kept. The file is rewritten atomically, and only when something changes.
    pub fn rewind(&mut self, step: Option<usize>) -> Result<Rewound> {
        let text = std::fs::read(&self.path).map_err(|e| TrainError::io(&self.path, e))?;
        let (kept, rewound) = rewind_lines(&text, step);
        if rewound.is_empty() {
            return Ok(rewound);
        }
        atomic_write(&self.path, &kept)?;
        *self = Self::append(&self.path)?;
        Ok(rewound)
    }
}

/// What [`MetricsLog::rewind`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewound {
    /// Events past the checkpoint's step.
    pub later_events: usize,
    /// Lines that were not whole JSON records.
    pub torn_lines: usize,
}

impl Rewound {
    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The lines of `text` to keep, and what was dropped. A line is torn when it does not end in a
/// newline or is not one JSON value; of a torn line, the last `{"event"` record that parses
/// whole is kept (a record glued behind a torn one).
fn rewind_lines(text: &[u8], step: Option<usize>) -> (Vec<u8>, Rewound) {
    let mut kept = Vec::with_capacity(text.len());
    let mut rewound = Rewound::default();
    let mut rest = text;
    while !rest.is_empty() {
        let (line, whole) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], true),
            None => (rest, false),
        };
        rest = &rest[(line.len() + 1).min(rest.len())..];
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<serde_json::Value>(line).ok().filter(|_| whole);
        let record = match parsed {
            Some(value) => Some((line, value)),
            None => {
                rewound.torn_lines += 1;
                glued_record(line).filter(|_| whole)
            }
        };
        let Some((record, value)) = record else { continue };
        let later = step.is_some_and(|s| {
            value.get("step").and_then(serde_json::Value::as_u64).is_some_and(|v| v > s as u64)
        });
        if later {
            rewound.later_events += 1;
            continue;
        }
        kept.extend_from_slice(record);
        kept.push(b'\n');
    }
    (kept, rewound)
}

/// The last `{"event"` record of a torn line that parses whole, with its value.
fn glued_record(line: &[u8]) -> Option<(&[u8], serde_json::Value)> {
    let marker = br#"{"event""#;
    let start = line.windows(marker.len()).rposition(|w| w == marker)?;
    let record = &line[start..];
    serde_json::from_slice(record).ok().map(|value| (record, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json_lines() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::append(&path)?;
        let step = MetricEvent::Step {
            epoch: 0,
            step: 5,
            loss: -0.5,
            lr: 0.06,
            collapse: 0.25,
            images_per_s: 100.0,
        };
        log.log(&step)?;
        let epoch = MetricEvent::Epoch {
            epoch: 0,
            step: 5,
            loss: -0.5,
            lr: 0.06,
            collapse: 0.2,
            seconds: 1.5,
            knn_top1: None,
            probe_train_top1: None,
            probe_train_top5: None,
            probe_test_top1: None,
            probe_test_top5: None,
        };
        log.log(&epoch)?;
        drop(log);
        MetricsLog::append(&path)?.log(&step)?;
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with(r#"{"event":"step","epoch":0,"step":5,"loss":-0.5"#), "{}", lines[0]);
        assert!(lines[1].starts_with(r#"{"event":"epoch""#) && !lines[1].contains("knn"));
        Ok(())
    }

    fn step_line(step: usize) -> String {
        format!(r#"{{"event":"step","epoch":0,"step":{step},"loss":-0.5}}"#)
    }

    #[test]
    fn rewinding_drops_later_steps_and_torn_lines_and_keeps_glued_records() {
        let (one, two, three) = (step_line(1), step_line(2), step_line(3));
        // Killed mid-line after step 2, resumed from a checkpoint at step 1, which wrote step 2
        // again glued to the torn line, and step 3; then killed again, resumed at step 2.
        let text = format!("{one}\n{two}\n{{\"event\":\"st{two}\n{three}\n{{\"eve");
        let (kept, rewound) = rewind_lines(text.as_bytes(), Some(2));
        assert_eq!(String::from_utf8_lossy(&kept), format!("{one}\n{two}\n{two}\n"));
        assert_eq!(rewound, Rewound { later_events: 1, torn_lines: 2 });

        let (kept, rewound) = rewind_lines(format!("{one}\n\n{three}\n").as_bytes(), None);
        assert_eq!(String::from_utf8_lossy(&kept), format!("{one}\n{three}\n"));
        assert!(rewound.is_empty());
        let (kept, rewound) = rewind_lines(b"{\"note\":1}\n[oops\n", Some(0));
        assert_eq!((kept.as_slice(), rewound.torn_lines), (&b"{\"note\":1}\n"[..], 1));
    }

    #[test]
    fn a_rewound_log_appends_after_the_kept_lines() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, format!("{}\n{}\n{{\"ev", step_line(1), step_line(2)))
            .map_err(|e| TrainError::io(&path, e))?;
        let mut log = MetricsLog::append(&path)?;
        assert_eq!(log.rewind(Some(1))?, Rewound { later_events: 1, torn_lines: 1 });
        let step =
            MetricEvent::Step { epoch: 0, step: 2, loss: -0.5, lr: 0.1, collapse: 0.0, images_per_s: 1.0 };
        log.log(&step)?;
        assert_eq!(log.rewind(Some(2))?, Rewound::default(), "a whole file is left as it is");
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], step_line(1));
        assert!(lines[1].starts_with(r#"{"event":"step","epoch":0,"step":2,"#), "{text}");
        Ok(())
    }
}
