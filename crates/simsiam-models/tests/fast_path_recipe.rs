//! Our kernels against candle's stock ops at the shapes of the `cifar10-cpu` recipe
//! (width-16 ResNet-18, ImageNet stem on 32x32, batch 128) and of its kNN evaluation (up to
//! 1000 images a batch): the golden steps use batches of 8, these take the wide-product paths
//! (tile pairs, column splits, the dense small-map convolutions) as training does.
//!
//! Each op is compared on its own: through a whole network, float32 rounding puts a few ReLU
//! inputs on the other side of zero now and then (the stock ops and ours disagree by 1e-3
//! to 3e-2 in early layers' gradients for three input seeds of four, and for two of four with
//! the portable kernels), which says nothing about the kernels.

mod common;

use std::sync::Mutex;

use candle::{DType, Device, ModuleT, Result, Tensor, Var};
use candle_nn::VarMap;
use common::rel_err;
use simsiam_models::kernels::{
    Conv2dParams, KernelOptions, batch_norm_add_relu_train, batch_norm_train, conv2d, set_kernel_options,
};
use simsiam_models::{ResNetConfig, Stem, seeded_var_builder};

/// The training batch of the recipe.
const BATCH: usize = 128;

/// The kernels' options are process-wide: one test at a time switches them.
static OPTIONS: Mutex<()> = Mutex::new(());

/// Our kernels at the ISA level and Winograd rule of the environment (`cargo xtask ci` runs
/// the tests under several), never candle's stock ops: those are the reference.
fn ours() -> Result<KernelOptions> {
    let options = KernelOptions::from_vars(|k| std::env::var(k).ok()).map_err(candle::Error::Msg)?;
    Ok(KernelOptions { stock: false, ..options })
}

/// `n` values of a fixed pseudo-random sequence, roughly standard normal (sums of uniforms).
fn noise(n: usize, mut state: u64) -> Vec<f32> {
    let mut uniform = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n).map(|_| (0..4).map(|_| uniform()).sum::<f32>() * 1.7320508 - 3.4641016).collect()
}

/// A variable of `shape` filled with [`noise`] from `seed`.
fn var(shape: &[usize], seed: u64) -> Result<Var> {
    Var::from_vec(noise(shape.iter().product(), seed), shape, &Device::Cpu)
}

/// Runs `run` with our kernels and with candle's stock ops and names the case in `failures`
/// where any of its tensors differ by more than 1e-5 relative.
fn compare(
    case: String,
    fast: KernelOptions,
    run: impl Fn(KernelOptions) -> Result<Vec<Tensor>>,
    failures: &mut Vec<String>,
) -> Result<()> {
    let ours = run(fast)?;
    let stock = run(KernelOptions { stock: true, ..fast });
    set_kernel_options(fast);
    let errs = ours.iter().zip(&stock?).map(|(a, b)| rel_err(a, b)).collect::<Result<Vec<f64>>>()?;
    let shown = errs.iter().map(|e| format!("{e:.2e}")).collect::<Vec<_>>().join(", ");
    println!("{case}: {shown}");
    if errs.iter().any(|&e| e > 1e-5) {
        failures.push(format!("{case}: {shown}"));
    }
    Ok(())
}

/// `y` and the gradients of `sum(y * dy)` for a fixed `dy` with respect to `wrt`.
fn with_gradients(y: Tensor, wrt: &[&Var]) -> Result<Vec<Tensor>> {
    let dy = Tensor::from_vec(noise(y.elem_count(), 99), y.shape(), &Device::Cpu)?;
    let grads = (&y * &dy)?.sum_all()?.backward()?;
    let mut out = vec![y];
    for v in wrt {
        out.push(grads.get(v).ok_or_else(|| candle::Error::Msg("no gradient".into()))?.clone());
    }
    Ok(out)
}

#[test]
fn each_recipe_convolution_matches_the_stock_ops() -> Result<()> {
    let _one_at_a_time = OPTIONS.lock().unwrap_or_else(|e| e.into_inner());
    let fast = ours()?;
    // (in, out, kernel, stride, padding, map): the stem, then each layer's convolutions.
    let layers = [
        (3, 16, 7, 2, 3, 32),
        (16, 16, 3, 1, 1, 8),
        (16, 32, 3, 2, 1, 8),
        (16, 32, 1, 2, 0, 8),
        (32, 32, 3, 1, 1, 4),
        (32, 64, 3, 2, 1, 4),
        (32, 64, 1, 2, 0, 4),
        (64, 64, 3, 1, 1, 2),
        (64, 128, 3, 2, 1, 2),
        (64, 128, 1, 2, 0, 2),
        (128, 128, 3, 1, 1, 1),
    ];
    let mut failures = Vec::new();
    for (i, &(ci, co, k, s, p, m)) in layers.iter().enumerate() {
        let x = var(&[BATCH, ci, m, m], 10 + i as u64)?;
        let w = var(&[co, ci, k, k], 50 + i as u64)?;
        let run = |options| {
            set_kernel_options(options);
            with_gradients(conv2d(&x, &w, Conv2dParams { stride: s, padding: p })?, &[&x, &w])
        };
        compare(format!("{ci}->{co} k{k} s{s} p{p} on {m}x{m}: y, dx, dw"), fast, run, &mut failures)?;
    }
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}

#[test]
fn each_recipe_batch_norm_matches_the_stock_ops() -> Result<()> {
    let _one_at_a_time = OPTIONS.lock().unwrap_or_else(|e| e.into_inner());
    let fast = ours()?;
    let mut failures = Vec::new();
    for (i, &(c, m)) in [(16, 16), (16, 8), (32, 4), (64, 2), (128, 1)].iter().enumerate() {
        let i = i as u64;
        let (x, r) = (var(&[BATCH, c, m, m], 10 + i)?, var(&[BATCH, c, m, m], 20 + i)?);
        let (gamma, beta) = (var(&[c], 30 + i)?, var(&[c], 40 + i)?);
        for kind in ["bn", "bn_relu", "bn_add_relu"] {
            let run = |options| {
                set_kernel_options(options);
                let wb = Some((gamma.as_tensor(), beta.as_tensor()));
                let (y, _) = match kind {
                    "bn" => batch_norm_train(&x, wb, 1e-5, false)?,
                    "bn_relu" => batch_norm_train(&x, wb, 1e-5, true)?,
                    _ => {
                        return with_gradients(
                            batch_norm_add_relu_train(&x, wb, 1e-5, &r)?.0,
                            &[&x, &gamma, &beta, &r],
                        );
                    }
                };
                with_gradients(y, &[&x, &gamma, &beta])
            };
            compare(
                format!("{kind} {c} on {m}x{m}: y, dx, dgamma, dbeta(, dresidual)"),
                fast,
                run,
                &mut failures,
            )?;
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}

#[test]
fn the_recipe_backbone_in_evaluation_matches_the_stock_ops() -> Result<()> {
    let _one_at_a_time = OPTIONS.lock().unwrap_or_else(|e| e.into_inner());
    let fast = ours()?;
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 7, DType::F32, &Device::Cpu);
    let backbone = ResNetConfig::resnet18(Stem::ImageNet).with_width(16).init(vb.pp("backbone"))?;
    let mut failures = Vec::new();
    for batch in [100, 256, 500, 1000] {
        let x = Tensor::from_vec(noise(batch * 3 * 32 * 32, 5), (batch, 3, 32, 32), &Device::Cpu)?;
        let run = |options| {
            set_kernel_options(options);
            Ok(vec![backbone.forward_t(&x, false)?])
        };
        compare(format!("evaluation, batch {batch}: features"), fast, run, &mut failures)?;
    }
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}
