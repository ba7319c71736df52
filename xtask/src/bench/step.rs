//! `cargo xtask bench step`: one SimSiam training step, ours (`bench_step`) and PyTorch
//! (`tools/bench/bench_step_torch.py`) alternating A B A B for each model and batch size.

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::report::{kv_line, list, mean, number, table};
use super::{Cmd, Ctx, Outcome, loadavg};
use crate::project_root;

/// What `bench step` measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub models: Vec<String>,
    pub batches: Vec<usize>,
    pub rounds: usize,
    /// Timed steps per run; by default 5 for imagenet-r18 and 3 for cifar-r18.
    pub steps: Option<usize>,
    /// Also one run of candle's stock kernels per case (`SIMSIAM_STOCK_KERNELS=1`).
    pub stock: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            models: vec!["imagenet-r18".into(), "cifar-r18".into()],
            batches: vec![64, 256],
            rounds: 2,
            steps: None,
            stock: false,
        }
    }
}

/// One run's result line.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub images_per_s: f64,
    pub step_s: f64,
    pub peak_rss_mib: f64,
    pub line: String,
}

/// The `first model=... images_per_s=...` line of `output` (`first` is `candle` or `torch`).
pub fn parse_run(output: &str, first: &str) -> Option<Run> {
    let pairs = kv_line(output, first)?;
    Some(Run {
        images_per_s: number(&pairs, "images_per_s")?,
        step_s: number(&pairs, "step_s")?,
        peak_rss_mib: number(&pairs, "peak_rss_mib")?,
        line: output.lines().rev().find(|l| l.split_whitespace().next() == Some(first))?.to_owned(),
    })
}

/// All runs of one (model, batch).
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub model: String,
    pub batch: usize,
    pub steps: usize,
    pub ours: Vec<Run>,
    pub torch: Vec<Run>,
    pub stock: Option<Run>,
    pub load_before: Option<[f64; 3]>,
    pub load_after: Option<[f64; 3]>,
}

fn default_steps(model: &str) -> usize {
    if model == "cifar-r18" { 3 } else { 5 }
}

/// Runs the matrix; `ctx.python` is `None` for ours alone.
pub fn run(options: &Options, ctx: &Ctx) -> Result<Outcome> {
    let bin = ctx.example("bench_step");
    let script = project_root().join("tools/bench/bench_step_torch.py");
    let threads = ctx.threads.to_string();
    let mut cases = Vec::new();
    for model in &options.models {
        for &batch in &options.batches {
            let steps = options.steps.unwrap_or_else(|| default_steps(model));
            let args = |steps: usize| {
                ["--model", model, "--batch", &batch.to_string(), "--steps", &steps.to_string()]
                    .map(String::from)
            };
            let mut case = Case {
                model: model.clone(),
                batch,
                steps,
                ours: Vec::new(),
                torch: Vec::new(),
                stock: None,
                load_before: loadavg(),
                load_after: None,
            };
            for _ in 0..options.rounds {
                let ours = Cmd::new(&bin)
                    .env("RAYON_NUM_THREADS", &threads)
                    .env("SIMSIAM_STOCK_KERNELS", "0")
                    .args(args(steps));
                case.ours.push(measure(&ours, "candle")?);
                if let Some(python) = ctx.python {
                    let torch = Cmd::new(&python.path)
                        .arg(script.display().to_string())
                        .args(args(steps))
                        .args(["--threads".to_owned(), threads.clone()]);
                    case.torch.push(measure(&torch, "torch")?);
                }
            }
            if options.stock {
                let stock = Cmd::new(&bin)
                    .env("RAYON_NUM_THREADS", &threads)
                    .env("SIMSIAM_STOCK_KERNELS", "1")
                    .args(args((steps / 2).max(1)));
                case.stock = Some(measure(&stock, "candle")?);
            }
            case.load_after = loadavg();
            cases.push(case);
        }
    }
    let torch = ctx.python.map(|p| p.torch.as_str());
    // The vector level each side's kernels chose on this CPU.
    let level = |runs: fn(&Case) -> &[Run], key: &str| {
        cases.iter().flat_map(runs).find_map(|r| {
            kv_line(&r.line, r.line.split(' ').next()?)?
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_owned())
        })
    };
    let ours_isa = level(|c| &c.ours, "isa");
    let torch_isa = level(|c| &c.torch, "cpu_capability");
    Ok(Outcome {
        title: "One SimSiam training step: ours vs PyTorch".into(),
        table: render(&cases, torch, options.stock),
        notes: vec![
            format!(
                "{} threads (RAYON_NUM_THREADS, torch.set_num_threads), f32, 32x32 inputs, two views; \
                 images/s count the batch, rounds alternate ours and PyTorch",
                ctx.threads
            ),
            format!(
                "vector level: ours `{}` (simsiam-kernels), PyTorch `{}` (torch.backends.cpu.get_cpu_capability())",
                ours_isa.as_deref().unwrap_or("unknown"),
                torch_isa.as_deref().unwrap_or("not run"),
            ),
        ],
        json: json!({
            "options": {
                "models": options.models, "batches": options.batches, "rounds": options.rounds,
                "steps": options.steps, "stock": options.stock, "threads": ctx.threads,
            },
            "isa": { "ours": ours_isa, "torch": torch_isa },
            "cases": cases.iter().map(case_json).collect::<Vec<_>>(),
        }),
    })
}

fn measure(cmd: &Cmd, first: &str) -> Result<Run> {
    let output = cmd.output()?;
    let Some(run) = parse_run(&output, first) else {
        bail!(
            "`{cmd}` printed no `{first} ... images_per_s=... step_s=... peak_rss_mib=...` line; \
             its output:\n{output}"
        );
    };
    eprintln!(
        "  {:.2} images/s, {:.3} s/step, peak RSS {:.0} MiB",
        run.images_per_s, run.step_s, run.peak_rss_mib
    );
    Ok(run)
}

fn run_json(run: &Run) -> Value {
    json!({
        "images_per_s": run.images_per_s, "step_s": run.step_s,
        "peak_rss_mib": run.peak_rss_mib, "line": run.line,
    })
}

fn case_json(case: &Case) -> Value {
    let rate = |runs: &[Run]| runs.iter().map(|r| r.images_per_s).collect::<Vec<_>>();
    let ratio = mean(&rate(&case.ours)).zip(mean(&rate(&case.torch))).map(|(o, t)| o / t);
    json!({
        "model": case.model, "batch": case.batch, "steps": case.steps,
        "ours": case.ours.iter().map(run_json).collect::<Vec<_>>(),
        "torch": case.torch.iter().map(run_json).collect::<Vec<_>>(),
        "stock": case.stock.as_ref().map(run_json),
        "ratio_of_means": ratio,
        "load_before": case.load_before, "load_after": case.load_after,
    })
}

/// `3.04x`, or with several rounds `3.04x (2.98-3.12)`: the ratio of the mean rates, then the
/// range of the per-round ratios (round i of ours over round i of PyTorch).
pub fn ratio(ours: &[f64], torch: &[f64]) -> String {
    let (Some(o), Some(t)) = (mean(ours), mean(torch)) else {
        return "n/a".to_owned();
    };
    let pairs: Vec<f64> = ours.iter().zip(torch).map(|(o, t)| o / t).collect();
    let (lo, hi) = pairs.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let (lo, hi) = (format!("{lo:.2}"), format!("{hi:.2}"));
    if pairs.len() > 1 && lo != hi { format!("{:.2}x ({lo}-{hi})", o / t) } else { format!("{:.2}x", o / t) }
}

/// The table of docs/performance-step.md, one row per (model, batch); `torch` is the PyTorch
/// version, `None` when PyTorch did not run.
pub fn render(cases: &[Case], torch: Option<&str>, stock: bool) -> String {
    let torch_head = torch.map_or("PyTorch".to_owned(), |v| format!("PyTorch {}", short_version(v)));
    let rss_head = if stock { "peak RSS stock / ours / PyTorch" } else { "peak RSS ours / PyTorch" };
    let mut header = vec!["model", "batch"];
    if stock {
        header.push("candle stock");
    }
    header.extend(["ours", &torch_head, "ours / PyTorch", rss_head]);
    let rows: Vec<Vec<String>> = cases
        .iter()
        .map(|case| {
            let rates = |runs: &[Run]| runs.iter().map(|r| r.images_per_s).collect::<Vec<_>>();
            let rss = |runs: &[Run]| {
                runs.iter()
                    .map(|r| r.peak_rss_mib)
                    .reduce(f64::max)
                    .map_or("n/a".into(), |m| format!("{m:.0}"))
            };
            let mut row = vec![case.model.clone(), case.batch.to_string()];
            if stock {
                row.push(
                    case.stock.as_ref().map_or("n/a".into(), |r| format!("{:.1} img/s", r.images_per_s)),
                );
            }
            row.push(format!("{} img/s", list(&rates(&case.ours), 1)));
            row.push(if torch.is_none() {
                "not run".to_owned()
            } else {
                format!("{} img/s", list(&rates(&case.torch), 1))
            });
            row.push(ratio(&rates(&case.ours), &rates(&case.torch)));
            let mut memory = Vec::new();
            if stock {
                memory.push(rss(case.stock.as_slice()));
            }
            memory.extend([rss(&case.ours), rss(&case.torch)]);
            row.push(format!("{} MiB", memory.join(" / ")));
            row
        })
        .collect();
    table(&header, &[], &rows)
}

/// `2.9.1` from `2.9.1+cu128`.
fn short_version(version: &str) -> &str {
    version.split('+').next().unwrap_or(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rate: f64, rss: f64) -> Run {
        Run { images_per_s: rate, step_s: 64.0 / rate, peak_rss_mib: rss, line: String::new() }
    }

    fn case(model: &str, ours: &[f64], torch: &[f64]) -> Case {
        Case {
            model: model.into(),
            batch: 64,
            steps: 5,
            ours: ours.iter().map(|&r| run(r, 234.0)).collect(),
            torch: torch.iter().map(|&r| run(r, 870.0)).collect(),
            stock: None,
            load_before: None,
            load_after: None,
        }
    }

    #[test]
    fn parse_run_reads_both_scripts_lines() {
        let candle = "candle model=cifar-r18 batch=64 steps=3 threads=2 stock=false images_per_s=5.70 \
                      step_s=11.225 forward_s=3.1 backward_s=8.0 update_s=0.1 peak_rss_mib=1326\n";
        let r = parse_run(candle, "candle").expect("candle line");
        assert_eq!((r.images_per_s, r.step_s, r.peak_rss_mib), (5.70, 11.225, 1326.0));
        assert_eq!(r.line, candle.trim_end());
        let torch = "some warning\ntorch model=imagenet-r18 batch=64 steps=5 threads=2 images_per_s=10.60 \
                     step_s=6.038 forward_s=1 backward_s=4 update_s=1 peak_rss_mib=870\n";
        assert_eq!(parse_run(torch, "torch").map(|r| r.peak_rss_mib), Some(870.0));
        assert_eq!(parse_run(torch, "candle"), None);
        // A line without peak RSS is not a result.
        assert_eq!(parse_run("candle model=x images_per_s=1 step_s=2", "candle"), None);
        assert_eq!(parse_run("candle model=x images_per_s=fast step_s=2 peak_rss_mib=3", "candle"), None);
    }

    #[test]
    fn ratio_shows_the_range_of_rounds() {
        assert_eq!(ratio(&[33.4, 32.2], &[10.6, 10.8]), "3.07x (2.98-3.15)");
        assert_eq!(ratio(&[30.0], &[10.0]), "3.00x");
        assert_eq!(ratio(&[30.0, 30.0], &[10.0, 10.0]), "3.00x");
        assert_eq!(ratio(&[30.0], &[]), "n/a");
    }

    #[test]
    fn render_matches_the_docs_layout() {
        let cases = [case("imagenet-r18", &[33.4, 32.2], &[10.6, 10.8])];
        assert_eq!(
            render(&cases, Some("2.9.1+cu128"), false),
            "| model | batch | ours | PyTorch 2.9.1 | ours / PyTorch | peak RSS ours / PyTorch |\n\
             |---|---|---|---|---|---|\n\
             | imagenet-r18 | 64 | 33.4, 32.2 img/s | 10.6, 10.8 img/s | 3.07x (2.98-3.15) | 234 / 870 MiB |\n"
        );
    }

    #[test]
    fn render_without_pytorch_says_so_and_shows_stock() {
        let mut c = case("cifar-r18", &[5.7], &[]);
        c.stock = Some(run(1.8, 3372.0));
        let text = render(&[c], None, true);
        assert!(text.starts_with(
            "| model | batch | candle stock | ours | PyTorch | ours / PyTorch | peak RSS stock / ours / PyTorch |\n"
        ));
        assert!(text.ends_with(
            "| cifar-r18 | 64 | 1.8 img/s | 5.7 img/s | not run | n/a | 3372 / 234 / n/a MiB |\n"
        ));
    }
}
