//! Pretrain SimSiam on a folder of images, then embed every image and show its nearest
//! neighbours: the library side of [docs/tutorial-image-folder.md](../docs/tutorial-image-folder.md)
//! (Lightly's `LightlyDataset("path/to/folder")` and `embeddings.csv`).
//!
//! ```sh
//! cargo run --release --example image_folder -- --images path/to/images --epochs 5
//! ```
//!
//! Any PNG or JPEG below `--images` is used, in sorted order; images in sub-folders are labelled
//! by their first sub-folder (the label only goes into the CSV). Writes to `--out` (default
//! `runs/image-folder-example`): `checkpoints/`, `metrics.jsonl`, `model.safetensors` and
//! `embeddings.csv` (Lightly's layout: `filenames,embedding_0,...,labels`).
//!
//! Flags: `--images DIR` (required), `--out DIR`, `--epochs N` (5), `--size N` (side of the
//! views, 64), `--batch N` (64), `--limit N` (the first N images only), `--satellite` (flips
//! both ways, 90-degree rotations and gentler colour jitter, for overhead imagery).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use candle::{DType, Device, IndexOp};
use candle_nn::VarMap;
use simsiam_augment::SimSiamConfig;
use simsiam_data::{
    Dataset, DatasetExt, EvalConfig, EvalLoader, EvalTransform, ImageFolder, ImageFolderOptions,
    LoaderConfig, TwoViewLoader,
};
use simsiam_loss::NegativeCosineSimilarity;
use simsiam_models::{
    PredictionHeadConfig, ProjectionHeadConfig, ResNetConfig, SimSiam, Stem, seeded_var_builder,
};
use simsiam_train::{
    Checkpointer, MetricsLog, ScheduleStep, Trainer, TrainerConfig, l2_normalize, loader_features,
    save_weights, scaled_lr, write_embeddings_csv,
};

const USAGE: &str = "\
usage: cargo run --release --example image_folder -- --images DIR [--out DIR] [--epochs N]
           [--size N] [--batch N] [--limit N] [--satellite]
";

fn main() -> Result<()> {
    let o = Options::parse()?;
    let device = Device::cuda_if_available(0)?;

    // 1. The images: every PNG/JPEG below the folder, sorted, decoded lazily by the loaders.
    let folder = ImageFolder::open(&o.images, ImageFolderOptions::default())
        .with_context(|| format!("cannot open the image folder {}", o.images.display()))?;
    let images: Arc<dyn Dataset> = match o.limit {
        Some(n) => Arc::new(folder.take(n)),
        None => Arc::new(folder),
    };

    // 2. Two augmented views per image: Lightly's SimSiamTransform at `size` pixels.
    let base = if o.satellite { SimSiamConfig::satellite() } else { SimSiamConfig::default() };
    let transform = SimSiamConfig { input_size: o.size, ..base }.build()?;
    let config = LoaderConfig { batch_size: o.batch, seed: 0, ..LoaderConfig::default() };
    let loader = TwoViewLoader::new(images.clone(), transform, config, device.clone())?;
    if loader.batches_per_epoch() == 0 {
        bail!("{} images make no full batch of {}: lower --batch", images.len(), o.batch);
    }

    // 3. The model: torchvision's resnet18 with Lightly's example heads.
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 0, DType::F32, &device);
    let resnet = ResNetConfig::resnet18(Stem::ImageNet);
    let backbone = resnet.init(vb.pp("backbone"))?;
    let model = SimSiam::new(
        backbone,
        &ProjectionHeadConfig::new(resnet.feature_dim(), 512, 128),
        &PredictionHeadConfig::new(128, 64, 128),
        vb,
    )?;

    // 4. Pretrain: the paper's recipe (SGD, momentum 0.9, weight decay 1e-4, lr 0.05 * batch
    //    / 256 with cosine decay, fixed predictor lr), with checkpoints and a metrics log.
    //    Rerunning resumes from the newest checkpoint in `--out`.
    let trainer_config = TrainerConfig {
        epochs: o.epochs,
        lr: scaled_lr(0.05, o.batch),
        weight_decay: 1e-4,
        schedule_step: ScheduleStep::Iteration,
        log_every: 10,
        knn_every: 0,
        ..TrainerConfig::default()
    };
    let run = serde_json::json!({ "example": "image_folder", "images": o.images, "size": o.size });
    std::fs::create_dir_all(&o.out).with_context(|| format!("cannot create {}", o.out.display()))?;
    let loss = Box::new(NegativeCosineSimilarity::default());
    let mut trainer = Trainer::new(model, varmap, loss, trainer_config, run)?
        .with_checkpoints(Checkpointer::new(o.out.join("checkpoints"), 2)?)
        .with_metrics(MetricsLog::append(&o.out.join("metrics.jsonl"))?);
    if let Some(state) = trainer.resume_latest()? {
        eprintln!("resuming at epoch {}, step {}", state.epoch, state.step);
    }
    eprintln!("pretraining on {} images, {} batches per epoch", images.len(), loader.batches_per_epoch());
    let summary = trainer.fit(&loader)?.into_summary(); // no Ctrl-C handler: it runs to its end
    save_weights(trainer.varmap(), &o.out.join("model.safetensors"))?;
    eprintln!(
        "loss {:.4}, collapse level {:.3} (0: healthy, 1: collapsed)",
        summary.last_loss, summary.collapse
    );

    // 5. Embed: backbone features of every image without augmentation (resize, centre crop),
    //    written as Lightly's embeddings.csv.
    let eval = EvalTransform::imagenet(o.size);
    let eval_loader = EvalLoader::new(images, eval, EvalConfig::default(), device)?;
    let features = loader_features(trainer.model().backbone(), &eval_loader)?;
    let csv = o.out.join("embeddings.csv");
    write_embeddings_csv(&csv, &features.names, &features.features, &features.labels)?;
    eprintln!(
        "wrote {} embeddings of dimension {} to {}",
        features.names.len(),
        resnet.feature_dim(),
        csv.display()
    );

    // 6. Nearest neighbours by cosine similarity, for the first few images.
    let normalized = l2_normalize(&features.features)?;
    let queries = normalized.dim(0)?.min(3);
    let similarity = normalized.i(..queries)?.matmul(&normalized.t()?)?.to_vec2::<f32>()?;
    for (q, row) in similarity.iter().enumerate() {
        let mut order: Vec<usize> = (0..row.len()).filter(|&j| j != q).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let nearest: Vec<String> =
            order.iter().take(3).map(|&j| format!("{} ({:.3})", features.names[j], row[j])).collect();
        println!("{}: {}", features.names[q], nearest.join(", "));
    }
    Ok(())
}

/// The command line.
struct Options {
    images: PathBuf,
    out: PathBuf,
    epochs: usize,
    size: u32,
    batch: usize,
    limit: Option<usize>,
    satellite: bool,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut o = Self {
            images: PathBuf::new(),
            out: PathBuf::from("runs/image-folder-example"),
            epochs: 5,
            size: 64,
            batch: 64,
            limit: None,
            satellite: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            if flag == "--satellite" {
                o.satellite = true;
                continue;
            }
            if flag == "-h" || flag == "--help" {
                print!("{USAGE}");
                std::process::exit(0);
            }
            let value = args.next().with_context(|| format!("{flag} needs a value\n\n{USAGE}"))?;
            let number =
                || value.parse::<usize>().with_context(|| format!("{flag} takes a number, got `{value}`"));
            match flag.as_str() {
                "--images" => o.images = PathBuf::from(&value),
                "--out" => o.out = PathBuf::from(&value),
                "--epochs" => o.epochs = number()?,
                "--size" => o.size = u32::try_from(number()?).context("--size is too large")?,
                "--batch" => o.batch = number()?,
                "--limit" => o.limit = Some(number()?).filter(|&n| n > 0),
                other => bail!("unknown argument `{other}`\n\n{USAGE}"),
            }
        }
        if o.images.as_os_str().is_empty() {
            bail!("--images is required\n\n{USAGE}");
        }
        Ok(o)
    }
}
