//! Our CUDA kernels (max-pooling, batch normalisation) and the CUDA routes of the convolution
//! entry points against the CPU kernels: values and gradients, relative error below 1e-4 in
//! `f32`, on odd sizes, stride 2, padding, batch 1 and non-contiguous inputs.
//!
//! Built without the `cuda` feature, or run without a GPU, each test prints
//! "skipped: no CUDA device" and passes. On a GPU machine:
//! `cargo test --release -p simsiam-kernels --features cuda --test cuda_ops`.

use candle::{D, DType, Device, Result, Tensor, Var};
use simsiam_kernels::{Conv2dParams, batch_norm_train, conv2d, conv2d_input_grad, conv2d_weight_grad};
use simsiam_kernels::{MaxPool2dConfig, max_pool2d};

const TOL: f64 = 1e-4;

fn cuda() -> Option<Device> {
    if !candle::utils::cuda_is_available() {
        println!("skipped: no CUDA device (built without the `cuda` feature)");
        return None;
    }
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            // The first line only: candle's error carries a backtrace.
            println!("skipped: no CUDA device ({})", e.to_string().lines().next().unwrap_or_default());
            None
        }
    }
}

/// Deterministic values in [-1, 1) without a random number crate.
fn values(shape: &[usize], seed: u64) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// max |a - b| / max |b|, both moved to the CPU.
fn rel(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    assert_eq!(a.dims(), b.dims());
    let diff = (a - &b)?.abs()?.max_all()?.to_scalar::<f64>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f64>()?.max(1e-12);
    Ok(diff / scale)
}

fn check(what: &str, gpu: &Tensor, cpu: &Tensor) -> Result<()> {
    let e = rel(gpu, cpu)?;
    println!("{what}: relative error {e:.3e}");
    assert!(e < TOL, "{what}: relative error {e:.3e} >= {TOL:e}");
    Ok(())
}

/// `f(inputs)` on both devices, the first input seen through `view`; compares the outputs and
/// the gradients of `sum(output * r)` with respect to every input.
fn compare(
    what: &str,
    dev: &Device,
    inputs: &[Tensor],
    view: impl Fn(&Tensor) -> Result<Tensor>,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<()> {
    let mut outs = Vec::new();
    for d in [&Device::Cpu, dev] {
        let vars: Vec<Var> =
            inputs.iter().map(|t| Var::from_tensor(&t.to_device(d)?)).collect::<Result<_>>()?;
        let mut args: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        args[0] = view(&args[0])?;
        let y = f(&args)?;
        let r = values(y.dims(), 99)?.to_device(d)?;
        let grads = (&y * r)?.sum_all()?.backward()?;
        let g: Vec<Tensor> = vars
            .iter()
            .map(|v| grads.get(v.as_tensor()).cloned().expect("a gradient for every input"))
            .collect();
        outs.push((y, g));
    }
    let ((y_cpu, g_cpu), (y_gpu, g_gpu)) = (&outs[0], &outs[1]);
    assert!(y_gpu.device().is_cuda(), "{what}: output not on the GPU");
    check(&format!("{what} forward"), y_gpu, y_cpu)?;
    for (i, (a, b)) in g_gpu.iter().zip(g_cpu).enumerate() {
        check(&format!("{what} gradient {i}"), a, b)?;
    }
    Ok(())
}

fn same(t: &Tensor) -> Result<Tensor> {
    Ok(t.clone())
}

/// Swaps h and w: a non-contiguous view of the same values.
fn transposed(t: &Tensor) -> Result<Tensor> {
    t.transpose(D::Minus1, D::Minus2)
}

#[test]
fn max_pool_matches_cpu() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    let stem = MaxPool2dConfig { kernel: 3, stride: 2, padding: 1 };
    let cases = [
        ([1, 3, 7, 9], stem),
        ([2, 5, 8, 8], stem),
        ([3, 2, 11, 6], MaxPool2dConfig { kernel: 2, stride: 2, padding: 0 }),
        ([1, 1, 5, 5], MaxPool2dConfig { kernel: 3, stride: 1, padding: 1 }),
        ([2, 64, 56, 56], stem),
    ];
    for (i, (shape, c)) in cases.into_iter().enumerate() {
        let x = values(&shape, i as u64)?;
        compare(&format!("max-pool {shape:?} {c:?}"), &dev, std::slice::from_ref(&x), same, |a| {
            max_pool2d(&a[0], c)
        })?;
        compare(&format!("max-pool {shape:?} {c:?} transposed"), &dev, &[x], transposed, |a| {
            max_pool2d(&a[0], c)
        })?;
    }
    // Ties: a constant input sends each window's gradient to its first cell on both devices.
    let ones = Tensor::ones((1, 2, 5, 6), DType::F32, &Device::Cpu)?;
    compare("max-pool ties", &dev, &[ones], same, |a| max_pool2d(&a[0], stem))?;
    // bf16 on CUDA goes through f32 and back.
    let x = values(&[2, 3, 9, 9], 7)?;
    let y = max_pool2d(&x.to_device(&dev)?.to_dtype(DType::BF16)?, stem)?;
    assert_eq!(y.dtype(), DType::BF16);
    check("max-pool bf16", &y, &max_pool2d(&x.to_dtype(DType::BF16)?.to_dtype(DType::F32)?, stem)?)?;
    Ok(())
}

#[test]
fn batch_norm_matches_cpu() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    let shapes: [&[usize]; 5] = [&[1, 3, 5, 7], &[4, 6, 3, 3], &[8, 16], &[3, 4, 9, 11], &[16, 64, 14, 14]];
    for (i, shape) in shapes.into_iter().enumerate() {
        let c = shape[1];
        // An offset mean, as after a ReLU, to exercise the shifted variance.
        let x = (values(shape, i as u64)? + 0.5)?;
        let w = (values(&[c], 10 + i as u64)? + 1.0)?;
        let b = values(&[c], 20 + i as u64)?;
        for relu in [false, true] {
            let what = format!("batch-norm {shape:?} relu {relu}");
            compare(&format!("{what} affine"), &dev, &[x.clone(), w.clone(), b.clone()], same, |a| {
                Ok(batch_norm_train(&a[0], Some((&a[1], &a[2])), 1e-5, relu)?.0)
            })?;
            compare(&format!("{what} plain"), &dev, std::slice::from_ref(&x), same, |a| {
                Ok(batch_norm_train(&a[0], None, 1e-5, relu)?.0)
            })?;
            if shape.len() == 4 {
                compare(
                    &format!("{what} transposed"),
                    &dev,
                    &[x.clone(), w.clone(), b.clone()],
                    transposed,
                    |a| Ok(batch_norm_train(&a[0], Some((&a[1], &a[2])), 1e-5, relu)?.0),
                )?;
            }
        }
        let (_, gpu) = batch_norm_train(&x.to_device(&dev)?, None, 1e-5, false)?;
        let (_, cpu) = batch_norm_train(&x, None, 1e-5, false)?;
        check(&format!("batch-norm {shape:?} mean"), &gpu.mean, &cpu.mean)?;
        check(&format!("batch-norm {shape:?} var"), &gpu.var, &cpu.var)?;
        assert_eq!(gpu.count, cpu.count);
    }
    Ok(())
}

#[test]
fn conv_routes_match_cpu() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    let cases = [
        ([2, 3, 9, 7], [4, 3, 3, 3], Conv2dParams { stride: 2, padding: 1 }),
        ([1, 5, 8, 8], [6, 5, 1, 1], Conv2dParams { stride: 2, padding: 0 }),
        ([3, 4, 7, 7], [5, 4, 7, 7], Conv2dParams { stride: 2, padding: 3 }),
        ([2, 8, 10, 10], [8, 8, 3, 3], Conv2dParams { stride: 1, padding: 1 }),
    ];
    for (i, (xs, ws, p)) in cases.into_iter().enumerate() {
        let (x, w) = (values(&xs, i as u64)?, values(&ws, 50 + i as u64)?);
        let what = format!("conv {xs:?} * {ws:?} {p:?}");
        compare(&what, &dev, &[x.clone(), w.clone()], same, |a| conv2d(&a[0], &a[1], p))?;
        compare(&format!("{what} transposed"), &dev, &[x.clone(), w.clone()], transposed, |a| {
            conv2d(&a[0], &a[1], p)
        })?;
        // The gradient entry points, called directly.
        let dy = values(conv2d(&x, &w, p)?.dims(), 77)?;
        let (h, wd) = (xs[2], xs[3]);
        let gi = |d: &Device| conv2d_input_grad(&dy.to_device(d)?, &w.to_device(d)?, p, (h, wd));
        check(&format!("{what} input gradient"), &gi(&dev)?, &gi(&Device::Cpu)?)?;
        let gw = |d: &Device| conv2d_weight_grad(&x.to_device(d)?, &dy.to_device(d)?, p, (ws[2], ws[3]));
        check(&format!("{what} weight gradient"), &gw(&dev)?, &gw(&Device::Cpu)?)?;
    }
    Ok(())
}
