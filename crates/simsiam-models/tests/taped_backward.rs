//! The ResNet's own training backward pass (`Backbone::forward_taped`, used by
//! `SimSiam::forward_views_train`) gives exactly the gradients, outputs and running statistics
//! of candle's autograd over the same kernels, for both stems, both block families, `f32` and
//! `f64`; and it is not taken where it does not apply.
//!
//! One test function: the kernel options it switches are process-wide.

use candle::backprop::GradStore;
use candle::{DType, Device, Result, Tensor};
use candle_nn::VarMap;
use simsiam_loss::{NegativeCosineSimilarity, symmetric_loss};
use simsiam_models::kernels::{KernelOptions, set_kernel_options};
use simsiam_models::{
    Precision, PredictionHeadConfig, ProjectionHeadConfig, ResNet, ResNetConfig, SimSiam, Stem,
    seeded_var_builder,
};

fn model(config: &ResNetConfig, dtype: DType, varmap: &VarMap) -> Result<SimSiam<ResNet>> {
    let vb = seeded_var_builder(varmap, 11, dtype, &Device::Cpu);
    let backbone = config.init(vb.pp("backbone"))?;
    let d = config.feature_dim();
    SimSiam::new(backbone, &ProjectionHeadConfig::new(d, 16, 8), &PredictionHeadConfig::new(8, 4, 8), vb)
}

fn views(batch: usize, side: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
    let n = 2 * batch * 3 * side * side;
    let x: Vec<f32> = (0..n).map(|i| ((i * 7919 + 13) % 263) as f32 / 131.0 - 1.0).collect();
    let x = Tensor::from_vec(x, (2, batch, 3, side, side), &Device::Cpu)?.to_dtype(dtype)?;
    Ok((x.get(0)?, x.get(1)?))
}

/// One training step's outputs, gradients and whether the backbone's own pass ran.
struct Step {
    outputs: Vec<Tensor>,
    grads: GradStore,
    taped: bool,
}

fn step(model: &SimSiam<ResNet>, x0: &Tensor, x1: &Tensor, taped_backward: bool) -> Result<Step> {
    set_kernel_options(KernelOptions { taped_backward, ..KernelOptions::default() });
    let pass = model.forward_views_train(x0, x1)?;
    let out = &pass.out;
    let loss = symmetric_loss(&NegativeCosineSimilarity::default(), &out.p0, &out.z1, &out.p1, &out.z0)?;
    let outputs = vec![out.f0.clone(), out.f1.clone(), out.z0.clone(), out.p1.clone(), loss.clone()];
    let taped = pass.taped();
    let grads = pass.backward(&loss)?;
    set_kernel_options(KernelOptions::default());
    Ok(Step { outputs, grads, taped })
}

fn values(t: &Tensor) -> Result<Vec<f64>> {
    t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()
}

/// Exactly equal (a zero's sign aside: `-0 == 0`).
fn assert_same(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    assert_eq!(a.dims(), b.dims(), "{what}");
    let (a, b) = (values(a)?, values(b)?);
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(differ, 0, "{what}: {differ} of {} values differ", a.len());
    Ok(())
}

#[test]
fn the_taped_backward_pass_gives_autograds_gradients() -> Result<()> {
    let cases = [
        ("imagenet-stem resnet18", ResNetConfig::resnet18(Stem::ImageNet).with_width(8), DType::F32, 32),
        ("cifar-stem resnet18", ResNetConfig::resnet18(Stem::Cifar).with_width(4), DType::F32, 16),
        (
            "cifar-stem resnet18 zero-init residual, f64",
            ResNetConfig::resnet18(Stem::Cifar).with_width(4).with_zero_init_residual(true),
            DType::F64,
            12,
        ),
        ("cifar-stem resnet50", ResNetConfig::resnet50(Stem::Cifar).with_width(2), DType::F32, 12),
    ];
    for (name, config, dtype, side) in cases {
        let (x0, x1) = views(4, side, dtype)?;
        let (graph_vars, taped_vars) = (VarMap::new(), VarMap::new());
        let (graph_model, taped_model) =
            (model(&config, dtype, &graph_vars)?, model(&config, dtype, &taped_vars)?);
        let graph = step(&graph_model, &x0, &x1, false)?;
        let taped = step(&taped_model, &x0, &x1, true)?;
        assert!(!graph.taped, "{name}: the option off still took the taped pass");
        assert!(taped.taped, "{name}: the taped pass did not run");
        for (i, (a, b)) in graph.outputs.iter().zip(&taped.outputs).enumerate() {
            assert_same(a, b, &format!("{name}: output {i}"))?;
        }
        let (graph_data, taped_data) =
            (graph_vars.data().lock().expect("lock"), taped_vars.data().lock().expect("lock"));
        let mut compared = 0;
        for (var_name, graph_var) in graph_data.iter() {
            let taped_var = &taped_data[var_name];
            if var_name.contains("running_") {
                // Updated once by each step, by the same statistics.
                assert_same(graph_var.as_tensor(), taped_var.as_tensor(), &format!("{name}: {var_name}"))?;
                continue;
            }
            let g = graph.grads.get(graph_var.as_tensor());
            let t = taped.grads.get(taped_var.as_tensor());
            let (Some(g), Some(t)) = (g, t) else {
                panic!(
                    "{name}: `{var_name}` has a gradient on one side only ({} / {})",
                    g.is_some(),
                    t.is_some()
                );
            };
            assert_same(g, t, &format!("{name}: gradient of {var_name}"))?;
            compared += 1;
        }
        let backbone =
            graph_data.keys().filter(|k| k.starts_with("backbone.") && !k.contains("running_")).count();
        assert!(compared > backbone, "{name}: compared {compared} gradients");
    }

    // Where it does not apply, candle's graph does it all: bf16 convolutions, and candle's
    // stock kernels.
    let (x0, x1) = views(2, 16, DType::F32)?;
    let config = ResNetConfig::resnet18(Stem::Cifar).with_width(4);
    let bf16 = model(&config.clone().with_precision(Precision::Bf16), DType::F32, &VarMap::new())?;
    assert!(!bf16.forward_views_train(&x0, &x1)?.taped(), "bf16 took the taped pass");
    let f32_model = model(&config, DType::F32, &VarMap::new())?;
    assert!(f32_model.forward_views_train(&x0, &x1)?.taped());
    set_kernel_options(KernelOptions { stock: true, ..KernelOptions::default() });
    let stock = f32_model.forward_views_train(&x0, &x1)?.taped();
    set_kernel_options(KernelOptions::default());
    assert!(!stock, "the stock kernels took the taped pass");
    Ok(())
}
