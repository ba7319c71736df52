//! The losses and the collapse metric against PyTorch, values and gradients.
//!
//! `tests/fixtures/losses.safetensors` comes from `tools/golden/make_models_golden.py`
//! (torch 2.9.1): `-F.cosine_similarity(p, z, dim=1, eps=1e-8).mean()`,
//! `-(F.softmax(z, 1) * F.log_softmax(p, 1)).sum(1).mean()` and
//! `torch.std(F.normalize(z, dim=1), 0).mean()` on fixed `[6, 10]` inputs.

use std::collections::HashMap;
use std::path::PathBuf;

use candle::{Device, Result, Tensor, Var};
use simsiam_loss::{NegativeCosineSimilarity, Similarity, SymmetrizedCrossEntropy, collapse_std};

fn fixture() -> Result<HashMap<String, Tensor>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/losses.safetensors");
    candle::safetensors::load(path, &Device::Cpu)
}

fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    let diff = (a - b)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    Ok(diff / b.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?)
}

fn check(loss: &dyn Similarity, name: &str) -> Result<()> {
    let fx = fixture()?;
    let p = Var::from_tensor(&fx["p"])?;
    let z = Var::from_tensor(&fx["z"])?;
    let value = loss.loss(p.as_tensor(), z.as_tensor())?;
    assert!(rel_err(&value.reshape(1)?, &fx[name])? < 1e-6, "{name} value");
    let grads = value.backward()?;
    for (var, key) in [(&p, "grad_p"), (&z, "grad_z")] {
        let grad = grads.get(var.as_tensor()).expect("gradient");
        let err = rel_err(grad, &fx[&format!("{name}.{key}")])?;
        assert!(err < 1e-5, "{name}.{key}: relative error {err}");
    }
    Ok(())
}

#[test]
fn negative_cosine_similarity_matches_pytorch() -> Result<()> {
    check(&NegativeCosineSimilarity::default(), "neg_cos")
}

#[test]
fn symmetrized_cross_entropy_matches_pytorch() -> Result<()> {
    check(&SymmetrizedCrossEntropy, "sce")
}

#[test]
fn collapse_std_matches_pytorch() -> Result<()> {
    let fx = fixture()?;
    let ours = collapse_std(&fx["z"])?;
    let theirs = fx["collapse_std"].to_vec1::<f32>()?[0];
    assert!((ours - theirs).abs() < 1e-6, "{ours} vs {theirs}");
    Ok(())
}
