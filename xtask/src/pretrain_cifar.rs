//! `cargo xtask download-cifar` and `cargo xtask pretrain-cifar`: CIFAR-10 on disk, then a
//! SimSiam run that ends with the kNN accuracy, through the `simsiam` binary.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, check_nvcc, project_root, take_features};

/// Where the tasks keep CIFAR-10 unless told otherwise.
fn default_data_dir() -> PathBuf {
    project_root().join("data").join("cifar10")
}

struct Options {
    from: Option<String>,
    data: PathBuf,
    /// Cargo features of the `simsiam` build (`cuda,cudnn`).
    features: Option<String>,
    rest: Vec<String>,
}

/// Splits `--from SRC`, `--data DIR` and `--features LIST` from the arguments passed on to
/// `simsiam`.
fn parse(args: &[String]) -> Result<Options> {
    let (features, args) = take_features(args)?;
    check_nvcc(features.as_deref())?;
    let mut options = Options { from: None, data: default_data_dir(), features, rest: Vec::new() };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--from" => options.from = Some(it.next().context("--from needs a path or URL")?.clone()),
            "--data" => options.data = PathBuf::from(it.next().context("--data needs a directory")?),
            _ => options.rest.push(arg.clone()),
        }
    }
    Ok(options)
}

/// `cargo run -p simsiam [--features F] -- args`, cargo's build progress shown: a first build
/// takes minutes.
fn simsiam(features: Option<&str>, args: &[String]) -> Result<()> {
    // The dev profile optimises candle and our kernels (see the workspace Cargo.toml), so a
    // run needs no second, release build of candle.
    let mut run = vec!["run", "--package", "simsiam"];
    if let Some(features) = features {
        run.extend(["--features", features]);
    }
    eprintln!("$ cargo {} -- {}", run.join(" "), args.join(" "));
    let status = Command::new(cargo())
        .args(run)
        .arg("--")
        .args(args)
        .current_dir(project_root())
        .status()
        .context("could not start `cargo run -p simsiam`")?;
    if !status.success() {
        bail!("simsiam {} failed ({status})", args.first().map(String::as_str).unwrap_or(""));
    }
    Ok(())
}

/// `cargo xtask download-cifar [--from PATH|URL] [--data DIR]`.
pub fn download(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    if let Some(extra) = options.rest.first() {
        bail!("download-cifar: unexpected argument `{extra}`");
    }
    fetch(&options)
}

/// Runs `simsiam download` for the options' data directory and source.
fn fetch(options: &Options) -> Result<()> {
    let mut cmd = vec!["download".to_owned(), "--dataset".into(), "cifar10".into()];
    cmd.extend(["--dir".into(), options.data.display().to_string()]);
    if let Some(from) = &options.from {
        cmd.extend(["--from".into(), from.clone()]);
    }
    simsiam(options.features.as_deref(), &cmd)
}

/// `cargo xtask pretrain-cifar [--from PATH|URL] [--data DIR] [--features LIST] [simsiam
/// pretrain flags]`: downloads CIFAR-10 when missing, then pretrains, with `simsiam` built with
/// the features (`cuda,cudnn` for `--set train.device=cuda`). With no flags it picks the preset
/// that suits a CPU (Lightly's example); any `--preset`, `--config` or `--set` is passed on.
/// With `--help` it builds and prints `simsiam pretrain --help`, downloading nothing.
pub fn pretrain(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let features = options.features.as_deref();
    if options.rest.iter().any(|a| a == "--help" || a == "-h") {
        return simsiam(features, &["pretrain".to_owned(), "--help".into()]);
    }
    fetch(&options)?;
    let mut cmd =
        vec!["pretrain".to_owned(), "--set".into(), format!("data.path={}", options.data.display())];
    cmd.extend(options.rest);
    simsiam(features, &cmd)
}
