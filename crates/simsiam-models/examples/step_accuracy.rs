//! How close one training step of a trained `cifar10-cpu` model comes to float64, on our
//! kernels and on candle's stock ops: for every parameter gradient, `||g - g64|| / ||g64||`
//! for ours in f32, for the stock ops in f32 and for ours in f64, `g64` being the stock ops
//! in f64 on the same weights and images. The per-op tests compare ours with the stock ops on
//! random networks; this looks for an error that shows only on trained weights, and for one
//! that is biased (ours much further from f64 than the stock f32 ops, batch after batch).
//! Ours in f64 should agree with the stock f64 ops to about 1e-14; in f32 either side strays
//! by 1e-4 to 1e-2 on some batches (docs/training.md), so compare many.
//!
//! ```sh
//! cargo run --release -p simsiam-models --example step_accuracy -- \
//!     RUN/model.safetensors data/cifar10/cifar-10-batches-bin/test_batch.bin [FIRST_IMAGE]
//! ```
//!
//! The model is the recipe's: torchvision's ResNet-18 layout at width 16 with the ImageNet
//! stem, heads 128-512-128 (three layers) and 128-64-128. The images are the file's 128 from
//! `FIRST_IMAGE` (a third argument, 0 by default), normalised with CIFAR-10's statistics; the
//! second view is the first flipped left to right.

use std::collections::HashMap;

use candle::{DType, Device, ModuleT, Result, Tensor};
use candle_nn::VarMap;
use simsiam_loss::{NegativeCosineSimilarity, symmetric_loss};
use simsiam_models::kernels::{KernelOptions, set_kernel_options};
use simsiam_models::{
    PredictionHeadConfig, ProjectionHeadConfig, ResNet, ResNetConfig, SimSiam, Stem, seeded_var_builder,
};

const BATCH: usize = 128;
const MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
const STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

fn model(dtype: DType, weights: &HashMap<String, Tensor>) -> Result<(SimSiam<ResNet>, VarMap)> {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 0, dtype, &Device::Cpu);
    let backbone = ResNetConfig::resnet18(Stem::ImageNet).with_width(16).init(vb.pp("backbone"))?;
    let model = SimSiam::new(
        backbone,
        &ProjectionHeadConfig::new(128, 512, 128),
        &PredictionHeadConfig::new(128, 64, 128),
        vb,
    )?;
    for (name, var) in varmap.data().lock().expect("varmap lock").iter() {
        let w = weights.get(name).ok_or_else(|| candle::Error::Msg(format!("no `{name}` in the weights")))?;
        var.set(&w.to_dtype(dtype)?)?;
    }
    Ok((model, varmap))
}

/// [`BATCH`] images of a CIFAR-10 binary batch file from the `first`, normalised, `[BATCH, 3,
/// 32, 32]`.
fn images(path: &str, first: usize) -> Result<Tensor> {
    let bytes = std::fs::read(path)?;
    let mut x = Vec::with_capacity(BATCH * 3072);
    for record in bytes.chunks_exact(3073).skip(first).take(BATCH) {
        for (c, plane) in record[1..].chunks_exact(1024).enumerate() {
            x.extend(plane.iter().map(|&v| (v as f32 / 255.0 - MEAN[c]) / STD[c]));
        }
    }
    Tensor::from_vec(x, (BATCH, 3, 32, 32), &Device::Cpu)
}

/// Parameter gradients and eval-mode features of one step, by parameter name.
fn step(
    model: &SimSiam<ResNet>,
    varmap: &VarMap,
    x0: &Tensor,
    x1: &Tensor,
) -> Result<HashMap<String, Tensor>> {
    let pass = model.forward_views_train(x0, x1)?;
    let out = &pass.out;
    let loss = symmetric_loss(&NegativeCosineSimilarity::default(), &out.p0, &out.z1, &out.p1, &out.z0)?;
    let grads = pass.backward(&loss)?;
    let mut found = HashMap::new();
    for (name, var) in varmap.data().lock().expect("varmap lock").iter() {
        if let Some(g) = grads.get(var.as_tensor()) {
            found.insert(name.clone(), g.to_dtype(DType::F64)?);
        }
    }
    found.insert("eval features".into(), model.backbone().forward_t(x0, false)?.to_dtype(DType::F64)?);
    Ok(found)
}

fn rel_err(a: &Tensor, reference: &Tensor) -> Result<f64> {
    let diff = (a - reference)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?;
    let norm = reference.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?;
    Ok(if norm > 0.0 { diff / norm } else { diff })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (weights, batch, first) = match args.as_slice() {
        [w, b] => (w, b, 0),
        [w, b, first] => {
            (w, b, first.parse().map_err(|_| candle::Error::Msg(format!("not an index: {first}")))?)
        }
        _ => {
            eprintln!("usage: step_accuracy WEIGHTS.safetensors CIFAR_BATCH.bin [FIRST_IMAGE]");
            std::process::exit(2);
        }
    };
    let weights = candle::safetensors::load(weights, &Device::Cpu)?;
    let x0 = images(batch, first)?;
    let reversed: Vec<u32> = (0..32).rev().collect();
    let x1 = x0.index_select(&Tensor::new(reversed.as_slice(), &Device::Cpu)?, 3)?;
    // Ours as the environment's SIMSIAM_* variables choose (the ISA level, Winograd).
    let ours_options = KernelOptions::from_vars(|k| std::env::var(k).ok()).map_err(candle::Error::Msg)?;
    let stock_options = KernelOptions { stock: true, ..KernelOptions::default() };
    let run = |dtype: DType, options: KernelOptions| -> Result<HashMap<String, Tensor>> {
        set_kernel_options(options);
        let (model, varmap) = model(dtype, &weights)?;
        let (x0, x1) = (x0.to_dtype(dtype)?, x1.to_dtype(dtype)?);
        step(&model, &varmap, &x0, &x1)
    };
    let reference = run(DType::F64, stock_options)?;
    let ours = run(DType::F32, ours_options)?;
    let stock = run(DType::F32, stock_options)?;
    // Our kernels in float64 too: far from the stock float64 ops means a fault in what we
    // compute, not float32 rounding.
    let ours64 = run(DType::F64, ours_options)?;
    let mut rows = Vec::new();
    for (name, g64) in &reference {
        let (o, s) = (&ours[name], &stock[name]);
        rows.push((rel_err(o, g64)?, rel_err(s, g64)?, rel_err(&ours64[name], g64)?, name.clone()));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!(
        "{:<48} {:>12} {:>12} {:>8} {:>12}",
        "gradient (or output)", "ours f32", "stock f32", "ratio", "ours f64"
    );
    for (o, s, o64, name) in &rows {
        println!("{name:<48} {o:>12.3e} {s:>12.3e} {:>8.2} {o64:>12.3e}", o / s.max(1e-300));
    }
    let worse = rows.iter().filter(|(o, s, _, _)| *o > 2.0 * s).count();
    println!("{} tensors; ours more than twice as far from f64 as the stock f32 ops on {worse}", rows.len());
    Ok(())
}
