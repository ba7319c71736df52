//! Times full SimSiam training steps on a device, in f32 or bf16 mixed precision: the GPU
//! counterpart of `bench_step` (same models, same step: two views, symmetric negative-cosine
//! loss, backward, `w -= lr * g`). `tools/bench/bench_step_torch_gpu.py` does the same step in
//! PyTorch (eager f32 and AMP bf16).
//!
//! ```sh
//! cargo run --release -p simsiam-models --features cuda --example bench_step_gpu -- \
//!     --device cuda --precision bf16 --model cifar-r18 --batch 256
//! ```
//!
//! Options: `--model imagenet-r18|cifar-r18`, `--batch N` (256), `--steps N` (10), `--warmup N`
//! (2), `--device cpu|cuda` (cuda), `--precision f32|bf16` (f32). Each step ends by reading the
//! loss back, which waits for the device.

use std::time::Instant;

use candle::{Device, Result, Tensor};
use candle_nn::VarMap;
use simsiam_loss::{NegativeCosineSimilarity, symmetric_loss};
use simsiam_models::{Precision, ResNet, SimSiam};

#[path = "common/bench_models.rs"]
mod bench_models;
use bench_models::build;

struct Args {
    model: String,
    batch: usize,
    steps: usize,
    warmup: usize,
    device: String,
    precision: String,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        model: "cifar-r18".into(),
        batch: 256,
        steps: 10,
        warmup: 2,
        device: "cuda".into(),
        precision: "f32".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else { candle::bail!("{flag} needs a value") };
        let number = || {
            value.parse::<usize>().map_err(|_| candle::Error::Msg(format!("{flag}: not a number: {value}")))
        };
        match flag.as_str() {
            "--model" => args.model = value.clone(),
            "--batch" => args.batch = number()?,
            "--steps" => args.steps = number()?,
            "--warmup" => args.warmup = number()?,
            "--device" => args.device = value.clone(),
            "--precision" => args.precision = value.clone(),
            _ => candle::bail!("unknown option {flag}"),
        }
    }
    Ok(args)
}

fn step(model: &SimSiam<ResNet>, varmap: &VarMap, x0: &Tensor, x1: &Tensor, lr: f64) -> Result<f32> {
    let out = model.forward_views(x0, x1, true)?;
    let loss = symmetric_loss(&NegativeCosineSimilarity::default(), &out.p0, &out.z1, &out.p1, &out.z0)?;
    let grads = loss.backward()?;
    let vars = varmap.data().lock().map_err(|_| candle::Error::Msg("varmap lock poisoned".into()))?;
    for (_, var) in vars.iter().filter(|(n, _)| !n.contains("running_")) {
        if let Some(g) = grads.get(var.as_tensor()) {
            var.set(&(var.as_detached_tensor() - (g * lr)?)?)?;
        }
    }
    drop(vars);
    loss.to_scalar::<f32>()
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let dev = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(0)?,
        other => candle::bail!("unknown device {other}: cpu or cuda"),
    };
    let Some(precision) = Precision::parse(&args.precision) else {
        candle::bail!("unknown precision {}: f32 or bf16", args.precision)
    };
    let varmap = VarMap::new();
    let model = build(&args.model, precision, &varmap, &dev)?;
    let x0 = Tensor::randn(0f32, 1.0, (args.batch, 3, 32, 32), &dev)?;
    let x1 = Tensor::randn(0f32, 1.0, (args.batch, 3, 32, 32), &dev)?;
    for _ in 0..args.warmup {
        step(&model, &varmap, &x0, &x1, 1e-3)?;
    }
    let start = Instant::now();
    let mut loss = 0.0;
    for _ in 0..args.steps {
        loss = step(&model, &varmap, &x0, &x1, 1e-3)?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "candle model={} batch={} steps={} device={} precision={} images_per_s={:.1} step_s={:.4} loss={loss:.4}",
        args.model,
        args.batch,
        args.steps,
        args.device,
        args.precision,
        (args.batch * args.steps) as f64 / secs,
        secs / args.steps as f64,
    );
    Ok(())
}
