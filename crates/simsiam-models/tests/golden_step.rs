//! One SimSiam training step against PyTorch: the same weights and views give the same
//! outputs, loss, parameter gradients and BatchNorm running statistics.
//!
//! The fixtures come from `tools/golden/make_models_golden.py` (torch 2.9.1,
//! torchvision 0.24.1): `python tools/golden/make_models_golden.py` from the repository root.
//! The script draws inputs that keep every ReLU input at least 1e-5 from zero, so that no
//! ReLU mask, and no gradient, hinges on the last bit of a convolution's rounding.

mod common;

use std::collections::HashMap;

use candle::{DType, Device, ModuleT, Result, Tensor};
use candle_nn::VarMap;
use common::{Report, load};
use simsiam_loss::{NegativeCosineSimilarity, symmetric_loss};
use simsiam_models::kernels::{KernelOptions, Winograd, kernel_options, set_kernel_options};
use simsiam_models::{
    PredictionHeadConfig, ProjectionHeadConfig, ResNet, ResNetConfig, SimSiam, Stem, seeded_var_builder,
};

/// Relative error allowed per tensor, and the rms below which a reference is zero up to
/// rounding, for float32 and float64.
fn tolerances(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F64 => (1e-9, 1e-15),
        _ => (1e-4, 1e-7),
    }
}

/// The relative error allowed for parameter gradients: as [`tolerances`], except 2e-4 in
/// float32 when `SIMSIAM_WINOGRAD=1` sends 3x3 convolutions through Winograd F(2x2, 3x3)
/// (`cargo xtask ci` runs these tests that way too; by default only wide maps and 512-channel
/// layers take it, and these fixtures have neither).
/// Winograd rounds differently from PyTorch's direct convolution, and gradients are sums over
/// the batch that cancel (BN parameters most): measured on these fixtures, at most 9.3e-5
/// with im2col and 1.2e-4 with Winograd. The convolutions themselves match direct sums within
/// 1e-5 either way (the kernels' unit tests).
fn gradient_tolerance(dtype: DType) -> f64 {
    let winograd = kernel_options().winograd == Winograd::Always;
    match dtype {
        DType::F32 if winograd => 2e-4,
        _ => tolerances(dtype).0,
    }
}

struct Case {
    fixture: &'static str,
    dtype: DType,
    backbone: ResNetConfig,
    projection: ProjectionHeadConfig,
    prediction: PredictionHeadConfig,
}

/// Builds the model with random weights, then overwrites every variable with the fixture's
/// `w.<name>` tensor, checking that the names match both ways.
fn build(case: &Case, fx: &HashMap<String, Tensor>) -> Result<(SimSiam<ResNet>, VarMap)> {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 0, case.dtype, &Device::Cpu);
    let backbone = case.backbone.init(vb.pp("backbone"))?;
    let model = SimSiam::new(backbone, &case.projection, &case.prediction, vb)?;
    let vars = varmap.data().lock().expect("varmap lock");
    for (name, var) in vars.iter() {
        let value = fx.get(&format!("w.{name}")).unwrap_or_else(|| panic!("fixture lacks `{name}`"));
        var.set(value)?;
    }
    let fixture_names = fx.keys().filter(|k| k.starts_with("w.")).count();
    assert_eq!(fixture_names, vars.len(), "PyTorch's state dict and ours differ in size");
    drop(vars);
    Ok((model, varmap))
}

fn check(case: Case) -> Result<()> {
    // The test binary, like any program, installs the kernels' options: `SIMSIAM_WINOGRAD=1`
    // and `SIMSIAM_ISA=...` from `cargo xtask ci` choose the paths under test.
    let options = KernelOptions::from_vars(|k| std::env::var(k).ok()).map_err(candle::Error::Msg)?;
    set_kernel_options(options);
    let fx = load(case.fixture)?;
    let (model, varmap) = build(&case, &fx)?;
    let (x0, x1) = (&fx["x0"], &fx["x1"]);

    let (tol, zero) = tolerances(case.dtype);
    let mut report = Report::default();
    // The trainer's path: the backbone's own backward pass (tests/taped_backward.rs shows it
    // gives candle's autograd's gradients exactly).
    let pass = model.forward_views_train(x0, x1)?;
    assert!(pass.taped(), "the training step did not take the backbone's own backward pass");
    let out = pass.out.clone();
    let loss = symmetric_loss(&NegativeCosineSimilarity::default(), &out.p0, &out.z1, &out.p1, &out.z0)?;
    for (name, ours) in [("z0", &out.z0), ("z1", &out.z1), ("p0", &out.p0), ("p1", &out.p1)] {
        report.check(name, ours, &fx[name], tol, zero)?;
    }
    report.check("loss", &loss.reshape(1)?, &fx["loss"], tol, zero)?;

    let grads = pass.backward(&loss)?;
    let vars = varmap.data().lock().expect("varmap lock");
    let mut keys: Vec<&String> = fx.keys().collect();
    keys.sort();
    for key in keys {
        let reference = &fx[key];
        if let Some(name) = key.strip_prefix("grad.") {
            let grad =
                grads.get(vars[name].as_tensor()).unwrap_or_else(|| panic!("no gradient for `{name}`"));
            report.check(key, grad, reference, gradient_tolerance(case.dtype), zero)?;
        } else if let Some(name) = key.strip_prefix("after.") {
            report.check(key, vars[name].as_tensor(), reference, tol, zero)?;
        }
    }
    // Running statistics receive no gradient: the optimiser must never see them.
    for (name, var) in vars.iter() {
        if name.ends_with("running_mean") || name.ends_with("running_var") {
            assert!(grads.get(var.as_tensor()).is_none(), "`{name}` got a gradient");
        }
    }
    drop(vars);

    let eval = model.forward_view(x0, false)?;
    report.check("eval.z0", &eval.z, &fx["eval.z0"], tol, zero)?;
    report.check("eval.p0", &eval.p, &fx["eval.p0"], tol, zero)?;
    report.check("eval.f0", &model.backbone().forward_t(x0, false)?, &fx["eval.f0"], tol, zero)?;
    // Outputs, loss, every parameter gradient, every running statistic, eval outputs.
    let expected = fx.keys().filter(|k| k.starts_with("grad.") || k.starts_with("after.")).count() + 8;
    report.finish(expected);
    Ok(())
}

#[test]
fn resnet18_imagenet_stem_step_matches_pytorch() -> Result<()> {
    check(Case {
        fixture: "step_resnet18_imagenet.safetensors",
        dtype: DType::F32,
        backbone: ResNetConfig::resnet18(Stem::ImageNet).with_width(8),
        projection: ProjectionHeadConfig::new(64, 64, 32),
        prediction: PredictionHeadConfig::new(32, 16, 32),
    })
}

#[test]
fn resnet18_cifar_stem_step_matches_pytorch() -> Result<()> {
    check(Case {
        fixture: "step_resnet18_cifar.safetensors",
        dtype: DType::F32,
        backbone: ResNetConfig::resnet18(Stem::Cifar).with_width(8),
        projection: ProjectionHeadConfig {
            input_dim: 64,
            hidden_dim: 48,
            output_dim: 24,
            num_layers: 2,
            last_bn_affine: true,
            precision: Default::default(),
            batch_norm: Default::default(),
        },
        prediction: PredictionHeadConfig::new(24, 12, 24),
    })
}

#[test]
fn bottleneck_resnet_step_matches_pytorch() -> Result<()> {
    let backbone = ResNetConfig { layers: [1, 1, 1, 1], ..ResNetConfig::resnet50(Stem::Cifar).with_width(8) };
    check(Case {
        fixture: "step_bottleneck_cifar.safetensors",
        dtype: DType::F32,
        backbone,
        projection: ProjectionHeadConfig::new(256, 64, 32),
        prediction: PredictionHeadConfig::new(32, 16, 32),
    })
}

/// The full-depth ResNet-50 in float64: PyTorch's own float32 gradients of this narrow,
/// 50-layer network drift 3e-4 from exact ones, so float32 would test rounding, not us.
#[test]
fn resnet50_step_matches_pytorch_in_float64() -> Result<()> {
    check(Case {
        fixture: "step_resnet50_cifar_f64.safetensors",
        dtype: DType::F64,
        backbone: ResNetConfig::resnet50(Stem::Cifar).with_width(4),
        projection: ProjectionHeadConfig::new(128, 64, 32),
        prediction: PredictionHeadConfig::new(32, 16, 32),
    })
}
