//! Runs one preset in a loop, for profilers (`perf record -g`), without the Lightly baseline.
//!
//! ```text
//! cargo run --release -p simsiam-augment --example profile_preset -- default 1 5
//! ```
//!
//! Arguments: preset (`default` or `cifar10`), rayon threads, seconds, and optionally the batch
//! size (64 and 512 by default, as `bench_augment`). Prints images/s and a
//! checksum of the output of epochs 0 to 3. With the argument `ops` (and an optional name filter) it prints instead the
//! fastest of many runs of each op of the default preset on a 224x224 image (robust to a busy
//! machine).

use std::time::{Duration, Instant};

use simsiam_augment::{
    ChwImage, CropBox, Normalization, Normalize, RgbView, SimSiamConfig, Workspace, adjust_brightness,
    adjust_contrast, adjust_hue, adjust_saturation, gaussian_blur, hflip, resized_crop, rgb_to_grayscale,
};

fn noise(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..width as usize * height as usize * 3)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 24) as u8
        })
        .collect()
}

/// The fastest of `$SIMSIAM_OPS_RUNS` (200) runs of `f`, in microseconds.
fn fastest(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let runs: usize = std::env::var("SIMSIAM_OPS_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(best)
}

/// Times each op whose name contains `filter`.
fn ops(filter: &str) -> anyhow::Result<()> {
    let pixels = noise(256, 256, 1);
    let src = RgbView::new(256, 256, &pixels)?;
    let mut ws = Workspace::new();
    let mut img = ChwImage::default();
    let mut out = vec![0.0f32; 3 * 224 * 224];
    let normalize = Normalize::new(Normalization::IMAGENET)?;
    for (name, crop) in [
        ("resized_crop 180x200 -> 224 (up)", CropBox { top: 20, left: 10, height: 200, width: 180 }),
        ("resized_crop 250x240 -> 224 (down)", CropBox { top: 3, left: 2, height: 240, width: 250 }),
    ] {
        if !name.contains(filter) {
            continue;
        }
        let t = fastest(|| Ok(resized_crop(src, crop, 224, 224, &mut img, &mut ws)?))?;
        println!("{name:40} {t:8.1} us");
    }
    // The image the other ops start from.
    resized_crop(src, CropBox { top: 20, left: 10, height: 200, width: 180 }, 224, 224, &mut img, &mut ws)?;
    let base = img.clone();
    let mut run = |name: &str, f: &mut dyn FnMut(&mut ChwImage, &mut Workspace) -> anyhow::Result<()>| {
        if !name.contains(filter) {
            return Ok(());
        }
        let t = fastest(|| {
            img.clone_from(&base);
            f(&mut img, &mut ws)
        })?;
        println!("{name:40} {t:8.1} us");
        anyhow::Ok(())
    };
    run("copy (baseline of the rows below)", &mut |_, _| Ok(()))?;
    run("hflip", &mut |i, _| {
        hflip(i);
        Ok(())
    })?;
    run("brightness", &mut |i, _| Ok(adjust_brightness(i, 1.2)?))?;
    run("contrast", &mut |i, _| Ok(adjust_contrast(i, 0.9)?))?;
    run("saturation", &mut |i, _| Ok(adjust_saturation(i, 1.1)?))?;
    run("hue", &mut |i, _| Ok(adjust_hue(i, 0.05)?))?;
    run("grayscale", &mut |i, _| {
        rgb_to_grayscale(i);
        Ok(())
    })?;
    for (k, sigma) in [(3, 0.3), (7, 1.0), (13, 2.0)] {
        run(&format!("gaussian_blur k{k}"), &mut |i, ws| Ok(gaussian_blur(i, k, sigma, ws)?))?;
    }
    if "normalize".contains(filter) {
        let t = fastest(|| Ok(normalize.apply(&base, &mut out)?))?;
        println!("{:40} {t:8.1} us", "normalize");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "ops") {
        return ops(args.get(1).map_or("", String::as_str));
    }
    let preset = args.first().map_or("default", String::as_str);
    let threads: usize = args.get(1).map_or(Ok(1), |s| s.parse())?;
    let seconds: f64 = args.get(2).map_or(Ok(5.0), |s| s.parse())?;
    let batch: Option<usize> = args.get(3).map(|s| s.parse()).transpose()?;
    let (config, side, n) = match preset {
        "cifar10" => (SimSiamConfig::cifar10(), 32u32, 512usize),
        "default" => (SimSiamConfig::default(), 256, 64),
        other => anyhow::bail!("unknown preset {other:?}: expected default or cifar10"),
    };
    let n = batch.unwrap_or(n);
    let transform = config.build()?;
    let pixels: Vec<Vec<u8>> = (0..n).map(|i| noise(side, side, i as u32)).collect();
    let images = pixels.iter().map(|p| RgbView::new(side, side, p)).collect::<Result<Vec<_>, _>>()?;
    let indices: Vec<u64> = (0..n as u64).collect();
    let mut out = vec![0.0f32; transform.batch_len(n)];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let (mut done, mut epoch) = (0usize, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        pool.install(|| transform.apply_batch_into(&images, &indices, 0, epoch, &mut out))?;
        done += n;
        epoch += 1;
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    // A checksum of epochs 0..4, to check that an optimisation left the bytes unchanged.
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for epoch in 0..4 {
        pool.install(|| transform.apply_batch_into(&images, &indices, 0, epoch, &mut out))?;
        for v in &out {
            hash = (hash ^ u64::from(v.to_bits())).wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("{preset} threads={threads}: {rate:.1} images/s, checksum {hash:016x}");
    Ok(())
}
