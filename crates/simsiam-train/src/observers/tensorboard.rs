//! TensorBoard event files as an observer: the scalars of the metrics log, under tags that a
//! user's TensorBoard groups into a `train` and an `epoch` section.

use std::path::Path;

use simsiam_models::Backbone;

use crate::Result;
use crate::observer::{EpochContext, StepContext, TrainObserver, TrainView};
use crate::tensorboard::TensorBoardWriter;

/// Writes what [`super::MetricsObserver`] logs to a TensorBoard event file, on the primary
/// worker: every logged step as `train/loss`, `train/lr`, `train/collapse` and
/// `train/images_per_s`, every epoch as `epoch/loss`, `epoch/lr`, `epoch/collapse`,
/// `epoch/seconds`, `epoch/knn_top1` (when the kNN monitor ran) and, with an online probe,
/// `epoch/probe_train_top1`, `epoch/probe_train_top5`, `epoch/probe_test_top1` and
/// `epoch/probe_test_top5` (with a test split), all at the optimiser step.
#[derive(Debug)]
pub struct TensorBoardObserver {
    writer: TensorBoardWriter,
}

impl TensorBoardObserver {
    /// A new event file in `dir` (the run folder, beside `metrics.jsonl`).
    pub fn create(dir: &Path) -> Result<Self> {
        Ok(Self { writer: TensorBoardWriter::create(dir)? })
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    fn write(&mut self, step: usize, scalars: &[(&str, Option<f64>)]) -> Result<()> {
        for &(tag, value) in scalars {
            if let Some(value) = value {
                self.writer.add_scalar(tag, value as f32, step as u64)?;
            }
        }
        self.writer.flush()
    }
}

impl<B: Backbone> TrainObserver<B> for TensorBoardObserver {
    fn on_step(&mut self, ctx: &mut StepContext<'_>, run: &TrainView<'_, B>) -> Result<()> {
        if !ctx.log_due || !run.is_primary() {
            return Ok(());
        }
        self.write(
            ctx.step,
            &[
                ("train/loss", Some(f64::from(ctx.interval_loss))),
                ("train/lr", Some(ctx.lr)),
                ("train/collapse", Some(f64::from(ctx.collapse))),
                ("train/images_per_s", Some(ctx.images_per_s)),
            ],
        )
    }

    fn on_epoch_end(&mut self, ctx: &mut EpochContext, run: &TrainView<'_, B>) -> Result<()> {
        if !run.is_primary() {
            return Ok(());
        }
        let (probe, test) = (ctx.probe, ctx.probe.and_then(|p| p.test));
        self.write(
            ctx.step,
            &[
                ("epoch/loss", Some(f64::from(ctx.loss))),
                ("epoch/lr", Some(ctx.lr)),
                ("epoch/collapse", Some(f64::from(ctx.collapse))),
                ("epoch/seconds", Some(ctx.seconds)),
                ("epoch/knn_top1", ctx.knn_top1),
                ("epoch/probe_train_top1", probe.map(|p| p.train_top1).filter(|a| a.is_finite())),
                ("epoch/probe_train_top5", probe.map(|p| p.train_top5).filter(|a| a.is_finite())),
                ("epoch/probe_test_top1", test.map(|t| t.top1)),
                ("epoch/probe_test_top5", test.map(|t| t.top5)),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, Tensor};

    use super::*;
    use crate::TrainError;
    use crate::observers::testing::{Tiny, epoch_context, step_context};

    /// The tags of an event file's records, in order (each record holds one scalar).
    fn tags(path: &Path) -> Result<Vec<String>> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let (mut tags, mut rest) = (Vec::new(), bytes.as_slice());
        while rest.len() >= 12 {
            let len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")) as usize;
            let data = &rest[12..12 + len];
            // wall_time (9 bytes), the step's varint (field 2) when not 0, then a scalar's
            // `summary { value { tag` (0x2A n 0x0A n 0x0A n) or the file version (0x1A).
            let mut at = 9;
            if data[at] == 0x10 {
                at += 1 + data[at + 1..].iter().position(|b| b & 0x80 == 0).expect("a varint's end") + 1;
            }
            if data[at] == 0x2A {
                let tag_len = data[at + 5] as usize;
                tags.push(String::from_utf8_lossy(&data[at + 6..at + 6 + tag_len]).into_owned());
            }
            rest = &rest[12 + len + 4..];
        }
        Ok(tags)
    }

    #[test]
    fn logged_steps_and_epochs_become_scalars() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let tiny = Tiny::new()?;
        let p = Tensor::zeros((2, 16), DType::F32, &Device::Cpu)?;
        let mut observer = TensorBoardObserver::create(dir.path())?;
        let mut quiet = StepContext { log_due: false, ..step_context(&p, -0.5) };
        TrainObserver::<simsiam_models::ResNet>::on_step(&mut observer, &mut quiet, &tiny.view())?;
        let mut logged = step_context(&p, -0.5);
        observer.on_step(&mut logged, &tiny.view())?;
        let mut epoch = epoch_context(0, 2);
        observer.on_epoch_end(&mut epoch, &tiny.view())?;
        epoch.knn_top1 = Some(0.5);
        epoch.probe = Some(crate::observer::ProbeAccuracy {
            train_top1: 0.5,
            train_top5: 0.75,
            test: Some(crate::TopK { top1: 0.25, top5: 1.0 }),
        });
        observer.on_epoch_end(&mut epoch, &tiny.view())?;
        let tags = tags(observer.path())?;
        let step_tags = ["train/loss", "train/lr", "train/collapse", "train/images_per_s"];
        let epoch_tags = ["epoch/loss", "epoch/lr", "epoch/collapse", "epoch/seconds"];
        let mut expected: Vec<&str> = step_tags.to_vec();
        expected.extend(epoch_tags);
        expected.extend(epoch_tags);
        expected.extend([
            "epoch/knn_top1",
            "epoch/probe_train_top1",
            "epoch/probe_train_top5",
            "epoch/probe_test_top1",
            "epoch/probe_test_top5",
        ]);
        assert_eq!(tags, expected);
        Ok(())
    }
}
