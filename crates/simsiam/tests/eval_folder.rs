//! kNN and linear evaluation (both protocols) of an image folder labelled by class
//! sub-folder, with a second folder of the same classes as its test set (`--test DIR`).

use std::path::Path;

use image::{Rgb, RgbImage};

mod common;
use common::{error_line, simsiam, stderr, succeed, tiny_run_args};

/// `n` 16x16 PNGs in each of `classes` under `root`, coloured by class.
fn class_folders(root: &Path, classes: &[&str], n: u8) {
    for (c, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for i in 0..n {
            let image = RgbImage::from_fn(16, 16, |x, y| {
                Rgb([(c * 100) as u8, (x * 12) as u8 ^ i, (y * 9 + c as u32 * 40) as u8])
            });
            image.save(dir.join(format!("{i:02}.png"))).expect("png");
        }
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_class_folder_with_a_test_folder_is_evaluated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (train, test, run) = (tmp.path().join("train"), tmp.path().join("test"), tmp.path().join("run"));
    class_folders(&train, &["cat", "dog", "owl"], 8);
    class_folders(&test, &["cat", "dog", "owl"], 3);

    let mut args = tiny_run_args(&s(&train), &s(&run));
    args.extend(["--set".into(), "data.dataset=folder".into(), "--set".into(), "train.epochs=1".into()]);
    let pretrain = simsiam(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(pretrain.status.success(), "{}", stderr(&pretrain));
    let checkpoint = std::fs::read_dir(run.join("checkpoints"))
        .expect("checkpoints")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .expect("a checkpoint");
    let (ck, test_s) = (s(&checkpoint), s(&test));

    let knn = succeed(&["eval", "knn", "--checkpoint", &ck, "--test", &test_s]);
    assert!(knn.contains("top-1"), "{knn}");
    let fast = succeed(&["eval", "linear", "--checkpoint", &ck, "--test", &test_s, "--epochs", "3"]);
    assert!(fast.contains("linear evaluation (3 epochs)"), "{fast}");
    let paper = simsiam(&[
        "eval",
        "linear",
        "--checkpoint",
        &ck,
        "--test",
        &test_s,
        "--protocol",
        "paper",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "0.5",
    ]);
    assert!(paper.status.success(), "{}", stderr(&paper));
    let out = String::from_utf8_lossy(&paper.stdout);
    assert!(out.contains("paper protocol, 2 epochs, batch 8, lr 0.015625") && out.contains("top-5"), "{out}");
    let log = stderr(&paper);
    assert!(log.contains("epoch 1/2: lr 0.0156") && log.contains("epoch 2/2"), "{log}");

    // Without a test folder, or with other classes in it: one clear line naming the folder.
    let line = error_line(&simsiam(&["eval", "knn", "--checkpoint", &ck]));
    assert!(line.contains("--test DIR") && line.contains(&s(&train)), "{line}");
    let other = tmp.path().join("other");
    class_folders(&other, &["cat", "dog", "emu"], 2);
    let (path_set, other_s) = (format!("data.path={}", s(&train)), s(&other));
    let knn_random =
        ["eval", "knn-random", "--set", "data.dataset=folder", "--set", &path_set, "--test", &other_s];
    let line = error_line(&simsiam(&knn_random));
    assert!(line.contains(&s(&other)) && line.contains("missing [`owl`], extra [`emu`]"), "{line}");
    std::fs::write(test.join("stray.png"), std::fs::read(test.join("cat/00.png")).expect("png"))
        .expect("copy");
    let line = error_line(&simsiam(&["eval", "linear", "--checkpoint", &ck, "--test", &test_s]));
    assert!(line.contains(&test_s) && line.contains("`stray.png` has no class"), "{line}");
}

#[test]
fn cifar_refuses_a_test_folder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let line = error_line(&simsiam(&["eval", "knn-random", "--test", &s(tmp.path())]));
    assert!(line.contains("is for folder datasets"), "{line}");
}
