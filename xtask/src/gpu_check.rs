//! `cargo xtask gpu-check`: builds here, with CUDA from the PyPI wheels (`scripts/cuda-build.sh`
//! must have assembled the toolkit once), everything a GPU machine needs for one short check,
//! and packs it into `target/gpu-check` (ignored by git, under the 64 MiB the device tool
//! carries): the stripped `simsiam` binary, the CUDA test binary and the GPU step benchmark
//! (xz-compressed), the kernel source for an `nvcc` check, the PyTorch benchmark scripts, a
//! CIFAR-10 subset and `run.sh`, which runs it all there in under 8 minutes. See docs/cuda.md.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, project_root};

pub const USAGE: &str = "\
  gpu-check          build the CUDA binaries and pack target/gpu-check for a GPU machine
                     [--venv DIR] [--cifar DIR] [--train N] [--test N] [--skip-build]
";

/// The device tool carries at most this much of ignored paths per call.
const CARRY_LIMIT: u64 = 64 << 20;

struct Options {
    venv: PathBuf,
    cifar: PathBuf,
    /// Training images in the subset, spread over the five batch files.
    train: usize,
    /// Test images in the subset.
    test: usize,
    skip_build: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        venv: std::env::var_os("CUDA_VENV").map_or_else(|| PathBuf::from("/work/cuda-venv"), PathBuf::from),
        cifar: project_root().join("data/cifar10/cifar-10-batches-bin"),
        train: 5000,
        test: 1000,
        skip_build: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--venv" => o.venv = PathBuf::from(value()?),
            "--cifar" => o.cifar = PathBuf::from(value()?),
            "--train" => o.train = value()?.parse().context("--train: not a number")?,
            "--test" => o.test = value()?.parse().context("--test: not a number")?,
            "--skip-build" => o.skip_build = true,
            other => bail!("gpu-check: unexpected argument `{other}`"),
        }
    }
    Ok(o)
}

/// The environment `scripts/cuda-build.sh` exports, so that cargo reuses its build (candle's
/// kernels take an hour of nvcc; their build script reruns when any of these changes).
pub fn cuda_env(venv: &Path) -> Result<Vec<(String, String)>> {
    let root = venv.join("cuda");
    if !root.join("lib/stubs/libcuda.so").is_file() {
        bail!("{} has no toolkit: run `scripts/cuda-build.sh {}` once", root.display(), venv.display());
    }
    let r = root.display().to_string();
    let gxx = which("g++").context("g++ not found on PATH")?;
    let path = format!("{r}/bin:{}", std::env::var("PATH").unwrap_or_default());
    let target = project_root().join("target/cuda").display().to_string();
    let rustflags = format!(
        "{} -L native={r}/lib -L native={r}/lib/stubs",
        std::env::var("RUSTFLAGS").unwrap_or_default()
    );
    Ok([
        ("CUDA_ROOT", r.clone()),
        ("CUDA_PATH", r.clone()),
        ("CUDA_HOME", r.clone()),
        ("CUDA_TOOLKIT_ROOT_DIR", r.clone()),
        ("NVCC", format!("{r}/bin/nvcc")),
        ("PATH", path),
        ("CUDA_COMPUTE_CAP", std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into())),
        ("NVCC_CCBIN", gxx),
        ("CARGO_TARGET_DIR", target),
        ("RUSTFLAGS", rustflags),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect())
}

fn which(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// Runs `cargo args` with the CUDA environment; returns stdout.
fn cuda_cargo(env: &[(String, String)], args: &[&str]) -> Result<String> {
    eprintln!("$ cargo {}", args.join(" "));
    let out = Command::new(cargo())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(project_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("could not start cargo")?;
    if !out.status.success() {
        bail!("cargo {} failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The executables cargo's JSON messages name, by target name.
fn executables(json: &str) -> Vec<(String, PathBuf)> {
    json.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let exe = v.get("executable")?.as_str()?;
            let name = v.get("target")?.get("name")?.as_str()?;
            Some((name.to_owned(), PathBuf::from(exe)))
        })
        .collect()
}

/// Builds the three binaries; `(name in the pack, path)`.
fn build(env: &[(String, String)]) -> Result<Vec<(&'static str, PathBuf)>> {
    // `-p simsiam` alongside: with `-p simsiam-models` alone, cargo resolves the build
    // dependencies' features differently and reruns candle's hour-long kernel build.
    let features = "simsiam/cuda,simsiam-models/cuda,simsiam-kernels/cuda";
    let common = [
        "--release",
        "--message-format=json",
        "-p",
        "simsiam",
        "-p",
        "simsiam-models",
        "-p",
        "simsiam-kernels",
        "--features",
        features,
    ];
    let mut json = cuda_cargo(
        env,
        &[&["build", "--bin", "simsiam", "--example", "bench_step_gpu"], &common[..]].concat(),
    )?;
    json += &cuda_cargo(env, &[&["test", "--no-run", "--test", "cuda_ops"], &common[..]].concat())?;
    let found = executables(&json);
    let pick = |name: &str| {
        found
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .with_context(|| format!("cargo built no `{name}`"))
    };
    Ok(vec![
        ("simsiam", pick("simsiam")?),
        ("bench_step_gpu", pick("bench_step_gpu")?),
        ("cuda_ops", pick("cuda_ops")?),
    ])
}

/// The first `count` records of a CIFAR-10 batch file.
fn head(src: &Path, dst: &Path, count: usize) -> Result<()> {
    const RECORD: usize = 3073;
    let mut buf = vec![0; count * RECORD];
    fs::File::open(src)
        .and_then(|mut f| f.read_exact(&mut buf))
        .with_context(|| format!("cannot read {count} images from {}", src.display()))?;
    fs::write(dst, buf).with_context(|| format!("cannot write {}", dst.display()))
}

fn cifar_subset(o: &Options, dir: &Path) -> Result<()> {
    let dst = dir.join("data/cifar10/cifar-10-batches-bin");
    fs::create_dir_all(&dst)?;
    for i in 1..=5 {
        let name = format!("data_batch_{i}.bin");
        head(&o.cifar.join(&name), &dst.join(&name), o.train.div_ceil(5))?;
    }
    head(&o.cifar.join("test_batch.bin"), &dst.join("test_batch.bin"), o.test)?;
    fs::copy(o.cifar.join("batches.meta.txt"), dst.join("batches.meta.txt")).context("batches.meta.txt")?;
    Ok(())
}

fn run_tool(program: &str, args: &[&str], cwd: &Path) -> Result<()> {
    let status = Command::new(program).args(args).current_dir(cwd).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("{program} {} failed ({s})", args.join(" ")),
        Err(e) => bail!("could not start {program}: {e}"),
    }
}

fn du(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path).map_or(0, |d| d.flatten().map(|e| du(&e.path())).sum()),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// `cargo xtask gpu-check [--venv DIR] [--cifar DIR] [--train N] [--test N] [--skip-build]`.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let root = project_root();
    let dir = root.join("target/gpu-check");
    let env = cuda_env(&o.venv)?;
    let bins = if o.skip_build {
        let b = root.join("target/cuda/release");
        vec![
            ("simsiam", b.join("simsiam")),
            ("bench_step_gpu", b.join("examples/bench_step_gpu")),
            ("cuda_ops", newest(&b.join("deps"), "cuda_ops-")?),
        ]
    } else {
        build(&env)?
    };
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    let stage = dir.join("bin");
    fs::create_dir_all(&stage)?;
    for (name, path) in &bins {
        fs::copy(path, stage.join(name)).with_context(|| format!("cannot copy {}", path.display()))?;
        run_tool("strip", &[name], &stage)?;
    }
    // The CUDA libraries' PTX compresses well; run.sh unpacks with tar or Python's lzma.
    run_tool("tar", &["-cJf", "bin.tar.xz", "bin"], &dir)?;
    fs::remove_dir_all(&stage)?;
    cifar_subset(&o, &dir)?;
    fs::copy(root.join("crates/simsiam-kernels/src/cuda.cu"), dir.join("cuda.cu"))?;
    for f in ["bench_step_torch.py", "bench_step_torch_gpu.py"] {
        fs::copy(root.join("tools/bench").join(f), dir.join(f))?;
    }
    fs::write(dir.join("run.sh"), include_str!("gpu_check/run.sh"))?;
    let total = du(&dir);
    println!(
        "{}: {:.1} MiB (limit {} MiB)",
        dir.display(),
        total as f64 / (1 << 20) as f64,
        CARRY_LIMIT >> 20
    );
    if total > CARRY_LIMIT {
        bail!("the pack exceeds what the device tool carries: lower --train/--test");
    }
    println!("on the GPU machine: bash target/gpu-check/run.sh   (carry: target/gpu-check; results in $OUT)");
    Ok(())
}

/// The newest file in `dir` whose name starts with `prefix` and has no extension.
fn newest(dir: &Path, prefix: &str) -> Result<PathBuf> {
    fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(prefix) && !name.contains('.')
        })
        .max_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
        .with_context(|| format!("no {prefix}* in {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_come_from_cargo_json() {
        let json = r#"{"reason":"compiler-artifact","target":{"name":"cuda_ops"},"executable":"/t/cuda_ops-1"}
{"reason":"compiler-artifact","target":{"name":"candle"},"executable":null}
not json"#;
        assert_eq!(executables(json), vec![("cuda_ops".to_owned(), PathBuf::from("/t/cuda_ops-1"))]);
    }

    #[test]
    fn options_parse() -> Result<()> {
        let o = parse(&["--train".into(), "100".into(), "--skip-build".into()])?;
        assert_eq!((o.train, o.test, o.skip_build), (100, 1000, true));
        assert!(parse(&["--train".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
        Ok(())
    }
}
