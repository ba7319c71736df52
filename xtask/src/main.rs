//! `cargo xtask`: project automation, in the rust-analyzer style (one binary, one module per task).

mod bench;
mod ci;
mod fuzz;
mod gpu_check;
mod pretrain_cifar;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  ci                 what CI runs: cargo fmt --check, cargo clippy -D warnings, cargo test --workspace,
                     the golden steps again on the Winograd path, `fuzz --seconds 3`
  download-cifar     fetch and verify CIFAR-10 into data/cifar10 [--from PATH|URL] [--data DIR]
  pretrain-cifar     download when missing, pretrain with SimSiam, report kNN accuracy
                     [--from PATH|URL] [--data DIR] [--features cuda,cudnn] [--preset NAME]
                     [--set section.key=value]... [--help: the build, then `simsiam pretrain --help`]
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench::run(&args[1..]),
        Some("ci") => ci::run(&args[1..]),
        Some("download-cifar") => pretrain_cifar::download(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("gpu-check") => gpu_check::run(&args[1..]),
        Some("pretrain-cifar") => pretrain_cifar::pretrain(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}{}{}{}{}", fuzz::USAGE, gpu_check::USAGE, bench::USAGE, bench::QUALITY_USAGE);
            Ok(())
        }
        Some(other) => {
            bail!(
                "unknown task `{other}`\n\n{USAGE}{}{}{}{}",
                fuzz::USAGE,
                gpu_check::USAGE,
                bench::USAGE,
                bench::QUALITY_USAGE
            )
        }
    }
}

/// The workspace root, derived from this crate's manifest directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Takes every `--features LIST` (or `--features=LIST`) out of `args`: the features, comma
/// separated, and the other arguments in order.
pub fn take_features(args: &[String]) -> Result<(Option<String>, Vec<String>)> {
    let mut features = Vec::new();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--features" || arg == "-F" {
            match it.next() {
                Some(list) if !list.starts_with('-') => features.push(list.clone()),
                _ => bail!("{arg} needs a list of features, e.g. --features cuda,cudnn"),
            }
        } else if let Some(list) = arg.strip_prefix("--features=") {
            features.push(list.to_owned());
        } else {
            rest.push(arg.clone());
        }
    }
    let list = features.join(",");
    Ok(((!list.is_empty()).then_some(list), rest))
}

/// Whether `features` (a comma-separated list, crate prefixes allowed) builds candle's CUDA
/// kernels, which nvcc compiles.
pub fn needs_nvcc(features: &str) -> bool {
    features
        .split(',')
        .map(|f| f.rsplit('/').next().unwrap_or(f).trim())
        .any(|f| matches!(f, "cuda" | "cudnn" | "nccl"))
}

/// Refuses, before cargo starts, a CUDA build that would stop minutes later in a build script
/// for want of nvcc.
pub fn check_nvcc(features: Option<&str>) -> Result<()> {
    if !features.is_some_and(needs_nvcc) {
        return Ok(());
    }
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_owned());
    match Command::new(&nvcc).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!(
            "the features {} compile candle's CUDA kernels with nvcc, and `{nvcc} --version` \
             failed: install the CUDA toolkit, or run `source scripts/cuda-env.sh` (NVIDIA's \
             wheels from PyPI, no GPU needed; see docs/cuda.md) and try again",
            features.unwrap_or_default()
        ),
    }
}

/// The `cargo` that runs us, so toolchain overrides carry through.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// A `cargo` command without the variables `cargo run` set for this package
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ...): build scripts that read them (ring's) would
/// see `xtask`'s values, rerun, and rebuild everything above them.
pub fn cargo_command() -> std::process::Command {
    let mut command = std::process::Command::new(cargo());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_by_cargo_run = key.starts_with("CARGO_PKG_")
            || matches!(
                key.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if set_by_cargo_run {
            command.env_remove(key.as_ref());
        }
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn features_are_taken_out_of_the_arguments() -> Result<()> {
        let (f, rest) = take_features(&args("--features cuda,cudnn --set train.device=cuda"))?;
        assert_eq!((f.as_deref(), rest), (Some("cuda,cudnn"), args("--set train.device=cuda")));
        let (f, rest) = take_features(&args("step --features=cuda -F mkl --batch 64"))?;
        assert_eq!((f.as_deref(), rest), (Some("cuda,mkl"), args("step --batch 64")));
        let (f, rest) = take_features(&args("--preset satellite"))?;
        assert_eq!((f, rest), (None, args("--preset satellite")));
        assert!(take_features(&args("--features")).is_err());
        assert!(take_features(&args("--features --help")).is_err());
        assert!(needs_nvcc("cuda,cudnn") && needs_nvcc("mkl, simsiam/nccl") && needs_nvcc("cudnn"));
        assert!(!needs_nvcc("mkl") && !needs_nvcc("metal,video") && !needs_nvcc("cudaish"));
        Ok(())
    }
}
