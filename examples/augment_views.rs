//! `simsiam-augment` on its own: load an image with the `image` crate, make SimSiam's two
//! augmented views and save them as PNGs, to see what the network is trained on.
//!
//! ```sh
//! cargo run --release -p simsiam-augment --example augment_views -- photo.jpg
//! cargo run --release -p simsiam-augment --example augment_views -- photo.jpg --size 96 --pairs 4 --out views
//! ```
//!
//! Writes `<out>/<name>_e<epoch>_v<view>.png` (default `out` is `views`): one pair of views per
//! epoch, as a training run would draw them for the image with dataset index 0. The views are
//! Lightly's `SimSiamTransform` (random resized crop, flip, colour jitter, grayscale, blur) at
//! `--size` pixels; `--cifar` uses the CIFAR-10 recipe (32 pixels, no blur) instead.
//!
//! The PNGs are the augmented images before `ToTensor` and `Normalize`; the example checks that
//! they equal the normalised tensors the transform gives a training batch, to the last bit of
//! rounding.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use simsiam_augment::{ChwImage, Normalization, RgbView, SimSiamConfig, Workspace, view_rng};

const USAGE: &str = "\
usage: cargo run --release -p simsiam-augment --example augment_views -- IMAGE
           [--out DIR] [--size N] [--pairs N] [--seed N] [--cifar]
";

fn main() -> Result<()> {
    let o = Options::parse()?;
    let img = image::open(&o.image).with_context(|| format!("cannot read {}", o.image.display()))?.to_rgb8();
    let src = RgbView::from_image(&img)?;

    // Lightly's defaults with the output size changed (or the CIFAR-10 recipe).
    let config = if o.cifar {
        SimSiamConfig::cifar10()
    } else {
        SimSiamConfig { input_size: o.size, ..SimSiamConfig::default() }
    };
    let transform = config.build()?;
    let stats = config.normalize.unwrap_or(Normalization::NONE);

    std::fs::create_dir_all(&o.out).with_context(|| format!("cannot create {}", o.out.display()))?;
    let name = o.image.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let index = 0; // the image's dataset index: with (seed, epoch) it fixes the views
    let mut ws = Workspace::new();
    for epoch in 0..o.pairs {
        // What training sees: one normalised [3][H][W] f32 tensor per view.
        let tensors = transform.apply(src, o.seed, epoch, index)?;
        for (v, view) in transform.multi_view().views().iter().enumerate() {
            // The same view as a u8 image: the same generator, stopped before Normalize.
            let mut out = ChwImage::new(1, 1)?;
            view.augment(src, &mut ws, &mut view_rng(o.seed, epoch, index, v as u64), &mut out)?;
            check_same(&out, &tensors[v], &stats)?;
            let path = o.out.join(format!("{name}_e{epoch}_v{v}.png"));
            out.to_image().save(&path).with_context(|| format!("cannot write {}", path.display()))?;
            println!("{}", path.display());
        }
    }
    eprintln!(
        "{}x{} -> {} views of {:?} per epoch (seed {})",
        img.width(),
        img.height(),
        transform.num_views(),
        transform.view_shape(),
        o.seed
    );
    Ok(())
}

/// Checks that `tensor` is `image` through `ToTensor` and `Normalize(stats)`.
fn check_same(image: &ChwImage, tensor: &[f32], stats: &Normalization) -> Result<()> {
    let plane = image.plane_len();
    ensure!(tensor.len() == 3 * plane, "tensor of {} values for a {plane}-pixel view", tensor.len());
    for (i, (&pixel, &value)) in image.as_raw().iter().zip(tensor).enumerate() {
        let c = i / plane;
        let expected = (f32::from(pixel) / 255.0 - stats.mean[c]) / stats.std[c];
        ensure!((expected - value).abs() < 1e-5, "value {i}: {value}, expected {expected}");
    }
    Ok(())
}

/// The command line.
struct Options {
    image: PathBuf,
    out: PathBuf,
    size: u32,
    pairs: u64,
    seed: u64,
    cifar: bool,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut image = None;
        let mut o = Self {
            image: PathBuf::new(),
            out: PathBuf::from("views"),
            size: 224,
            pairs: 1,
            seed: 0,
            cifar: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                "--cifar" => o.cifar = true,
                "--out" | "--size" | "--pairs" | "--seed" => {
                    let value = args.next().with_context(|| format!("{arg} needs a value"))?;
                    if arg == "--out" {
                        o.out = PathBuf::from(value);
                        continue;
                    }
                    let n: u64 =
                        value.parse().with_context(|| format!("{arg} takes a number, got `{value}`"))?;
                    match arg.as_str() {
                        "--size" => o.size = u32::try_from(n).context("--size is too large")?,
                        "--pairs" => o.pairs = n,
                        _ => o.seed = n,
                    }
                }
                flag if flag.starts_with('-') => bail!("unknown flag `{flag}`\n\n{USAGE}"),
                path if image.is_none() => image = Some(Path::new(path).to_owned()),
                extra => bail!("unexpected argument `{extra}`\n\n{USAGE}"),
            }
        }
        o.image = image.with_context(|| format!("no image given\n\n{USAGE}"))?;
        Ok(o)
    }
}
