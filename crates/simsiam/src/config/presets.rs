//! The named presets: five published recipes and one of ours. The augmentation of each is
//! defined once, in `simsiam_augment::SimSiamConfig` (`lightly_example()`, `satellite()`, ...);
//! the model and training sections are defined here. Sources, by file and line:
//!
//! - `lightly-example`: lightly-ai/lightly `examples/pytorch/simsiam.py`.
//! - `lightly-cifar10-benchmark`: lightly-ai/lightly
//!   `docs/source/getting_started/benchmarks/cifar10_benchmark.py`.
//! - `satellite`: lightly-ai/lightly `docs/source/tutorials_source/package/tutorial_simsiam_esa.py`.
//! - `cifar10-paper`: arXiv:2011.10566 (appendix "CIFAR experiments") with the model of
//!   facebookresearch/simsiam `simsiam/builder.py`.
//! - `imagenet-paper`: facebookresearch/simsiam `main_simsiam.py` and `README.md`.
//! - `cifar10-cpu` (ours): `docs/training.md`, sections "Recipe sweep for a CPU" and "A run
//!   that fits in about 30 CPU minutes".
//!
//! The settings no recipe has (loader threads, device, logging, checkpoints, the kNN monitor's
//! schedule where the source has no monitor) are ours and the same in every preset; results do
//! not depend on them. `docs/presets.md` lists every value and its line;
//! `tests/preset_sources.rs` compares each one.

use std::path::PathBuf;

use simsiam_augment::SimSiamConfig;
use simsiam_train::ScheduleStep;

use super::{
    AugmentConfig, Backbone, DataConfig, DatasetKind, DeviceKind, EvalResizeKind, LossKind, ModelConfig,
    OnlineProbeSetting, PrecisionKind, Preset, RunConfig, StemKind, TrainConfig,
};

impl RunConfig {
    /// The configuration of `preset`.
    pub fn from_preset(preset: Preset) -> Self {
        match preset {
            Preset::LightlyExample => lightly_example(),
            Preset::LightlyCifar10Benchmark => lightly_cifar10_benchmark(),
            Preset::Satellite => satellite(),
            Preset::Cifar10Paper => cifar10_paper(),
            Preset::ImagenetPaper => imagenet_paper(),
            Preset::Cifar10Cpu => cifar10_cpu(),
        }
    }
}

/// CIFAR-10 from `data/cifar10` (`simsiam download` puts it there).
fn cifar10_data() -> DataConfig {
    DataConfig { dataset: DatasetKind::Cifar10, path: "data/cifar10".into(), limit: 0, workers: 2 }
}

/// ResNet-18 (torchvision's layout, 64 channels first) and the negative cosine loss; heads
/// to be set.
fn resnet18(stem: StemKind) -> ModelConfig {
    ModelConfig {
        backbone: Backbone::Resnet18,
        stem,
        width: 64,
        zero_init_residual: false,
        proj_hidden_dim: 2048,
        proj_output_dim: 2048,
        proj_layers: 3,
        proj_last_bn_affine: false,
        pred_hidden_dim: 512,
        loss: LossKind::NegativeCosine,
        init: PathBuf::new(),
    }
}

/// The settings of ours that every preset shares; the recipe's values to be set.
fn ours(name: &str) -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size: 256,
        base_lr: 0.05,
        scale_lr: false,
        momentum: 0.9,
        weight_decay: 0.0,
        fixed_predictor_lr: false,
        warmup_epochs: 0,
        schedule: ScheduleStep::Epoch,
        seed: 0,
        device: DeviceKind::Cpu,
        precision: PrecisionKind::Auto,
        output_dir: format!("runs/{name}").into(),
        log_every: 20,
        checkpoint_every: 1,
        keep_checkpoints: 3,
        knn_every: 1,
        knn_k: 200,
        knn_t: 0.1,
        online_probe: OnlineProbeSetting::Auto,
        minutes: 0.0,
        knn_at_minutes: Vec::new(),
    }
}

/// `examples/pytorch/simsiam.py`: torchvision's resnet18 (line 32), heads
/// `SimSiamProjectionHead(512, 512, 128)` and `SimSiamPredictionHead(128, 64, 128)` (lines
/// 21-22), CIFAR-10 (line 40) in batches of 256 (line 48), `SGD(lr=0.06)` with no momentum, no
/// weight decay and no scheduler (line 55), 10 epochs (line 58).
fn lightly_example() -> RunConfig {
    RunConfig {
        data: cifar10_data(),
        augment: AugmentConfig::from_simsiam(&SimSiamConfig::lightly_example(), EvalResizeKind::CenterCrop),
        model: ModelConfig {
            proj_hidden_dim: 512,
            proj_output_dim: 128,
            pred_hidden_dim: 64,
            ..resnet18(StemKind::Imagenet)
        },
        train: TrainConfig {
            epochs: 10,
            batch_size: 256,
            base_lr: 0.06,
            momentum: 0.0,
            weight_decay: 0.0,
            schedule: ScheduleStep::Constant,
            ..ours("lightly-example")
        },
    }
}

/// `cifar10_benchmark.py`, class `SimSiamModel` (lines 392-433): `ResNetGenerator("resnet-18")`
/// (3x3 stem, no max-pool), a two-layer projection head 512-2048-2048 whose last BN is affine
/// (lines 402-407), `SimSiamPredictionHead(2048, 512, 2048)` (line 400), SGD lr 0.06 unscaled
/// with momentum 0.9 and weight decay 5e-4 (lines 426-431), `CosineAnnealingLR(optim,
/// max_epochs)` stepped per epoch (line 432); 200 epochs (line 103), batch 128 (line 125),
/// kNN k 200 and t 0.1 (lines 105-106) after every epoch (`BenchmarkModule`'s validation),
/// seed 0 (lines 946-947).
fn lightly_cifar10_benchmark() -> RunConfig {
    RunConfig {
        data: cifar10_data(),
        augment: AugmentConfig::from_simsiam(
            &SimSiamConfig::lightly_cifar10_benchmark(),
            EvalResizeKind::CenterCrop,
        ),
        model: ModelConfig { proj_layers: 2, proj_last_bn_affine: true, ..resnet18(StemKind::Cifar) },
        train: TrainConfig {
            epochs: 200,
            batch_size: 128,
            base_lr: 0.06,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: ScheduleStep::Epoch,
            ..ours("lightly-cifar10-benchmark")
        },
    }
}

/// `tutorial_simsiam_esa.py`: a folder (line 109), batch 128, 50 epochs, input 256 (lines
/// 57-60), heads 512-512-512 and 512-128-512 (lines 63-67, 157-158) on torchvision's resnet18
/// (line 174), SGD lr `0.05 * batch_size / 256` with momentum 0.9 and weight decay 5e-4 and
/// no scheduler (lines 186-188), `torch.manual_seed(0)` (line 74); embeddings from a plain
/// `Resize((256, 256))` (lines 123-131).
fn satellite() -> RunConfig {
    RunConfig {
        data: DataConfig { dataset: DatasetKind::Folder, path: "images".into(), ..cifar10_data() },
        augment: AugmentConfig::from_simsiam(&SimSiamConfig::satellite(), EvalResizeKind::Resize),
        model: ModelConfig {
            proj_hidden_dim: 512,
            proj_output_dim: 512,
            pred_hidden_dim: 128,
            ..resnet18(StemKind::Imagenet)
        },
        train: TrainConfig {
            epochs: 50,
            batch_size: 128,
            base_lr: 0.05,
            scale_lr: true,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: ScheduleStep::Constant,
            ..ours("satellite")
        },
    }
}

/// The paper's CIFAR-10 recipe (arXiv:2011.10566, appendix "CIFAR experiments"): the ResNet-18
/// variant for 32-pixel images, a two-layer projection MLP of 2048, SGD base lr 0.03 scaled
/// by batch / 256, momentum 0.9, weight decay 5e-4, batch 512, cosine decay over 800 epochs.
/// From the official code: `zero_init_residual=True` (`simsiam/builder.py` line 24), the
/// output BN without affine (line 35), predictor width 512 (`main_simsiam.py` line 88), the
/// per-epoch cosine (lines 257, 359-366) and the fixed predictor lr of its README's command
/// (`README.md` line 32). kNN every 10 epochs (the paper's kNN monitor has no schedule: ours).
fn cifar10_paper() -> RunConfig {
    RunConfig {
        data: cifar10_data(),
        augment: AugmentConfig::from_simsiam(&SimSiamConfig::cifar10_paper(), EvalResizeKind::CenterCrop),
        model: ModelConfig { zero_init_residual: true, proj_layers: 2, ..resnet18(StemKind::Cifar) },
        train: TrainConfig {
            epochs: 800,
            batch_size: 512,
            base_lr: 0.03,
            scale_lr: true,
            momentum: 0.9,
            weight_decay: 5e-4,
            fixed_predictor_lr: true,
            schedule: ScheduleStep::Epoch,
            knn_every: 10,
            ..ours("cifar10-paper")
        },
    }
}

/// The official ImageNet recipe, facebookresearch/simsiam `main_simsiam.py`: ResNet-50 (line
/// 40), 100 epochs (line 47), batch 512 (line 51), base lr 0.05 (line 56) scaled by batch / 256
/// (line 157), momentum 0.9 (line 58), weight decay 1e-4 (line 60), dim 2048 and predictor
/// 512 (lines 86-89), per-epoch cosine (lines 257, 359-366), images from `data/train` (line
/// 224); `simsiam/builder.py`: `zero_init_residual=True` (line 24), a three-layer projector of
/// 2048 with a non-affine output BN (lines 27-35); `README.md` line 32: `--fix-pred-lr`;
/// evaluation by resize 256 and centre crop 224 (`main_lincls.py` lines 283-285).
fn imagenet_paper() -> RunConfig {
    RunConfig {
        data: DataConfig {
            dataset: DatasetKind::Folder,
            path: "data/imagenet/train".into(),
            ..cifar10_data()
        },
        augment: AugmentConfig::from_simsiam(&SimSiamConfig::imagenet_paper(), EvalResizeKind::CenterCrop),
        model: ModelConfig {
            backbone: Backbone::Resnet50,
            zero_init_residual: true,
            ..resnet18(StemKind::Imagenet)
        },
        train: TrainConfig {
            epochs: 100,
            batch_size: 512,
            base_lr: 0.05,
            scale_lr: true,
            momentum: 0.9,
            weight_decay: 1e-4,
            fixed_predictor_lr: true,
            schedule: ScheduleStep::Epoch,
            knn_every: 10,
            ..ours("imagenet-paper")
        },
    }
}

/// Ours: the recipe that learns most per CPU minute on CIFAR-10, chosen by the recipe sweep
/// of `docs/training.md` ("Recipe sweep for a CPU"). It is the width-16 recipe of
/// `docs/training.md`'s "A run that fits in about 30 CPU minutes": torchvision's ResNet-18
/// layout with the ImageNet stem at a quarter of the width (16, so 128 features), the
/// `lightly-example` preset's heads (projection 128-512-128 in three layers with a non-affine
/// last BN, predictor 128-64-128), `SimSiamConfig::cifar10_cpu()`'s views (Lightly's
/// `SimSiamTransform(input_size=32)` without blur, on CIFAR-10's statistics), batch 128, SGD
/// lr 0.06 unscaled with momentum 0.9 and weight decay 5e-4, a fixed predictor lr, no warmup,
/// cosine per iteration; over 200 epochs (as Lightly's CIFAR-10 benchmark), with the kNN
/// monitor (k 200, t 0.1) every 5 epochs.
fn cifar10_cpu() -> RunConfig {
    RunConfig {
        data: cifar10_data(),
        augment: AugmentConfig::from_simsiam(&SimSiamConfig::cifar10_cpu(), EvalResizeKind::CenterCrop),
        model: ModelConfig {
            backbone: Backbone::Resnet18,
            width: 16,
            zero_init_residual: false,
            proj_hidden_dim: 512,
            proj_output_dim: 128,
            proj_layers: 3,
            proj_last_bn_affine: false,
            pred_hidden_dim: 64,
            loss: LossKind::NegativeCosine,
            ..resnet18(StemKind::Imagenet)
        },
        train: TrainConfig {
            epochs: 200,
            batch_size: 128,
            base_lr: 0.06,
            scale_lr: false,
            momentum: 0.9,
            weight_decay: 5e-4,
            fixed_predictor_lr: true,
            warmup_epochs: 0,
            schedule: ScheduleStep::Iteration,
            knn_every: 5,
            knn_k: 200,
            knn_t: 0.1,
            ..ours("cifar10-cpu")
        },
    }
}
