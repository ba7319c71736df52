//! The stop-gradient (SimSiam paper, Eq. 3 and Section 4.1): no gradient reaches any
//! parameter through `z`, and removing the detach changes the gradients.

use candle::{DType, Device, ModuleT, Result, Tensor};
use candle_nn::VarMap;
use simsiam_loss::{NegativeCosineSimilarity, symmetric_loss};
use simsiam_models::{
    PredictionHeadConfig, ProjectionHeadConfig, ResNet, ResNetConfig, SimSiam, Stem, seeded_var_builder,
};

fn model(varmap: &VarMap) -> Result<SimSiam<ResNet>> {
    let vb = seeded_var_builder(varmap, 3, DType::F32, &Device::Cpu);
    let backbone = ResNetConfig::resnet18(Stem::Cifar).with_width(4).init(vb.pp("backbone"))?;
    SimSiam::new(backbone, &ProjectionHeadConfig::new(32, 32, 16), &PredictionHeadConfig::new(16, 8, 16), vb)
}

fn views() -> Result<(Tensor, Tensor)> {
    let x: Vec<f32> = (0..2 * 4 * 3 * 8 * 8).map(|i| ((i * 7919) % 257) as f32 / 128.0 - 1.0).collect();
    let x = Tensor::from_vec(x, (2, 4, 3, 8, 8), &Device::Cpu)?;
    Ok((x.get(0)?, x.get(1)?))
}

#[test]
fn no_gradient_flows_through_z() -> Result<()> {
    let varmap = VarMap::new();
    let model = model(&varmap)?;
    let (x0, x1) = views()?;
    let out = model.forward_views(&x0, &x1, true)?;
    let grads = (out.z0.sum_all()? + out.z1.sum_all()?)?.backward()?;
    for var in varmap.all_vars() {
        assert!(grads.get(var.as_tensor()).is_none(), "a parameter got a gradient through z");
    }
    // Through p, every trainable parameter gets one.
    let grads = (out.p0.sum_all()? + out.p1.sum_all()?)?.backward()?;
    let data = varmap.data().lock().expect("varmap lock");
    for (name, var) in data.iter().filter(|(n, _)| !n.contains("running_")) {
        assert!(grads.get(var.as_tensor()).is_some(), "`{name}` got no gradient through p");
    }
    Ok(())
}

#[test]
fn removing_the_detach_changes_the_gradients() -> Result<()> {
    let varmap = VarMap::new();
    let model = model(&varmap)?;
    let (x0, x1) = views()?;
    let loss_fn = NegativeCosineSimilarity::default();

    // The same computation by hand, with and without the stop-gradient.
    let by_hand = |x: &Tensor| -> Result<(Tensor, Tensor)> {
        let z = model.projection_head().forward_t(&model.backbone().forward_t(x, true)?, true)?;
        let p = model.prediction_head().forward_t(&z, true)?;
        Ok((z, p))
    };
    let (z0, p0) = by_hand(&x0)?;
    let (z1, p1) = by_hand(&x1)?;
    let with_detach = symmetric_loss(&loss_fn, &p0, &z1.detach(), &p1, &z0.detach())?.backward()?;
    let without = symmetric_loss(&loss_fn, &p0, &z1, &p1, &z0)?.backward()?;

    let out = model.forward_views(&x0, &x1, true)?;
    let ours = symmetric_loss(&loss_fn, &out.p0, &out.z1, &out.p1, &out.z0)?.backward()?;

    let w = varmap.data().lock().expect("varmap lock")["backbone.conv1.weight"].as_tensor().clone();
    let g = |grads: &candle::backprop::GradStore| -> Result<Vec<f32>> {
        grads.get(&w).expect("conv1 gradient").flatten_all()?.to_vec1()
    };
    let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    let (ours, with_detach, without) = (g(&ours)?, g(&with_detach)?, g(&without)?);
    let scale = with_detach.iter().map(|v| v.abs()).fold(0.0, f32::max);
    assert!(max_diff(&ours, &with_detach) <= 1e-6 * scale.max(1.0), "the model's z is not the detached z");
    assert!(max_diff(&ours, &without) > 1e-3 * scale, "removing the detach changed nothing");
    Ok(())
}
