//! Running the `simsiam` binary from the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the binary under test with `args`.
pub fn simsiam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simsiam")).args(args).output().expect("run simsiam")
}

/// The process's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the binary, asserts success and returns its stdout.
pub fn succeed(args: &[&str]) -> String {
    let out = simsiam(args);
    assert!(out.status.success(), "simsiam {args:?} failed: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The last line of stderr, which must be the one error line.
pub fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure, got success: {}", stderr(out));
    let text = stderr(out);
    let line = text.lines().last().unwrap_or("").to_owned();
    assert!(line.starts_with("error: "), "the last line is not the error: {text}");
    line
}

/// A CIFAR-10-format folder: 5 train batches and a test batch of `n` records each, labels
/// cycling through the 10 classes, pixels from a fixed pattern.
pub fn fake_cifar(root: &Path, n: usize) -> PathBuf {
    let dir = root.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let files =
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"];
    for (f, name) in files.iter().enumerate() {
        let mut bytes = Vec::with_capacity(n * 3073);
        for i in 0..n {
            let label = (i % 10) as u8;
            bytes.push(label);
            bytes.extend((0..3072).map(|p| ((p * (label as usize + 1) + i * 7 + f * 13) % 251) as u8));
        }
        std::fs::write(dir.join(format!("{name}.bin")), bytes).expect("write batch");
    }
    root.to_owned()
}

/// `simsiam pretrain` of a tiny network for 2 epochs on `data` into `out`.
pub fn tiny_run_args(data: &str, out: &str) -> Vec<String> {
    [
        "pretrain",
        "--set",
        &format!("data.path={data}"),
        "--set",
        &format!("train.output_dir={out}"),
        "--set",
        "model.width=4",
        "--set",
        "model.proj_hidden_dim=32",
        "--set",
        "model.proj_output_dim=16",
        "--set",
        "model.pred_hidden_dim=8",
        "--set",
        "train.batch_size=16",
        "--set",
        "train.epochs=2",
        "--set",
        "train.knn_k=5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `args` as the `&str`s [`simsiam`] takes.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Every file below `dir` with its bytes, sorted by path: what a failed command must leave
/// exactly as it was.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}
