//! Times each kernel on the layer shapes of the benchmark models and prints GFLOP/s, next to
//! candle's stock ops where they are comparable. A quick profile; `benches/kernels.rs` holds
//! the criterion version.
//!
//! ```sh
//! cargo run --release -p simsiam-kernels --example profile_kernels -- [cifar|imagenet] [batch]
//! ```
//!
//! `SIMSIAM_WINOGRAD`, `SIMSIAM_ISA`, `SIMSIAM_STOCK_KERNELS` and `SIMSIAM_CONV_COLUMNS` set the
//! kernels' options ([`simsiam_kernels::KernelOptions::from_vars`]).

use std::time::Instant;

use candle::{DType, Device, Result, Tensor};
use simsiam_kernels::{Conv2dParams, batch_norm_train, conv2d, conv2d_input_grad, conv2d_weight_grad};

/// (in, out, size, kernel, stride, padding, how many in the network)
type Layer = (usize, usize, usize, usize, usize, usize, usize);

const CIFAR: &[Layer] = &[
    (3, 64, 32, 3, 1, 1, 1),
    (64, 64, 32, 3, 1, 1, 4),
    (64, 128, 32, 3, 2, 1, 1),
    (128, 128, 16, 3, 1, 1, 3),
    (64, 128, 32, 1, 2, 0, 1),
    (128, 256, 16, 3, 2, 1, 1),
    (256, 256, 8, 3, 1, 1, 3),
    (128, 256, 16, 1, 2, 0, 1),
    (256, 512, 8, 3, 2, 1, 1),
    (512, 512, 4, 3, 1, 1, 3),
    (256, 512, 8, 1, 2, 0, 1),
];

const IMAGENET: &[Layer] = &[
    (3, 64, 32, 7, 2, 3, 1),
    (64, 64, 8, 3, 1, 1, 4),
    (64, 128, 8, 3, 2, 1, 1),
    (128, 128, 4, 3, 1, 1, 3),
    (64, 128, 8, 1, 2, 0, 1),
    (128, 256, 4, 3, 2, 1, 1),
    (256, 256, 2, 3, 1, 1, 3),
    (128, 256, 4, 1, 2, 0, 1),
    (256, 512, 2, 3, 2, 1, 1),
    (512, 512, 1, 3, 1, 1, 3),
    (256, 512, 2, 1, 2, 0, 1),
];

fn time(reps: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    f()?;
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() / reps as f64)
}

fn main() -> Result<()> {
    let options =
        simsiam_kernels::KernelOptions::from_vars(|k| std::env::var(k).ok()).map_err(candle::Error::Msg)?;
    simsiam_kernels::set_kernel_options(options);
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "cifar".into());
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(64);
    let layers = if model == "imagenet" { IMAGENET } else { CIFAR };
    let dev = Device::Cpu;
    let mut total = [0.0; 4];
    println!("layer                        fwd ms (GF/s)    dx ms (GF/s)     dw ms (GF/s)     bn fwd+bwd ms");
    for &(ci, co, size, k, s, p, count) in layers {
        let params = Conv2dParams { stride: s, padding: p };
        let x = Tensor::randn(0f32, 1.0, (n, ci, size, size), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (co, ci, k, k), &dev)?;
        let y = conv2d(&x, &w, params)?;
        let (_, _, oh, ow) = y.dims4()?;
        let flops = 2.0 * (n * co * oh * ow * ci * k * k) as f64;
        let reps = ((2e10 / flops) as usize).clamp(1, 50);
        let fwd = time(reps, || conv2d(&x, &w, params))?;
        let dx = time(reps, || conv2d_input_grad(&y, &w, params, (size, size)))?;
        let dw = time(reps, || conv2d_weight_grad(&x, &y, params, (k, k)))?;
        let bw = candle::Var::from_tensor(&Tensor::ones(co, DType::F32, &dev)?)?;
        let bb = candle::Var::from_tensor(&Tensor::zeros(co, DType::F32, &dev)?)?;
        let bn = time(reps, || {
            let (out, _) = batch_norm_train(&y, Some((bw.as_tensor(), bb.as_tensor())), 1e-5, true)?;
            let g = out.backward()?;
            Ok(g.get(bw.as_tensor()).expect("grad").clone())
        })?;
        let c = count as f64;
        for (t, v) in total.iter_mut().zip([fwd, dx, dw, bn]) {
            *t += c * v;
        }
        println!(
            "{ci:>4}->{co:<4} {size:>2}x{size:<2} k{k} s{s} x{count}   {:>7.2} ({:>5.1})  {:>7.2} ({:>5.1})  {:>7.2} ({:>5.1})  {:>7.2}",
            fwd * 1e3,
            flops / fwd / 1e9,
            dx * 1e3,
            flops / dx / 1e9,
            dw * 1e3,
            flops / dw / 1e9,
            bn * 1e3
        );
    }
    println!(
        "per view, all layers: fwd {:.3} s, dx {:.3} s, dw {:.3} s, bn {:.3} s",
        total[0], total[1], total[2], total[3]
    );
    Ok(())
}
