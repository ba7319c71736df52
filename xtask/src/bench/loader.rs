//! `cargo xtask bench loader`: the `bench_loader` example (ours alone, `--no-python`), then
//! `tools/data/bench_torch_loader.py` (PyTorch `DataLoader` + Lightly) on the same CIFAR-10.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::report::{markdown_rows, table};
use super::{Cmd, Ctx, Outcome};
use crate::project_root;

const OURS: &str = "simsiam-data `TwoViewLoader`";
const TORCH: &str = "PyTorch `DataLoader` + Lightly `SimSiamTransform`";
/// The batch size both loaders use.
const BATCH: f64 = 256.0;

/// What `bench loader` measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The `cifar-10-batches-bin` folder or its parent.
    pub data: PathBuf,
    pub workers: Vec<usize>,
    pub batches: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            data: project_root().join("data/cifar10/cifar-10-batches-bin"),
            workers: vec![1, 2],
            batches: 40,
        }
    }
}

/// Fails with what to do when `dir` (or `dir/cifar-10-batches-bin`) has no CIFAR-10 batches.
pub fn check_data(dir: &Path) -> Result<()> {
    let found = [dir.to_path_buf(), dir.join("cifar-10-batches-bin")]
        .iter()
        .any(|d| d.join("data_batch_1.bin").is_file());
    if !found {
        bail!(
            "no CIFAR-10 at {} (data_batch_1.bin missing): run `cargo xtask download-cifar` first, \
             or pass --data DIR",
            dir.display()
        );
    }
    Ok(())
}

/// `(workers, images/s)` of our rows in the example's `| loader | workers | images/s | ...` table.
pub fn parse_ours(output: &str) -> Option<Vec<(usize, f64)>> {
    let rows: Vec<_> = markdown_rows(output, "loader").into_iter().filter(|r| r[0] == OURS).collect();
    if rows.is_empty() {
        return None;
    }
    rows.iter().map(|r| Some((r.get(1)?.parse().ok()?, r.get(2)?.parse().ok()?))).collect()
}

/// `(workers, images/s)` from the script's JSON lines, `{"workers": 1, "images_per_s": 393.2, ...}`.
pub fn parse_torch(output: &str) -> Option<Vec<(usize, f64)>> {
    let rows: Vec<(usize, f64)> = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((usize::try_from(v["workers"].as_u64()?).ok()?, v["images_per_s"].as_f64()?)))
        .collect();
    (!rows.is_empty()).then_some(rows)
}

/// The table of docs/performance-data.md; `torch` is `None` when PyTorch did not run, and
/// then lists `workers` as not run.
pub fn render(ours: &[(usize, f64)], torch: Option<&[(usize, f64)]>, workers: &[usize]) -> String {
    let row = |name: &str, w: usize, ips: f64| {
        vec![name.to_owned(), w.to_string(), format!("{ips:.0}"), format!("{:.1}", BATCH * 1000.0 / ips)]
    };
    let mut rows: Vec<Vec<String>> = ours.iter().map(|&(w, ips)| row(OURS, w, ips)).collect();
    match torch {
        Some(torch) => rows.extend(torch.iter().map(|&(w, ips)| row(TORCH, w, ips))),
        None => rows.extend(
            workers.iter().map(|w| vec![TORCH.into(), w.to_string(), "not run".into(), "n/a".into()]),
        ),
    }
    table(&["loader", "workers", "images/s", "ms per batch"], &[false, true, true, true], &rows)
}

/// Runs our loader, then PyTorch's when `ctx.python` has Lightly.
pub fn run(options: &Options, ctx: &Ctx) -> Result<Outcome> {
    let workers = options.workers.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let common = [
        "--data".to_owned(),
        options.data.display().to_string(),
        "--workers".into(),
        workers,
        "--batches".into(),
        options.batches.to_string(),
        "--warmup".into(),
        "2".into(),
    ];
    let cmd = Cmd::new(&ctx.example("bench_loader")).args(common.clone()).arg("--no-python".into());
    let output = cmd.output()?;
    let Some(ours) = parse_ours(&output) else {
        bail!("`{cmd}` printed no `| {OURS} | workers | images/s | ... |` rows; its output:\n{output}");
    };
    let torch = match ctx.python {
        Some(python) => {
            let script = project_root().join("tools/data/bench_torch_loader.py");
            let cmd = Cmd::new(&python.path).arg(script.display().to_string()).args(common);
            let output = cmd.output()?;
            let Some(rows) = parse_torch(&output) else {
                bail!(
                    "`{cmd}` printed no `{{\"workers\": W, \"images_per_s\": X}}` line; its output:\n{output}"
                );
            };
            Some(rows)
        }
        None => None,
    };
    let pairs = |rows: &[(usize, f64)]| -> Vec<Value> {
        rows.iter().map(|&(w, ips)| json!({ "workers": w, "images_per_s": ips })).collect()
    };
    Ok(Outcome {
        title: "Data loader: TwoViewLoader vs PyTorch DataLoader + Lightly".into(),
        table: render(&ours, torch.as_deref(), &options.workers),
        notes: vec![format!(
            "CIFAR-10 train, batch 256, two 32x32 views (CIFAR preset, no blur), {} timed batches after 2 warm-up",
            options.batches
        )],
        json: json!({
            "options": { "data": options.data, "workers": options.workers, "batches": options.batches },
            "ours": pairs(&ours),
            "torch": torch.as_deref().map(pairs),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ours_takes_our_rows_of_the_examples_table() {
        let output = "CIFAR-10 train, batch 256\n\n| loader | workers | images/s | ms per batch |\n\
                      |---|---:|---:|---:|\n| simsiam-data `TwoViewLoader` | 1 | 15456 | 16.6 |\n\
                      | simsiam-data `TwoViewLoader` | 2 | 24251 | 10.6 |\n\nload average before: 0.37\n";
        assert_eq!(parse_ours(output), Some(vec![(1, 15456.0), (2, 24251.0)]));
        assert_eq!(parse_ours("| loader | workers | images/s |\n|---|---|---|\n"), None);
        assert_eq!(
            parse_ours("| loader | workers |\n|---|---|\n| simsiam-data `TwoViewLoader` | x |\n"),
            None
        );
    }

    #[test]
    fn parse_torch_reads_json_lines() {
        let output = "warning: something\n{\"workers\": 1, \"batches\": 40, \"images_per_s\": 393.2}\n\
                      {\"workers\": 2, \"batches\": 40, \"images_per_s\": 399.0}\n";
        assert_eq!(parse_torch(output), Some(vec![(1, 393.2), (2, 399.0)]));
        assert_eq!(parse_torch("{\"workers\": 1}\n"), None);
        assert_eq!(parse_torch(""), None);
    }

    #[test]
    fn render_matches_the_docs_layout() {
        let text = render(&[(1, 15456.0)], Some(&[(1, 393.0)]), &[1]);
        assert_eq!(
            text,
            "| loader | workers | images/s | ms per batch |\n|---|---:|---:|---:|\n\
             | simsiam-data `TwoViewLoader` | 1 | 15456 | 16.6 |\n\
             | PyTorch `DataLoader` + Lightly `SimSiamTransform` | 1 | 393 | 651.4 |\n"
        );
        assert!(render(&[(1, 15456.0)], None, &[1, 2]).ends_with("| 2 | not run | n/a |\n"));
    }

    #[test]
    fn check_data_names_download_cifar() {
        let err = check_data(Path::new("/nonexistent/cifar")).expect_err("missing data");
        assert!(err.to_string().contains("cargo xtask download-cifar"), "{err}");
    }
}
