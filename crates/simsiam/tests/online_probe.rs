//! `train.online_probe` end to end: on where the dataset has labels (`"auto"`), off on an
//! unlabelled folder, and `true` there a clear error that writes nothing; `model.init` starts a
//! run from another run's weights.

use std::path::Path;

use image::{Rgb, RgbImage};

mod common;
use common::{error_line, fake_cifar, simsiam, stderr, strs, succeed, tiny_run_args};

/// The epoch lines of a run's metrics.
fn epoch_lines(run: &Path) -> Vec<String> {
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    metrics.lines().filter(|l| l.contains(r#""event":"epoch""#)).map(str::to_owned).collect()
}

/// 20 tiny PNGs straight in `dir`: a folder without labels.
fn flat_folder(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for i in 0..20u8 {
        RgbImage::from_fn(8, 8, |x, y| Rgb([i * 10, x as u8 * 30, y as u8 * 30]))
            .save(dir.join(format!("{i:02}.png")))
            .expect("png");
    }
}

#[test]
fn auto_trains_a_probe_on_labelled_data_and_false_does_not() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = fake_cifar(&tmp.path().join("data"), 20).display().to_string();
    let out = tmp.path().join("run");
    let args = tiny_run_args(&data, &out.display().to_string());
    let run = simsiam(&strs(&args));
    assert!(run.status.success(), "pretrain failed: {}", stderr(&run));
    assert!(stderr(&run).contains("online_probe = \"auto\""), "the config shows the key");
    let epochs = epoch_lines(&out);
    assert_eq!(epochs.len(), 2);
    for line in &epochs {
        for key in ["probe_train_top1", "probe_train_top5", "probe_test_top1", "probe_test_top5"] {
            assert!(line.contains(&format!("\"{key}\":")), "no {key}: {line}");
        }
    }

    // Resuming with the probe restores it; with another run's weights as `model.init` a new
    // run starts from them.
    let more = [args.clone(), vec!["--set".into(), "train.epochs=3".into(), "--resume".into()]].concat();
    let resumed = simsiam(&strs(&more));
    assert!(resumed.status.success(), "resume failed: {}", stderr(&resumed));
    assert_eq!(epoch_lines(&out).len(), 3);

    let off = tmp.path().join("off");
    let init = format!("model.init={}", out.join("model.safetensors").display());
    let args = [
        tiny_run_args(&data, &off.display().to_string()),
        vec!["--set".into(), "train.online_probe=false".into(), "--set".into(), init],
    ]
    .concat();
    let run = simsiam(&strs(&args));
    assert!(run.status.success(), "pretrain failed: {}", stderr(&run));
    assert!(epoch_lines(&off).iter().all(|l| !l.contains("probe_")), "{:?}", epoch_lines(&off));

    // Evaluation from `model.init` without a checkpoint gives the checkpoint's numbers.
    let latest = |run: &Path| {
        std::fs::read_dir(run.join("checkpoints"))
            .expect("checkpoints")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .max()
            .expect("a checkpoint")
            .display()
            .to_string()
    };
    let from_checkpoint = succeed(&["eval", "knn", "--checkpoint", &latest(&out)]);
    let weights = out.join("model.safetensors");
    let tiny_model = &tiny_run_args(&data, "unused")[1..];
    let init = format!("model.init={}", weights.display());
    let eval =
        [vec!["eval".to_owned(), "knn".to_owned()], tiny_model.to_vec(), vec!["--set".into(), init]].concat();
    assert_eq!(succeed(&strs(&eval)), from_checkpoint);

    // Once a run started from weights has a checkpoint, it no longer reads them.
    let moved = tmp.path().join("moved.safetensors");
    std::fs::rename(&weights, &moved).expect("move the weights away");
    succeed(&["eval", "knn", "--checkpoint", &latest(&off)]);
    let more = [args, vec!["--set".into(), "train.epochs=3".into(), "--resume".into()]].concat();
    let resumed = simsiam(&strs(&more));
    assert!(resumed.status.success(), "resume failed: {}", stderr(&resumed));
    let line = error_line(&simsiam(&strs(&eval)));
    assert!(line.contains(&weights.display().to_string()), "{line}");
}

#[test]
fn auto_is_off_on_an_unlabelled_folder_and_true_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let images = tmp.path().join("images");
    flat_folder(&images);
    let out = tmp.path().join("run");
    let folder = |out: &Path, probe: &str| -> Vec<String> {
        [
            tiny_run_args(&images.display().to_string(), &out.display().to_string()),
            ["data.dataset=folder", "augment.input_size=16", "train.epochs=1", probe]
                .iter()
                .flat_map(|s| ["--set".to_owned(), (*s).to_owned()])
                .collect(),
        ]
        .concat()
    };
    let run = simsiam(&strs(&folder(&out, "train.online_probe=auto")));
    assert!(run.status.success(), "pretrain failed: {}", stderr(&run));
    let epochs = epoch_lines(&out);
    assert_eq!(epochs.len(), 1);
    assert!(!epochs[0].contains("probe_"), "a probe on unlabelled images: {}", epochs[0]);

    let refused = tmp.path().join("refused");
    let line = error_line(&simsiam(&strs(&folder(&refused, "train.online_probe=true"))));
    assert!(line.contains("train.online_probe = true needs labels") && line.contains("folder"), "{line}");
    assert!(!refused.exists(), "a refused run wrote its folder");
}
