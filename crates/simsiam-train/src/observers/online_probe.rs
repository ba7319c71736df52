//! The online linear probe's accuracy as an observer: at the end of every epoch, its running
//! training accuracy and, when there is a test split, its accuracy on it, for the progress
//! line, the metrics and TensorBoard.

use std::time::Instant;

use simsiam_models::{Backbone, SimSiam};

use crate::observer::{EpochContext, ProbeAccuracy, TrainObserver, TrainView};
use crate::{Features, Result};

/// Computes the backbone's features of the labelled test images (evaluation transform,
/// backbone in evaluation mode); [`crate::probe_test_set`] makes one from `simsiam-data`'s
/// loader.
pub type ProbeTestSet<B> = Box<dyn FnMut(&SimSiam<B>) -> Result<Features>>;

/// Fills in the epoch's [`ProbeAccuracy`] when the trainer has an online probe: the running
/// training accuracy of the epoch's steps (those of this fit, after a mid-epoch resume) and,
/// with a test set, the probe's accuracy on it (the epoch's seconds include that evaluation).
pub struct OnlineProbeObserver<B: Backbone> {
    test: Option<ProbeTestSet<B>>,
}

impl<B: Backbone> OnlineProbeObserver<B> {
    /// Evaluates on `test` after every epoch, when given.
    pub fn new(test: Option<ProbeTestSet<B>>) -> Self {
        Self { test }
    }
}

impl<B: Backbone> TrainObserver<B> for OnlineProbeObserver<B> {
    fn on_epoch_end(&mut self, ctx: &mut EpochContext, run: &TrainView<'_, B>) -> Result<()> {
        let Some(probe) = run.probe else { return Ok(()) };
        let started = Instant::now();
        let test = match &mut self.test {
            Some(features_of) => {
                let test = features_of(run.model)?;
                Some(probe.evaluate(&test.features, &test.required_labels()?)?)
            }
            None => None,
        };
        let train = probe.train_accuracy();
        ctx.probe = match (train, test) {
            (None, None) => None,
            (train, test) => Some(ProbeAccuracy {
                train_top1: train.map_or(f64::NAN, |t| t.top1),
                train_top5: train.map_or(f64::NAN, |t| t.top5),
                test,
            }),
        };
        ctx.seconds += started.elapsed().as_secs_f64();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, Tensor};

    use super::*;
    use crate::OnlineProbe;
    use crate::observers::testing::{Tiny, epoch_context};

    #[test]
    fn fills_in_the_train_and_test_accuracy_when_there_is_a_probe() -> Result<()> {
        let tiny = Tiny::new()?;
        let mut observer = OnlineProbeObserver::new(Some(Box::new(|model: &SimSiam<_>| {
            let x = Tensor::zeros((3, 3, 8, 8), DType::F32, &Device::Cpu)?;
            let features = candle::ModuleT::forward_t(model.backbone(), &x, false)?;
            Ok(Features { features, labels: vec![Some(0), Some(1), Some(1)], names: vec![String::new(); 3] })
        })));
        let mut ctx = epoch_context(0, 2);
        observer.on_epoch_end(&mut ctx, &tiny.view())?;
        assert_eq!(ctx.probe, None, "no probe, nothing to fill in");

        let mut probe = OnlineProbe::new(32, 2, 1, &Device::Cpu)?;
        let f = Tensor::ones((2, 32), DType::F32, &Device::Cpu)?;
        probe.training_loss(&f, &[Some(0), Some(1)])?;
        let view = TrainView { probe: Some(&probe), ..tiny.view() };
        observer.on_epoch_end(&mut ctx, &view)?;
        let accuracy = ctx.probe.expect("filled in");
        // Two identical rows of different classes: exactly one is right.
        assert_eq!((accuracy.train_top1, accuracy.train_top5), (0.5, 1.0));
        let test = accuracy.test.expect("a test set");
        // Three identical rows, one class for all: a third or two thirds are right.
        assert!([1.0 / 3.0, 2.0 / 3.0].contains(&test.top1), "{test:?}");
        assert_eq!(test.top5, 1.0);
        Ok(())
    }
}
