//! bf16 mixed precision on the CPU: convolutions and matrix products in bf16 stay close to
//! f32, and a SimSiam step in bf16 runs and keeps every variable and gradient f32.
//!
//! Tolerances: bf16 keeps 8 bits of mantissa (relative rounding up to 2^-9 = 0.2%, products
//! accumulate in f32). One convolution: 1% forward, 2% weight gradient. The whole model's
//! outputs: 5%. A whole step's gradients at initialisation are not comparable element by
//! element: a 1e-3 relative perturbation of the input alone moves the conv-weight gradients of
//! this model by 15-20% in f32 (ReLU masks and max-pool winners flip, batch norm over 8
//! values amplifies), so the step test checks the loss (0.05 absolute, the loss is a cosine)
//! and that the gradients point the same way (cosine similarity above 0.5).

use candle::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::VarMap;
use simsiam_loss::{NegativeCosineSimilarity, symmetric_loss};
use simsiam_models::{
    Conv2d, Conv2dConfig, Precision, PredictionHeadConfig, ProjectionHeadConfig, ResNet, ResNetConfig,
    SimSiam, Stem, seeded_var_builder,
};

fn model(varmap: &VarMap, precision: Precision) -> Result<SimSiam<ResNet>> {
    // Both precisions build from the same VarMap: the second finds the first's variables.
    let vb = seeded_var_builder(varmap, 3, DType::F32, &Device::Cpu);
    let resnet = ResNetConfig::resnet18(Stem::ImageNet).with_width(8).with_precision(precision);
    let backbone = resnet.init(vb.pp("backbone"))?;
    SimSiam::new(
        backbone,
        &ProjectionHeadConfig::new(resnet.feature_dim(), 32, 16).with_precision(precision),
        &PredictionHeadConfig::new(16, 8, 16).with_precision(precision),
        vb,
    )
}

/// The loss and the gradient of every trainable variable (name, gradient), sorted by name.
fn step(
    model: &SimSiam<ResNet>,
    varmap: &VarMap,
    x0: &Tensor,
    x1: &Tensor,
) -> Result<(f32, Vec<(String, Tensor)>)> {
    let out = model.forward_views(x0, x1, true)?;
    let loss = symmetric_loss(&NegativeCosineSimilarity::default(), &out.p0, &out.z1, &out.p1, &out.z0)?;
    assert_eq!(loss.dtype(), DType::F32, "the loss stays f32");
    let grads = loss.backward()?;
    let vars = varmap.data().lock().expect("varmap lock");
    let mut named: Vec<(String, Tensor)> = vars
        .iter()
        .filter(|(n, _)| !n.contains("running_"))
        .map(|(n, v)| (n.clone(), grads.get(v.as_tensor()).cloned().expect("every parameter has a gradient")))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((loss.to_scalar::<f32>()?, named))
}

/// Deterministic values in [-1, 1) from a seeded LCG (candle's CPU generator cannot be seeded).
fn values(shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

fn rel_norm(a: &Tensor, b: &Tensor) -> Result<f64> {
    let d = (a - b)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    let n = b.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    Ok((d / n.max(1e-30)).sqrt())
}

#[test]
fn bf16_step_is_close_to_f32_and_keeps_f32_master_weights() -> Result<()> {
    let varmap = VarMap::new();
    let f32_model = model(&varmap, Precision::F32)?;
    let bf16_model = model(&varmap, Precision::Bf16)?;
    let x0 = values(&[8, 3, 32, 32], 1)?;
    let x1 = values(&[8, 3, 32, 32], 2)?;

    // The outputs: bf16 rounding through ~20 layers, relative to their norm.
    let out32 = f32_model.forward_views(&x0, &x1, false)?;
    let out16 = bf16_model.forward_views(&x0, &x1, false)?;
    for (what, a, b) in [("z0", &out16.z0, &out32.z0), ("p0", &out16.p0, &out32.p0)] {
        let e = rel_norm(a, b)?;
        println!("{what}: relative error {e:.2e}");
        assert_eq!(a.dtype(), DType::F32, "{what} comes back f32");
        assert!(e < 0.05, "{what} differs by {e:.2e}");
    }

    let (loss32, grads32) = step(&f32_model, &varmap, &x0, &x1)?;
    let (loss16, grads16) = step(&bf16_model, &varmap, &x0, &x1)?;
    let loss_err = (loss16 - loss32).abs();
    println!("loss f32 {loss32} bf16 {loss16}: difference {loss_err:.2e}");
    assert!(loss_err < 0.05, "loss differs by {loss_err:.2e}");

    let (mut dot, mut n16, mut n32) = (0.0, 0.0, 0.0);
    for ((name, g16), (_, g32)) in grads16.iter().zip(&grads32) {
        assert_eq!(g16.dtype(), DType::F32, "{name}: gradient of an f32 master weight is f32");
        dot += (g16 * g32)?.sum_all()?.to_scalar::<f32>()? as f64;
        n16 += g16.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        n32 += g32.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let cosine = dot / (n16 * n32).sqrt();
    println!("all gradients: cosine similarity {cosine:.3} over {} parameters", grads16.len());
    assert!(cosine > 0.5, "bf16 gradients point elsewhere: cosine {cosine:.3}");

    // An SGD update leaves the master weights f32.
    for (name, var) in varmap.data().lock().expect("varmap lock").iter() {
        if let Some((_, g)) = grads16.iter().find(|(n, _)| n == name) {
            var.set(&(var.as_tensor() - (g * 0.01)?)?)?;
        }
        assert_eq!(var.dtype(), DType::F32, "{name} stays f32");
    }
    let (after, _) = step(&bf16_model, &varmap, &x0, &x1)?;
    assert!(after.is_finite());
    Ok(())
}

#[test]
fn one_bf16_convolution_is_close_to_f32() -> Result<()> {
    let x = values(&[4, 8, 11, 9], 1)?;
    let w = Var::from_tensor(&(values(&[6, 8, 3, 3], 3)? * 0.2)?)?;
    let r = values(&[4, 6, 6, 5], 4)?;
    let mut out = Vec::new();
    for p in [Precision::F32, Precision::Bf16] {
        let y = Conv2d::new(w.as_tensor().clone(), Conv2dConfig { stride: 2, padding: 1 })
            .with_precision(p)
            .forward(&x)?
            .to_dtype(DType::F32)?;
        let g = (&y * &r)?.sum_all()?.backward()?.get(w.as_tensor()).cloned().expect("a weight gradient");
        assert_eq!(g.dtype(), DType::F32);
        out.push((y, g));
    }
    let (y_err, g_err) = (rel_norm(&out[1].0, &out[0].0)?, rel_norm(&out[1].1, &out[0].1)?);
    println!("one convolution: forward {y_err:.2e}, weight gradient {g_err:.2e}");
    assert!(y_err < 1e-2 && g_err < 2e-2, "forward {y_err:.2e}, weight gradient {g_err:.2e}");
    Ok(())
}

#[test]
fn f32_precision_is_the_default() {
    assert_eq!(ResNetConfig::resnet18(Stem::Cifar).precision, Precision::F32);
    assert_eq!(ProjectionHeadConfig::lightly().precision, Precision::F32);
    assert_eq!(PredictionHeadConfig::lightly().precision, Precision::F32);
    assert_eq!(Precision::parse("bf16"), Some(Precision::Bf16));
    assert_eq!(Precision::parse("fp8"), None);
}
