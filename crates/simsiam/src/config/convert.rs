//! The run configuration as the library crates' configs: the one place where a field of
//! [`RunConfig`] meets a field of `SimSiamConfig`, `ResNetConfig`, `TrainerConfig`, ...

use anyhow::{Context, Result, bail};
use candle::Device;
use simsiam_augment::{Normalization, SimSiamConfig};
use simsiam_data::{EvalConfig, EvalTransform, LoaderConfig};
use simsiam_loss::{NegativeCosineSimilarity, Similarity, SymmetrizedCrossEntropy};
use simsiam_models::{Precision, PredictionHeadConfig, ProjectionHeadConfig, ResNetConfig, Stem};
use simsiam_train::{KnnConfig, LinearEvalConfig, MinuteMarks, TrainerConfig};

use super::{
    AugmentConfig, Backbone, DeviceKind, EvalResizeKind, LossKind, ModelConfig, NormalizationKind,
    PrecisionKind, RunConfig, StemKind,
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

impl NormalizationKind {
    /// The kind whose statistics are `normalization`, if one is.
    pub fn of(normalization: Option<Normalization>) -> Option<Self> {
        Self::ALL.iter().copied().find(|&kind| Some(Normalization::from(kind)) == normalization)
    }
}

impl AugmentConfig {
    /// The two-view augmentation, on Lightly's defaults for the knobs the config leaves out
    /// (blur sigmas and kernel, two views).
    ///
    /// # Errors
    /// `rr_degrees` with more than two angles, or a single negative one.
    pub fn simsiam(&self) -> Result<SimSiamConfig> {
        let rr_degrees = match self.rr_degrees[..] {
            [] => None,
            [d] if d >= 0.0 => Some((-d, d)),
            [min, max] => Some((min, max)),
            _ => bail!(
                "augment.rr_degrees must be [] (90-degree rotations), [d] with d >= 0 or [min, max], got {:?}",
                self.rr_degrees
            ),
        };
        Ok(SimSiamConfig {
            input_size: self.input_size,
            cj_prob: self.cj_prob,
            cj_strength: self.cj_strength,
            cj_bright: self.cj_bright,
            cj_contrast: self.cj_contrast,
            cj_sat: self.cj_sat,
            cj_hue: self.cj_hue,
            min_scale: self.min_scale,
            random_gray_scale: self.random_gray_scale,
            gaussian_blur: self.gaussian_blur,
            hf_prob: self.hf_prob,
            vf_prob: self.vf_prob,
            rr_prob: self.rr_prob,
            rr_degrees,
            normalize: Some(self.normalize.into()),
            ..SimSiamConfig::default()
        })
    }

    /// The section holding `config`'s knobs (a preset's augmentation, defined once in
    /// `simsiam-augment`), with `eval_resize` for folders. Statistics other than CIFAR-10's and
    /// ImageNet's read as ImageNet's: the preset tests compare both ways.
    pub fn from_simsiam(config: &SimSiamConfig, eval_resize: EvalResizeKind) -> Self {
        Self {
            input_size: config.input_size,
            cj_prob: config.cj_prob,
            cj_strength: config.cj_strength,
            cj_bright: config.cj_bright,
            cj_contrast: config.cj_contrast,
            cj_sat: config.cj_sat,
            cj_hue: config.cj_hue,
            min_scale: config.min_scale,
            random_gray_scale: config.random_gray_scale,
            gaussian_blur: config.gaussian_blur,
            hf_prob: config.hf_prob,
            vf_prob: config.vf_prob,
            rr_prob: config.rr_prob,
            rr_degrees: config.rr_degrees.map_or_else(Vec::new, |(min, max)| vec![min, max]),
            normalize: NormalizationKind::of(config.normalize).unwrap_or(NormalizationKind::Imagenet),
            eval_resize,
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

    /// The evaluation preprocessing: CIFAR images as they are, others resized and centre-cropped
    /// or plainly resized (`augment.eval_resize`).
    pub fn eval_transform(&self) -> EvalTransform {
        let normalization = self.augment.normalize.into();
        let size = self.augment.input_size;
        if self.data.dataset.is_cifar() {
            EvalTransform { resize: None, square: false, center_crop: None, normalization }
        } else {
            match self.augment.eval_resize {
                EvalResizeKind::CenterCrop => {
                    EvalTransform { normalization, ..EvalTransform::imagenet(size) }
                }
                EvalResizeKind::Resize => {
                    EvalTransform { normalization, ..EvalTransform::resize_square(size) }
                }
            }
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
            clock_minutes: t.minutes,
            log_every: t.log_every,
            checkpoint_every: t.checkpoint_every,
            keep_checkpoints: t.keep_checkpoints,
            knn_every: t.knn_every,
            seed: t.seed,
        }
    }

    /// The training-time budget and the minute marks of the kNN monitor
    /// (`train.minutes`, `train.knn_at_minutes`); `None` when the run has neither.
    pub fn minute_marks(&self) -> Result<Option<MinuteMarks>> {
        let t = &self.train;
        if t.minutes == 0.0 && t.knn_at_minutes.is_empty() {
            return Ok(None);
        }
        Ok(Some(MinuteMarks::new(t.minutes, &t.knn_at_minutes)?))
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
        assert_eq!(
            resnet,
            ResNetConfig::resnet50(Stem::Cifar).with_zero_init_residual(true).with_precision(Precision::Bf16)
        );
        assert_eq!(run.model.projection_head(resnet.feature_dim(), Precision::F32).input_dim, 2048);
        assert_eq!(run.loader_config().batch_size, 512);
        assert_eq!(run.eval_transform().resize, None);
        assert_eq!(run.minute_marks()?, None);
        let timed =
            run.clone().with_overrides(&["train.minutes=2".into(), "train.knn_at_minutes=[1]".into()])?;
        let marks = timed.minute_marks()?.expect("a budget");
        assert_eq!(marks.budget_minutes(), Some(2.0));
        let clock = timed.with_overrides(&["train.schedule=clock".into()])?.trainer_config();
        assert_eq!((clock.schedule_step, clock.clock_minutes), (ScheduleStep::Clock, 2.0));
        let linear = run.linear_eval_config(3, 0.5);
        assert_eq!((linear.epochs, linear.lr, linear.seed), (3, 0.5, run.train.seed));

        let satellite = RunConfig::preset("satellite")?;
        assert_eq!(satellite.augment.simsiam()?.normalize, Some(Normalization::IMAGENET));
        assert_eq!(satellite.eval_transform(), EvalTransform::resize_square(256));
        let cropped = satellite.with_overrides(&["augment.eval_resize=center_crop".into()])?;
        assert_eq!(cropped.eval_transform(), EvalTransform::imagenet(256));
        Ok(())
    }

    #[test]
    fn rotation_degrees_read_as_lightly_reads_them() -> Result<()> {
        let base = RunConfig::preset("lightly-example")?;
        for (text, want) in
            [("[]", None), ("[15]", Some((-15.0, 15.0))), ("[-10, 30.5]", Some((-10.0, 30.5)))]
        {
            let c = base.clone().with_overrides(&[format!("augment.rr_degrees={text}")])?;
            let augment = c.augment.simsiam()?;
            assert_eq!(augment.rr_degrees, want, "{text}");
            augment.build()?;
            assert_eq!(AugmentConfig::from_simsiam(&augment, c.augment.eval_resize).simsiam()?, augment);
        }
        for bad in ["[-15]", "[1, 2, 3]"] {
            let c = base.clone().with_overrides(&[format!("augment.rr_degrees={bad}")])?;
            assert!(c.augment.simsiam().is_err(), "{bad}");
        }
        assert!(
            base.with_overrides(&["augment.rr_degrees=[30, -30]".into()])?
                .augment
                .simsiam()?
                .build()
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn files_written_before_the_jitter_rotation_and_evaluation_keys_read_as_lightlys_defaults() -> Result<()>
    {
        let base = RunConfig::preset("satellite")?;
        let mut text = base.to_toml()?;
        for key in ["cj_bright", "cj_contrast", "cj_sat", "cj_hue", "rr_degrees", "eval_resize"] {
            let line = text.lines().find(|l| l.starts_with(&format!("{key} = "))).expect(key).to_owned();
            text = text.replace(&format!("{line}\n"), "");
        }
        let old: RunConfig = toml::from_str(&text)?;
        let a = &old.augment;
        assert_eq!((a.cj_bright, a.cj_contrast, a.cj_sat, a.cj_hue), (0.4, 0.4, 0.4, 0.1));
        assert_eq!((a.rr_degrees.is_empty(), a.eval_resize), (true, EvalResizeKind::CenterCrop));
        assert_eq!(RunConfig { augment: base.augment.clone(), ..old }, base);
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
