//! Images per second of the SimSiam presets, beside Lightly's `SimSiamTransform`.
//!
//! ```text
//! cargo run --release -p simsiam-augment --example bench_augment [-- --python <path>]
//! ```
//!
//! Measures the CIFAR-10 preset (32x32 inputs) and the default preset (256x256 inputs, 224
//! views), two views per image, on rayon pools of 1 and 2 threads. With a Python that has
//! torch and Lightly (`--python`, else `$SIMSIAM_PYTHON`, else the checkout's `.venv`, else
//! `python3` on `PATH`, the rule of `cargo xtask bench`), it runs
//! `tools/augment/bench_lightly.py` right after each of our measurements, with the same preset
//! (1 process, or a pool of 2 worker processes), and prints a Markdown table. An empty
//! `SIMSIAM_PYTHON` skips Lightly.
//! `SIMSIAM_BENCH_SECONDS` sets the time per measurement (default 3).

#[path = "../../../examples/common/python.rs"]
mod python;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use simsiam_augment::{RgbView, SimSiamConfig};

fn noise(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..width as usize * height as usize * 3)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 24) as u8
        })
        .collect()
}

/// Images per second of `config` on `threads` rayon threads, batches of `n` `side`-square images.
fn measure(
    config: &SimSiamConfig,
    side: u32,
    n: usize,
    threads: usize,
    budget: Duration,
) -> anyhow::Result<f64> {
    let transform = config.build()?;
    let pixels: Vec<Vec<u8>> = (0..n).map(|i| noise(side, side, i as u32)).collect();
    let images = pixels.iter().map(|p| RgbView::new(side, side, p)).collect::<Result<Vec<_>, _>>()?;
    let indices: Vec<u64> = (0..n as u64).collect();
    let mut out = vec![0.0f32; transform.batch_len(n)];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    pool.install(|| transform.apply_batch_into(&images, &indices, 0, 0, &mut out))?; // warm up
    let (mut done, mut epoch) = (0usize, 1u64);
    let start = Instant::now();
    while start.elapsed() < budget {
        pool.install(|| transform.apply_batch_into(&images, &indices, 0, epoch, &mut out))?;
        done += n;
        epoch += 1;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// The value of `--python <path>`, the only argument.
fn parse_args() -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, ..) => Ok(None),
        (Some("--python"), Some(path), None) => Ok(Some(PathBuf::from(path))),
        _ => anyhow::bail!("usage: bench_augment [--python <path>]"),
    }
}

/// Runs the Lightly baseline; `None` when Python is missing or the script fails.
fn lightly(python: &Path, preset: &str, workers: usize, seconds: f64) -> Option<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/augment/bench_lightly.py");
    let output = Command::new(python)
        .arg(script)
        .args(["--preset", preset, "--workers", &workers.to_string(), "--seconds", &seconds.to_string()])
        .output()
        .inspect_err(|e| eprintln!("cannot start {}: {e}", python.display()))
        .ok()?;
    if !output.status.success() {
        eprintln!("bench_lightly.py failed: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("images_per_s="))
        .and_then(|v| v.trim().parse().ok())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let explicit = parse_args()?;
    let seconds: f64 =
        std::env::var("SIMSIAM_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let budget = Duration::from_secs_f64(seconds);
    println!("load average before: {}", loadavg());
    let presets = [
        ("cifar10", "CIFAR-10 (32x32 -> 2 x 32x32)", SimSiamConfig::cifar10(), 32u32, 512usize),
        ("default", "default (256x256 -> 2 x 224x224)", SimSiamConfig::default(), 256, 64),
    ];
    let python = python::find_python(explicit.as_deref());
    match &python {
        Some(p) => eprintln!("Lightly baseline with {}", p.display()),
        None => eprintln!(
            "no Lightly baseline: no Python with torch and Lightly (use --python or SIMSIAM_PYTHON)"
        ),
    }
    let mut rows = Vec::new();
    // Each Lightly measurement right after ours with the same preset and thread count, so that
    // both see the same load on a shared machine.
    for (key, label, config, side, n) in &presets {
        for threads in [1usize, 2] {
            let rate = measure(config, *side, *n, threads, budget)?;
            eprintln!("ours {key} threads={threads}: {rate:.1} images/s");
            let base = python.as_deref().and_then(|p| lightly(p, key, threads, seconds));
            if let Some(b) = base {
                eprintln!("lightly {key} workers={threads}: {b:.1} images/s");
            }
            rows.push((*label, threads, rate, base));
        }
    }
    println!("load average after: {}", loadavg());
    println!();
    println!("| preset | threads | ours (img/s) | Lightly (img/s) | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for (label, threads, rate, base) in rows {
        let (b, r) =
            base.map_or(("n/a".into(), "n/a".into()), |b| (format!("{b:.0}"), format!("{:.1}x", rate / b)));
        println!("| {label} | {threads} | {rate:.0} | {b} | {r} |");
    }
    Ok(())
}
