//! Every value of the run config, checked before `simsiam pretrain` writes its first byte:
//! one case per field, each with a value that field must refuse.

mod common;
use common::{error_line, fake_cifar, simsiam, snapshot, strs, tiny_run_args};

/// Each field of `RunConfig`, a value it must refuse, and what the error line must say.
/// (Issue 16, defect 3: `train.knn_k=0` and `train.knn_t=0` were found after the last epoch,
/// and the last checkpoint and the weights were never written.)
/// Those two come first.
const BAD_VALUES: &[(&str, &str, &str)] = &[
    ("train.knn_k", "0", "train.knn_k"),
    ("train.knn_t", "0.0", "train.knn_t"),
    ("data.dataset", "imagenet", "unknown dataset `imagenet`"),
    ("data.path", "/nonexistent/cifar", "/nonexistent/cifar"),
    ("data.limit", "3", "data.limit"),
    ("data.workers", "1025", "data.workers"),
    ("augment.input_size", "0", "augment.input_size"),
    ("augment.cj_prob", "1.5", "augment.cj_prob"),
    ("augment.cj_strength", "-1.0", "augment.cj_strength"),
    ("augment.min_scale", "0.0", "augment.min_scale"),
    ("augment.random_gray_scale", "-0.1", "augment.random_gray_scale"),
    ("augment.gaussian_blur", "2.0", "augment.gaussian_blur"),
    ("augment.hf_prob", "nan", "augment.hf_prob"),
    ("augment.vf_prob", "1.01", "augment.vf_prob"),
    ("augment.rr_prob", "-1.0", "augment.rr_prob"),
    ("augment.cj_bright", "-0.1", "augment.cj_bright"),
    ("augment.cj_contrast", "inf", "augment.cj_contrast"),
    ("augment.cj_sat", "-1.0", "augment.cj_sat"),
    ("augment.cj_hue", "0.7", "augment.cj_hue"),
    ("augment.rr_degrees", "[1.0, 2.0, 3.0]", "augment.rr_degrees"),
    ("augment.eval_resize", "bilinear", "unknown evaluation resize `bilinear`"),
    ("augment.normalize", "none", "unknown normalisation `none`"),
    ("model.backbone", "vgg", "unknown backbone `vgg`"),
    ("model.stem", "resnet", "unknown stem `resnet`"),
    ("model.width", "0", "model.width"),
    ("model.zero_init_residual", "maybe", "model.zero_init_residual"),
    ("model.proj_hidden_dim", "0", "model.proj_hidden_dim"),
    ("model.proj_output_dim", "0", "model.proj_output_dim"),
    ("model.proj_layers", "0", "model.proj_layers"),
    ("model.proj_last_bn_affine", "2", "model.proj_last_bn_affine"),
    ("model.pred_hidden_dim", "0", "model.pred_hidden_dim"),
    ("model.loss", "l1", "unknown loss `l1`"),
    ("model.init", "/nonexistent/weights.safetensors", "/nonexistent/weights.safetensors"),
    ("train.epochs", "0", "train.epochs"),
    ("train.batch_size", "0", "train.batch_size"),
    ("train.base_lr", "-0.1", "train.base_lr"),
    ("train.scale_lr", "yes", "train.scale_lr"),
    ("train.momentum", "1.0", "train.momentum"),
    ("train.weight_decay", "-0.0005", "train.weight_decay"),
    ("train.fixed_predictor_lr", "3", "train.fixed_predictor_lr"),
    ("train.warmup_epochs", "2", "train.warmup_epochs"),
    ("train.schedule", "step", "train.schedule"),
    ("train.seed", "-1", "train.seed"),
    ("train.device", "tpu", "unknown device `tpu`"),
    ("train.precision", "f16", "unknown precision `f16`"),
    ("train.output_dir", TAKEN, "is not a folder"),
    ("train.log_every", "0", "train.log_every"),
    ("train.checkpoint_every", "0", "train.checkpoint_every"),
    ("train.keep_checkpoints", "0", "train.keep_checkpoints"),
    ("train.knn_every", "-1", "train.knn_every"),
    ("train.online_probe", "maybe", "unknown online_probe `maybe`"),
];

/// Every field of the config file, from `simsiam config`.
fn config_fields() -> Vec<String> {
    let text = common::succeed(&["config"]);
    let mut section = String::new();
    let mut fields = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.split_once(" = ") {
            fields.push(format!("{section}.{key}"));
        }
    }
    fields
}

/// Stands for a file that exists, which no output_dir can be.
const TAKEN: &str = "<a file>";

#[test]
fn every_config_field_has_a_case() {
    let covered: Vec<&str> = BAD_VALUES.iter().map(|(field, ..)| *field).collect();
    for field in config_fields() {
        assert!(covered.contains(&field.as_str()), "no bad-value case for {field}");
    }
}

#[test]
fn every_bad_config_value_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = fake_cifar(&tmp.path().join("data"), 20).display().to_string();
    for (i, &(field, value, expected)) in BAD_VALUES.iter().enumerate() {
        // Each case's folder holds one file of the user's, which must be all it holds after.
        let case = tmp.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case).expect("mkdir");
        let taken = case.join("taken");
        std::fs::write(&taken, "mine").expect("write");
        let value = if value == TAKEN { taken.display().to_string() } else { value.to_owned() };
        let mut args = tiny_run_args(&data, &case.join("run").display().to_string());
        args.extend(["--set".to_owned(), format!("{field}={value}")]);
        let result = simsiam(&strs(&args));
        assert!(!result.status.success(), "{field}={value} was accepted");
        let line = error_line(&result);
        assert!(line.contains(expected), "{field}={value}: expected `{expected}` in `{line}`");
        let left = snapshot(&case);
        assert!(
            left == [(taken.clone(), b"mine".to_vec())],
            "{field}={value}: the refused run wrote {:?}",
            left.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
    }
}
