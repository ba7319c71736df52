//! Our backbone, exported under torchvision's names, is what `torchvision.models.resnet18()`
//! loads with `strict=True` and runs to our features; and `model.init` loads it back.
//!
//! The fixture `fixtures/torchvision_export.safetensors` holds two 64x64 images (`pixels`, u8,
//! drawn from a seeded SplitMix64 stream by [`pixels`]) and the features PyTorch computed for them
//! (`features`, `[2, 512]`) with the seeded ResNet-18 of [`seeded_run`] exported by
//! `simsiam_train::save_backbone_torchvision`; its metadata names the torch and torchvision
//! versions. Regenerate it (the weights, 45 MB, are not committed) with:
//!
//! ```sh
//! SIMSIAM_EXPORT_DIR=/tmp/simsiam-export cargo test --workspace --test torchvision_export -- export_for_pytorch
//! /work/torchenv/bin/python tools/golden/make_torchvision_export.py /tmp/simsiam-export
//! ```

use std::path::{Path, PathBuf};

use candle::{DType, Device, ModuleT, Tensor};
use simsiam::config::RunConfig;
use simsiam::run::build_model;
use simsiam_train::save_backbone_torchvision;

const FIXTURE: &str = "tests/fixtures/torchvision_export.safetensors";

/// torchvision's `resnet18()`: the ImageNet stem, width 64, from seed 0 (our initialisation).
fn seeded_run(seed: u64) -> RunConfig {
    RunConfig::preset("lightly-example")
        .and_then(|c| c.with_overrides(&[format!("train.seed={seed}"), "train.precision=f32".into()]))
        .expect("config")
}

/// Two 64x64 RGB images, `[2, 3, 64, 64]` u8: the top bytes of SplitMix64 seeded with 2024.
fn pixels() -> Tensor {
    let mut state = 2024u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 56) as u8
    };
    let values: Vec<u8> = (0..2 * 3 * 64 * 64).map(|_| next()).collect();
    Tensor::from_vec(values, (2, 3, 64, 64), &Device::Cpu).expect("pixels")
}

/// `(pixels / 255 - 0.5) / 0.25`, as the script computes it.
fn input(pixels: &Tensor) -> Tensor {
    (pixels.to_dtype(DType::F32).expect("f32") / 255.0).and_then(|x| x.affine(4.0, -2.0)).expect("input")
}

fn features(run: &RunConfig, x: &Tensor) -> Tensor {
    let (model, _) = build_model(run, &Device::Cpu).expect("model");
    model.backbone().forward_t(x, false).expect("forward")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()).expect("difference")
}

/// Writes the exported backbone and the images for `make_torchvision_export.py` into
/// `$SIMSIAM_EXPORT_DIR`; does nothing without it.
#[test]
fn export_for_pytorch() {
    let Some(dir) = std::env::var_os("SIMSIAM_EXPORT_DIR").map(PathBuf::from) else { return };
    std::fs::create_dir_all(&dir).expect("export dir");
    let (_, varmap) = build_model(&seeded_run(0), &Device::Cpu).expect("model");
    save_backbone_torchvision(&varmap, &dir.join("backbone.safetensors")).expect("export");
    candle::safetensors::save(
        &std::collections::HashMap::from([("pixels".to_owned(), pixels())]),
        dir.join("input.safetensors"),
    )
    .expect("input");
}

#[test]
fn pytorch_gets_our_features_from_the_exported_backbone() {
    let fixture = candle::safetensors::load(FIXTURE, &Device::Cpu).expect("fixture");
    let stored = &fixture["pixels"];
    let same_pixels =
        stored.eq(&pixels()).and_then(|e| e.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>());
    assert_eq!(same_pixels.expect("compare"), 1.0, "the fixture's images are not the seeded ones");
    let ours = features(&seeded_run(0), &input(stored));
    let theirs = &fixture["features"];
    assert_eq!(ours.dims(), theirs.dims());
    let scale = theirs.abs().and_then(|t| t.flatten_all()?.max(0)?.to_scalar::<f32>()).expect("scale");
    assert!(scale > 0.1, "the features are all but zero: {scale}");
    let diff = max_abs_diff(&ours, theirs);
    assert!(diff < 1e-4, "PyTorch's features differ from ours by {diff} (largest |feature| {scale})");
}

#[test]
fn model_init_loads_the_export_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exported = tmp.path().join("resnet18.safetensors");
    let (model, varmap) = build_model(&seeded_run(0), &Device::Cpu).expect("model");
    save_backbone_torchvision(&varmap, &exported).expect("export");
    let x = input(&pixels());
    let ours = model.backbone().forward_t(&x, false).expect("forward");

    // Another seed, then the export: the same features exactly.
    let other = seeded_run(5);
    assert!(max_abs_diff(&features(&other, &x), &ours) > 1e-3, "seed 5 gives other weights");
    let init = |path: &Path| {
        other.clone().with_overrides(&[format!("model.init={}", path.display())]).expect("config")
    };
    assert_eq!(max_abs_diff(&features(&init(&exported), &x), &ours), 0.0);

    // A file that does not fit names itself, the tensor and its shape.
    let mut tensors = candle::safetensors::load(&exported, &Device::Cpu).expect("load");
    tensors.remove("layer3.1.bn2.running_var");
    let missing = tmp.path().join("missing.safetensors");
    candle::safetensors::save(&tensors, &missing).expect("save");
    let e = format!("{:#}", build_model(&init(&missing), &Device::Cpu).err().expect("missing"));
    assert!(
        e.contains(&missing.display().to_string())
            && e.contains("`layer3.1.bn2.running_var`")
            && e.contains("[256]"),
        "{e}"
    );
    // A state dict PyTorch wrote (`tools/golden/make_models_golden.py`: torchvision's resnet18
    // in f16, `fc.*` and `num_batches_tracked` included) gives torchvision's features.
    let torchvision = Path::new("../simsiam-models/tests/fixtures/torchvision_resnet18_f16.safetensors");
    let io = candle::safetensors::load(
        "../simsiam-models/tests/fixtures/torchvision_resnet18_io.safetensors",
        &Device::Cpu,
    )
    .expect("io fixture");
    let diff = max_abs_diff(&features(&init(torchvision), &io["x"]), &io["features"]);
    assert!(diff < 1e-4, "model.init of torchvision's state dict: features differ by {diff}");

    let narrow = init(&exported).with_overrides(&["model.width=32".into()]).expect("config");
    let e = format!("{:#}", build_model(&narrow, &Device::Cpu).err().expect("shape"));
    assert!(e.contains("tensor `bn1.bias` has shape [64], the model's `backbone.bn1.bias` [32]"), "{e}");
}
