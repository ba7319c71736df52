//! One side's run of `bench quality` read back from its JSON lines (our `metrics.jsonl`, the
//! PyTorch script's output: the same `knn_mark`, `epoch_clock` and `time_up` events), and the
//! tables of both sides.

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::bench::report::{mean, table};

/// kNN at one point of a run: a minute mark or an epoch end.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The mark's minute; for an epoch end, its training-clock minutes.
    pub minute: f64,
    pub epoch: usize,
    pub step: usize,
    pub images: usize,
    pub train_seconds: f64,
    pub knn_top1: Option<f64>,
}

/// What one run of one side reached.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    pub marks: Vec<Point>,
    /// One per completed epoch (`epoch` 0-based), kNN where the monitor ran.
    pub epochs: Vec<Point>,
    /// Where the budget stopped it.
    pub time_up: Option<Point>,
    /// The furthest the clock got: images and training seconds.
    pub images: usize,
    pub train_seconds: f64,
}

impl Curve {
    /// Reads the events of JSON-lines `text`; other lines are skipped. A run without the
    /// training clock (no budget, no marks: the equal-epochs comparison) has no `epoch_clock`
    /// lines; its `epoch` lines give the epochs then, their `seconds` summed as the clock and
    /// no image count.
    pub fn parse(text: &str) -> Result<Curve> {
        let mut curve = Curve::default();
        let mut plain_epochs = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).with_context(|| format!("line {}: not JSON", i + 1))?;
            let point = || -> Option<Point> {
                let seconds = v["train_seconds"].as_f64()?;
                Some(Point {
                    minute: v["minute"].as_f64().unwrap_or(seconds / 60.0),
                    epoch: v["epoch"].as_u64()? as usize,
                    step: v["step"].as_u64()? as usize,
                    images: v["images"].as_u64()? as usize,
                    train_seconds: seconds,
                    knn_top1: v["knn_top1"].as_f64(),
                })
            };
            let kind = v["event"].as_str().unwrap_or("");
            if kind == "epoch" {
                let clock = plain_epochs.last().map_or(0.0, |p: &Point| p.train_seconds)
                    + v["seconds"].as_f64().unwrap_or(0.0);
                let epoch = v["epoch"]
                    .as_u64()
                    .with_context(|| format!("line {}: an epoch without its number", i + 1))?;
                plain_epochs.push(Point {
                    minute: clock / 60.0,
                    epoch: epoch as usize,
                    step: v["step"].as_u64().unwrap_or(0) as usize,
                    images: 0,
                    train_seconds: clock,
                    knn_top1: v["knn_top1"].as_f64(),
                });
                continue;
            }
            if !matches!(kind, "knn_mark" | "epoch_clock" | "time_up") {
                continue;
            }
            let p = point().with_context(|| format!("line {}: an incomplete `{kind}` record", i + 1))?;
            if p.images >= curve.images {
                (curve.images, curve.train_seconds) = (p.images, p.train_seconds);
            }
            match kind {
                "knn_mark" => curve.marks.push(p),
                "epoch_clock" => curve.epochs.push(p),
                _ => curve.time_up = Some(p),
            }
        }
        if curve.epochs.is_empty() {
            curve.epochs = plain_epochs;
        }
        Ok(curve)
    }

    /// Counts the images of a run without the training clock (the equal-epochs comparison),
    /// whose `epoch` lines give steps and seconds but no images: `batch_size` a step.
    pub fn count_images(&mut self, batch_size: usize) {
        if self.images > 0 {
            return;
        }
        for p in &mut self.epochs {
            p.images = p.step * batch_size;
        }
        if let Some(last) = self.epochs.last() {
            (self.images, self.train_seconds) = (last.images, last.train_seconds);
        }
    }

    /// Training throughput: images over training-clock seconds.
    pub fn images_per_s(&self) -> Option<f64> {
        (self.train_seconds > 0.0).then(|| self.images as f64 / self.train_seconds)
    }

    /// kNN at the mark `minute`, when the run got there.
    pub fn at_minute(&self, minute: f64) -> Option<f64> {
        self.marks.iter().find(|p| (p.minute - minute).abs() < 1e-9).and_then(|p| p.knn_top1)
    }

    /// kNN at the mark `minute`, or, when the run's schedule ended before that mark (not the
    /// budget: nothing trains after), its last epoch's kNN and the minute the schedule ended.
    pub fn at_minute_or_done(&self, minute: f64) -> Option<(f64, Option<f64>)> {
        if let Some(v) = self.at_minute(minute) {
            return Some((v, None));
        }
        let last = self.schedule_end().filter(|p| p.minute < minute)?;
        last.knn_top1.map(|v| (v, Some(last.minute)))
    }

    /// The last epoch, when the run's schedule ended it rather than the budget.
    pub fn schedule_end(&self) -> Option<&Point> {
        self.epochs.last().filter(|_| self.time_up.is_none())
    }

    /// kNN after `epochs` completed epochs, when the monitor ran then.
    pub fn at_epoch(&self, epochs: usize) -> Option<&Point> {
        self.epochs.iter().find(|p| p.epoch + 1 == epochs && p.knn_top1.is_some())
    }

    /// The last epoch-end kNN.
    pub fn final_knn(&self) -> Option<f64> {
        self.epochs.iter().rev().find_map(|p| p.knn_top1)
    }

    pub fn to_json(&self) -> Value {
        let point = |p: &Point| {
            json!({
                "minute": p.minute, "epoch": p.epoch, "step": p.step, "images": p.images,
                "train_seconds": p.train_seconds, "knn_top1": p.knn_top1,
            })
        };
        json!({
            "marks": self.marks.iter().map(point).collect::<Vec<_>>(),
            "epochs": self.epochs.iter().map(point).collect::<Vec<_>>(),
            "time_up": self.time_up.as_ref().map(point),
            "images": self.images,
            "train_seconds": self.train_seconds,
            "images_per_s": self.images_per_s(),
        })
    }
}

/// `34.26%`, or `n/a`.
pub fn percent(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |v| format!("{:.2}%", 100.0 * v))
}

/// The mean of the values and their spread: `34.26% (33.9-34.6, 3 seeds)`, or one value.
pub fn mean_and_spread(values: &[f64]) -> String {
    match values {
        [] => "n/a".into(),
        [one] => percent(Some(*one)),
        _ => {
            let (lo, hi) =
                values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
            let sd = sample_sd(values);
            format!(
                "{} (range {:.2}-{:.2}, sd {:.2}, {} seeds)",
                percent(mean(values)),
                100.0 * lo,
                100.0 * hi,
                100.0 * sd,
                values.len()
            )
        }
    }
}

fn sample_sd(values: &[f64]) -> f64 {
    let m = mean(values).unwrap_or(0.0);
    let n = values.len() as f64;
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt()
}

/// A side's name and its runs, one per seed.
pub struct Side<'a> {
    pub name: &'a str,
    pub runs: &'a [Curve],
}

/// kNN at each minute mark, one row a side (the mean over seeds when there are several).
pub fn minutes_table(marks: &[f64], sides: &[Side]) -> String {
    let heads: Vec<String> = marks.iter().map(|m| format!("{m} min")).collect();
    let mut header = vec!["kNN top-1 at training minutes"];
    header.extend(heads.iter().map(String::as_str));
    header.push("images/s");
    let rows: Vec<Vec<String>> = sides
        .iter()
        .map(|side| {
            let mut row = vec![side.name.to_owned()];
            for &m in marks {
                let found: Vec<(f64, Option<f64>)> =
                    side.runs.iter().filter_map(|c| c.at_minute_or_done(m)).collect();
                let values: Vec<f64> = found.iter().map(|(v, _)| *v).collect();
                let done: Vec<f64> = found.iter().filter_map(|(_, d)| *d).collect();
                let mut cell = mean_and_spread(&values);
                if let Some(last) = done.iter().copied().reduce(f64::max) {
                    cell.push_str(&format!(" (schedule done at {last:.1} min)"));
                }
                row.push(cell);
            }
            let rates: Vec<f64> = side.runs.iter().filter_map(Curve::images_per_s).collect();
            row.push(mean(&rates).map_or("n/a".into(), |r| format!("{r:.1}")));
            row
        })
        .collect();
    let right: Vec<bool> = (0..header.len()).map(|i| i > 0).collect();
    table(&header, &right, &rows)
}

/// kNN after each epoch that every run of both sides evaluated (every epoch, or every
/// `knn_every`-th), with the training minutes it took.
pub fn epochs_table(sides: &[Side]) -> String {
    let runs = || sides.iter().flat_map(|side| side.runs.iter());
    let epochs: Vec<usize> = runs()
        .next()
        .map(|first| first.epochs.iter().filter(|p| p.knn_top1.is_some()).map(|p| p.epoch + 1).collect())
        .unwrap_or_default();
    let epochs: Vec<usize> =
        epochs.into_iter().filter(|&e| runs().all(|c| c.at_epoch(e).is_some())).collect();
    let heads: Vec<String> = epochs.iter().map(|e| e.to_string()).collect();
    let mut header = vec!["epochs"];
    header.extend(heads.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = sides
        .iter()
        .map(|side| {
            let mut row = vec![format!("{} kNN (minutes)", side.name)];
            for &e in &epochs {
                let points: Vec<&Point> = side.runs.iter().filter_map(|c| c.at_epoch(e)).collect();
                let values: Vec<f64> = points.iter().filter_map(|p| p.knn_top1).collect();
                let minutes = mean(&points.iter().map(|p| p.train_seconds / 60.0).collect::<Vec<_>>());
                row.push(format!("{} ({:.1})", mean_and_spread(&values), minutes.unwrap_or(0.0)));
            }
            row
        })
        .collect();
    table(&header, &[], &rows)
}

/// The final kNN of each seed and their mean and spread, one row a side (must-show 2).
pub fn final_table(seeds: &[u64], sides: &[Side]) -> String {
    let heads: Vec<String> = seeds.iter().map(|s| format!("seed {s}")).collect();
    let mut header = vec!["final kNN top-1"];
    header.extend(heads.iter().map(String::as_str));
    header.push("mean (spread)");
    let rows: Vec<Vec<String>> = sides
        .iter()
        .map(|side| {
            let finals: Vec<Option<f64>> = side.runs.iter().map(Curve::final_knn).collect();
            let mut row = vec![side.name.to_owned()];
            row.extend(finals.iter().map(|v| percent(*v)));
            row.push(mean_and_spread(&finals.iter().flatten().copied().collect::<Vec<_>>()));
            row
        })
        .collect();
    table(&header, &[], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = r#"{"event":"step","epoch":0,"step":20,"loss":-0.3,"lr":0.06,"collapse":0.3,"images_per_s":100}
{"event":"knn_mark","minute":1.0,"epoch":0,"step":30,"images":3840,"train_seconds":60.5,"knn_top1":0.25,"eval_seconds":80}
{"event":"epoch","epoch":0,"step":40,"loss":-0.5,"lr":0.05,"collapse":0.2,"seconds":120,"knn_top1":0.3}
{"event":"epoch_clock","epoch":0,"step":40,"images":5120,"train_seconds":80.0,"knn_top1":0.3}
{"event":"knn_mark","minute":2.0,"epoch":1,"step":61,"images":7808,"train_seconds":120.1,"knn_top1":0.35,"eval_seconds":80}
{"event":"time_up","epoch":1,"step":61,"images":7808,"train_seconds":120.1,"budget_minutes":2.0}
"#;

    #[test]
    fn a_run_without_the_clock_gives_its_epochs_from_the_epoch_lines() -> Result<()> {
        let text = r#"{"event":"step","epoch":0,"step":20,"loss":-0.3,"lr":0.06,"collapse":0.3,"images_per_s":100}
{"event":"epoch","epoch":0,"step":40,"loss":-0.5,"lr":0.05,"collapse":0.2,"seconds":120,"knn_top1":0.3}
{"event":"epoch","epoch":1,"step":80,"loss":-0.6,"lr":0.01,"collapse":0.2,"seconds":60,"knn_top1":0.32}
"#;
        let c = Curve::parse(text)?;
        assert_eq!(c.epochs.len(), 2);
        assert_eq!(
            c.at_epoch(2).map(|p| (p.step, p.knn_top1, p.train_seconds)),
            Some((80, Some(0.32), 180.0))
        );
        // No images until the batch size counts them: 80 steps of 128 in 180 s.
        assert_eq!(c.images_per_s(), None);
        let mut counted = c.clone();
        counted.count_images(128);
        assert_eq!(counted.epochs.iter().map(|p| p.images).collect::<Vec<_>>(), [5120, 10240]);
        assert!((counted.images_per_s().expect("rate") - 10240.0 / 180.0).abs() < 1e-9);
        // With the clock's lines, the plain epoch lines are not used, and the clock's images stay.
        let c = Curve::parse(OURS)?;
        assert!(c.epochs.iter().all(|p| p.images > 0), "{:?}", c.epochs);
        let mut counted = c.clone();
        counted.count_images(1);
        assert_eq!(counted, c);
        Ok(())
    }

    #[test]
    fn a_run_reads_back_its_marks_epochs_stop_and_throughput() -> Result<()> {
        let c = Curve::parse(OURS)?;
        assert_eq!(c.marks.len(), 2);
        assert_eq!((c.at_minute(1.0), c.at_minute(2.0), c.at_minute(3.0)), (Some(0.25), Some(0.35), None));
        assert_eq!(c.at_epoch(1).map(|p| (p.step, p.knn_top1)), Some((40, Some(0.3))));
        assert_eq!(c.final_knn(), Some(0.3));
        assert_eq!(c.time_up.as_ref().map(|p| p.step), Some(61));
        assert_eq!((c.images, c.train_seconds), (7808, 120.1));
        assert!((c.images_per_s().expect("rate") - 7808.0 / 120.1).abs() < 1e-9);
        assert!(Curve::parse("{\"event\":\"knn_mark\",\"minute\":1}\n").is_err());
        assert!(Curve::parse("oops\n").is_err());
        Ok(())
    }

    /// Epoch-clock lines for epochs `0..n` (0-based), with kNN after every `every`-th.
    fn every(n: usize, every: usize) -> String {
        (0..n)
            .map(|e| {
                let knn = if (e + 1) % every == 0 { format!(",\"knn_top1\":0.{}", 30 + e) } else { String::new() };
                let (step, secs) = (10 * (e + 1), 6.0 * (e + 1) as f64);
                format!(
                    "{{\"event\":\"epoch_clock\",\"epoch\":{e},\"step\":{step},\"images\":{},\"train_seconds\":{secs}{knn}}}\n",
                    step * 128
                )
            })
            .collect()
    }

    #[test]
    fn the_epochs_table_has_the_epochs_both_sides_evaluated() -> Result<()> {
        // kNN every 5 epochs; ours got through 12 epochs, PyTorch through 7.
        let (ours, torch) = ([Curve::parse(&every(12, 5))?], [Curve::parse(&every(7, 5))?]);
        let sides =
            [Side { name: "simsiam-rs", runs: &ours }, Side { name: "PyTorch + Lightly", runs: &torch }];
        let table = epochs_table(&sides);
        assert!(table.starts_with("| epochs | 5 |\n"), "{table}");
        assert!(table.contains("| simsiam-rs kNN (minutes) | 34.00% (0.5) |"), "{table}");
        assert!(table.contains("| PyTorch + Lightly kNN (minutes) | 34.00% (0.5) |"), "{table}");
        Ok(())
    }

    #[test]
    fn a_schedule_that_ended_before_a_mark_gives_its_final_knn_there() -> Result<()> {
        // 10 epochs of 0.1 minutes, kNN every 5: done at minute 1.0 with 39%.
        let done = Curve::parse(&every(10, 5))?;
        assert_eq!(done.at_minute_or_done(1.5), Some((0.39, Some(1.0))));
        assert_eq!(done.at_minute_or_done(0.5), None, "the schedule was still running then");
        // The last epoch without kNN, or a budget that stopped the run: nothing to give.
        assert_eq!(Curve::parse(&every(12, 5))?.at_minute_or_done(2.0), None);
        let stopped = Curve::parse(OURS)?;
        assert_eq!(
            (stopped.at_minute_or_done(2.0), stopped.at_minute_or_done(3.0)),
            (Some((0.35, None)), None)
        );
        let (ours, torch) = ([done], [stopped]);
        let sides =
            [Side { name: "simsiam-rs", runs: &ours }, Side { name: "PyTorch + Lightly", runs: &torch }];
        let minutes = minutes_table(&[2.0, 3.0], &sides);
        assert!(
            minutes.contains(
                "| simsiam-rs | 39.00% (schedule done at 1.0 min) | 39.00% (schedule done at 1.0 min) |"
            ),
            "{minutes}"
        );
        assert!(minutes.contains("| PyTorch + Lightly | 35.00% | n/a |"), "{minutes}");
        Ok(())
    }

    #[test]
    fn tables_show_both_sides_at_each_mark_epoch_and_seed() -> Result<()> {
        let ours = [Curve::parse(OURS)?];
        let torch = [Curve::parse(&OURS.replace("0.25", "0.2").replace("0.3}", "0.28}"))?];
        let sides =
            [Side { name: "simsiam-rs", runs: &ours }, Side { name: "PyTorch + Lightly", runs: &torch }];
        let minutes = minutes_table(&[1.0, 2.0], &sides);
        assert!(
            minutes.starts_with(
                "| kNN top-1 at training minutes | 1 min | 2 min | images/s |\n|---|---:|---:|---:|\n"
            ),
            "{minutes}"
        );
        assert!(minutes.contains("| simsiam-rs | 25.00% | 35.00% | 65.0 |"), "{minutes}");
        assert!(minutes.contains("| PyTorch + Lightly | 20.00% | 35.00% |"), "{minutes}");
        let epochs = epochs_table(&sides);
        assert!(epochs.contains("| simsiam-rs kNN (minutes) | 30.00% (1.3) |"), "{epochs}");
        assert!(epochs.contains("| PyTorch + Lightly kNN (minutes) | 28.00% (1.3) |"), "{epochs}");
        assert_eq!(mean_and_spread(&[0.30, 0.32, 0.34]), "32.00% (range 30.00-34.00, sd 2.00, 3 seeds)");
        let finals = final_table(&[0], &sides);
        assert!(finals.contains("| simsiam-rs | 30.00% | 30.00% |"), "{finals}");
        Ok(())
    }
}
