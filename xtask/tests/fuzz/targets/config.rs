//! The run config: `RunConfig::load` (a TOML file, then `--set section.key=value` overrides),
//! `validate`, and the round trip through `to_toml` that every run folder's `config.toml`
//! and every resume rely on.
//!
//! Input: the TOML file, then NUL-separated overrides. An input that starts with NUL loads the
//! `lightly-example` preset instead of a file.

use std::path::Path;

use simsiam::config::RunConfig;

use super::{Outcome, Target};

pub const TARGET: Target = Target {
    name: "config",
    seeds,
    run,
    tokens: &[
        b"[data]",
        b"[augment]",
        b"[model]",
        b"[train]",
        b"epochs",
        b"batch_size",
        b"base_lr",
        b"input_size",
        b"knn_k",
        b"knn_t",
        b"backbone",
        b"resnet18",
        b"train.",
        b"model.",
        b"data.limit=",
        b"\"",
        b"'''",
        b"true",
        b"1e308",
        b"-0.0",
        b"nan",
        b"0x10",
        b"1_000",
    ],
};

fn run(dir: &Path, data: &[u8]) -> Outcome {
    let mut parts = data.split(|&b| b == 0);
    let file = parts.next().unwrap_or_default();
    let overrides: Vec<String> = parts.map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    let path = dir.join("config.toml");
    std::fs::write(&path, file).expect("the config file");
    let from_file = !data.starts_with(&[0]);
    let loaded = RunConfig::load(from_file.then_some(path.as_path()), "lightly-example", &overrides);
    let config = match loaded {
        Ok(config) => config,
        Err(e) => {
            let message = format!("{e:#}");
            let named = (from_file && message.contains(&path.display().to_string()))
                // The override, or its key (the text before `=`) when the key is at fault.
                || overrides.iter().any(|o| {
                    let key = o.split('=').next().unwrap_or(o);
                    message.contains(&format!("`{o}`")) || message.contains(&format!("`{key}`"))
                });
            assert!(named, "the error names neither the file nor an override: {message}");
            return Outcome::Refused;
        }
    };
    // Whatever was accepted is written into the run folder and read back on resume.
    let text = config.to_toml().expect("an accepted config written as TOML");
    let again = dir.join("again.toml");
    std::fs::write(&again, &text).expect("the written config");
    let back = RunConfig::from_file(&again).expect("a written config read back");
    assert_eq!(back.to_toml().expect("written again"), text, "the config changed through TOML");
    match config.validate() {
        Ok(()) => Outcome::Accepted,
        Err(_) => Outcome::Refused,
    }
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let preset = |name: &str| {
        RunConfig::preset(name).and_then(|c| c.to_toml()).expect("a preset as TOML").into_bytes()
    };
    let lightly = preset("lightly-example");
    let with = |file: &[u8], overrides: &[&str]| {
        let mut v = file.to_vec();
        for o in overrides {
            v.push(0);
            v.extend_from_slice(o.as_bytes());
        }
        v
    };
    vec![
        ("ok-lightly".into(), lightly.clone()),
        ("ok-cifar10".into(), preset("cifar10-paper")),
        ("ok-satellite".into(), preset("satellite")),
        (
            "ok-overrides".into(),
            with(&lightly, &["train.epochs=3", "data.path=\"x y\"", "model.backbone=resnet50"]),
        ),
        ("ok-preset-overrides".into(), with(b"", &["train.batch_size = 8", "augment.cj_prob=0.5"])),
        ("err-unknown-key".into(), with(&lightly, &["train.epoch=3"])),
        ("err-not-key-value".into(), with(b"", &["train.epochs"])),
        ("err-bad-type".into(), with(&lightly, &["train.epochs=-1"])),
        ("err-zero-epochs".into(), with(&lightly, &["train.epochs=0"])),
        ("err-empty".into(), Vec::new()),
        ("err-unknown-section".into(), [lightly.as_slice(), b"\n[extra]\nx = 1\n"].concat()),
        ("err-not-utf8".into(), [lightly.as_slice(), b"# \xff\n"].concat()),
    ]
}
