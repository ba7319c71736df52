//! The two benchmark models, shared by `bench_step` and `bench_step_gpu` so that they time the
//! same networks as each other and as `tools/bench/bench_step_torch*.py`.

use candle::{DType, Device, Result};
use candle_nn::VarMap;
use simsiam_models::{
    Precision, PredictionHeadConfig, ProjectionHeadConfig, ResNet, ResNetConfig, SimSiam, Stem,
    seeded_var_builder,
};

/// `imagenet-r18` or `cifar-r18`, seeded with 0, computing in `precision` on `dev`.
pub fn build(name: &str, precision: Precision, varmap: &VarMap, dev: &Device) -> Result<SimSiam<ResNet>> {
    let vb = seeded_var_builder(varmap, 0, DType::F32, dev);
    let (stem, projection, prediction) = match name {
        // Lightly's CIFAR example: torchvision's resnet18, heads 512-512-128 and 128-64-128.
        "imagenet-r18" => (
            Stem::ImageNet,
            ProjectionHeadConfig::new(512, 512, 128),
            PredictionHeadConfig::new(128, 64, 128),
        ),
        // The SimSiam paper's CIFAR ResNet-18 with Lightly's default 2048-wide heads.
        "cifar-r18" => (
            Stem::Cifar,
            ProjectionHeadConfig::new(512, 2048, 2048),
            PredictionHeadConfig::new(2048, 512, 2048),
        ),
        _ => candle::bail!("unknown model {name}: imagenet-r18 or cifar-r18"),
    };
    let backbone = ResNetConfig::resnet18(stem).with_precision(precision).init(vb.pp("backbone"))?;
    let projection = projection.with_precision(precision);
    SimSiam::new(backbone, &projection, &prediction.with_precision(precision), vb)
}
