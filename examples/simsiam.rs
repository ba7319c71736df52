//! Lightly's SimSiam example (`examples/pytorch/simsiam.py` in lightly-ai/lightly), line for
//! line, on the simsiam-rs crates.
//!
//! ```sh
//! cargo run --release --example simsiam                          # as the Python script: 10 epochs
//! cargo run --release --example simsiam -- --epochs 1 --limit 2560  # a quick try: 10 steps
//! ```
//!
//! Flags (or environment variables): `--data DIR` (`SIMSIAM_DATA`, default `data/cifar10`,
//! where `cargo xtask download-cifar` puts CIFAR-10), `--from ARCHIVE` (`SIMSIAM_FROM`: a local
//! `cifar-10-binary.tar.gz` or a mirror URL instead of the official URL), `--epochs N`
//! (`SIMSIAM_EPOCHS`, default 10) and `--limit N` (`SIMSIAM_LIMIT`: train on the first `N`
//! images only; default all 50,000).
//!
//! Each block below quotes the Python lines it replaces. Where this differs from the Python:
//! weights are initialised from a seeded generator (PyTorch's default initialisations, drawn
//! from ChaCha8), the loader draws its shuffling and augmentations from `(seed, epoch, index)`
//! and uses as many worker threads as the machine has cores rather than 8.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use simsiam_augment::SimSiamConfig;
use simsiam_data::{Cifar10, Dataset, DatasetExt, LoaderConfig, Split, TwoViewLoader, fetch_cifar10};
use simsiam_loss::{NegativeCosineSimilarity, Similarity};
use simsiam_models::{
    PredictionHeadConfig, ProjectionHeadConfig, ResNetConfig, SimSiam, Stem, seeded_var_builder,
};
use simsiam_train::{ParamGroup, Sgd, SgdConfig};

const USAGE: &str = "\
usage: cargo run --release --example simsiam -- [--data DIR] [--from ARCHIVE|URL] [--epochs N] [--limit N]

  --data DIR      folder holding (or to hold) cifar-10-batches-bin [env SIMSIAM_DATA; data/cifar10]
  --from SOURCE   a local cifar-10-binary.tar.gz or a mirror URL, instead of the official URL
                  [env SIMSIAM_FROM]
  --epochs N      epochs [env SIMSIAM_EPOCHS; 10]
  --limit N       train on the first N images only, for a quick try [env SIMSIAM_LIMIT; all]
";

fn main() -> Result<()> {
    let options = Options::parse()?;

    // class SimSiam(nn.Module):
    //     def __init__(self, backbone):
    //         self.backbone = backbone
    //         self.projection_head = SimSiamProjectionHead(512, 512, 128)
    //         self.prediction_head = SimSiamPredictionHead(128, 64, 128)
    //
    // resnet = torchvision.models.resnet18()
    // backbone = nn.Sequential(*list(resnet.children())[:-1])
    // model = SimSiam(backbone)
    //
    // device = "cuda" if torch.cuda.is_available() else "cpu"
    // model.to(device)
    //
    // `SimSiam::forward_view` is the Python `forward`: f = backbone(x).flatten(start_dim=1),
    // z = projection_head(f), p = prediction_head(z), z.detach(). Our ResNet already returns
    // the flattened, average-pooled features (torchvision's resnet18 without `fc`). The model
    // is built on the device, so there is no `.to(device)`: the CPU unless the crates were
    // built with `--features cuda` and a GPU is there. (The ImageNet stem's padded max-pool is
    // a CPU-only op for now, so on CUDA this network stops at its first forward pass.)
    let device = Device::cuda_if_available(0)?;
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 0, DType::F32, &device);
    let backbone = ResNetConfig::resnet18(Stem::ImageNet).init(vb.pp("backbone"))?;
    let model = SimSiam::new(
        backbone,
        &ProjectionHeadConfig::new(512, 512, 128),
        &PredictionHeadConfig::new(128, 64, 128),
        vb,
    )?;

    // cifar10 = torchvision.datasets.CIFAR10("datasets/cifar10", download=True)
    // transform = SimSiamTransform(input_size=32)
    // dataset = LightlyDataset.from_torch_dataset(cifar10, transform=transform)
    // # or create a dataset from a folder containing images or videos:
    // # dataset = LightlyDataset("path/to/folder")
    //
    // The download is md5-checked; `simsiam_data::ImageFolder::open(path, Default::default())`
    // is the folder variant (see examples/image_folder.rs). The transform is applied by the
    // loader, so the dataset holds plain images.
    let dir = fetch_cifar10(&options.data, options.from.as_deref())
        .with_context(|| format!("cannot get CIFAR-10 into {}", options.data.display()))?;
    let cifar10 = Cifar10::load(&dir, Split::Train)?;
    let transform = SimSiamConfig { input_size: 32, ..SimSiamConfig::default() }.build()?;
    let dataset: Arc<dyn Dataset> = match options.limit {
        Some(n) => Arc::new(cifar10.take(n)),
        None => Arc::new(cifar10),
    };

    // collate_fn = MultiViewCollate()
    //
    // dataloader = torch.utils.data.DataLoader(
    //     dataset,
    //     batch_size=256,
    //     collate_fn=collate_fn,
    //     shuffle=True,
    //     drop_last=True,
    //     num_workers=8,
    // )
    //
    // The loader always shuffles (a new permutation each epoch) and stacks the two views of
    // each batch into `x0` and `x1`, as MultiViewCollate does.
    let config = LoaderConfig { batch_size: 256, drop_last: true, ..LoaderConfig::default() };
    let dataloader = TwoViewLoader::new(dataset, transform, config, device.clone())?;
    if dataloader.batches_per_epoch() == 0 {
        bail!("{} images make no full batch of 256: raise --limit", dataloader.dataset().len());
    }

    // criterion = NegativeCosineSimilarity()
    // optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
    //
    // Plain SGD: no momentum, no weight decay. The BatchNorm running statistics share the
    // VarMap with the parameters but are not parameters, so they stay out of the optimiser.
    let criterion = NegativeCosineSimilarity::default();
    let parameters = {
        let vars = varmap.data().lock().map_err(|_| anyhow::anyhow!("poisoned VarMap"))?;
        let mut named: Vec<(String, candle::Var)> = vars
            .iter()
            .filter(|(name, _)| !name.ends_with("running_mean") && !name.ends_with("running_var"))
            .map(|(name, var)| (name.clone(), var.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    };
    let sgd = SgdConfig { momentum: 0.0, weight_decay: 0.0, nesterov: false };
    let mut optimizer = Sgd::new(vec![ParamGroup { params: parameters, lr: 0.06, fixed_lr: false }], sgd)?;

    eprintln!(
        "{} images, {} batches of 256 per epoch, on {device:?}",
        dataloader.dataset().len(),
        dataloader.batches_per_epoch()
    );
    // print("Starting Training")
    // for epoch in range(10):
    //     total_loss = 0
    //     for (x0, x1), _, _ in dataloader:
    //         x0 = x0.to(device)
    //         x1 = x1.to(device)
    //         z0, p0 = model(x0)
    //         z1, p1 = model(x1)
    //         loss = 0.5 * (criterion(z0, p1) + criterion(z1, p0))
    //         total_loss += loss.detach()
    //         loss.backward()
    //         optimizer.step()
    //         optimizer.zero_grad()
    //     avg_loss = total_loss / len(dataloader)
    //     print(f"epoch: {epoch:>02}, loss: {avg_loss:.5f}")
    //
    // The batches arrive on the device already. `loss.backward()` returns the gradients instead
    // of storing them on the parameters, so there is nothing to zero.
    println!("Starting Training");
    for epoch in 0..options.epochs {
        let mut total_loss = Tensor::zeros((), DType::F32, &device)?;
        for batch in dataloader.epoch(epoch as u64) {
            let batch = batch?;
            let (x0, x1) = (batch.x0, batch.x1);
            let out0 = model.forward_view(&x0, true)?;
            let out1 = model.forward_view(&x1, true)?;
            let (z0, p0) = (out0.z, out0.p);
            let (z1, p1) = (out1.z, out1.p);
            let loss = ((criterion.loss(&z0, &p1)? + criterion.loss(&z1, &p0)?)? * 0.5)?;
            total_loss = (total_loss + loss.detach())?;
            let grads = loss.backward()?;
            optimizer.step(&grads)?;
        }
        let avg_loss = (total_loss / dataloader.batches_per_epoch() as f64)?.to_scalar::<f32>()?;
        println!("epoch: {epoch:>02}, loss: {avg_loss:.5}");
    }
    Ok(())
}

/// The command line, with environment variables as fallbacks.
struct Options {
    data: PathBuf,
    from: Option<String>,
    epochs: usize,
    limit: Option<usize>,
}

impl Options {
    fn parse() -> Result<Self> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut data = env("SIMSIAM_DATA");
        let mut from = env("SIMSIAM_FROM");
        let mut epochs = env("SIMSIAM_EPOCHS");
        let mut limit = env("SIMSIAM_LIMIT");
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let slot = match flag.as_str() {
                "--data" => &mut data,
                "--from" => &mut from,
                "--epochs" => &mut epochs,
                "--limit" => &mut limit,
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument `{other}`\n\n{USAGE}"),
            };
            *slot = Some(args.next().with_context(|| format!("{flag} needs a value"))?);
        }
        let number = |what: &str, value: Option<String>| -> Result<Option<usize>> {
            value
                .map(|v| v.parse().with_context(|| format!("{what} must be a whole number, got `{v}`")))
                .transpose()
        };
        Ok(Self {
            data: data.map_or_else(|| PathBuf::from("data/cifar10"), PathBuf::from),
            from,
            epochs: number("--epochs", epochs)?.unwrap_or(10),
            limit: number("--limit", limit)?.filter(|&n| n > 0),
        })
    }
}
