//! SGD and the cosine schedule against PyTorch.
//!
//! Fixtures from `tools/golden/make_train_golden.py` (torch 2.9.1): `torch.optim.SGD` with two
//! parameter groups (the second with a fixed lr), momentum 0.9, weight decay 5e-4, plain and
//! Nesterov, six steps with the lr set by hand from a cosine; and `SequentialLR(LinearLR,
//! CosineAnnealingLR)` learning rates.

use std::collections::HashMap;
use std::path::PathBuf;

use candle::{Device, Tensor, Var};
use simsiam_train::{CosineSchedule, ParamGroup, Result, Sgd, SgdConfig};

fn fixture(name: &str) -> Result<HashMap<String, Tensor>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    Ok(candle::safetensors::load(path, &Device::Cpu)?)
}

fn max_rel(a: &Tensor, b: &Tensor) -> Result<f32> {
    let diff = (a - b)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    Ok(diff / b.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?)
}

fn run_sgd(tag: &str, nesterov: bool) -> Result<()> {
    let fx = fixture("sgd.safetensors")?;
    let var = |n: &str| Var::from_tensor(&fx[&format!("{tag}.{n}.init")]);
    let (a, b, c) = (var("a")?, var("b")?, var("c")?);
    let base_lr = 0.1;
    let groups = vec![
        ParamGroup {
            params: vec![("a".into(), a.clone()), ("b".into(), b.clone())],
            lr: base_lr,
            fixed_lr: false,
        },
        ParamGroup { params: vec![("c".into(), c.clone())], lr: base_lr, fixed_lr: true },
    ];
    let mut sgd = Sgd::new(groups, SgdConfig { momentum: 0.9, weight_decay: 5e-4, nesterov })?;
    let steps = 6;
    for t in 0..steps {
        let lr = base_lr * 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / steps as f64).cos());
        sgd.set_lr(lr, base_lr);
        // Gradients from the fixture, through a loss whose gradient is exactly them:
        // d/dw sum(w * g) = g. Step 2 gives `b` no gradient, as PyTorch's `b.grad = None`.
        let g = |n: &str| &fx[&format!("{tag}.step{t}.grad.{n}")];
        let mut loss = ((a.as_tensor() * g("a"))?.sum_all()? + (c.as_tensor() * g("c"))?.sum_all()?)?;
        if t != 2 {
            loss = (loss + (b.as_tensor() * g("b"))?.sum_all()?)?;
        }
        sgd.step(&loss.backward()?)?;
        for (n, v) in [("a", &a), ("b", &b), ("c", &c)] {
            let err = max_rel(v.as_tensor(), &fx[&format!("{tag}.step{t}.{n}")])?;
            assert!(err < 1e-6, "{tag} step {t} `{n}`: relative error {err}");
        }
    }
    Ok(())
}

#[test]
fn sgd_with_momentum_and_weight_decay_matches_pytorch() -> Result<()> {
    run_sgd("plain", false)
}

#[test]
fn nesterov_sgd_matches_pytorch() -> Result<()> {
    run_sgd("nesterov", true)
}

#[test]
fn cosine_schedule_with_warmup_matches_pytorch() -> Result<()> {
    let fx = fixture("schedule.safetensors")?;
    for name in ["warmup", "no_warmup", "eta_min"] {
        let p = fx[&format!("{name}.params")].to_vec1::<f64>()?;
        let (base, total, warmup, start, eta_min) = (p[0], p[1] as usize, p[2] as usize, p[3], p[4]);
        let schedule = CosineSchedule::with_warmup(base, total, warmup, start, eta_min)?;
        let expected = fx[name].to_vec1::<f64>()?;
        assert_eq!(expected.len(), total);
        for (step, want) in expected.iter().enumerate() {
            let got = schedule.lr(step);
            assert!((got - want).abs() <= 1e-9 * base, "{name} step {step}: {got} vs {want}");
        }
    }
    Ok(())
}
