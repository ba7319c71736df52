//! `simsiam`: SimSiam pretraining, evaluation and embeddings from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use simsiam::config::{PRESETS, RunConfig};
use simsiam::{evaluate, pretrain};
use simsiam_train::LinearEvalConfig;

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
        /// Continue from the newest checkpoint in the output directory.
        #[arg(long)]
        resume: bool,
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
    },
    /// Weighted kNN of a randomly initialised network (the baseline pretraining must beat).
    KnnRandom {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// A linear classifier on frozen features.
    Linear {
        #[command(flatten)]
        checkpoint: CheckpointArgs,
        /// Epochs of the classifier.
        #[arg(long, default_value_t = 100)]
        epochs: usize,
        /// Learning rate of the classifier.
        #[arg(long, default_value_t = 0.1)]
        lr: f64,
    },
}

#[derive(Args)]
struct ConfigArgs {
    /// A named preset: lightly-example, cifar10-paper or satellite.
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
    /// A checkpoint written by `simsiam pretrain`; its stored config is used.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Overrides of the stored config, `section.key=value` (e.g. `data.path=...`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

impl ConfigArgs {
    fn load(&self) -> Result<RunConfig> {
        let base = match &self.config {
            Some(path) => RunConfig::from_file(path)?,
            None => RunConfig::preset(&self.preset)?,
        };
        base.with_overrides(&self.overrides)
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Pretrain { config, resume } => {
            let run = config.load()?;
            eprintln!("# simsiam {} configuration\n{}", env!("CARGO_PKG_VERSION"), run.to_toml()?);
            pretrain::pretrain(&run, resume)?;
        }
        Command::Eval(EvalCommand::Knn { checkpoint }) => {
            let run = evaluate::checkpoint_config(&checkpoint.checkpoint, &checkpoint.overrides)?;
            let r = evaluate::knn(&run, Some(&checkpoint.checkpoint))?;
            println!(
                "kNN (k={}, t={}): top-1 {:.2}%, top-5 {:.2}%",
                run.train.knn_k,
                run.train.knn_t,
                100.0 * r.top1,
                100.0 * r.top5
            );
        }
        Command::Eval(EvalCommand::KnnRandom { config }) => {
            let run = config.load()?;
            run.validate()?;
            let r = evaluate::knn(&run, None)?;
            println!(
                "kNN of a random network (seed {}, k={}, t={}): top-1 {:.2}%, top-5 {:.2}%",
                run.train.seed,
                run.train.knn_k,
                run.train.knn_t,
                100.0 * r.top1,
                100.0 * r.top5
            );
        }
        Command::Eval(EvalCommand::Linear { checkpoint, epochs, lr }) => {
            let run = evaluate::checkpoint_config(&checkpoint.checkpoint, &checkpoint.overrides)?;
            let config = LinearEvalConfig { epochs, lr, seed: run.train.seed, ..LinearEvalConfig::default() };
            let r = evaluate::linear(&run, &checkpoint.checkpoint, &config)?;
            println!(
                "linear evaluation ({epochs} epochs): top-1 {:.2}%, top-5 {:.2}%",
                100.0 * r.top1,
                100.0 * r.top5
            );
        }
        Command::Embed { checkpoint, out } => {
            let run = evaluate::checkpoint_config(&checkpoint.checkpoint, &checkpoint.overrides)?;
            let n = evaluate::embed(&run, &checkpoint.checkpoint, &out)?;
            println!("wrote {n} embeddings to {}", out.display());
        }
        Command::Download { dataset, dir, from } => {
            let path = match dataset.as_str() {
                "cifar10" => simsiam_data::fetch_cifar10(&dir, from.as_deref())?,
                "cifar100" => simsiam_data::fetch_cifar100(&dir, from.as_deref())?,
                other => anyhow::bail!("unknown dataset `{other}`: use cifar10 or cifar100"),
            };
            eprintln!("{dataset} is ready in {}", path.display());
        }
        Command::Config { preset } => {
            let run =
                RunConfig::preset(&preset).with_context(|| format!("presets: {}", PRESETS.join(", ")))?;
            print!("{}", run.to_toml()?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIMSIAM_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the cause chain joined, multi-line messages (TOML's) folded.
            let message = format!("{e:#}");
            let line: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            eprintln!("error: {}", line.join(" "));
            ExitCode::FAILURE
        }
    }
}
