//! The run configuration: every knob of data, augmentation, model and training in one TOML
//! file, with named presets and `section.key=value` overrides.
//!
//! Every closed set (dataset, stem, loss, ...) is an enum ([`DatasetKind`], [`StemKind`],
//! [`LossKind`], ... written as the same words as ever), so a bad value is refused while the file
//! or override is read, naming the allowed values; [`RunConfig::validate`] checks the ranges the
//! types cannot. The sections become the library crates' configs in one place (`convert.rs`:
//! [`RunConfig::trainer_config`], [`ModelConfig::resnet`], [`AugmentConfig::simsiam`], ...).

mod choices;
mod convert;
mod online_probe;
mod presets;
mod validate;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
pub use simsiam_train::ScheduleStep;

pub use self::choices::{
    Backbone, DatasetKind, DeviceKind, EvalResizeKind, LossKind, NormalizationKind, PrecisionKind, Preset,
    StemKind, UnknownChoice,
};
pub use self::online_probe::OnlineProbeSetting;

/// Everything a run needs; printed in full at start and stored in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Where the images come from.
    pub data: DataConfig,
    /// The two-view augmentation.
    pub augment: AugmentConfig,
    /// Backbone and heads.
    pub model: ModelConfig,
    /// Optimiser, schedule, checkpoints and monitoring.
    pub train: TrainConfig,
}

/// The dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `cifar10`, `cifar100` or `folder`.
    pub dataset: DatasetKind,
    /// For CIFAR, the directory holding `cifar-10-batches-bin` (or `cifar-100-binary`); for a
    /// folder, its root.
    pub path: PathBuf,
    /// Use only `limit` training images (0: all), drawn at random from the run's seed so that
    /// every class of a class-per-folder dataset shows up, for a quick try.
    pub limit: usize,
    /// Loader worker threads.
    pub workers: usize,
}

/// The knobs of `simsiam_augment::SimSiamConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Output side of each view.
    pub input_size: u32,
    /// Colour-jitter probability.
    pub cj_prob: f64,
    /// Colour-jitter strength multiplier of the four strengths below.
    pub cj_strength: f64,
    /// Brightness jitter strength (before `cj_strength`).
    #[serde(default = "defaults::cj_bright")]
    pub cj_bright: f64,
    /// Contrast jitter strength (before `cj_strength`).
    #[serde(default = "defaults::cj_contrast")]
    pub cj_contrast: f64,
    /// Saturation jitter strength (before `cj_strength`).
    #[serde(default = "defaults::cj_sat")]
    pub cj_sat: f64,
    /// Hue jitter strength (before `cj_strength`; the product at most 0.5).
    #[serde(default = "defaults::cj_hue")]
    pub cj_hue: f64,
    /// Smallest crop area fraction.
    pub min_scale: f64,
    /// Grayscale probability.
    pub random_gray_scale: f64,
    /// Gaussian-blur probability.
    pub gaussian_blur: f64,
    /// Horizontal-flip probability.
    pub hf_prob: f64,
    /// Vertical-flip probability.
    pub vf_prob: f64,
    /// Rotation probability.
    pub rr_prob: f64,
    /// Rotation angles, as Lightly's `rr_degrees`: `[]` rotates by 90 degrees, `[d]` by an
    /// angle in `[-d, d]`, `[min, max]` by an angle in `[min, max]` (counter-clockwise).
    #[serde(default)]
    pub rr_degrees: Vec<f64>,
    /// `cifar10` or `imagenet` mean and std.
    pub normalize: NormalizationKind,
    /// How a folder's images are prepared for evaluation and embeddings: `center_crop`
    /// (shorter side to `input_size * 8 / 7`, centre crop `input_size`) or `resize` (a plain
    /// resize to `input_size x input_size`); CIFAR images are used as they are.
    #[serde(default)]
    pub eval_resize: EvalResizeKind,
}

/// The values files written before a key existed read as: Lightly's defaults.
mod defaults {
    pub(super) fn cj_bright() -> f64 {
        0.4
    }
    pub(super) fn cj_contrast() -> f64 {
        0.4
    }
    pub(super) fn cj_sat() -> f64 {
        0.4
    }
    pub(super) fn cj_hue() -> f64 {
        0.1
    }
}

/// Backbone and heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `resnet18`, `resnet34` or `resnet50`.
    pub backbone: Backbone,
    /// `imagenet` (torchvision's 7x7 stem with max-pool) or `cifar` (3x3, no max-pool).
    pub stem: StemKind,
    /// Channels of the first stage (64 for the standard networks).
    pub width: usize,
    /// Start each residual block's last BN at zero.
    pub zero_init_residual: bool,
    /// Projection head hidden width.
    pub proj_hidden_dim: usize,
    /// Projection (and prediction) output dimension.
    pub proj_output_dim: usize,
    /// Projection head layers.
    pub proj_layers: usize,
    /// Affine last BN in the projection head.
    pub proj_last_bn_affine: bool,
    /// Prediction head bottleneck width.
    pub pred_hidden_dim: usize,
    /// `negative_cosine` or `symmetrized_cross_entropy`.
    pub loss: LossKind,
    /// Weights to start from instead of the seeded random initialisation (`""`): a simsiam
    /// checkpoint or `model.safetensors` (the whole model), or a torchvision ResNet state dict
    /// as safetensors (`conv1.weight`, `layer1.0.bn1.running_mean`, ...; the backbone only,
    /// `fc.*` ignored). Files written before it existed mean `""`.
    #[serde(default)]
    pub init: PathBuf,
}

impl ModelConfig {
    /// The weights to start from, when `init` names any.
    pub fn init_path(&self) -> Option<&Path> {
        (!self.init.as_os_str().is_empty()).then_some(self.init.as_path())
    }
}

/// Optimiser, schedule, checkpoints and monitoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Base learning rate.
    pub base_lr: f64,
    /// `lr = base_lr * batch_size / 256` (the paper's rule) instead of `lr = base_lr`.
    pub scale_lr: bool,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay.
    pub weight_decay: f64,
    /// Keep the predictor's learning rate fixed.
    pub fixed_predictor_lr: bool,
    /// Linear warmup epochs.
    pub warmup_epochs: usize,
    /// `epoch` or `iteration` (when the cosine decay steps), `clock` (every iteration, over the
    /// `minutes` budget of training clock instead of the epochs, so that it ends at the budget
    /// however fast the machine runs; `epochs` is then only a bound), or `constant` (no decay).
    pub schedule: ScheduleStep,
    /// Seed of weights, shuffling and augmentation.
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` or `metal`.
    pub device: DeviceKind,
    /// `auto` (bf16 on CUDA, f32 elsewhere), `f32` or `bf16`: the dtype of convolutions and
    /// matrix products; weights, optimiser state, batch-norm statistics and the loss stay f32.
    /// Config files written before it existed mean `auto`.
    #[serde(default)]
    pub precision: PrecisionKind,
    /// Where checkpoints, metrics and figures go.
    pub output_dir: PathBuf,
    /// Steps between log lines.
    pub log_every: usize,
    /// Epochs between checkpoints.
    pub checkpoint_every: usize,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Epochs between kNN evaluations (0: only at the end).
    pub knn_every: usize,
    /// kNN neighbours.
    pub knn_k: usize,
    /// kNN temperature.
    pub knn_t: f64,
    /// Train an online linear probe on the labels during pretraining (Lightly's
    /// `OnlineLinearClassifier`): `"auto"` where the dataset has labels, `true` (an error on
    /// an unlabelled dataset) or `false`. Files written before it existed mean `"auto"`.
    #[serde(default)]
    pub online_probe: OnlineProbeSetting,
    /// A training-time budget in minutes (0: none): the run stops at the first step end after
    /// it, with a checkpoint, and `--resume` with a larger budget continues. The training
    /// clock counts the steps and the loading of their batches, not evaluation, logging or
    /// checkpoints, and is kept in checkpoints. Left out of the TOML when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minutes: f64,
    /// Minutes of the training clock at which the kNN monitor runs (e.g. `[15, 30, 45, 60]`),
    /// logged to `metrics.jsonl` as `knn_mark` lines. Left out of the TOML when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub knn_at_minutes: Vec<f64>,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

/// Keys left out of the TOML at their defaults, which overrides may still set.
fn omitted_at_default(section: &str, field: &str) -> bool {
    matches!((section, field), ("train", "minutes" | "knn_at_minutes"))
}

impl RunConfig {
    /// A named preset (see [`Preset`]).
    pub fn preset(name: &str) -> Result<Self> {
        Ok(Self::from_preset(name.parse()?))
    }

    /// The TOML file when given, else the named preset, with `section.key=value` overrides.
    pub fn load(file: Option<&Path>, preset: &str, overrides: &[String]) -> Result<Self> {
        let base = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::preset(preset)?,
        };
        base.with_overrides(overrides)
    }

    /// Reads a TOML file; unknown keys and bad values are errors naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    /// Applies `section.key=value` overrides; the value is a TOML literal (`5`, `0.1`, `true`,
    /// `"text"`) or bare text. A value the key's type refuses is an error naming the override.
    pub fn with_overrides(self, overrides: &[String]) -> Result<Self> {
        if overrides.is_empty() {
            return Ok(self);
        }
        let mut config = self;
        let mut value = toml::Value::try_from(&config).context("cannot represent the config as TOML")?;
        for item in overrides {
            let (key, raw) =
                item.split_once('=').with_context(|| format!("override `{item}` is not key=value"))?;
            let parts: Vec<&str> = key.trim().split('.').collect();
            let [section, field] = parts[..] else {
                bail!("override key `{key}` must be section.key, e.g. train.epochs");
            };
            let table = value
                .get_mut(section)
                .and_then(toml::Value::as_table_mut)
                .with_context(|| format!("unknown config section `{section}` in `{item}`"))?;
            if !table.contains_key(field) && !omitted_at_default(section, field) {
                bail!("unknown config key `{section}.{field}` in `{item}`");
            }
            let parsed = toml::from_str::<toml::Table>(&format!("v = {}", raw.trim()))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.trim().to_owned()));
            table.insert(field.to_owned(), parsed);
            // Read back after each one, so the error names the override at fault.
            config = value
                .clone()
                .try_into()
                .with_context(|| format!("invalid value in the override `{item}`"))?;
        }
        Ok(config)
    }

    /// Checks every range the types do not (counts, rates, probabilities, the kNN settings,
    /// the output folder), naming the key at fault; the named choices are enums, read or
    /// refused with the file or override. `simsiam pretrain` calls it before it touches a file.
    pub fn validate(&self) -> Result<()> {
        validate::validate(self)
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("cannot write the config as TOML")
    }

    /// The learning rate the optimiser starts from.
    pub fn lr(&self) -> f64 {
        if self.train.scale_lr {
            simsiam_train::scaled_lr(self.train.base_lr, self.train.batch_size)
        } else {
            self.train.base_lr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_through_toml() -> Result<()> {
        for &preset in Preset::ALL {
            let config = RunConfig::preset(preset.as_str())?;
            assert_eq!(config, RunConfig::from_preset(preset));
            let back: RunConfig = toml::from_str(&config.to_toml()?)?;
            assert_eq!(back, config, "{preset}");
        }
        let e = RunConfig::preset("nope").expect_err("no such preset").to_string();
        assert_eq!(
            e,
            "unknown preset `nope`: use lightly-example, lightly-cifar10-benchmark, satellite, cifar10-paper, imagenet-paper or cifar10-cpu"
        );
        Ok(())
    }

    #[test]
    fn cifar10_paper_scales_the_learning_rate() -> Result<()> {
        let c = RunConfig::preset("cifar10-paper")?;
        assert!((c.lr() - 0.06).abs() < 1e-12);
        assert_eq!((c.model.stem.as_str(), c.model.proj_output_dim, c.train.epochs), ("cifar", 2048, 800));
        Ok(())
    }

    #[test]
    fn overrides_set_known_keys_and_reject_the_rest() -> Result<()> {
        let c = RunConfig::preset("lightly-example")?.with_overrides(&[
            "train.epochs=3".into(),
            "data.path=/tmp/x".into(),
            "model.loss=\"symmetrized_cross_entropy\"".into(),
        ])?;
        assert_eq!(c.train.epochs, 3);
        assert_eq!(c.data.path, PathBuf::from("/tmp/x"));
        assert_eq!(c.model.loss, LossKind::SymmetrizedCrossEntropy);
        let base = RunConfig::preset("lightly-example")?;
        assert!(base.clone().with_overrides(&["train.epoch=3".into()]).is_err());
        assert!(base.clone().with_overrides(&["train.epochs=lots".into()]).is_err());
        assert!(base.clone().with_overrides(&["epochs".into()]).is_err());
        let c = base
            .clone()
            .with_overrides(&["train.minutes=60".into(), "train.knn_at_minutes=[15, 30]".into()])?;
        assert_eq!((c.train.minutes, c.train.knn_at_minutes.as_slice()), (60.0, &[15.0, 30.0][..]));
        assert!(c.to_toml()?.contains("minutes = 60.0") && !base.to_toml()?.contains("minutes"));
        assert_eq!(toml::from_str::<RunConfig>(&c.to_toml()?)?, c);
        let c = base
            .clone()
            .with_overrides(&["train.device=cuda:1".into(), "train.schedule=iteration".into()])?;
        assert_eq!((c.train.device, c.train.schedule), (DeviceKind::Cuda(Some(1)), ScheduleStep::Iteration));
        Ok(())
    }

    #[test]
    fn bad_choices_name_the_key_and_the_allowed_values() -> Result<()> {
        let base = RunConfig::preset("lightly-example")?;
        for (item, expected) in [
            ("model.stem=resnet", "unknown stem `resnet`: use imagenet or cifar"),
            ("data.dataset=imagenet", "unknown dataset `imagenet`: use cifar10, cifar100 or folder"),
            ("augment.normalize=none", "unknown normalisation `none`: use cifar10 or imagenet"),
            ("train.precision=f16", "unknown precision `f16`: use auto, f32 or bf16"),
            ("train.device=cuda:x", "unknown device `cuda:x`: use cpu, cuda, cuda:N or metal"),
            (
                "train.schedule=step",
                "unknown variant `step`, expected one of `iteration`, `epoch`, `constant`, `clock`",
            ),
        ] {
            let e = format!(
                "{:#}",
                base.clone().with_overrides(&["train.epochs=2".into(), item.into()]).expect_err(item)
            );
            assert!(e.contains(&format!("override `{item}`")) && e.contains(expected), "{item}: {e}");
        }
        let mut text = base.to_toml()?.replace("loss = \"negative_cosine\"", "loss = \"l1\"");
        let e = toml::from_str::<RunConfig>(&text).expect_err("l1").to_string();
        assert!(e.contains("loss = \"l1\"") && e.contains("unknown loss `l1`"), "{e}");
        // Files written before `train.precision` existed read as `auto`.
        text = base.to_toml()?.replace("precision = \"auto\"\n", "");
        assert!(!text.contains("precision"));
        assert_eq!(toml::from_str::<RunConfig>(&text)?, base);
        Ok(())
    }
}
