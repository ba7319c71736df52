//! `cargo xtask bench quality`: time to accuracy. Our `simsiam pretrain` and PyTorch + Lightly
//! (`tools/bench/quality_torch_lightly.py`, reading our run's config.toml so that the recipe
//! is the same) train one after the other on the same machine, each for `--minutes` of its
//! training clock (evaluation not counted), with kNN at the minute marks and at epoch ends
//! (`--epochs fit`: each side's schedule sized to the budget from its own measured speed;
//! `--epochs clock`: each side's cosine over its own training clock, `train.schedule = clock`);
//! or, with `--epochs E --seeds a,b,c` and no budget, for equal epochs over several seeds.
//! Writes `<out>/quality-<N>min.{json,md,png}` (or `quality-<E>epochs-...`) and prints the
//! table.

mod curve;
mod plot;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use plotters::style::RGBColor;
use serde_json::json;

use super::report::{self, Header};
use super::{
    Cmd, Python, cpu_model, find_python, git_rev, loadavg, parse_list, parse_one, quote, target_dir,
};
use crate::{cargo, check_nvcc, project_root, take_features};
use curve::{Curve, Side, epochs_table, final_table, minutes_table};

pub const USAGE: &str = "\
\x20 bench quality      time to accuracy, ours then PyTorch + Lightly, the same recipe; writes
                     OUT/quality-<N>min.{json,md,png} (OUT: docs/bench)
                     --minutes N [--marks 15,30,45,60 (default: quarters of N)]
                     [--epochs E: the schedule's length, or `fit`: each side's own, sized to
                     the budget from a short run at its measured speed, or `clock`: each
                     side's cosine over the budget of its own training clock] [--seeds 0,1,2] (--epochs without
                     --minutes: equal epochs, the final kNN of each seed) [--recipe training-md|PRESET]
                     [--set section.key=value]... [--threads 1] [--torch-threads N
                     (default: --threads; each side at its fastest)] [--data data/cifar10]
                     [--python PATH] [--features LIST] [--out DIR] [--profile release|dev]
                     [--from target/bench/quality-...: no training, the report rebuilt from
                     that run's files; give the run's other flags]
";

/// The docs/training.md recipe: `lightly-example` with these overrides.
const TRAINING_MD: [&str; 13] = [
    "model.stem=imagenet",
    "model.width=16",
    "train.batch_size=128",
    "train.epochs=3",
    "train.base_lr=0.06",
    "train.momentum=0.9",
    "train.weight_decay=5e-4",
    "train.schedule=iteration",
    "train.knn_every=1",
    "train.seed=0",
    "train.fixed_predictor_lr=true",
    "augment.gaussian_blur=0",
    "augment.normalize=cifar10",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The training-clock budget; `None` trains `epochs` to the end.
    pub minutes: Option<f64>,
    pub marks: Vec<f64>,
    pub epochs: Option<usize>,
    /// `--epochs fit`: each side's schedule sized to the budget from its own speed, measured
    /// in a short run right before its real one ([`fit_minutes`]).
    pub fit: bool,
    /// `--epochs clock`: each side's cosine spans the budget of its own training clock
    /// (`train.schedule = clock`), so that it ends at the budget however the machine's speed
    /// drifts.
    pub clock: bool,
    pub seeds: Vec<u64>,
    /// `training-md` or a preset name.
    pub recipe: String,
    pub sets: Vec<String>,
    /// Our side's threads (`RAYON_NUM_THREADS`).
    pub threads: usize,
    /// PyTorch's threads (`torch.set_num_threads`); `None` is `threads`. On a 2-core machine
    /// PyTorch with its two loader processes trains fastest at one thread, ours at two.
    pub torch_threads: Option<usize>,
    pub data: PathBuf,
    pub python: Option<PathBuf>,
    pub features: Option<String>,
    pub out: PathBuf,
    /// `release` (default) or `dev`: which build of `simsiam` runs.
    pub profile: String,
    /// A finished run's folder: no training, its report written again from its files.
    pub from: Option<PathBuf>,
    /// The flags as given, for the command line in the report.
    pub flags: Vec<String>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let (features, args) = take_features(args)?;
        let mut o = Options {
            minutes: None,
            marks: Vec::new(),
            epochs: None,
            fit: false,
            clock: false,
            seeds: vec![0],
            recipe: "training-md".into(),
            sets: Vec::new(),
            threads: 1,
            torch_threads: None,
            data: PathBuf::from("data/cifar10"),
            python: None,
            features,
            out: project_root().join("docs/bench"),
            profile: "release".into(),
            from: None,
            flags: args.clone(),
        };
        let mut marks = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("bench quality: {flag} needs a value"))?;
            match flag.as_str() {
                "--minutes" => o.minutes = Some(parse_one(flag, value)?),
                "--marks" => marks = Some(parse_list::<f64>(flag, value)?),
                "--epochs" if value == "fit" => o.fit = true,
                "--epochs" if value == "clock" => o.clock = true,
                "--epochs" => o.epochs = Some(parse_one(flag, value)?),
                "--seeds" => o.seeds = parse_list(flag, value)?,
                "--recipe" => o.recipe = value.clone(),
                "--set" => o.sets.push(value.clone()),
                "--threads" => o.threads = parse_one(flag, value)?,
                "--torch-threads" => o.torch_threads = Some(parse_one(flag, value)?),
                "--data" => o.data = PathBuf::from(value),
                "--python" => o.python = Some(PathBuf::from(value)),
                "--out" => o.out = PathBuf::from(value),
                "--profile" => o.profile = value.clone(),
                "--from" => o.from = Some(PathBuf::from(value)),
                _ => bail!(
                    "bench quality: unknown option `{flag}`\n\nusage: cargo xtask bench quality ...\n{USAGE}"
                ),
            }
        }
        if let Some(features) = &o.features {
            o.flags.extend(["--features".to_owned(), features.clone()]);
        }
        match (o.minutes, o.epochs) {
            (None, _) if o.fit || o.clock => {
                bail!("bench quality: --epochs fit and clock size the schedule to a budget: give --minutes N")
            }
            _ if [o.fit, o.clock, o.epochs.is_some()].iter().filter(|&&b| b).count() > 1 => {
                bail!("bench quality: give --epochs once: a number, fit or clock")
            }
            (None, None) => {
                bail!("bench quality: give --minutes N (a time budget) or --epochs E (equal epochs)")
            }
            (Some(m), _) if !(m > 0.0 && m.is_finite()) => bail!("bench quality: --minutes must be positive"),
            (_, Some(0)) => bail!("bench quality: --epochs must be at least 1"),
            _ => {}
        }
        o.marks = match (marks, o.minutes) {
            (Some(marks), _) => marks,
            (None, Some(m)) => (1..=4).map(|q| m * q as f64 / 4.0).collect(),
            (None, None) => Vec::new(),
        };
        if o.marks.iter().any(|m| !(*m >= 0.0 && m.is_finite())) {
            bail!("bench quality: --marks must be minutes, zero or positive");
        }
        if o.threads == 0 || o.torch_threads == Some(0) || o.seeds.is_empty() {
            bail!(
                "bench quality: --threads and --torch-threads must be at least 1 and --seeds name one seed at least"
            );
        }
        if !matches!(o.profile.as_str(), "release" | "dev") {
            bail!("bench quality: --profile is release or dev, got `{}`", o.profile);
        }
        Ok(o)
    }

    fn torch_threads(&self) -> usize {
        self.torch_threads.unwrap_or(self.threads)
    }

    /// The file name's stem: `quality-60min`, `quality-5epochs-3seeds`.
    fn stem(&self) -> String {
        let seeds = if self.seeds.len() > 1 { format!("-{}seeds", self.seeds.len()) } else { String::new() };
        let fit = match (self.fit, self.clock) {
            (true, _) => "-fit",
            (_, true) => "-clock",
            _ => "",
        };
        match (self.minutes, self.epochs) {
            (Some(m), _) => format!("quality-{m}min{fit}{seeds}"),
            (None, Some(e)) => format!("quality-{e}epochs{seeds}"),
            (None, None) => "quality".into(),
        }
    }

    /// The report's JSON, Markdown and figure in `out`; appended, not `with_extension`, which
    /// would cut a stem like `quality-0.5min` at its dot.
    fn report_paths(&self) -> [PathBuf; 3] {
        ["json", "md", "png"].map(|ext| self.out.join(format!("{}.{ext}", self.stem())))
    }

    /// `simsiam pretrain`'s arguments for `seed`, writing into `run_dir`.
    fn pretrain_args(&self, seed: u64, run_dir: &Path) -> Vec<String> {
        let epochs = if self.clock { Some(CLOCK_EPOCHS) } else { self.epochs };
        self.side_args(seed, run_dir, epochs, self.minutes, &self.marks)
    }

    /// The arguments of the short run that measures our speed for `--epochs fit`: the
    /// recipe as the real run has it, a schedule longer than the run, no kNN.
    fn calibration_args(&self, seed: u64, run_dir: &Path) -> Vec<String> {
        let minutes = fit_minutes(self.minutes.unwrap_or(0.0));
        let mut args = self.side_args(seed, run_dir, Some(CALIBRATION_EPOCHS), Some(minutes), &[]);
        // After the user's sets: kNN is off the clock, but the calibration has no use for it.
        args.splice(args.len() - 2..args.len() - 2, ["--set".to_owned(), "train.knn_every=0".to_owned()]);
        args
    }

    fn side_args(
        &self,
        seed: u64,
        run_dir: &Path,
        epochs: Option<usize>,
        minutes: Option<f64>,
        marks: &[f64],
    ) -> Vec<String> {
        let mut args = vec!["pretrain".to_owned()];
        let mut set = |kv: String| args.extend(["--set".to_owned(), kv]);
        if self.recipe == "training-md" {
            TRAINING_MD.iter().for_each(|kv| set((*kv).to_owned()));
        }
        set(format!("data.path={}", self.data.display()));
        set(format!("train.output_dir={}", run_dir.display()));
        set(format!("train.seed={seed}"));
        // The PyTorch + Lightly script trains no online probe: neither side pays for one.
        set("train.online_probe=false".to_owned());
        if let Some(epochs) = epochs {
            set(format!("train.epochs={epochs}"));
        }
        if let Some(minutes) = minutes {
            set(format!("train.minutes={minutes}"));
        }
        if self.clock {
            set("train.schedule=clock".to_owned());
        }
        if !marks.is_empty() {
            let marks: Vec<String> = marks.iter().map(|m| m.to_string()).collect();
            set(format!("train.knn_at_minutes=[{}]", marks.join(", ")));
        }
        self.sets.iter().for_each(|kv| set(kv.clone()));
        let preset = if self.recipe == "training-md" { "lightly-example" } else { &self.recipe };
        args.extend(["--preset".to_owned(), preset.to_owned()]);
        args
    }
}

/// The calibration runs' schedule: longer than any of them gets.
const CALIBRATION_EPOCHS: usize = 1000;

/// The epochs of a clock schedule (`--epochs clock`): only a bound, which the budget ends
/// long before.
const CLOCK_EPOCHS: usize = 100_000;

/// CIFAR-10's training images, all of which both sides train on (the PyTorch script refuses
/// a `data.limit`).
const CIFAR10_TRAIN_IMAGES: usize = 50_000;

/// How long each side's calibration run trains for `--epochs fit` with a budget of `budget`
/// minutes: a fortieth of it, from 15 seconds to 90.
fn fit_minutes(budget: f64) -> f64 {
    (budget / 40.0).clamp(0.25, 1.5)
}

/// The epochs that `images_per_s` fills `minutes` of training clock with, in whole batches of
/// `batch`, rounded up: a schedule that runs past the budget by part of an epoch is at a
/// rate near zero there, one that ends early leaves the rest of the budget unused.
fn epochs_to_fill(minutes: f64, images_per_s: f64, batch: usize) -> usize {
    let per_epoch = (CIFAR10_TRAIN_IMAGES / batch.max(1) * batch.max(1)) as f64;
    ((minutes * 60.0 * images_per_s / per_epoch).ceil() as usize).max(1)
}

/// One side's calibration for `--epochs fit`: its measured speed and the schedule it gives.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Calibration {
    images_per_s: f64,
    epochs: usize,
}

/// Both sides' calibrations for one seed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fit {
    ours: Calibration,
    torch: Calibration,
}

impl Calibration {
    /// The calibration run of `seed` in `work` whose JSON lines are `path` (either side's:
    /// both train our calibration run's config.toml), read back.
    fn read(o: &Options, work: &Path, seed: u64, path: &Path) -> Result<Calibration> {
        let config = fit_ours_dir(work, seed).join("config.toml");
        let text = std::fs::read_to_string(&config)
            .with_context(|| format!("could not read {}", config.display()))?;
        let batch = train_batch_size(&text)
            .with_context(|| format!("{}: no [train] batch_size", config.display()))?;
        let rate = read_curve(path)?
            .images_per_s()
            .with_context(|| format!("{}: the calibration run trained nothing", path.display()))?;
        Ok(Calibration { images_per_s: rate, epochs: epochs_to_fill(o.minutes.unwrap_or(0.0), rate, batch) })
    }
}

impl Fit {
    /// Both calibration runs of `seed` in `work`, read back.
    fn read(o: &Options, work: &Path, seed: u64) -> Result<Fit> {
        Ok(Fit {
            ours: Calibration::read(o, work, seed, &fit_ours_dir(work, seed).join("metrics.jsonl"))?,
            torch: Calibration::read(o, work, seed, &fit_torch_out(work, seed))?,
        })
    }
}

/// The report's words for each side's threads.
fn threads_note(ours: usize, torch: usize) -> String {
    if ours == torch {
        format!("{ours} thread(s) each (RAYON_NUM_THREADS, torch.set_num_threads)")
    } else {
        format!("ours at {ours} thread(s) (RAYON_NUM_THREADS), PyTorch at {torch} (torch.set_num_threads)")
    }
}

/// Our kernels' vector level on this CPU, as `simsiam_kernels::Isa::active` picks it: the
/// widest of avx512 (AVX-512F with AVX2 and FMA), avx2 and portable, capped by `SIMSIAM_ISA`.
fn our_isa(cpuinfo: &str, cap: Option<&str>) -> String {
    let flags = report::vector_flags(cpuinfo);
    let has = |f: &str| flags.contains(&f);
    let levels = ["portable", "avx2", "avx512"];
    let detected = match (has("avx2") && has("fma"), has("avx512f")) {
        (true, true) => 2,
        (true, false) => 1,
        _ => 0,
    };
    let cap = cap.and_then(|c| levels.iter().position(|l| *l == c)).unwrap_or(2);
    levels[detected.min(cap)].to_owned()
}

fn build_simsiam(o: &Options) -> Result<PathBuf> {
    let mut args: Vec<&str> = vec!["build"];
    if o.profile == "release" {
        args.extend(["--release", "-p", "simsiam"]);
    } else {
        // Every workspace member, as the dev builds are made: `-p` would resolve features
        // differently and rebuild candle.
        args.extend(["--workspace", "--bins"]);
    }
    if let Some(features) = &o.features {
        args.extend(["--features", features]);
    }
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo()).args(&args).current_dir(project_root()).status()?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(target_dir().join(if o.profile == "release" { "release" } else { "debug" }).join("simsiam"))
}

fn read_curve(path: &Path) -> Result<Curve> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    Curve::parse(&text).with_context(|| format!("in {}", path.display()))
}

/// `batch_size` of the `[train]` table of our run's config.toml (written by our trainer: one
/// key a line, tables as `[name]` headers).
fn train_batch_size(config: &str) -> Option<usize> {
    let mut table = "";
    for line in config.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name.trim();
        } else if let Some((key, value)) = line.split_once('=').filter(|_| table == "train") {
            if key.trim() == "batch_size" {
                return value.trim().parse().ok();
            }
        }
    }
    None
}

/// The PyTorch script's `versions` line.
fn torch_versions(path: &Path) -> serde_json::Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                serde_json::from_str::<serde_json::Value>(l).ok().filter(|v| v["event"] == "versions")
            })
        })
        .unwrap_or(serde_json::Value::Null)
}

/// `cargo xtask bench quality ...`.
pub fn run(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    let runs = match &o.from {
        Some(work) => Runs::read(&o, work)?,
        None => train(&o)?,
    };
    report(&o, runs)
}

/// What the two sides' runs left, for the report.
struct Runs {
    /// Where the runs wrote their files.
    work: PathBuf,
    ours: Vec<Curve>,
    torch: Vec<Curve>,
    /// Each seed's calibration, with `--epochs fit`.
    fits: Vec<Fit>,
    /// Our run's config.toml, which the PyTorch side read.
    config_text: String,
    /// The PyTorch script's `versions` line.
    versions: serde_json::Value,
    /// The Python that ran the reference, when this process ran it.
    python: Option<Python>,
    date: String,
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
}

impl Runs {
    /// The files a finished run left in `work` (`--from`, and after `train`), read back; the
    /// date is the run's start, the Python and the load are not known from the files.
    fn read(o: &Options, work: &Path) -> Result<Runs> {
        let (mut ours, mut torch) = (Vec::new(), Vec::new());
        let mut versions = serde_json::Value::Null;
        let mut config_text = String::new();
        for &seed in &o.seeds {
            let mut curve = read_curve(&ours_dir(work, seed).join("metrics.jsonl"))?;
            // Each seed's config; the last one's, as the PyTorch side read it last, is reported.
            let config = ours_dir(work, seed).join("config.toml");
            config_text = std::fs::read_to_string(&config)
                .with_context(|| format!("could not read {}", config.display()))?;
            if let Some(batch) = train_batch_size(&config_text) {
                curve.count_images(batch);
            }
            ours.push(curve);
            let out = torch_out(work, seed);
            torch.push(read_curve(&out)?);
            versions = torch_versions(&out);
        }
        let fits = if o.fit {
            o.seeds.iter().map(|&seed| Fit::read(o, work, seed)).collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let config = ours_dir(work, *o.seeds.last().unwrap_or(&0)).join("config.toml");
        // The run began when our side wrote its config.
        let began = std::fs::metadata(&config)
            .and_then(|m| m.modified())
            .with_context(|| format!("no modification time for {}", config.display()))?;
        let began = began.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Ok(Runs {
            work: work.to_owned(),
            ours,
            torch,
            fits,
            config_text,
            versions,
            python: None,
            date: report::utc(began).0,
            load_before: None,
            load_after: None,
        })
    }
}

/// Where our side of `seed` writes its run.
fn ours_dir(work: &Path, seed: u64) -> PathBuf {
    work.join(format!("ours-seed{seed}"))
}

/// Where our calibration run of `seed` writes (`--epochs fit`).
fn fit_ours_dir(work: &Path, seed: u64) -> PathBuf {
    work.join(format!("fit-ours-seed{seed}"))
}

/// Where PyTorch's calibration run of `seed` writes its JSON lines (`--epochs fit`).
fn fit_torch_out(work: &Path, seed: u64) -> PathBuf {
    work.join(format!("fit-torch-seed{seed}.jsonl"))
}

/// Where the PyTorch side of `seed` writes its JSON lines.
fn torch_out(work: &Path, seed: u64) -> PathBuf {
    work.join(format!("torch-seed{seed}.jsonl"))
}

/// Trains ours, then PyTorch + Lightly, once per seed.
fn train(o: &Options) -> Result<Runs> {
    check_nvcc(o.features.as_deref())?;
    if !o.data.join("cifar-10-batches-bin").is_dir() {
        bail!(
            "{}: no cifar-10-batches-bin; `cargo xtask download-cifar --data {} [--from ARCHIVE]` first",
            o.data.display(),
            o.data.display()
        );
    }
    let python: Python = find_python(o.python.as_deref())
        .map_err(|why| anyhow::anyhow!("bench quality needs a Python with torch: {why}"))?;
    if python.lightly.is_none() {
        bail!("bench quality: no lightly in `{}` (pip install lightly)", python.path.display());
    }
    eprintln!("python: {}", python.describe());
    let simsiam = build_simsiam(o)?;
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (date, stamp) = report::utc(secs);
    let work = target_dir().join("bench").join(format!("{}-{stamp}", o.stem()));
    std::fs::create_dir_all(&work).with_context(|| format!("could not create {}", work.display()))?;
    let script = project_root().join("tools/bench/quality_torch_lightly.py");
    let threads = o.threads.to_string();
    let torch_threads = o.torch_threads().to_string();
    let load_before = loadavg();
    let ours = |args: Vec<String>| Cmd::new(&simsiam).env("RAYON_NUM_THREADS", &threads).args(args).output();
    // PyTorch + Lightly on our run's config, for `minutes`, kNN at `marks`.
    let torch = |config: &Path, out: &Path, minutes: Option<f64>, marks: &[f64], epochs: Option<usize>| {
        let mut cmd = Cmd::new(&python.path)
            .arg(script.display().to_string())
            .args([
                "--config".into(),
                config.display().to_string(),
                "--data".into(),
                o.data.display().to_string(),
            ])
            .args(["--out".into(), out.display().to_string(), "--threads".into(), torch_threads.clone()]);
        if let Some(m) = minutes {
            cmd = cmd.args(["--minutes".into(), m.to_string()]);
        }
        if !marks.is_empty() {
            let marks: Vec<String> = marks.iter().map(|m| m.to_string()).collect();
            cmd = cmd.args(["--marks".into(), marks.join(",")]);
        }
        if let Some(e) = epochs {
            cmd = cmd.args(["--epochs".into(), e.to_string()]);
        }
        cmd.output()
    };
    for &seed in &o.seeds {
        let run_dir = ours_dir(&work, seed);
        // With `--epochs fit` each side's calibration runs right before its own run, so that
        // both meet the machine as it is then (its speed drifts by tens of percent an hour).
        let calibration = fit_ours_dir(&work, seed);
        let mut args = o.pretrain_args(seed, &run_dir);
        if o.fit {
            ours(o.calibration_args(seed, &calibration)).context("our calibration run failed")?;
            let fit = Calibration::read(o, &work, seed, &calibration.join("metrics.jsonl"))?;
            eprintln!(
                "--epochs fit, seed {seed}: ours {:.0} images/s, {} epochs",
                fit.images_per_s, fit.epochs
            );
            args = o.side_args(seed, &run_dir, Some(fit.epochs), o.minutes, &o.marks);
        }
        ours(args).context("our side failed")?;
        let mut torch_epochs = None;
        if o.fit {
            let (config, out) = (calibration.join("config.toml"), fit_torch_out(&work, seed));
            torch(&config, &out, Some(fit_minutes(o.minutes.unwrap_or(0.0))), &[], None)
                .context("PyTorch's calibration run failed")?;
            let fit = Calibration::read(o, &work, seed, &out)?;
            eprintln!(
                "--epochs fit, seed {seed}: PyTorch {:.0} images/s, {} epochs",
                fit.images_per_s, fit.epochs
            );
            torch_epochs = Some(fit.epochs);
        }
        let config = run_dir.join("config.toml");
        torch(&config, &torch_out(&work, seed), o.minutes, &o.marks, torch_epochs)
            .context("the PyTorch + Lightly side failed")?;
    }
    let load_after = loadavg();
    Ok(Runs { python: Some(python), date, load_before, load_after, ..Runs::read(o, &work)? })
}

/// Writes the JSON, the Markdown and the figure of `runs` into `o.out` and prints the table.
fn report(o: &Options, runs: Runs) -> Result<()> {
    let Runs { work, ours, torch, fits, config_text, versions, python, date, load_before, load_after } = runs;
    let mut notes = Vec::new();
    for (seed, fit) in o.seeds.iter().zip(&fits) {
        notes.push(format!(
            "`--epochs fit`, seed {seed}: each side's cosine sized to the {}-minute budget from its \
             own speed in a {}-minute run right before it: ours {:.0} images/s, {} epochs; PyTorch {:.0} \
             images/s, {} epochs (the recipe is otherwise the same)",
            o.minutes.unwrap_or(0.0),
            fit_minutes(o.minutes.unwrap_or(0.0)),
            fit.ours.images_per_s,
            fit.ours.epochs,
            fit.torch.images_per_s,
            fit.torch.epochs
        ));
    }
    if o.clock {
        notes.push(format!(
            "`--epochs clock`: each side's cosine spans the {}-minute budget of its own training \
             clock (`train.schedule = \"clock\"`, read before each step), so it reaches 0 at the budget \
             however fast the machine runs",
            o.minutes.unwrap_or(0.0)
        ));
    }
    if o.from.is_some() {
        notes.push(format!(
            "rebuilt from the run's files in `{}` (`--from`): the date is the run's start; the \
             machine and git revision are this rebuild's, and the load is not known",
            work.display()
        ));
    }
    if let Some(m) = o.minutes {
        for (name, runs) in [("ours", &ours), ("PyTorch", &torch)] {
            if runs.iter().any(|c| c.time_up.is_none()) {
                let advice = if o.fit {
                    "the machine ran faster than in its calibration run"
                } else if o.clock {
                    "the clock schedule's bound on epochs ran out"
                } else {
                    "raise --epochs to size the schedule to the budget, or give --epochs fit"
                };
                let note = format!(
                    "{name} finished its epochs before the {m}-minute budget: the marks after its schedule \
                     ended show its final kNN ({advice})"
                );
                eprintln!("warning: {note}");
                notes.push(note);
            }
        }
    }
    let sides = [Side { name: "simsiam-rs", runs: &ours }, Side { name: "PyTorch + Lightly", runs: &torch }];
    let mut tables = String::new();
    if !o.marks.is_empty() {
        tables.push_str(&minutes_table(&o.marks, &sides));
        tables.push('\n');
    }
    // Only the epochs both sides completed (none in a short budget).
    let epochs = epochs_table(&sides);
    if epochs.lines().next().is_some_and(|head| head != "| epochs |") {
        tables.push_str(&epochs);
    }
    if o.seeds.len() > 1 || o.minutes.is_none() {
        tables.push('\n');
        tables.push_str(&final_table(&o.seeds, &sides));
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let isa = our_isa(&cpuinfo, std::env::var("SIMSIAM_ISA").ok().as_deref());
    let command = std::iter::once("cargo xtask bench quality".to_owned())
        .chain(o.flags.iter().map(|f| quote(f)))
        .collect::<Vec<_>>()
        .join(" ");
    let (rev, dirty) = git_rev();
    let rate =
        |runs: &[Curve]| report::mean(&runs.iter().filter_map(Curve::images_per_s).collect::<Vec<_>>());
    let header = Header {
        title: match o.minutes {
            Some(m) => format!("Time to accuracy: {m} training minutes, ours and PyTorch + Lightly"),
            None => format!("Equal epochs: {} epochs, ours and PyTorch + Lightly", o.epochs.unwrap_or(0)),
        },
        command: command.clone(),
        date: date.clone(),
        cpu: cpu_model(),
        nproc: std::thread::available_parallelism().map_or(1, usize::from),
        load_before,
        load_after,
        git: if dirty { format!("{rev} with local changes") } else { rev.clone() },
        reference: Ok(match &python {
            Some(python) => python.describe(),
            None => format!(
                "torch {}, torchvision {}, lightly {} (the run's `versions` line)",
                versions["torch"].as_str().unwrap_or("unknown"),
                versions["torchvision"].as_str().unwrap_or("unknown"),
                versions["lightly"].as_str().unwrap_or("unknown")
            ),
        }),
        notes: [
            format!(
                "recipe `{}`{}, {}, seeds {:?}; the PyTorch side reads our run's config.toml",
                o.recipe,
                if o.sets.is_empty() { String::new() } else { format!(" with {}", o.sets.join(" ")) },
                threads_note(o.threads, o.torch_threads()),
                o.seeds
            ),
            format!(
                "training clock: each batch's loading and step; kNN at the marks and at epoch ends \
                 and our checkpoints are off it; images/s: ours {}, PyTorch {}",
                rate(&ours).map_or("n/a".into(), |r| format!("{r:.1}")),
                rate(&torch).map_or("n/a".into(), |r| format!("{r:.1}"))
            ),
            format!(
                "vector level: ours `{isa}`, PyTorch `{}`",
                versions["cpu_capability"].as_str().unwrap_or("unknown")
            ),
        ]
        .into_iter()
        .chain(notes)
        .collect(),
    };
    let markdown = report::markdown(&header, &tables);
    let record = json!({
        "kind": "quality",
        "command": command,
        "machine": {
            "date": date, "cpu": header.cpu, "nproc": header.nproc, "os": std::env::consts::OS,
            "load_before": load_before, "load_after": load_after, "git_rev": rev, "git_dirty": dirty,
        },
        "isa": { "ours": isa, "torch": versions["cpu_capability"] },
        "python": match &python {
            Some(p) => json!({ "path": p.path, "torch": p.torch, "torchvision": p.torchvision, "lightly": p.lightly }),
            None => json!({
                "path": null, "torch": versions["torch"], "torchvision": versions["torchvision"],
                "lightly": versions["lightly"],
            }),
        },
        "threads": o.threads,
        "torch_threads": o.torch_threads(),
        "recipe": { "name": o.recipe, "sets": o.sets, "config_toml": config_text },
        "minutes": o.minutes, "marks": o.marks, "epochs": o.epochs, "clock": o.clock, "seeds": o.seeds,
        "fit": fits.iter().map(|f| json!({
            "ours": { "images_per_s": f.ours.images_per_s, "epochs": f.ours.epochs },
            "torch": { "images_per_s": f.torch.images_per_s, "epochs": f.torch.epochs },
        })).collect::<Vec<_>>(),
        "images_per_s": { "ours": rate(&ours), "torch": rate(&torch) },
        "ours": ours.iter().map(Curve::to_json).collect::<Vec<_>>(),
        "torch": torch.iter().map(Curve::to_json).collect::<Vec<_>>(),
        "work_dir": work,
    });
    std::fs::create_dir_all(&o.out).with_context(|| format!("could not create {}", o.out.display()))?;
    let [json_path, md_path, png_path] = o.report_paths();
    let text = serde_json::to_string_pretty(&record)?;
    std::fs::write(&json_path, text + "\n")
        .with_context(|| format!("could not write {}", json_path.display()))?;
    std::fs::write(&md_path, &markdown).with_context(|| format!("could not write {}", md_path.display()))?;
    let series = [
        plot::Series { name: "simsiam-rs", color: RGBColor(214, 39, 40), runs: &ours },
        plot::Series { name: "PyTorch + Lightly", color: RGBColor(31, 119, 180), runs: &torch },
    ];
    if let Err(e) = plot::draw(&png_path, &header.title, &o.marks, &series) {
        eprintln!("warning: no figure: {e:#}");
    }
    println!("\n{markdown}");
    eprintln!("wrote {}, {} and {}", json_path.display(), md_path.display(), png_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_budget_defaults_its_marks_to_quarters_and_one_seed() -> Result<()> {
        let o = Options::parse(&args("--minutes 60"))?;
        assert_eq!(
            (o.minutes, o.marks.as_slice(), o.seeds.as_slice()),
            (Some(60.0), &[15.0, 30.0, 45.0, 60.0][..], &[0][..])
        );
        assert_eq!(
            (o.threads, o.recipe.as_str(), o.profile.as_str(), o.epochs),
            (1, "training-md", "release", None)
        );
        assert_eq!(o.stem(), "quality-60min");
        let o = Options::parse(&args(
            "--minutes 2 --marks 1,2 --threads 2 --recipe cifar10-paper --set train.workers=1 --features mkl --out /tmp/x --python /py",
        ))?;
        assert_eq!((o.marks.as_slice(), o.threads, o.recipe.as_str()), (&[1.0, 2.0][..], 2, "cifar10-paper"));
        assert_eq!(
            (o.features.as_deref(), o.out.as_path(), o.python.as_deref()),
            (Some("mkl"), Path::new("/tmp/x"), Some(Path::new("/py")))
        );
        assert_eq!(o.flags.last().map(String::as_str), Some("mkl"));
        assert_eq!(o.torch_threads(), 2, "PyTorch follows --threads unless told");
        let o = Options::parse(&args("--minutes 60 --threads 2 --torch-threads 1"))?;
        assert_eq!((o.threads, o.torch_threads()), (2, 1));
        assert_eq!(
            threads_note(2, 1),
            "ours at 2 thread(s) (RAYON_NUM_THREADS), PyTorch at 1 (torch.set_num_threads)"
        );
        assert!(threads_note(1, 1).starts_with("1 thread(s) each"));
        Ok(())
    }

    #[test]
    fn equal_epochs_over_seeds_need_no_budget() -> Result<()> {
        let o = Options::parse(&args("--epochs 5 --seeds 0,1,2"))?;
        assert_eq!(
            (o.minutes, o.epochs, o.seeds.as_slice(), o.marks.is_empty()),
            (None, Some(5), &[0, 1, 2][..], true)
        );
        assert_eq!(o.stem(), "quality-5epochs-3seeds");
        let a = o.pretrain_args(1, Path::new("/runs/x"));
        let joined = a.join(" ");
        assert!(joined.starts_with("pretrain --set model.stem=imagenet --set model.width=16"), "{joined}");
        assert!(
            joined.contains("--set train.seed=1 --set train.online_probe=false --set train.epochs=5")
                && !joined.contains("minutes"),
            "{joined}"
        );
        assert!(joined.ends_with("--preset lightly-example"), "{joined}");
        // The seed and the budget come after the recipe's own values, the user's sets last.
        let o =
            Options::parse(&args("--minutes 2 --marks 0,1 --recipe cifar10-paper --set train.knn_every=2"))?;
        let joined = o.pretrain_args(0, Path::new("/r")).join(" ");
        assert!(!joined.contains("model.width=16"), "{joined}");
        assert!(joined.contains("--set train.minutes=2 --set train.knn_at_minutes=[0, 1] --set train.knn_every=2 --preset cifar10-paper"), "{joined}");
        Ok(())
    }

    #[test]
    fn epochs_fit_sizes_each_side_from_a_short_run_before_it() -> Result<()> {
        let o = Options::parse(&args("--minutes 60 --epochs fit --seeds 3"))?;
        assert!(o.fit && o.epochs.is_none());
        assert_eq!(o.stem(), "quality-60min-fit");
        let joined = o.calibration_args(3, Path::new("/w/fit")).join(" ");
        assert!(
            joined.contains("--set train.seed=3 --set train.online_probe=false --set train.epochs=1000 --set train.minutes=1.5 --set train.knn_every=0 --preset lightly-example"),
            "{joined}"
        );
        assert!(!joined.contains("knn_at_minutes"), "{joined}");
        // The real run keeps the marks.
        assert!(
            o.pretrain_args(3, Path::new("/w/run")).join(" ").contains("knn_at_minutes=[15, 30, 45, 60]")
        );
        assert_eq!((fit_minutes(60.0), fit_minutes(4.0), fit_minutes(600.0)), (1.5, 0.25, 1.5));
        // 390 steps of 128 an epoch: 1800 images/s fill 60 minutes with 129.8 epochs.
        assert_eq!(epochs_to_fill(60.0, 1800.0, 128), 130);
        assert_eq!(epochs_to_fill(60.0, 1135.0, 128), 82);
        assert_eq!(epochs_to_fill(0.01, 10.0, 128), 1, "at least one epoch");
        let err = Options::parse(&args("--epochs fit")).expect_err("no budget").to_string();
        assert!(err.contains("--epochs fit and clock size the schedule to a budget"), "{err}");
        Ok(())
    }

    #[test]
    fn epochs_clock_gives_each_side_a_cosine_over_its_own_clock() -> Result<()> {
        let o = Options::parse(&args("--minutes 60 --epochs clock --seeds 2 --set train.knn_every=4"))?;
        assert!(o.clock && !o.fit && o.epochs.is_none());
        assert_eq!(o.stem(), "quality-60min-clock");
        let joined = o.pretrain_args(2, Path::new("/w/run")).join(" ");
        assert!(
            joined.contains("--set train.epochs=100000 --set train.minutes=60 --set train.schedule=clock --set train.knn_at_minutes=[15, 30, 45, 60] --set train.knn_every=4 --preset lightly-example"),
            "{joined}"
        );
        let half = Options::parse(&args("--minutes 0.5 --epochs clock --out /o"))?;
        assert_eq!(half.report_paths()[0], Path::new("/o/quality-0.5min-clock.json"));
        let err = Options::parse(&args("--epochs clock")).expect_err("no budget").to_string();
        assert!(err.contains("give --minutes N"), "{err}");
        for twice in ["--minutes 60 --epochs clock --epochs fit", "--minutes 60 --epochs 5 --epochs clock"] {
            let err = Options::parse(&args(twice)).expect_err(twice).to_string();
            assert!(err.contains("give --epochs once"), "{twice}: {err}");
        }
        Ok(())
    }

    /// A finished run's folder as `train` leaves it: our metrics and config, PyTorch's lines.
    fn a_finished_run(work: &Path) -> Result<()> {
        let ours = work.join("ours-seed0");
        std::fs::create_dir_all(&ours)?;
        std::fs::write(ours.join("config.toml"), "[train]\nepochs = 2\n")?;
        let line = |who: &str, knn: f64| {
            format!(
                "{{\"event\":\"knn_mark\",\"minute\":1,\"epoch\":0,\"step\":9,\"images\":1152,\"train_seconds\":60,\"knn_top1\":{knn}}}\n\
                 {{\"event\":\"time_up\",\"epoch\":0,\"step\":9,\"images\":1152,\"train_seconds\":60,\"who\":\"{who}\"}}\n"
            )
        };
        std::fs::write(ours.join("metrics.jsonl"), line("ours", 0.31))?;
        let versions = r#"{"event": "versions", "torch": "2.15.0", "lightly": "1.6.0", "torchvision": "0.29.2", "threads": 1, "cpu_capability": "AVX512"}"#;
        std::fs::write(work.join("torch-seed0.jsonl"), format!("{versions}\n{}", line("torch", 0.27)))?;
        Ok(())
    }

    #[test]
    fn from_a_finished_run_rewrites_its_report_without_training() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("simsiam-quality-from-{}", std::process::id()));
        let (work, out) = (dir.join("run"), dir.join("out"));
        a_finished_run(&work)?;
        let line = format!(
            "--minutes 1 --marks 1 --data /nowhere --python /no/python --from {} --out {}",
            work.display(),
            out.display()
        );
        run(&args(&line))?;
        let md = std::fs::read_to_string(out.join("quality-1min.md"))?;
        assert!(
            md.contains("| simsiam-rs | 31.00% |") && md.contains("| PyTorch + Lightly | 27.00% |"),
            "{md}"
        );
        assert!(
            md.contains("torch 2.15.0, torchvision 0.29.2, lightly 1.6.0 (the run's `versions` line)"),
            "{md}"
        );
        assert!(md.contains("rebuilt from the run's files"), "{md}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("quality-1min.json"))?)?;
        assert_eq!(
            (json["python"]["torch"].as_str(), json["recipe"]["config_toml"].as_str()),
            (Some("2.15.0"), Some("[train]\nepochs = 2\n"))
        );
        // A folder without the runs' files is an error that names the file.
        let err =
            run(&args(&format!("--minutes 1 --from {} --out {}", dir.join("none").display(), out.display())))
                .expect_err("no files");
        assert!(format!("{err:#}").contains("metrics.jsonl"), "{err:#}");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn a_fitted_runs_report_gives_each_sides_calibration() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("simsiam-quality-fit-{}", std::process::id()));
        let (work, out) = (dir.join("run"), dir.join("out"));
        a_finished_run(&work)?;
        let line = format!("--minutes 60 --epochs fit --from {} --out {}", work.display(), out.display());
        // Without the calibration runs' files the report says which is missing.
        let err = run(&args(&line)).expect_err("no calibration files");
        assert!(format!("{err:#}").contains("fit-ours-seed0"), "{err:#}");
        let calibration = fit_ours_dir(&work, 0);
        std::fs::create_dir_all(&calibration)?;
        std::fs::write(calibration.join("config.toml"), "[train]\nbatch_size = 128\n")?;
        let time_up = |images: usize| {
            format!(
                "{{\"event\":\"time_up\",\"epoch\":1,\"step\":9,\"images\":{images},\"train_seconds\":90}}\n"
            )
        };
        std::fs::write(calibration.join("metrics.jsonl"), time_up(162_000))?;
        std::fs::write(fit_torch_out(&work, 0), time_up(102_150))?;
        run(&args(&line))?;
        let md = std::fs::read_to_string(out.join("quality-60min-fit.md"))?;
        assert!(md.contains("ours 1800 images/s, 130 epochs; PyTorch 1135 images/s, 82 epochs"), "{md}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("quality-60min-fit.json"))?)?;
        assert_eq!(
            (json["fit"][0]["ours"]["epochs"].as_u64(), json["fit"][0]["torch"]["epochs"].as_u64()),
            (Some(130), Some(82))
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn nonsense_is_refused_in_one_line() {
        for (line, want) in [
            ("", "give --minutes N"),
            ("--minutes 0", "--minutes must be positive"),
            ("--epochs 0", "--epochs must be at least 1"),
            ("--minutes 5 --marks 1,x", "--marks: expected a comma-separated list"),
            ("--minutes 5 --marks -1", "--marks must be minutes"),
            ("--minutes 5 --threads 0", "--threads and --torch-threads must be at least 1"),
            ("--minutes 5 --torch-threads 0", "--threads and --torch-threads must be at least 1"),
            ("--minutes 5 --profile fast", "--profile is release or dev"),
            ("--minutes", "--minutes needs a value"),
            ("--minutes 5 --frobnicate 1", "unknown option `--frobnicate`"),
        ] {
            let err = Options::parse(&args(line)).expect_err(line).to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn the_batch_size_is_the_train_tables() {
        let config = "[data]\nbatch_size = 7\n\n[train]\n# a comment\nepochs = 2\nbatch_size = 128\n\n[eval]\nbatch_size = 9\n";
        assert_eq!(train_batch_size(config), Some(128));
        assert_eq!(train_batch_size("[eval]\nbatch_size = 9\n"), None);
        assert_eq!(train_batch_size("[train]\nbatch_size = lots\n"), None);
    }

    #[test]
    fn our_vector_level_follows_the_cpu_flags_and_the_cap() {
        let avx512 = "flags\t\t: fpu sse avx2 fma avx512f\n";
        assert_eq!(our_isa(avx512, None), "avx512");
        assert_eq!(our_isa(avx512, Some("avx2")), "avx2");
        assert_eq!(our_isa("flags\t\t: fpu sse avx2 fma\n", None), "avx2");
        assert_eq!(our_isa("flags\t\t: fpu sse\n", Some("avx512")), "portable");
    }
}
