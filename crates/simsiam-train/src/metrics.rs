//! The metrics file: one JSON object per line, appended and flushed as training goes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

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

    /// Writes one event as a line and flushes it.
    pub fn log(&mut self, event: &MetricEvent) -> Result<()> {
        let mut line = serde_json::to_string(event).map_err(|e| TrainError::Config(e.to_string()))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(|e| TrainError::io(&self.path, e))?;
        self.file.flush().map_err(|e| TrainError::io(&self.path, e))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
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
}
