//! Loader throughput on CIFAR-10 (images/s, two 32x32 views, batch 256) beside a PyTorch
//! `DataLoader` with Lightly's `SimSiamTransform`, printed as one Markdown table.
//!
//! ```sh
//! cargo run --release -p simsiam-data --example bench_loader -- --data <dir with cifar-10-batches-bin>
//! ```
//!
//! Options: `--workers 1,2` (thread counts), `--batches 40` (timed batches, after
//! `--warmup 2`), `--python <path>`, `--no-python`. The PyTorch side runs
//! `tools/data/bench_torch_loader.py` with `--python`, else `$SIMSIAM_PYTHON`, else the
//! checkout's `.venv`, else `python3` on `PATH` (the rule of `cargo xtask bench`; the last two
//! only when they import torch and Lightly).
#![allow(clippy::unwrap_used)]

#[path = "../../../examples/common/python.rs"]
mod python;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use simsiam_augment::SimSiamConfig;
use simsiam_data::{Cifar10, Dataset, LoaderConfig, Split, TwoViewLoader};

type Error = Box<dyn std::error::Error>;

struct Args {
    data: PathBuf,
    workers: Vec<usize>,
    batches: usize,
    warmup: usize,
    python: bool,
    python_path: Option<PathBuf>,
}

fn parse_args() -> Result<Args, Error> {
    let mut args = Args {
        data: PathBuf::new(),
        workers: vec![1, 2],
        batches: 40,
        warmup: 2,
        python: true,
        python_path: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => args.data = PathBuf::from(value()?),
            "--workers" => {
                args.workers = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            "--batches" => args.batches = value()?.parse()?,
            "--warmup" => args.warmup = value()?.parse()?,
            "--python" => args.python_path = Some(PathBuf::from(value()?)),
            "--no-python" => args.python = false,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if args.data.as_os_str().is_empty() {
        return Err("usage: bench_loader --data <dir with cifar-10-batches-bin> [--workers 1,2] \
                    [--batches 40] [--warmup 2] [--python <path>] [--no-python]"
            .into());
    }
    Ok(args)
}

/// Images per second of our loader with `workers` threads.
fn measure(dataset: &Arc<dyn Dataset>, workers: usize, args: &Args) -> Result<f64, Error> {
    let config =
        LoaderConfig { batch_size: 256, seed: 0, drop_last: true, workers, prefetch: 2 * workers.max(1) };
    let loader =
        TwoViewLoader::new(dataset.clone(), SimSiamConfig::cifar10().build()?, config, candle::Device::Cpu)?;
    let mut batches = loader.epoch(0);
    for _ in 0..args.warmup {
        batches.next().ok_or("epoch too short")??;
    }
    let start = Instant::now();
    for _ in 0..args.batches {
        let b = batches.next().ok_or("epoch too short")??;
        assert_eq!(b.x0.dims(), [256, 3, 32, 32]);
    }
    Ok((args.batches * 256) as f64 / start.elapsed().as_secs_f64())
}

/// `(workers, images/s)` from the PyTorch script's JSON lines.
fn torch(args: &Args, python: &Path) -> Result<Vec<(usize, f64)>, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/data/bench_torch_loader.py");
    let workers: Vec<String> = args.workers.iter().map(ToString::to_string).collect();
    let out = Command::new(python)
        .arg(&script)
        .arg("--data")
        .arg(&args.data)
        .args(["--workers", &workers.join(","), "--batches", &args.batches.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr)).into());
    }
    // Lines like {"workers": 1, "batches": 40, "images_per_s": 1234.5}
    let field = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(&format!("\"{key}\": "))? + key.len() + 4..];
        rest.split([',', '}']).next()?.trim().parse().ok()
    };
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| Some((field(l, "workers")? as usize, field(l, "images_per_s")?)))
        .collect())
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let dataset: Arc<dyn Dataset> = Arc::new(Cifar10::load(&args.data, Split::Train)?);
    eprintln!("CIFAR-10 train: {} images; load average before: {}", dataset.len(), load.trim());
    let mut rows = Vec::new();
    for &w in &args.workers {
        let ips = measure(&dataset, w, &args)?;
        eprintln!("simsiam-data, {w} worker(s): {ips:.0} images/s");
        rows.push(("simsiam-data `TwoViewLoader`", w, ips));
    }
    if args.python {
        match python::find_python(args.python_path.as_deref()) {
            Some(py) => {
                for (w, ips) in torch(&args, &py)? {
                    eprintln!("PyTorch DataLoader, {w} worker(s): {ips:.0} images/s");
                    rows.push(("PyTorch `DataLoader` + Lightly `SimSiamTransform`", w, ips));
                }
            }
            None => eprintln!(
                "skipped PyTorch: no Python with torch and Lightly (use --python or SIMSIAM_PYTHON)"
            ),
        }
    }
    println!(
        "CIFAR-10 train, batch 256, two 32x32 views (CIFAR preset, no blur), {} timed batches after {} warm-up",
        args.batches, args.warmup
    );
    println!();
    println!("| loader | workers | images/s | ms per batch |");
    println!("|---|---:|---:|---:|");
    for (name, w, ips) in rows {
        println!("| {name} | {w} | {ips:.0} | {:.1} |", 256_000.0 / ips);
    }
    println!();
    println!("load average before: {}", load.trim());
    Ok(())
}
