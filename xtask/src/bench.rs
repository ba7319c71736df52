//! `cargo xtask bench [step|augment|loader|all]`: our benchmark examples beside the PyTorch and
//! Lightly references, in one run, written to `target/bench/<kind>-<timestamp>.{json,md}` with
//! the machine, the load and the versions, the Markdown in the layout of docs/performance*.md;
//! `bench quality` (time to accuracy, [`quality`]) trains both sides and writes docs/bench/.

mod augment;
mod cmd;
mod loader;
mod python;
mod quality;
mod report;
mod step;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use report::Header;

pub use cmd::{Cmd, quote};
pub use python::{Python, find_python};
pub use quality::USAGE as QUALITY_USAGE;

use crate::{cargo, check_nvcc, project_root, take_features};

pub const USAGE: &str = "\
\x20 bench              ours beside PyTorch/Lightly; writes target/bench/<kind>-<time>.{json,md}
                     [step|augment|loader|all] [--python PATH] [--wait-idle MINUTES]
                     [--features LIST: cargo features of our examples' build, e.g. cuda,cudnn]
                     step:    [--models imagenet-r18,cifar-r18] [--batch 64,256] [--rounds 2]
                              [--steps N] [--threads N] [--stock]
                     augment: [--seconds S]
                     loader:  [--data DIR] [--workers 1,2] [--batches 40]
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Step,
    Augment,
    Loader,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Step => "step",
            Kind::Augment => "augment",
            Kind::Loader => "loader",
        }
    }

    /// The crate and example that measure ours.
    fn example(self) -> (&'static str, &'static str) {
        match self {
            Kind::Step => ("simsiam-models", "bench_step"),
            Kind::Augment => ("simsiam-augment", "bench_augment"),
            Kind::Loader => ("simsiam-data", "bench_loader"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Options {
    kinds: Vec<Kind>,
    python: Option<PathBuf>,
    wait_idle: Option<f64>,
    threads: usize,
    step: step::Options,
    seconds: Option<f64>,
    loader: loader::Options,
    /// Cargo features of the examples' build (`cuda,cudnn`).
    features: Option<String>,
    /// The flags as given, for the command line printed above each table.
    flags: Vec<String>,
}

fn parse_list<T: std::str::FromStr>(flag: &str, value: &str) -> Result<Vec<T>> {
    let items: Option<Vec<T>> = value.split(',').map(|v| v.trim().parse().ok()).collect();
    match items {
        Some(items) if !items.is_empty() => Ok(items),
        _ => bail!("{flag}: expected a comma-separated list, got `{value}`"),
    }
}

fn parse_one<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T> {
    value.parse().ok().with_context(|| format!("{flag}: not a valid value: `{value}`"))
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let (features, args) = take_features(args)?;
        let args = &args[..];
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let mut o = Options {
            kinds: vec![Kind::Step, Kind::Augment, Kind::Loader],
            python: None,
            wait_idle: None,
            threads,
            step: step::Options::default(),
            seconds: None,
            loader: loader::Options::default(),
            features,
            flags: Vec::new(),
        };
        let mut it = args.iter();
        if let Some(kind) = args.first().filter(|a| !a.starts_with('-')) {
            o.kinds = match kind.as_str() {
                "step" => vec![Kind::Step],
                "augment" => vec![Kind::Augment],
                "loader" => vec![Kind::Loader],
                "all" => o.kinds,
                other => bail!("bench: unknown benchmark `{other}`: step, augment, loader or all"),
            };
            it.next();
        }
        o.flags = it.clone().cloned().collect();
        if let Some(features) = &o.features {
            o.flags.extend(["--features".to_owned(), features.clone()]);
        }
        while let Some(flag) = it.next() {
            if flag == "--stock" {
                o.step.stock = true;
                continue;
            }
            let value = it.next().with_context(|| format!("bench: {flag} needs a value"))?;
            match flag.as_str() {
                "--python" => o.python = Some(PathBuf::from(value)),
                "--wait-idle" => o.wait_idle = Some(parse_one(flag, value)?),
                "--threads" => o.threads = parse_one(flag, value)?,
                "--models" => o.step.models = parse_list(flag, value)?,
                "--batch" => o.step.batches = parse_list(flag, value)?,
                "--rounds" => o.step.rounds = parse_one(flag, value)?,
                "--steps" => o.step.steps = Some(parse_one(flag, value)?),
                "--seconds" => o.seconds = Some(parse_one(flag, value)?),
                "--data" => o.loader.data = PathBuf::from(value),
                "--workers" => o.loader.workers = parse_list(flag, value)?,
                "--batches" => o.loader.batches = parse_one(flag, value)?,
                _ => bail!("bench: unknown option `{flag}`\n\nusage: cargo xtask bench ...\n{USAGE}"),
            }
        }
        if let Some(m) = o.step.models.iter().find(|m| !matches!(m.as_str(), "imagenet-r18" | "cifar-r18")) {
            bail!("bench: unknown model `{m}`: imagenet-r18 or cifar-r18");
        }
        if o.step.rounds == 0 || o.threads == 0 || o.step.steps == Some(0) || o.loader.batches == 0 {
            bail!("bench: --rounds, --threads, --steps and --batches must be at least 1");
        }
        Ok(o)
    }
}

/// What each benchmark hands back: its table and its JSON results.
pub struct Outcome {
    pub title: String,
    pub table: String,
    pub notes: Vec<String>,
    pub json: Value,
}

/// What the benchmarks share.
pub struct Ctx<'a> {
    /// The Python for this benchmark's reference; `None` runs ours alone.
    pub python: Option<&'a Python>,
    pub threads: usize,
    target: PathBuf,
}

impl Ctx<'_> {
    /// The release build of an example.
    pub fn example(&self, name: &str) -> PathBuf {
        self.target.join("release").join("examples").join(name)
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), |d| project_root().join(d))
}

/// The 1-minute, 5-minute and 15-minute load averages, where the OS tells them.
pub fn loadavg() -> Option<[f64; 3]> {
    report::load_averages(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// The CPU's model name and the vector extensions it has that decide kernel speed, e.g.
/// `Intel(R) Xeon(R) Processor (avx2 fma avx512f avx512_bf16 amx_tile)`: a ratio measured on
/// one ISA says nothing about another.
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| std::env::consts::ARCH.to_owned(), |(_, m)| m.trim().to_owned());
    let flags = report::vector_flags(&info);
    if flags.is_empty() { model } else { format!("{model} ({})", flags.join(" ")) }
}

/// The commit, and whether tracked files differ from it (read-only: no index refresh).
fn git_rev() -> (String, bool) {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("--no-optional-locks")
            .args(args)
            .current_dir(project_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    (rev, dirty)
}

/// Waits up to `minutes` for the 1-minute load to drop below 1.0, as tools/bench/run_step_ab.sh did.
fn wait_idle(minutes: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    while let Some([load, ..]) = loadavg() {
        if load < 1.0 {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!("load {load:.2} still above 1.0 after {minutes} min; running anyway");
            return;
        }
        eprintln!("load {load:.2}, waiting for it to drop below 1.0");
        std::thread::sleep(Duration::from_secs(30));
    }
}

fn build(kinds: &[Kind], features: Option<&str>) -> Result<()> {
    for kind in kinds {
        let (package, example) = kind.example();
        let mut args = vec!["build", "--release", "-p", package, "--example", example];
        if let Some(features) = features {
            args.extend(["--features", features]);
        }
        eprintln!("$ cargo {}", args.join(" "));
        let status = Command::new(cargo())
            .args(&args)
            .current_dir(project_root())
            .status()
            .context("could not start cargo")?;
        if !status.success() {
            bail!("`cargo {}` failed ({status})", args.join(" "));
        }
    }
    Ok(())
}

/// The command that reproduces this benchmark, with the environment variables that steered it.
fn command_line(kind: Kind, options: &Options) -> String {
    let mut words = Vec::new();
    let mut env = |key: &str| {
        if let Ok(value) = std::env::var(key) {
            words.push(format!("{key}={}", quote(&value)));
        }
    };
    if options.python.is_none() {
        env("SIMSIAM_PYTHON");
    }
    if kind == Kind::Augment && options.seconds.is_none() {
        env("SIMSIAM_BENCH_SECONDS");
    }
    words.push(format!("cargo xtask bench {}", kind.name()));
    words.extend(options.flags.iter().map(|f| quote(f)));
    words.join(" ")
}

/// `cargo xtask bench ...`.
pub fn run(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some("quality") {
        return quality::run(&args[1..]);
    }
    let options = Options::parse(args)?;
    check_nvcc(options.features.as_deref())?;
    if options.kinds.contains(&Kind::Loader) {
        loader::check_data(&options.loader.data)?;
    }
    let python = find_python(options.python.as_deref());
    match &python {
        Ok(p) => eprintln!("python: {}", p.describe()),
        Err(why) => eprintln!("no Python with torch, running ours alone: {why}"),
    }
    build(&options.kinds, options.features.as_deref())?;
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("could not create {}", out_dir.display()))?;
    for &kind in &options.kinds {
        // The reference each benchmark needs, or why it does not run.
        let reference = match (&python, kind) {
            (Err(why), _) => Err(format!("no Python with torch: {why}")),
            (Ok(p), Kind::Step) if p.torchvision.is_none() => {
                Err(format!("no torchvision in `{}`", p.path.display()))
            }
            (Ok(p), Kind::Augment | Kind::Loader) if p.lightly.is_none() => {
                Err(format!("no lightly in `{}`", p.path.display()))
            }
            (Ok(p), _) => Ok(p),
        };
        if let Err(why) = &reference {
            eprintln!("bench {}: the reference will not run ({why}); ours alone", kind.name());
        }
        if let Some(minutes) = options.wait_idle {
            wait_idle(minutes);
        }
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (date, stamp) = report::utc(secs);
        let load_before = loadavg();
        let ctx =
            Ctx { python: reference.as_ref().ok().copied(), threads: options.threads, target: target_dir() };
        let outcome = match kind {
            Kind::Step => step::run(&options.step, &ctx)?,
            Kind::Augment => augment::run(options.seconds, &ctx)?,
            Kind::Loader => loader::run(&options.loader, &ctx)?,
        };
        let load_after = loadavg();
        let (rev, dirty) = git_rev();
        let header = Header {
            title: outcome.title,
            command: command_line(kind, &options),
            date,
            cpu: cpu_model(),
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            load_before,
            load_after,
            git: if dirty { format!("{rev} with local changes") } else { rev.clone() },
            reference: reference.as_ref().map(|p| p.describe()).map_err(Clone::clone),
            notes: outcome.notes,
        };
        let markdown = report::markdown(&header, &outcome.table);
        let record = json!({
            "kind": kind.name(),
            "command": header.command,
            "machine": {
                "date": header.date, "cpu": header.cpu, "nproc": header.nproc, "os": std::env::consts::OS,
                "arch": std::env::consts::ARCH, "load_before": load_before, "load_after": load_after,
                "git_rev": rev, "git_dirty": dirty,
            },
            "python": reference.as_ref().ok().map(|p| json!({
                "path": p.path, "torch": p.torch, "torchvision": p.torchvision, "lightly": p.lightly,
            })),
            "reference_not_run": reference.as_ref().err(),
            "results": outcome.json,
        });
        let base = out_dir.join(format!("{}-{stamp}", kind.name()));
        let (json_path, md_path) = (base.with_extension("json"), base.with_extension("md"));
        let text = serde_json::to_string_pretty(&record).context("could not serialise the results")?;
        std::fs::write(&json_path, text + "\n")
            .with_context(|| format!("could not write {}", json_path.display()))?;
        std::fs::write(&md_path, &markdown)
            .with_context(|| format!("could not write {}", md_path.display()))?;
        println!("\n{markdown}");
        eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_default_to_everything() {
        let o = Options::parse(&[]).expect("no flags");
        assert_eq!(o.kinds, [Kind::Step, Kind::Augment, Kind::Loader]);
        assert_eq!(o.step, step::Options::default());
        assert_eq!(o.step.batches, [64, 256]);
        assert_eq!(o.step.rounds, 2);
    }

    #[test]
    fn options_parse_kind_and_flags() {
        let o = Options::parse(&args("step --batch 64 --rounds 1 --models imagenet-r18 --python /x --stock"))
            .expect("valid");
        assert_eq!(o.kinds, [Kind::Step]);
        assert_eq!((o.step.batches.as_slice(), o.step.rounds, o.step.stock), (&[64][..], 1, true));
        assert_eq!(o.step.models, ["imagenet-r18"]);
        assert_eq!(o.python.as_deref(), Some(Path::new("/x")));
        assert_eq!(o.flags, args("--batch 64 --rounds 1 --models imagenet-r18 --python /x --stock"));
        let o = Options::parse(&args("loader --workers 1,2,4 --batches 10 --data d")).expect("valid");
        assert_eq!((o.loader.workers.as_slice(), o.loader.batches), (&[1, 2, 4][..], 10));
        assert_eq!(o.features, None);
        let o = Options::parse(&args("step --features cuda,cudnn --batch 64")).expect("valid");
        assert_eq!((o.features.as_deref(), o.step.batches.as_slice()), (Some("cuda,cudnn"), &[64][..]));
        assert_eq!(o.flags, args("--batch 64 --features cuda,cudnn"));
    }

    #[test]
    fn options_reject_nonsense_in_one_line() {
        for (line, want) in [
            ("steps", "unknown benchmark `steps`"),
            ("step --batch", "--batch needs a value"),
            ("step --batch 64,x", "--batch: expected a comma-separated list"),
            ("step --models resnet50", "unknown model `resnet50`"),
            ("step --rounds 0", "must be at least 1"),
            ("step --frobnicate 1", "unknown option `--frobnicate`"),
        ] {
            let err = Options::parse(&args(line)).expect_err(line).to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
    }
}
