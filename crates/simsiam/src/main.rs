//! `simsiam`: SimSiam pretraining, evaluation and embeddings from the command line. This file
//! parses the arguments and hands each command to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use simsiam::config::{DatasetKind, RunConfig};
use simsiam::interrupt::{Forwarded, Interrupted};
use simsiam::{evaluate, launch, pretrain, run};
use simsiam_models::kernels::{
    KernelOptions, keep_freed_memory, park_idle_candle_threads, set_kernel_options,
};

#[derive(Parser)]
#[command(name = "simsiam", version, about = "SimSiam self-supervised pretraining (Chen & He, 2021) in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pretrain a backbone with SimSiam; ends with the kNN accuracy on labelled data.
    Pretrain {
        #[command(flatten)]
        config: ConfigArgs,
        /// Continue from the newest checkpoint in train.output_dir. Without it (or without a
        /// checkpoint there) the run starts only in a new or empty train.output_dir: nothing a
        /// folder holds is ever overwritten.
        #[arg(long)]
        resume: bool,
        /// Train data-parallel on this many GPUs, one process each over NCCL (`nccl` feature).
        #[arg(long, default_value_t = 1)]
        gpus: usize,
    },
    /// Evaluate a checkpoint's backbone.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Write a checkpoint's embeddings of the training images (.csv as Lightly's
    /// embeddings.csv, or .safetensors).
    Embed {
        #[command(flatten)]
        checkpoint: CheckpointArgs,
        /// The output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Download (or copy from a mirror or local archive) and verify CIFAR-10 or CIFAR-100.
    Download {
        /// `cifar10` or `cifar100`.
        #[arg(long, default_value = "cifar10")]
        dataset: String,
        /// The directory to hold the dataset's folder.
        #[arg(long, default_value = "data/cifar10")]
        dir: PathBuf,
        /// An archive path, a file:// or http(s):// URL; the official URL when absent.
        #[arg(long)]
        from: Option<String>,
    },
    /// Draw a run's loss, collapse level, learning rate and kNN accuracy (a 2x2 PNG).
    Plot {
        /// The metrics file `simsiam pretrain` writes (RUN_DIR/metrics.jsonl).
        #[arg(long)]
        metrics: PathBuf,
        /// The PNG to write.
        #[arg(long)]
        out: PathBuf,
        /// Width in pixels.
        #[arg(long, default_value_t = 1200)]
        width: u32,
        /// Height in pixels.
        #[arg(long, default_value_t = 900)]
        height: u32,
        #[command(flatten)]
        font: FontArgs,
    },
    /// Draw query images and their 8 nearest neighbours by cosine similarity (3x3 PNG grids).
    Neighbors {
        #[command(flatten)]
        images: EmbeddedDataArgs,
        /// A query: a file name from the embeddings, or a row index; repeatable.
        #[arg(long = "query", value_name = "NAME|INDEX")]
        queries: Vec<String>,
        /// Without --query, this many queries chosen at random (seeded).
        #[arg(long, default_value_t = 1)]
        num_queries: usize,
        /// Seed of the random queries.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// All queries in one figure, stacked; otherwise one PNG per query (OUT_<row>.png when
        /// there are several).
        #[arg(long)]
        stack: bool,
        /// Thumbnail side in pixels.
        #[arg(long, default_value_t = 96)]
        thumb_size: u32,
        #[command(flatten)]
        font: FontArgs,
    },
    /// Draw a 2-D PCA projection of the embeddings with image thumbnails (a PNG).
    Scatter {
        #[command(flatten)]
        images: EmbeddedDataArgs,
        /// At most this many thumbnails, on a seeded random subset.
        #[arg(long, default_value_t = 100)]
        num_images: usize,
        /// Seed of the subset.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Thumbnails closer than this (on the [0, 1] axes) to one already drawn are skipped.
        #[arg(long, default_value_t = 0.045)]
        min_distance: f64,
        /// Thumbnail side in pixels.
        #[arg(long, default_value_t = 48)]
        thumb_size: u32,
        /// Side of the (square) figure in pixels.
        #[arg(long, default_value_t = 1000)]
        size: u32,
        #[command(flatten)]
        font: FontArgs,
    },
    /// Print a preset's configuration as TOML, to start a config file from.
    Config {
        /// The preset.
        #[arg(long, default_value = "lightly-example")]
        preset: String,
    },
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Weighted kNN (k = 200, t = 0.1 by default) with the training set as memory bank.
    Knn {
        #[command(flatten)]
        checkpoint: CheckpointArgs,
        #[command(flatten)]
        test: TestArgs,
    },
    /// Weighted kNN of a randomly initialised network (the baseline pretraining must beat).
    KnnRandom {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        test: TestArgs,
    },
    /// A linear classifier on the frozen backbone.
    Linear {
        #[command(flatten)]
        checkpoint: CheckpointArgs,
        /// `fast`: SGD on standardised features computed once, no augmentation. `paper`: as the
        /// official main_lincls.py, new random crops and flips through the frozen backbone
        /// every epoch, LARS at lr x batch / 256, cosine decay per epoch.
        #[arg(long, value_enum, default_value_t = Protocol::Fast)]
        protocol: Protocol,
        /// Epochs of the classifier [fast: 100, paper: 90].
        #[arg(long)]
        epochs: Option<usize>,
        /// Learning rate [fast: 0.1; paper: the base rate 0.02, which trains at lr x batch / 256].
        #[arg(long)]
        lr: Option<f64>,
        /// Images per step [fast: 256, paper: 4096].
        #[arg(long)]
        batch_size: Option<usize>,
        #[command(flatten)]
        test: TestArgs,
    },
}

/// The linear-evaluation protocol.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Protocol {
    /// A classifier on cached, standardised features.
    Fast,
    /// The official main_lincls.py.
    Paper,
}

#[derive(Args)]
struct TestArgs {
    /// The test images of a folder dataset: a folder with the same class sub-folders as
    /// data.path (class ids from the sorted sub-folder names).
    #[arg(long = "test", value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct ConfigArgs {
    /// A named preset: lightly-example, lightly-cifar10-benchmark, satellite, cifar10-paper,
    /// imagenet-paper or cifar10-cpu.
    #[arg(long, default_value = "lightly-example")]
    preset: String,
    /// A TOML config file (replaces the preset).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides, `section.key=value` (e.g. `train.epochs=5`), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Args)]
struct CheckpointArgs {
    /// A checkpoint written by `simsiam pretrain`; its stored config is used. Without it, the
    /// preset or config file, whose `model.init` names the weights (`--set model.init=PATH`:
    /// a checkpoint, a `model.safetensors` or a torchvision ResNet state dict).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// A named preset, without `--checkpoint` (as `--preset` of `pretrain`).
    #[arg(long, default_value = "lightly-example", conflicts_with = "checkpoint")]
    preset: String,
    /// A TOML config file, without `--checkpoint` (replaces the preset).
    #[arg(long, conflicts_with = "checkpoint")]
    config: Option<PathBuf>,
    /// Overrides of the stored config, `section.key=value` (e.g. `data.path=...`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

impl CheckpointArgs {
    /// The checkpoint's stored config, or the preset or file with `model.init` set.
    fn run_config(&self) -> Result<RunConfig> {
        let Some(checkpoint) = &self.checkpoint else {
            let run = RunConfig::load(self.config.as_deref(), &self.preset, &self.overrides)?;
            if run.model.init_path().is_none() {
                anyhow::bail!("give the weights to evaluate: --checkpoint PATH or --set model.init=PATH");
            }
            run.validate()?;
            return Ok(run);
        };
        evaluate::checkpoint_config(checkpoint, &self.overrides)
    }
}

/// Embeddings written by `simsiam embed` and the dataset they were computed on.
#[derive(Args)]
struct EmbeddedDataArgs {
    /// The embeddings (.csv or .safetensors) from `simsiam embed`.
    #[arg(long)]
    embeddings: PathBuf,
    /// The PNG to write.
    #[arg(long)]
    out: PathBuf,
    /// Take the dataset from this checkpoint's stored config (as `simsiam embed` did).
    #[arg(long, conflicts_with_all = ["preset", "config"])]
    checkpoint: Option<PathBuf>,
    /// A named preset for the dataset settings (as `--preset` of `pretrain`).
    #[arg(long, default_value = "lightly-example")]
    preset: String,
    /// A TOML config file for the dataset settings (replaces the preset).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides, `section.key=value` (e.g. `data.dataset=folder`, `data.path=images`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

#[cfg(feature = "figures")]
impl EmbeddedDataArgs {
    /// The run config naming the dataset: the checkpoint's, or the preset or file.
    fn run_config(&self) -> Result<RunConfig> {
        match &self.checkpoint {
            Some(checkpoint) => evaluate::checkpoint_config(checkpoint, &self.overrides),
            None => RunConfig::load(self.config.as_deref(), &self.preset, &self.overrides),
        }
    }
}

#[derive(Args)]
struct FontArgs {
    /// A TrueType/OpenType font for the text (default: $SIMSIAM_FONT, then system fonts).
    #[arg(long)]
    font: Option<PathBuf>,
}

impl ConfigArgs {
    fn load(&self) -> Result<RunConfig> {
        RunConfig::load(self.config.as_deref(), &self.preset, &self.overrides)
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Pretrain { config, resume, gpus } => {
            let run = config.load()?;
            if gpus > 1 {
                let args: Vec<String> = std::env::args().skip(1).collect();
                return launch::launch_run(gpus, &run, resume, &args);
            }
            if launch::Rank::is_primary()? {
                eprintln!("# simsiam {} configuration\n{}", env!("CARGO_PKG_VERSION"), run.to_toml()?);
            }
            pretrain::pretrain(&run, resume)?;
        }
        Command::Eval(EvalCommand::Knn { checkpoint, test }) => {
            let run = checkpoint.run_config()?;
            let r = evaluate::knn(&run, checkpoint.checkpoint.as_deref(), test.dir.as_deref())?;
            println!(
                "kNN (k={}, t={}): top-1 {:.2}%, top-5 {:.2}%",
                run.train.knn_k,
                run.train.knn_t,
                100.0 * r.top1,
                100.0 * r.top5
            );
        }
        Command::Eval(EvalCommand::KnnRandom { config, test }) => {
            let run = config.load()?;
            run.validate()?;
            let r = evaluate::knn(&run, None, test.dir.as_deref())?;
            println!(
                "kNN of a random network (seed {}, k={}, t={}): top-1 {:.2}%, top-5 {:.2}%",
                run.train.seed,
                run.train.knn_k,
                run.train.knn_t,
                100.0 * r.top1,
                100.0 * r.top5
            );
        }
        Command::Eval(EvalCommand::Linear { checkpoint, protocol, epochs, lr, batch_size, test }) => {
            let run = checkpoint.run_config()?;
            let (ck, test) = (checkpoint.checkpoint.as_deref(), test.dir.as_deref());
            match protocol {
                Protocol::Fast => {
                    let epochs = epochs.unwrap_or(100);
                    let mut config = run.linear_eval_config(epochs, lr.unwrap_or(0.1));
                    config.batch_size = batch_size.unwrap_or(config.batch_size);
                    let r = evaluate::linear(&run, ck, &config, test)?;
                    println!(
                        "linear evaluation ({epochs} epochs): top-1 {:.2}%, top-5 {:.2}%",
                        100.0 * r.top1,
                        100.0 * r.top5
                    );
                }
                Protocol::Paper => {
                    let config = evaluate::paper_linear_config(&run, epochs, batch_size, lr);
                    let r = evaluate::linear_paper(&run, ck, &config, test, |e| {
                        eprintln!(
                            "epoch {}/{}: lr {:.4}, loss {:.4}, train top-1 {:.2}%",
                            e.epoch + 1,
                            config.epochs,
                            e.lr,
                            e.loss,
                            100.0 * e.top1
                        );
                    })?;
                    println!(
                        "linear evaluation (paper protocol, {} epochs, batch {}, lr {}): top-1 {:.2}%, top-5 {:.2}%",
                        config.epochs,
                        config.batch_size,
                        config.init_lr(),
                        100.0 * r.top1,
                        100.0 * r.top5
                    );
                }
            }
        }
        Command::Embed { checkpoint, out } => {
            let run = checkpoint.run_config()?;
            let n = evaluate::embed(&run, checkpoint.checkpoint.as_deref(), &out)?;
            println!("wrote {n} embeddings to {}", out.display());
        }
        Command::Download { dataset, dir, from } => {
            let path = run::download(dataset.parse::<DatasetKind>()?, &dir, from.as_deref())?;
            eprintln!("{dataset} is ready in {}", path.display());
        }
        #[cfg(feature = "figures")]
        Command::Plot { metrics, out, width, height, font } => {
            use simsiam::figures::{self, PlotOptions};
            figures::use_font(font.font.as_deref())?;
            figures::draw_plot(&metrics, &out, &PlotOptions { width, height, ..PlotOptions::default() })?;
            println!("wrote {}", out.display());
        }
        #[cfg(feature = "figures")]
        Command::Neighbors { images, queries, num_queries, seed, stack, thumb_size, font } => {
            use simsiam::figures::{self, NeighborsRequest};
            figures::use_font(font.font.as_deref())?;
            let run = images.run_config()?;
            let request = NeighborsRequest { queries, num_queries, seed, stack, thumb_size };
            for path in figures::draw_neighbors(&images.embeddings, &run, &request, &images.out)? {
                println!("wrote {}", path.display());
            }
        }
        #[cfg(feature = "figures")]
        Command::Scatter { images, num_images, seed, min_distance, thumb_size, size, font } => {
            use simsiam::figures::{self, ScatterOptions, ScatterRequest};
            figures::use_font(font.font.as_deref())?;
            let run = images.run_config()?;
            let options =
                ScatterOptions { width: size, height: size, thumb_size, ..ScatterOptions::default() };
            let request = ScatterRequest { num_images, min_distance, seed, options };
            let drawn = figures::draw_scatter(&images.embeddings, &run, &request, &images.out)?;
            println!(
                "wrote {} ({} thumbnails of {} embeddings)",
                images.out.display(),
                drawn.shown,
                drawn.embeddings
            );
        }
        #[cfg(not(feature = "figures"))]
        Command::Plot { .. } | Command::Neighbors { .. } | Command::Scatter { .. } => {
            anyhow::bail!("this simsiam was built without the `figures` feature: it draws no figures")
        }
        Command::Config { preset } => print!("{}", RunConfig::preset(&preset)?.to_toml()?),
    }
    Ok(())
}

/// The kernels' options from the `SIMSIAM_ISA`, `SIMSIAM_WINOGRAD`, `SIMSIAM_STOCK_KERNELS`
/// and `SIMSIAM_CONV_COLUMNS` variables (the libraries read no environment), and, since
/// training reallocates the same large buffers every step, freed memory kept for reuse
/// (docs/performance-step.md measures it; `SIMSIAM_MALLOC_TUNING=0` turns it off).
fn install_kernel_options() -> Result<()> {
    let options = KernelOptions::from_vars(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    set_kernel_options(options);
    if std::env::var("SIMSIAM_MALLOC_TUNING").as_deref() != Ok("0") {
        keep_freed_memory();
    }
    Ok(())
}

fn main() -> ExitCode {
    // SAFETY: first thing in `main`, before any thread exists.
    unsafe { park_idle_candle_threads() };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIMSIAM_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match install_kernel_options().and_then(|()| run(Cli::parse())) {
        Ok(()) => ExitCode::SUCCESS,
        // Stopped by a signal, the checkpoint saved: 128 plus the signal, as a shell reports it.
        Err(e) => {
            let stopped = (e.downcast_ref::<Interrupted>().map(|s| (s.to_string(), s.signal)))
                .or_else(|| e.downcast_ref::<Forwarded>().map(|s| (s.to_string(), s.signal)));
            match stopped {
                Some((message, signal)) => {
                    eprintln!("{message}");
                    ExitCode::from(signal.exit_code())
                }
                None => {
                    eprintln!("error: {}", simsiam::error_line(&e));
                    ExitCode::FAILURE
                }
            }
        }
    }
}
