//! A tiny seeded SimSiam and ready-made contexts for the observers' unit tests.

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use simsiam_models::{PredictionHeadConfig, ProjectionHeadConfig, ResNet, ResNetConfig, SimSiam, Stem};

use crate::observer::{EpochContext, FitContext, StepContext, TrainView};
use crate::{Result, Sgd, SgdConfig, TrainState};

/// A width-4 CIFAR ResNet-18 with 16-dimensional heads, an optimiser without groups and a
/// state at epoch 0.
pub(crate) struct Tiny {
    pub(crate) model: SimSiam<ResNet>,
    pub(crate) varmap: VarMap,
    pub(crate) optimizer: Sgd,
    pub(crate) state: TrainState,
}

impl Tiny {
    pub(crate) fn new() -> Result<Self> {
        let varmap = VarMap::new();
        let vb = simsiam_models::seeded_var_builder(&varmap, 3, DType::F32, &Device::Cpu);
        let backbone = ResNetConfig::resnet18(Stem::Cifar).with_width(4).init(vb.pp("backbone"))?;
        let model = SimSiam::new(
            backbone,
            &ProjectionHeadConfig::new(32, 32, 16),
            &PredictionHeadConfig::new(16, 8, 16),
            vb,
        )?;
        let state = TrainState {
            epoch: 0,
            step: 0,
            seed: 3,
            config: serde_json::json!({ "test": "observers" }),
            library_version: "test".into(),
            batches_per_epoch: 2,
            train_seconds: 0.0,
        };
        Ok(Self { model, varmap, optimizer: Sgd::new(vec![], SgdConfig::default())?, state })
    }

    pub(crate) fn view(&self) -> TrainView<'_, ResNet> {
        TrainView {
            model: &self.model,
            varmap: &self.varmap,
            optimizer: &self.optimizer,
            state: &self.state,
            comm: None,
            probe: None,
        }
    }
}

/// Two epochs of two batches.
pub(crate) fn fit_context() -> FitContext {
    FitContext { epochs: 2, until: 2, batches_per_epoch: 2 }
}

/// Step 1 of epoch 0, logged, with `prediction` and `loss`.
pub(crate) fn step_context(prediction: &Tensor, loss: f32) -> StepContext<'_> {
    StepContext {
        epoch: 0,
        step: 1,
        loss,
        lr: 0.05,
        prediction,
        interval_loss: loss,
        images_per_s: 100.0,
        log_due: true,
        first_step: None,
        collapse: 0.0,
        smoothed_loss: 0.0,
        train_seconds: 1.0,
        stop: false,
    }
}

/// The end of epoch `epoch` of `epochs`, before any observer filled it in.
pub(crate) fn epoch_context(epoch: usize, epochs: usize) -> EpochContext {
    EpochContext {
        epoch,
        epochs,
        step: 2 * (epoch + 1),
        loss: -0.5,
        lr: 0.05,
        seconds: 1.0,
        collapse: 0.0,
        knn_top1: None,
        probe: None,
    }
}
