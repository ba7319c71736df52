//! The run configuration as the library crates' configs: the one place where a field of
//! [`RunConfig`] meets a field of `SimSiamConfig`, `ResNetConfig`, `TrainerConfig`, ...

use anyhow::{Context, Result};
use candle::Device;
use simsiam_augment::{Normalization, SimSiamConfig};
use simsiam_data::{EvalConfig, EvalTransform, LoaderConfig};
use simsiam_loss::{NegativeCosineSimilarity, Similarity, SymmetrizedCrossEntropy};
use simsiam_models::{Precision, PredictionHeadConfig, ProjectionHeadConfig, ResNetConfig, Stem};
use simsiam_train::{KnnConfig, LinearEvalConfig, TrainerConfig};

use super::{
    AugmentConfig, Backbone, DeviceKind, LossKind, ModelConfig, NormalizationKind, PrecisionKind, RunConfig,
    StemKind,
};

/// Images per batch of the evaluation loaders (features only, no gradients).
const EVAL_BATCH_SIZE: usize = 256;

impl From<NormalizationKind> for Normalization {
    fn from(kind: NormalizationKind) -> Self {
        match kind {
            NormalizationKind::Cifar10 => Self::CIFAR10,
            NormalizationKind::Imagenet => Self::IMAGENET,
        }
    }
}

impl From<StemKind> for Stem {
    fn from(kind: StemKind) -> Self {
        match kind {
            StemKind::Imagenet => Self::ImageNet,
            StemKind::Cifar => Self::Cifar,
        }
    }
}

impl DeviceKind {
    /// The candle device; a build without the `cuda` or `metal` feature says so.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                let n = n.unwrap_or(0);
                Device::new_cuda(n)
                    .with_context(|| format!("cannot use CUDA device {n} (is the `cuda` feature on?)"))
            }
            Self::Metal => {
                Device::new_metal(0).context("cannot use the Metal device (is the `metal` feature on?)")
            }
        }
    }
}

impl PrecisionKind {
    /// The precision on `device`: `auto` is bf16 on CUDA and f32 elsewhere.
    pub fn resolve(self, device: &Device) -> Precision {
        match self {
            Self::Auto if device.is_cuda() => Precision::Bf16,
            Self::Auto | Self::F32 => Precision::F32,
            Self::Bf16 => Precision::Bf16,
        }
    }
}

impl LossKind {
    /// The loss.
    pub fn build(self) -> Box<dyn Similarity> {
        match self {
            Self::NegativeCosine => Box::new(NegativeCosineSimilarity::default()),
            Self::SymmetrizedCrossEntropy => Box::new(SymmetrizedCrossEntropy),
        }
    }
}

impl AugmentConfig {
    /// The two-view augmentation, on Lightly's defaults for the knobs the config leaves out.
    pub fn simsiam(&self) -> SimSiamConfig {
        SimSiamConfig {
            input_size: self.input_size,
            cj_prob: self.cj_prob,
            cj_strength: self.cj_strength,
            min_scale: self.min_scale,
            random_gray_scale: self.random_gray_scale,
            gaussian_blur: self.gaussian_blur,
            hf_prob: self.hf_prob,
            vf_prob: self.vf_prob,
            rr_prob: self.rr_prob,
            normalize: Some(self.normalize.into()),
            ..SimSiamConfig::default()
        }
    }
}

impl ModelConfig {
    /// The backbone's architecture, computing in `precision`.
    pub fn resnet(&self, precision: Precision) -> ResNetConfig {
        let stem = self.stem.into();
        let config = match self.backbone {
            Backbone::Resnet18 => ResNetConfig::resnet18(stem),
            Backbone::Resnet34 => ResNetConfig::resnet34(stem),
            Backbone::Resnet50 => ResNetConfig::resnet50(stem),
        };
        config
            .with_width(self.width)
            .with_zero_init_residual(self.zero_init_residual)
            .with_precision(precision)
    }

    /// The projection head on `input_dim` backbone features.
    pub fn projection_head(&self, input_dim: usize, precision: Precision) -> ProjectionHeadConfig {
        ProjectionHeadConfig {
            input_dim,
            hidden_dim: self.proj_hidden_dim,
            output_dim: self.proj_output_dim,
            num_layers: self.proj_layers,
            last_bn_affine: self.proj_last_bn_affine,
            precision,
            batch_norm: Default::default(),
        }
    }

    /// The prediction head, from and to the projection's dimension.
    pub fn prediction_head(&self, precision: Precision) -> PredictionHeadConfig {
        PredictionHeadConfig::new(self.proj_output_dim, self.pred_hidden_dim, self.proj_output_dim)
            .with_precision(precision)
    }
}

impl RunConfig {
    /// The two-view training loader's settings: seeded, full batches only.
    pub fn loader_config(&self) -> LoaderConfig {
        LoaderConfig {
            batch_size: self.train.batch_size,
            seed: self.train.seed,
            drop_last: true,
            workers: self.data.workers,
            ..LoaderConfig::default()
        }
    }

    /// The evaluation loaders' settings.
    pub fn eval_loader_config(&self) -> EvalConfig {
        EvalConfig { batch_size: EVAL_BATCH_SIZE, workers: self.data.workers, ..EvalConfig::default() }
    }

    /// The evaluation preprocessing: CIFAR images as they are, others resized and centre-cropped.
    pub fn eval_transform(&self) -> EvalTransform {
        let normalization = self.augment.normalize.into();
        if self.data.dataset.is_cifar() {
            EvalTransform { resize: None, center_crop: None, normalization }
        } else {
            EvalTransform { normalization, ..EvalTransform::imagenet(self.augment.input_size) }
        }
    }

    /// The training loop's settings.
    pub fn trainer_config(&self) -> TrainerConfig {
        let t = &self.train;
        TrainerConfig {
            epochs: t.epochs,
            lr: self.lr(),
            momentum: t.momentum,
            weight_decay: t.weight_decay,
            nesterov: false,
            fixed_predictor_lr: t.fixed_predictor_lr,
            warmup_epochs: t.warmup_epochs,
            schedule_step: t.schedule,
            log_every: t.log_every,
            checkpoint_every: t.checkpoint_every,
            keep_checkpoints: t.keep_checkpoints,
            knn_every: t.knn_every,
            seed: t.seed,
        }
    }

    /// The kNN classifier of the monitor and of `simsiam eval knn`.
    pub fn knn_config(&self) -> KnnConfig {
        KnnConfig { k: self.train.knn_k, temperature: self.train.knn_t, ..KnnConfig::default() }
    }

    /// The linear classifier of `simsiam eval linear`, seeded as the run.
    pub fn linear_eval_config(&self, epochs: usize, lr: f64) -> LinearEvalConfig {
        LinearEvalConfig { epochs, lr, seed: self.train.seed, ..LinearEvalConfig::default() }
    }
}

#[cfg(test)]
mod tests {
    use simsiam_train::ScheduleStep;

    use super::*;

    #[test]
    fn the_sections_reach_the_library_configs() -> Result<()> {
        let run = RunConfig::preset("cifar10-paper")?.with_overrides(&[
            "train.schedule=iteration".into(),
            "train.warmup_epochs=5".into(),
            "train.knn_k=7".into(),
            "model.backbone=resnet50".into(),
        ])?;
        let trainer = run.trainer_config();
        assert_eq!(
            (trainer.schedule_step, trainer.warmup_epochs, trainer.epochs),
            (ScheduleStep::Iteration, 5, 800)
        );
        assert!((trainer.lr - run.lr()).abs() < 1e-15);
        assert_eq!(run.knn_config().k, 7);
        let resnet = run.model.resnet(Precision::Bf16);
        assert_eq!(resnet, ResNetConfig::resnet50(Stem::Cifar).with_precision(Precision::Bf16));
        assert_eq!(run.model.projection_head(resnet.feature_dim(), Precision::F32).input_dim, 2048);
        assert_eq!(run.loader_config().batch_size, 512);
        assert_eq!(run.eval_transform().resize, None);
        let linear = run.linear_eval_config(3, 0.5);
        assert_eq!((linear.epochs, linear.lr, linear.seed), (3, 0.5, run.train.seed));

        let satellite = RunConfig::preset("satellite")?;
        assert_eq!(satellite.augment.simsiam().normalize, Some(Normalization::IMAGENET));
        assert_eq!(
            satellite.eval_transform(),
            EvalTransform { normalization: Normalization::IMAGENET, ..EvalTransform::imagenet(64) }
        );
        Ok(())
    }

    #[test]
    fn auto_precision_is_f32_off_cuda() -> Result<()> {
        let cpu = DeviceKind::Cpu.open()?;
        assert_eq!(PrecisionKind::Auto.resolve(&cpu), Precision::F32);
        assert_eq!(PrecisionKind::Bf16.resolve(&cpu), Precision::Bf16);
        assert_eq!(PrecisionKind::F32.resolve(&cpu), Precision::F32);
        Ok(())
    }
}
