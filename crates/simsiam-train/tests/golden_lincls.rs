//! The paper linear-evaluation protocol against PyTorch.
//!
//! Fixture from `tools/golden/make_lincls_golden.py` (torch 2.15.0, torchvision 0.29.2; the
//! versions are in the file's metadata): `main_lincls.py --lars` on a frozen ResNet-18 of width
//! 2 with the CIFAR stem in eval mode, `fc` trained by apex's LARC (trust 0.001, clip=False)
//! around SGD (momentum 0.9), lr `base_lr * 16 / 256` with the per-epoch cosine of 4 epochs, on
//! 40 fixed 8x8 crops in each epoch's shuffled order, batches of 16 (the last one short). The
//! crops go through `PaperLinearTrainer::train_epoch`, the code `simsiam eval linear --protocol
//! paper` runs after augmentation.

use std::collections::HashMap;
use std::path::PathBuf;

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use simsiam_models::{Backbone, ResNet, ResNetConfig, Stem, seeded_var_builder};
use simsiam_train::{LarsConfig, LinearClassifier, PaperLinearConfig, PaperLinearTrainer, Result};

/// Relative error of `fc`'s movement: |(ours - init) - (theirs - init)| / |theirs - init|.
/// The weights start at N(0, 0.01) and move by about 0.4% a step, so the error of the
/// weights themselves would say little. Measured with torch 2.15.0 on x86-64: 1.0e-6 (weight)
/// and 8.7e-8 (bias) after the first epoch, at most 2.4e-7 in absolute value.
const UPDATE_TOLERANCE: f32 = 1e-5;

fn fixture() -> Result<HashMap<String, Tensor>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lincls.safetensors");
    Ok(candle::safetensors::load(path, &Device::Cpu)?)
}

fn norm(t: &Tensor) -> Result<f32> {
    Ok(t.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?)
}

fn update_error(ours: &Tensor, theirs: &Tensor, init: &Tensor) -> Result<f32> {
    let reference = (theirs - init)?;
    Ok(norm(&((ours - init)? - &reference)?)? / norm(&reference)?)
}

/// The fixture's backbone, every variable (running statistics included) from its state dict.
fn backbone(fx: &HashMap<String, Tensor>, width: usize) -> Result<(ResNet, VarMap)> {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
    let net = ResNetConfig::resnet18(Stem::Cifar).with_width(width).init(vb)?;
    let vars = varmap.data().lock().expect("varmap lock");
    for (name, var) in vars.iter() {
        let value = fx.get(&format!("backbone.{name}")).unwrap_or_else(|| panic!("fixture lacks `{name}`"));
        var.set(&value.to_dtype(DType::F32)?)?;
    }
    assert_eq!(fx.keys().filter(|k| k.starts_with("backbone.")).count(), vars.len());
    drop(vars);
    Ok((net, varmap))
}

fn snapshot(varmap: &VarMap) -> Result<Vec<(String, Vec<f32>)>> {
    let vars = varmap.data().lock().expect("varmap lock");
    let mut out: Vec<(String, Vec<f32>)> = vars
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().flatten_all()?.to_vec1::<f32>()?)))
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[test]
fn one_epoch_of_the_paper_protocol_matches_pytorch() -> Result<()> {
    let fx = fixture()?;
    let s = fx["settings"].to_vec1::<f64>()?;
    let (batch, base_lr, epochs, momentum, trust, eps) =
        (s[0] as usize, s[1], s[2] as usize, s[3], s[4], s[5]);
    let (width, classes) = (s[6] as usize, s[7] as usize);
    let (net, varmap) = backbone(&fx, width)?;
    assert_eq!((net.feature_dim(), classes), (16, 5));
    let before = snapshot(&varmap)?;

    // The backbones agree before anything is trained.
    let x = fx["x"].to_dtype(DType::F32)?;
    let config = PaperLinearConfig {
        epochs,
        batch_size: batch,
        base_lr,
        lars: LarsConfig { momentum, weight_decay: 0.0, trust_coefficient: trust, eps },
        seed: 0,
    };
    let (w0, b0) = (&fx["fc.weight.init"], &fx["fc.bias.init"]);
    let fc = LinearClassifier::from_tensors(w0, b0)?;
    let mut trainer = PaperLinearTrainer::new(&net, fc, config.clone())?;
    let features = trainer.features(&x.narrow(0, 0, 4)?)?;
    let feature_err = norm(&(&features - &fx["features"])?)? / norm(&fx["features"])?;
    assert!(feature_err < 1e-5, "eval-mode features differ from PyTorch's by {feature_err}");

    let labels: Vec<usize> = fx["labels"].to_vec1::<i64>()?.into_iter().map(|l| l as usize).collect();
    for epoch in 0..2 {
        let order: Vec<i64> = fx[&format!("order.{epoch}")].to_vec1()?;
        let lr = fx[&format!("lr.{epoch}")].to_vec1::<f64>()?[0];
        assert!(
            (config.lr(epoch)? - lr).abs() <= 1e-12 * lr,
            "epoch {epoch}: lr {} vs {lr}",
            config.lr(epoch)?
        );
        let batches = order.chunks(batch).map(|chunk| {
            let idx: Vec<u32> = chunk.iter().map(|&i| i as u32).collect();
            let images = x.index_select(&Tensor::new(idx.as_slice(), &Device::Cpu)?, 0)?;
            Ok((images, chunk.iter().map(|&i| labels[i as usize]).collect()))
        });
        let report = trainer.train_epoch(epoch, batches)?;
        let losses = fx[&format!("loss.{epoch}")].to_vec1::<f64>()?;
        let mean = losses.iter().zip([16.0, 16.0, 8.0]).map(|(l, n)| l * n).sum::<f64>() / 40.0;
        assert!((report.loss - mean).abs() < 1e-5 * mean, "epoch {epoch}: loss {} vs {mean}", report.loss);
        assert_eq!(report.samples, 40);
        let classifier = trainer.classifier();
        for (what, ours, init) in [("weight", classifier.weight(), w0), ("bias", classifier.bias(), b0)] {
            let theirs = &fx[&format!("fc.{what}.{epoch}")];
            let err = update_error(ours, theirs, init)?;
            assert!(err < UPDATE_TOLERANCE, "epoch {epoch}: fc.{what} moved {err} (relative) off PyTorch's");
            let abs = (ours - theirs)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            eprintln!("epoch {epoch} fc.{what}: update error {err:.2e}, max |difference| {abs:.2e}");
        }
    }

    // Frozen means frozen: the weights and the running statistics, in eval mode throughout.
    assert_eq!(snapshot(&varmap)?, before, "the backbone changed during linear evaluation");
    Ok(())
}
