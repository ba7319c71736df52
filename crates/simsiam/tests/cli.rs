//! The `simsiam` binary end to end: a tiny run on CIFAR-format files, and every error path
//! ending in one clear line, a non-zero exit and nothing overwritten.

use std::path::Path;

use simsiam::config::{Preset, RunConfig};

mod common;
use common::{error_line, fake_cifar, simsiam, stderr, succeed, tiny_run_args};

#[test]
fn a_tiny_run_pretrains_evaluates_embeds_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = fake_cifar(&tmp.path().join("data"), 20);
    let out = tmp.path().join("run");
    let (data_s, out_s) = (data.display().to_string(), out.display().to_string());
    let args = tiny_run_args(&data_s, &out_s);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = simsiam(&args);
    assert!(run.status.success(), "pretrain failed: {}", stderr(&run));
    let log = stderr(&run);
    assert!(log.contains("[train]") && log.contains("epochs = 2"), "the config is not printed: {log}");
    assert!(log.contains("kNN top-1"), "no kNN accuracy: {log}");
    assert_eq!(
        out.join("plot.png").is_file(),
        cfg!(feature = "figures"),
        "plot.png with the `figures` feature only"
    );
    for file in ["config.toml", "metrics.jsonl", "model.safetensors"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert_eq!(
        metrics.lines().filter(|l| l.contains(r#""event":"epoch""#) && l.contains("knn_top1")).count(),
        2
    );
    let checkpoint = std::fs::read_dir(out.join("checkpoints"))
        .expect("checkpoints")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .expect("a checkpoint");

    // Evaluation and embeddings from the checkpoint's stored config.
    let ck = checkpoint.display().to_string();
    let knn = simsiam(&["eval", "knn", "--checkpoint", &ck]);
    assert!(knn.status.success(), "{}", stderr(&knn));
    assert!(String::from_utf8_lossy(&knn.stdout).contains("top-1"));
    let csv = tmp.path().join("embeddings.csv");
    let embed = simsiam(&["embed", "--checkpoint", &ck, "--out", &csv.display().to_string()]);
    assert!(embed.status.success(), "{}", stderr(&embed));
    let text = std::fs::read_to_string(&csv).expect("csv");
    let header = text.lines().next().expect("header");
    assert!(
        header.starts_with("filenames,embedding_0,") && header.ends_with(",embedding_31,labels"),
        "{header}"
    );
    assert_eq!(text.lines().count(), 1 + 100);
    let st = tmp.path().join("embeddings.safetensors");
    let embed = simsiam(&["embed", "--checkpoint", &ck, "--out", &st.display().to_string()]);
    assert!(embed.status.success(), "{}", stderr(&embed));
    let back = simsiam_train::read_embeddings_safetensors(&st).expect("embeddings load back");
    assert_eq!(back.embeddings.dims(), [100, 32]);
    assert_eq!(back.labels[..3], [Some(0), Some(1), Some(2)]);

    #[cfg(feature = "figures")]
    figures_of_the_run(tmp.path(), &out, &ck, &csv, &st);
    #[cfg(not(feature = "figures"))]
    {
        assert!(log.contains("warning: no plot") && log.contains("without the `figures` feature"), "{log}");
        for args in [["plot", "--metrics"], ["neighbors", "--embeddings"], ["scatter", "--embeddings"]] {
            let line =
                error_line(&simsiam(&[args[0], args[1], &csv.display().to_string(), "--out", "x.png"]));
            assert!(line.contains("without the `figures` feature"), "{args:?}: {line}");
        }
        assert!(!Path::new("x.png").exists());
    }

    // The same command again must not overwrite the run.
    let before = std::fs::read(&checkpoint).expect("checkpoint bytes");
    let again = simsiam(&args);
    assert!(error_line(&again).contains("--resume"));
    assert_eq!(std::fs::read(&checkpoint).expect("checkpoint bytes"), before);
}

/// Both embedding files load back alike; the figures take them with the checkpoint's dataset.
#[cfg(feature = "figures")]
fn figures_of_the_run(tmp: &Path, out: &Path, ck: &str, csv: &Path, st: &Path) {
    let (from_csv, from_st) = (
        simsiam::figures::read_embeddings(csv).expect("csv"),
        simsiam::figures::read_embeddings(st).expect("st"),
    );
    assert_eq!((from_csv.names.len(), from_csv.dim), (100, 32));
    assert_eq!(from_csv.names, from_st.names);
    assert_eq!(from_csv.names[..2], ["train/00000", "train/00001"]);
    assert_eq!(from_csv.values, from_st.values);
    let metrics_path = out.join("metrics.jsonl").display().to_string();
    let (st_s, csv_s) = (st.display().to_string(), csv.display().to_string());
    let figures = [
        ("plot.png", vec!["plot", "--metrics", &metrics_path]),
        ("nn.png", vec!["neighbors", "--checkpoint", ck, "--embeddings", &st_s, "--query", "train/00007"]),
        ("scatter.png", vec!["scatter", "--checkpoint", ck, "--embeddings", &csv_s, "--size", "400"]),
    ];
    for (name, mut args) in figures {
        let png = tmp.join(name);
        let png_s = png.display().to_string();
        args.extend(["--out", &png_s]);
        let run = simsiam(&args);
        assert!(run.status.success(), "{args:?}: {}", stderr(&run));
        let image = image::open(&png).expect("a PNG").to_rgb8();
        assert!(image.width() >= 100 && image.height() >= 100, "{name}: {:?}", image.dimensions());
    }
}

#[test]
fn bad_input_fails_with_one_clear_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("run");
    let out_set = format!("train.output_dir={}", out.display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--set".into(), "data.path=/nonexistent/cifar".into()], "/nonexistent/cifar"),
        (vec!["--set".into(), "train.epoch=3".into()], "unknown config key `train.epoch`"),
        (vec!["--set".into(), "train.epochs=lots".into()], "invalid value"),
        (vec!["--set".into(), "train.device=tpu".into()], "unknown device `tpu`"),
        (vec!["--set".into(), "model.backbone=vgg".into()], "unknown backbone `vgg`"),
        (vec!["--preset".into(), "imagenet-huge".into()], "unknown preset `imagenet-huge`"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["pretrain".to_owned(), "--set".into(), out_set.clone()];
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = error_line(&simsiam(&args));
        assert!(line.contains(expected), "expected `{expected}` in `{line}`");
        assert!(!out.join("checkpoints").exists(), "a failed start wrote checkpoints");
    }

    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "[train]\nepochz = 1\n").expect("write config");
    let line = error_line(&simsiam(&["pretrain", "--config", &config.display().to_string()]));
    assert!(line.contains(&config.display().to_string()), "{line}");

    let line = error_line(&simsiam(&["eval", "knn", "--checkpoint", "/nonexistent/ck.safetensors"]));
    assert!(line.contains("/nonexistent/ck.safetensors"), "{line}");
    let corrupt = tmp.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"garbage").expect("write");
    let line =
        error_line(&simsiam(&["embed", "--checkpoint", &corrupt.display().to_string(), "--out", "x.csv"]));
    assert!(line.contains("corrupt.safetensors") && line.contains("not a safetensors file"), "{line}");
    assert!(!Path::new("x.csv").exists());
}

#[test]
fn config_prints_each_preset_as_before_and_it_reads_back_equal() {
    for &preset in Preset::ALL {
        let text = succeed(&["config", "--preset", preset.as_str()]);
        // The text `simsiam config` printed before the config had typed choices.
        let golden = format!("{}/tests/presets/{preset}.toml", env!("CARGO_MANIFEST_DIR"));
        assert_eq!(text, std::fs::read_to_string(&golden).expect("golden preset"), "{preset}");
        // docs/presets.md shows the same text (scripts/presets-doc.sh writes both).
        let docs = format!("{}/../../docs/presets.md", env!("CARGO_MANIFEST_DIR"));
        let docs = std::fs::read_to_string(docs).expect("docs/presets.md");
        assert!(
            docs.contains(&format!("--preset {preset} -->\n```toml\n{text}```")),
            "docs/presets.md: {preset}"
        );
        let back: RunConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{preset}: {e}"));
        assert_eq!(back, RunConfig::from_preset(preset), "{preset}");
    }
    let line = error_line(&simsiam(&["config", "--preset", "huge"]));
    assert!(
        line.contains(
            "unknown preset `huge`: use lightly-example, lightly-cifar10-benchmark, satellite, cifar10-paper, imagenet-paper or cifar10-cpu"
        ),
        "{line}"
    );
}
