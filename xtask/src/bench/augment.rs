//! `cargo xtask bench augment`: the `bench_augment` example, which times our presets and runs
//! `tools/augment/bench_lightly.py` itself with `$SIMSIAM_PYTHON`; we collect its table.

use anyhow::{Result, bail};
use serde_json::json;

use super::report::{markdown_rows, table};
use super::{Cmd, Ctx, Outcome};

/// One row of the example's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub preset: String,
    pub threads: usize,
    pub ours: f64,
    pub lightly: Option<f64>,
    /// As the example computed it, from unrounded rates.
    pub ratio: Option<f64>,
}

/// The rows of the example's `| preset | threads | ours (img/s) | Lightly (img/s) | ratio |`
/// table; `None` when the table is missing, empty or malformed.
pub fn parse(output: &str) -> Option<Vec<Row>> {
    let rows = markdown_rows(output, "preset");
    if rows.is_empty() {
        return None;
    }
    rows.iter()
        .map(|cells| {
            let [preset, threads, ours, lightly, ratio] = cells.as_slice() else { return None };
            let optional = |cell: &str| match cell {
                "n/a" => Some(None),
                _ => cell.trim_end_matches('x').parse().ok().map(Some),
            };
            Some(Row {
                preset: preset.clone(),
                threads: threads.parse().ok()?,
                ours: ours.parse().ok()?,
                lightly: optional(lightly)?,
                ratio: optional(ratio)?,
            })
        })
        .collect()
}

/// The table of docs/performance-augment.md; `ran` is whether Lightly was given a Python.
pub fn render(rows: &[Row], ran: bool) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (lightly, ratio) = match r.lightly {
                Some(b) => (format!("{b:.0}"), format!("{:.1}x", r.ratio.unwrap_or(r.ours / b))),
                None if ran => ("failed".into(), "n/a".into()),
                None => ("not run".into(), "n/a".into()),
            };
            vec![r.preset.clone(), r.threads.to_string(), format!("{:.0}", r.ours), lightly, ratio]
        })
        .collect();
    table(
        &["preset", "threads", "ours (img/s)", "Lightly (img/s)", "ratio"],
        &[false, true, true, true, true],
        &body,
    )
}

/// Runs the example once; `seconds` sets `SIMSIAM_BENCH_SECONDS` (the example's default is 3).
pub fn run(seconds: Option<f64>, ctx: &Ctx) -> Result<Outcome> {
    // The example takes `$SIMSIAM_PYTHON` as given; an empty value names no Python, so
    // Lightly is skipped.
    let python = ctx.python.map(|p| p.path.display().to_string()).unwrap_or_default();
    let mut cmd = Cmd::new(&ctx.example("bench_augment")).env("SIMSIAM_PYTHON", &python);
    if let Some(s) = seconds {
        cmd = cmd.env("SIMSIAM_BENCH_SECONDS", &s.to_string());
    }
    let output = cmd.output()?;
    let Some(rows) = parse(&output) else {
        bail!(
            "`{cmd}` printed no `| preset | threads | ours (img/s) | Lightly (img/s) | ratio |` table; its output:\n{output}"
        );
    };
    let mut notes = vec![format!(
        "{} s per measurement; Lightly: torch.set_num_threads(1), 2 threads = a pool of 2 processes",
        seconds
            .map_or_else(|| std::env::var("SIMSIAM_BENCH_SECONDS").unwrap_or("3".into()), |s| s.to_string())
    )];
    if ctx.python.is_some() && rows.iter().any(|r| r.lightly.is_none()) {
        notes.push("Lightly failed in some rows: see bench_lightly.py's error above".into());
        eprintln!("warning: {}", notes[1]);
    }
    let json_rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "preset": r.preset, "threads": r.threads, "ours_images_per_s": r.ours,
                "lightly_images_per_s": r.lightly, "ratio": r.ratio,
            })
        })
        .collect();
    Ok(Outcome {
        title: "Augmentations: simsiam-augment vs Lightly's SimSiamTransform".into(),
        table: render(&rows, ctx.python.is_some()),
        notes,
        json: json!({ "options": { "seconds": seconds }, "rows": json_rows, "output": output }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "load average before: 0.1 0.2 0.3 1/2 3\n\n\
        | preset | threads | ours (img/s) | Lightly (img/s) | ratio |\n\
        |---|---:|---:|---:|---:|\n\
        | CIFAR-10 (32x32 -> 2 x 32x32) | 1 | 10229 | 263 | 38.9x |\n\
        | default (256x256 -> 2 x 224x224) | 2 | 362 | n/a | n/a |\n";

    #[test]
    fn parse_reads_the_examples_table() {
        let rows = parse(OUTPUT).expect("table");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            Row {
                preset: "CIFAR-10 (32x32 -> 2 x 32x32)".into(),
                threads: 1,
                ours: 10229.0,
                lightly: Some(263.0),
                ratio: Some(38.9)
            }
        );
        assert_eq!(rows[1].lightly, None);
        assert_eq!(parse("load average before: 1\n"), None);
        assert_eq!(parse("| preset | threads |\n|---|---|\n| a | b |\n"), None);
    }

    #[test]
    fn render_keeps_the_docs_layout() {
        let rows = parse(OUTPUT).expect("table");
        assert_eq!(
            render(&rows, true),
            "| preset | threads | ours (img/s) | Lightly (img/s) | ratio |\n|---|---:|---:|---:|---:|\n\
             | CIFAR-10 (32x32 -> 2 x 32x32) | 1 | 10229 | 263 | 38.9x |\n\
             | default (256x256 -> 2 x 224x224) | 2 | 362 | failed | n/a |\n"
        );
        assert!(render(&rows, false).contains("| 362 | not run | n/a |"));
    }
}
