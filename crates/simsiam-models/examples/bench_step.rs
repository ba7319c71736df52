//! Times full SimSiam training steps on the CPU: two views through backbone and heads, the
//! symmetric negative-cosine loss, backward, and a plain SGD update `w -= lr * g` of every
//! parameter (not the BatchNorm running statistics). Prints images per second and peak RSS.
//!
//! ```sh
//! cargo run --release -p simsiam-models --example bench_step -- --model cifar-r18 --batch 64
//! ```
//!
//! Options: `--model imagenet-r18|cifar-r18`, `--batch N` (64), `--steps N` (5), `--warmup N`
//! (1). `RAYON_NUM_THREADS` sets the threads; steps run on candle's compute pool as the
//! trainer's do (`SIMSIAM_OUTSIDE_POOL=1`: from the main thread, for comparison);
//! `SIMSIAM_STOCK_KERNELS=1` runs candle's stock convolution and batch norm instead of ours;
//! `SIMSIAM_TAPED_BACKWARD=0` the backbone's backward pass through candle's autograd.
//! `tools/bench/bench_step_torch.py` does the same step in PyTorch.

use std::time::Instant;

use candle::{Device, Result, Tensor};
use candle_nn::VarMap;
use simsiam_loss::{NegativeCosineSimilarity, symmetric_loss};
use simsiam_models::kernels::{
    Isa, KernelOptions, SgdStep, keep_freed_memory, park_idle_candle_threads, set_kernel_options, sgd_step,
};
use simsiam_models::{Precision, ResNet, SimSiam};

#[path = "common/bench_models.rs"]
mod bench_models;
use bench_models::build;

struct Args {
    model: String,
    batch: usize,
    steps: usize,
    warmup: usize,
}

fn parse_args() -> Args {
    let mut args = Args { model: "cifar-r18".into(), batch: 64, steps: 5, warmup: 1 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<usize>().unwrap_or_else(|_| panic!("{flag}: not a number: {value}"));
        match flag.as_str() {
            "--model" => args.model = value.clone(),
            "--batch" => args.batch = number(),
            "--steps" => args.steps = number(),
            "--warmup" => args.warmup = number(),
            _ => panic!("unknown option {flag}"),
        }
    }
    args
}

/// Seconds spent in forward+loss, backward and update.
fn step(model: &SimSiam<ResNet>, varmap: &VarMap, x0: &Tensor, x1: &Tensor, lr: f64) -> Result<[f64; 3]> {
    let t0 = Instant::now();
    // As the trainer steps: the backbone's own backward pass unless SIMSIAM_TAPED_BACKWARD=0.
    let pass = model.forward_views_train(x0, x1)?;
    let out = &pass.out;
    let loss = symmetric_loss(&NegativeCosineSimilarity::default(), &out.p0, &out.z1, &out.p1, &out.z0)?;
    let t1 = Instant::now();
    let grads = pass.backward(&loss)?;
    let t2 = Instant::now();
    let plain = SgdStep { lr, momentum: 0.0, weight_decay: 0.0, nesterov: false };
    let vars = varmap.data().lock().expect("varmap lock");
    for (_, var) in vars.iter().filter(|(n, _)| !n.contains("running_")) {
        if let Some(g) = grads.get(var.as_tensor()) {
            // In place, as `w.sub_(w.grad, alpha=lr)` (candle's ops with SIMSIAM_STOCK_KERNELS=1).
            sgd_step(var, g, None, plain)?;
        }
    }
    drop(vars);
    let _ = loss.to_scalar::<f32>()?;
    let t3 = Instant::now();
    Ok([(t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), (t3 - t2).as_secs_f64()])
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<()> {
    // SAFETY: first thing in `main`, before any thread exists. As the `simsiam` binary.
    unsafe { park_idle_candle_threads() };
    // As the `simsiam` binary does: the kernels' options from `SIMSIAM_*` variables, and reuse
    // freed memory instead of page-faulting it in again (unless `SIMSIAM_MALLOC_TUNING=0`).
    let options = KernelOptions::from_vars(|k| std::env::var(k).ok()).map_err(candle::Error::Msg)?;
    set_kernel_options(options);
    if std::env::var("SIMSIAM_MALLOC_TUNING").as_deref() != Ok("0") {
        keep_freed_memory();
    }
    let args = parse_args();
    let varmap = VarMap::new();
    let model = build(&args.model, Precision::F32, &varmap, &Device::Cpu)?;
    let dev = Device::Cpu;
    let x0 = Tensor::randn(0f32, 1.0, (args.batch, 3, 32, 32), &dev)?;
    let x1 = Tensor::randn(0f32, 1.0, (args.batch, 3, 32, 32), &dev)?;
    // Each step on candle's compute pool, as the trainer runs it (`SIMSIAM_OUTSIDE_POOL=1`:
    // from the main thread, as before, for comparison).
    let outside = std::env::var("SIMSIAM_OUTSIDE_POOL").as_deref() == Ok("1");
    let timed_step = || {
        if outside {
            step(&model, &varmap, &x0, &x1, 1e-3)
        } else {
            dev.with_context(|| step(&model, &varmap, &x0, &x1, 1e-3))
        }
    };
    for _ in 0..args.warmup {
        timed_step()?;
    }
    let mut totals = [0.0; 3];
    let start = Instant::now();
    for _ in 0..args.steps {
        let t = timed_step()?;
        for (a, b) in totals.iter_mut().zip(t) {
            *a += b;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let per = |t: f64| t / args.steps as f64;
    println!(
        "candle model={} batch={} steps={} threads={} stock={} isa={} images_per_s={:.2} step_s={:.3} forward_s={:.3} backward_s={:.3} update_s={:.3} peak_rss_mib={:.0}",
        args.model,
        args.batch,
        args.steps,
        rayon::current_num_threads(),
        options.stock,
        Isa::active(),
        (args.batch * args.steps) as f64 / secs,
        per(secs),
        per(totals[0]),
        per(totals[1]),
        per(totals[2]),
        peak_rss_mib()
    );
    Ok(())
}
