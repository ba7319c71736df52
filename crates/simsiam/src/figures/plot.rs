//! `simsiam plot`: a run's training curves from its `metrics.jsonl`.
//!
//! The trainer writes one JSON object per line (`simsiam_train::MetricEvent`): `"event":
//! "step"` every logging interval (epoch, step, loss, lr, collapse, images_per_s) and
//! `"event": "epoch"` at the end of each epoch (the same, seconds, and `knn_top1` when the kNN
//! monitor ran, `probe_train_top1` and `probe_test_top1` when an online linear probe was
//! trained). [`plot_metrics`] draws four panels: loss, collapse level and learning rate over the
//! steps (interval records as a line, epoch means as dots), and kNN top-1 accuracy over the
//! epochs, with the online probe's training and test top-1 beside it when there are any.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::RgbImage;
use plotters::prelude::*;
use serde::Deserialize;

use super::{Canvas, check_size, drawing, fonts};

/// One interval record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StepRecord {
    /// Epoch in progress (0-based).
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Mean loss over the interval (`None` when the file holds `null`: a NaN loss).
    pub loss: Option<f64>,
    /// Learning rate of the last step.
    pub lr: Option<f64>,
    /// Collapse level, 0 healthy, 1 collapsed.
    pub collapse: Option<f64>,
}

/// One end-of-epoch record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EpochRecord {
    /// The epoch completed (0-based).
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Mean loss over the epoch.
    pub loss: Option<f64>,
    /// Learning rate of the last step.
    pub lr: Option<f64>,
    /// Collapse level at the end of the epoch.
    pub collapse: Option<f64>,
    /// kNN top-1 accuracy in [0, 1], when the monitor ran.
    #[serde(default)]
    pub knn_top1: Option<f64>,
    /// The online probe's running top-1 over the epoch's training batches, when one was trained.
    #[serde(default)]
    pub probe_train_top1: Option<f64>,
    /// The online probe's top-1 on the test split.
    #[serde(default)]
    pub probe_test_top1: Option<f64>,
}

/// The records of a metrics file. A resumed run appends to the file and repeats the steps
/// after its checkpoint: a record supersedes the earlier ones at the same or a later step
/// (epoch), so each series only moves forward.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Interval records, by step.
    pub steps: Vec<StepRecord>,
    /// Epoch records, by epoch.
    pub epochs: Vec<EpochRecord>,
}

impl Metrics {
    /// Parses JSON lines; blank lines and events other than `step` and `epoch` are skipped, and
    /// so, with a warning, is a last line cut short (no newline, not JSON: the run was killed
    /// while writing it).
    ///
    /// # Errors
    /// A line that is not a JSON object with an `event`, or a `step`/`epoch` record without its
    /// numbers, names its (1-based) line number; no record at all is an error too.
    pub fn parse(text: &str) -> Result<Self> {
        let mut metrics = Self::default();
        let torn_tail = !text.ends_with('\n');
        let last = text.lines().count();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            if torn_tail && line_no == last && serde_json::from_str::<serde_json::Value>(line).is_err() {
                tracing::warn!("line {line_no} is cut short (the run was killed while writing it): skipped");
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                // serde's "... at line 1 column 7" counts within this one line.
                let message = e.to_string();
                let reason = message.rsplit_once(" at line ").map_or(message.as_str(), |(r, _)| r);
                anyhow::anyhow!("line {line_no}, column {}: not JSON ({reason})", e.column())
            })?;
            let event = value
                .get("event")
                .and_then(serde_json::Value::as_str)
                .with_context(|| format!("line {line_no}: not a metrics record (no \"event\")"))?;
            match event {
                "step" => {
                    let r: StepRecord = serde_json::from_value(value)
                        .with_context(|| format!("line {line_no}: a malformed step record"))?;
                    metrics.steps.retain(|s| s.step < r.step);
                    metrics.steps.push(r);
                }
                "epoch" => {
                    let r: EpochRecord = serde_json::from_value(value)
                        .with_context(|| format!("line {line_no}: a malformed epoch record"))?;
                    metrics.epochs.retain(|e| e.epoch < r.epoch);
                    metrics.epochs.push(r);
                }
                other => tracing::debug!("line {line_no}: skipping the `{other}` event"),
            }
        }
        if metrics.steps.is_empty() && metrics.epochs.is_empty() {
            bail!("no step or epoch records (is it a metrics.jsonl written by `simsiam pretrain`?)");
        }
        Ok(metrics)
    }
}

/// Reads and parses a metrics file; every error names it.
pub fn read_metrics(path: &Path) -> Result<Metrics> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the metrics {}", path.display()))?;
    Metrics::parse(&text).with_context(|| format!("{}", path.display()))
}

/// Size and text of [`plot_metrics`]'s figure.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotOptions {
    /// Width in pixels. (1200)
    pub width: u32,
    /// Height in pixels. (900)
    pub height: u32,
    /// Draw titles, axis labels and notes (when a font is found). (`true`)
    pub text: bool,
}

impl Default for PlotOptions {
    fn default() -> Self {
        Self { width: 1200, height: 900, text: true }
    }
}

/// A panel: its title, axes, a line, dots and the note shown when both are empty.
struct Panel<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    line: Vec<(f64, f64)>,
    dots: Vec<(f64, f64)>,
    /// Values the y axis always shows (the collapse level's [0, 1]).
    y_span: Option<(f64, f64)>,
    empty_note: &'a str,
    /// The legend's names of the line and the dots (none: not in the legend).
    labels: [Option<&'a str>; 2],
    /// More series, each a line with dots in a colour of its own, named in the legend.
    extra: Vec<Series<'a>>,
}

/// A named series of a panel beside its line and dots.
struct Series<'a> {
    label: &'a str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

const STEP_LABELS: [Option<&str>; 2] = [Some("interval mean"), Some("epoch mean")];

/// The colours of the lines (interval records) and dots (epoch records).
const LINE: RGBColor = RGBColor(31, 119, 180);
const DOTS: RGBColor = RGBColor(214, 39, 40);
/// The online probe's training and test accuracy.
const PROBE_TRAIN: RGBColor = RGBColor(255, 127, 14);
const PROBE_TEST: RGBColor = RGBColor(44, 160, 44);

/// Draws the four panels of `metrics` in a 2x2 grid; a series with no value becomes an empty
/// panel with a note.
///
/// # Errors
/// A size out of range, or a drawing failure.
pub fn plot_metrics(metrics: &Metrics, options: &PlotOptions) -> Result<RgbImage> {
    check_size(options.width, options.height)?;
    let text = options.text && fonts::text_available();
    // Interval records as the line; without any, the epoch records take their place.
    type Field = fn(&StepRecord) -> Option<f64>;
    let step_series = |field: Field| -> [Vec<(f64, f64)>; 2] {
        let epochs: Vec<StepRecord> = metrics
            .epochs
            .iter()
            .map(|e| StepRecord {
                epoch: e.epoch,
                step: e.step,
                loss: e.loss,
                lr: e.lr,
                collapse: e.collapse,
            })
            .collect();
        let points = |records: &[StepRecord]| -> Vec<(f64, f64)> {
            records
                .iter()
                .filter_map(|r| Some((r.step as f64, field(r)?)))
                .filter(|(_, y)| y.is_finite())
                .collect()
        };
        if metrics.steps.is_empty() {
            [points(&epochs), Vec::new()]
        } else {
            [points(&metrics.steps), points(&epochs)]
        }
    };
    let [loss_line, loss_dots] = step_series(|r| r.loss);
    let [collapse_line, collapse_dots] = step_series(|r| r.collapse);
    let [lr_line, lr_dots] = step_series(|r| r.lr);
    let knn: Vec<(f64, f64)> = metrics
        .epochs
        .iter()
        .filter_map(|e| Some(((e.epoch + 1) as f64, 100.0 * e.knn_top1?)))
        .filter(|(_, y)| y.is_finite())
        .collect();
    let by_epoch = |field: fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        metrics
            .epochs
            .iter()
            .filter_map(|e| Some(((e.epoch + 1) as f64, 100.0 * field(e)?)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let probe: Vec<Series<'_>> = [
        ("online probe, train", PROBE_TRAIN, by_epoch(|e| e.probe_train_top1)),
        ("online probe, test", PROBE_TEST, by_epoch(|e| e.probe_test_top1)),
    ]
    .into_iter()
    .filter(|(_, _, points)| !points.is_empty())
    .map(|(label, colour, points)| Series { label, colour, points })
    .collect();
    let accuracy_title =
        if probe.is_empty() { "kNN top-1 accuracy" } else { "kNN and online-probe top-1 accuracy" };
    let panels = [
        Panel {
            title: "Loss",
            x_desc: "step",
            y_desc: "loss",
            line: loss_line,
            dots: loss_dots,
            y_span: None,
            empty_note: "no loss in this file",
            labels: STEP_LABELS,
            extra: Vec::new(),
        },
        Panel {
            title: "Collapse level (0 healthy, 1 collapsed)",
            x_desc: "step",
            y_desc: "collapse level",
            line: collapse_line,
            dots: collapse_dots,
            y_span: Some((0.0, 1.0)),
            empty_note: "no collapse level in this file",
            labels: STEP_LABELS,
            extra: Vec::new(),
        },
        Panel {
            title: "Learning rate",
            x_desc: "step",
            y_desc: "learning rate",
            line: lr_line,
            dots: lr_dots,
            y_span: None,
            empty_note: "no learning rate in this file",
            labels: STEP_LABELS,
            extra: Vec::new(),
        },
        Panel {
            title: accuracy_title,
            x_desc: "epoch",
            y_desc: "accuracy (%)",
            line: knn.clone(),
            dots: knn,
            y_span: None,
            empty_note: "no kNN accuracy in this file (the monitor did not run)",
            labels: [Some("kNN"), None],
            extra: probe,
        },
    ];
    let mut image = RgbImage::new(options.width, options.height);
    super::draw_on(&mut image, |root| {
        root.fill(&WHITE).map_err(drawing("the background"))?;
        let scale = (f64::from(options.width) / 1200.0).min(f64::from(options.height) / 900.0).max(0.25);
        for (area, panel) in root.split_evenly((2, 2)).iter().zip(&panels) {
            draw_panel(area, panel, text, scale)?;
        }
        Ok(())
    })?;
    Ok(image)
}

/// The range a series spans, padded by 5% (or by 1 around a single value).
fn span(values: impl Iterator<Item = f64>, keep: Option<(f64, f64)>) -> (f64, f64) {
    let (mut lo, mut hi) =
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if let Some((a, b)) = keep {
        (lo, hi) = (lo.min(a), hi.max(b));
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { lo.abs().max(1e-3) * 0.1 };
    (lo - pad, hi + pad)
}

/// The corner for a panel's legend where it hides the fewest points: a rising accuracy curve
/// ends in the upper right, where the legend used to cover its last epochs.
fn legend_corner<'p>(
    points: impl Iterator<Item = &'p (f64, f64)>,
    x: (f64, f64),
    y: (f64, f64),
) -> SeriesLabelPosition {
    // Fractions of the axes the legend box takes, about, at the default size.
    let (wide, high) = (0.4, 0.3);
    let (mut hidden, corners) = ([0usize; 4], [(true, true), (true, false), (false, true), (false, false)]);
    for &(px, py) in points {
        let (fx, fy) = ((px - x.0) / (x.1 - x.0), (py - y.0) / (y.1 - y.0));
        for (n, &(right, upper)) in hidden.iter_mut().zip(&corners) {
            let in_x = if right { fx >= 1.0 - wide } else { fx <= wide };
            let in_y = if upper { fy >= 1.0 - high } else { fy <= high };
            *n += usize::from(in_x && in_y);
        }
    }
    // The first corner with the fewest: upper right when there is a tie.
    let best = (0..4).min_by_key(|&i| hidden[i]).unwrap_or(0);
    [
        SeriesLabelPosition::UpperRight,
        SeriesLabelPosition::LowerRight,
        SeriesLabelPosition::UpperLeft,
        SeriesLabelPosition::LowerLeft,
    ][best]
        .clone()
}

fn draw_panel(area: &Canvas<'_>, panel: &Panel<'_>, text: bool, scale: f64) -> Result<()> {
    let px = |v: f64| (v * scale).round().max(1.0) as u32;
    let all = || panel.line.iter().chain(&panel.dots).chain(panel.extra.iter().flat_map(|s| &s.points));
    let x = span(all().map(|p| p.0), None);
    let y = span(all().map(|p| p.1), panel.y_span);
    let mut builder = ChartBuilder::on(area);
    builder.margin(px(12.0));
    if text {
        builder
            .caption(panel.title, ("sans-serif", px(22.0)))
            .x_label_area_size(px(45.0))
            .y_label_area_size(px(70.0));
    }
    let mut chart = builder.build_cartesian_2d(x.0..x.1, y.0..y.1).map_err(drawing("a panel"))?;
    let (x_tick, y_tick) = (|v: &f64| format_tick(snap_zero(*v, x)), |v: &f64| format_tick(snap_zero(*v, y)));
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235)).bold_line_style(RGBColor(215, 215, 215));
    if text {
        mesh.x_desc(panel.x_desc)
            .y_desc(panel.y_desc)
            .label_style(("sans-serif", px(14.0)))
            .axis_desc_style(("sans-serif", px(15.0)))
            .x_label_formatter(&x_tick)
            .y_label_formatter(&y_tick);
    }
    mesh.draw().map_err(drawing("the axes"))?;
    let plot = chart.plotting_area();
    let frame = Rectangle::new([(x.0, y.0), (x.1, y.1)], BLACK.stroke_width(1));
    plot.draw(&frame).map_err(drawing("a frame"))?;
    if all().next().is_none() {
        if text {
            let (w, h) = plot.dim_in_pixel();
            let style = TextStyle::from(("sans-serif", px(16.0)).into_font())
                .color(&RGBColor(110, 110, 110))
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ));
            plot.strip_coord_spec()
                .draw_text(panel.empty_note, &style, (w as i32 / 2, h as i32 / 2))
                .map_err(drawing("a note"))?;
        }
        return Ok(());
    }
    let width = px(2.0).max(2);
    if panel.line.len() > 1 {
        let drawn = chart
            .draw_series(LineSeries::new(panel.line.iter().copied(), LINE.stroke_width(width)))
            .map_err(drawing("a line"))?;
        if let Some(label) = panel.labels[0] {
            drawn
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], LINE.stroke_width(width)));
        }
    }
    let radius = px(4.0) as i32;
    let drawn = chart
        .draw_series(panel.dots.iter().map(|&p| Circle::new(p, radius, DOTS.filled())))
        .map_err(drawing("the dots"))?;
    if let Some(label) = panel.labels[1] {
        drawn.label(label).legend(move |(x, y)| Circle::new((x + 10, y), radius, DOTS.filled()));
    }
    for series in &panel.extra {
        let colour = series.colour;
        chart
            .draw_series(LineSeries::new(series.points.iter().copied(), colour.stroke_width(width)))
            .map_err(drawing("a line"))?
            .label(series.label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(width)));
        chart
            .draw_series(series.points.iter().map(|&p| Circle::new(p, radius - 1, colour.filled())))
            .map_err(drawing("the dots"))?;
    }
    let line_and_dots = panel.line.len() > 1 && !panel.dots.is_empty() && panel.line != panel.dots;
    if text && (line_and_dots || !panel.extra.is_empty()) {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", px(14.0)))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(legend_corner(all(), x, y))
            .draw()
            .map_err(drawing("the legend"))?;
    }
    Ok(())
}

/// A tick that is zero but for rounding in the tick generator's steps (`-1.1e-16` on an axis
/// from -0.85 to 0.04) as zero.
fn snap_zero(v: f64, (lo, hi): (f64, f64)) -> f64 {
    if v.abs() <= 1e-9 * (hi - lo).abs() { 0.0 } else { v }
}

/// A tick label short enough for the axis: `0.06`, `1.2e-4`, `-0.9`.
fn format_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e-2 && v.abs() < 1e4 {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        format!("{v:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_goes_where_it_hides_the_fewest_points() {
        let rising: Vec<(f64, f64)> = (0..=100).map(|i| (i as f64, 20.0 + 0.35 * i as f64)).collect();
        let falling: Vec<(f64, f64)> = rising.iter().map(|&(x, y)| (x, 75.0 - y)).collect();
        let (x, y) = ((0.0, 100.0), (20.0, 55.0));
        let corner = |p: &[(f64, f64)], y| format!("{:?}", legend_corner(p.iter(), x, y));
        // A rising curve ends in the upper right: the legend goes to the lower right.
        assert_eq!(corner(&rising, y), format!("{:?}", SeriesLabelPosition::LowerRight));
        // A falling one (a loss) leaves the upper right free.
        assert_eq!(corner(&falling, y), format!("{:?}", SeriesLabelPosition::UpperRight));
    }

    #[test]
    fn records_parse_and_resumed_runs_supersede() -> Result<()> {
        let text = r#"{"event":"step","epoch":0,"step":5,"loss":-0.5,"lr":0.06,"collapse":0.2,"images_per_s":10}
{"event":"step","epoch":0,"step":10,"loss":-0.6,"lr":0.06,"collapse":0.1,"images_per_s":10}
{"event":"epoch","epoch":0,"step":10,"loss":-0.55,"lr":0.06,"collapse":0.1,"seconds":1.0,"knn_top1":0.25}

{"event":"step","epoch":0,"step":10,"loss":null,"lr":0.05,"collapse":0.1,"images_per_s":10}
{"event":"note","text":"a future event"}
{"event":"epoch","epoch":0,"step":10,"loss":-0.7,"lr":0.05,"collapse":0.1,"seconds":1.0}
"#;
        let m = Metrics::parse(text)?;
        assert_eq!(m.steps.len(), 2);
        assert_eq!((m.steps[1].loss, m.steps[1].lr), (None, Some(0.05)));
        assert_eq!(m.epochs.len(), 1);
        assert_eq!((m.epochs[0].loss, m.epochs[0].knn_top1), (Some(-0.7), None));
        Ok(())
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_whole_bad_one_is_not() -> Result<()> {
        let step = r#"{"event":"step","epoch":0,"step":5,"loss":-0.5,"lr":0.06,"collapse":0.2}"#;
        let m = Metrics::parse(&format!("{step}\n{{\"event\":\"step\",\"epoch\":0,\"st"))?;
        assert_eq!(m.steps.len(), 1);
        assert_eq!(m.steps[0].step, 5);
        let message =
            format!("{:#}", Metrics::parse(&format!("{step}\n{{\"event\":\"st\n")).expect_err("whole line"));
        assert!(message.contains("line 2, column"), "{message}");
        Ok(())
    }

    #[test]
    fn malformed_lines_are_named() {
        let cases = [
            ("", "no step or epoch records"),
            ("\n{\"event\":\"note\"}\n", "no step or epoch records"),
            (
                "{\"event\":\"step\",\"epoch\":0,\"step\":1,\"loss\":1}\n{oops\n",
                "line 2, column 2: not JSON (key",
            ),
            ("[1, 2]\n", "line 1: not a metrics record"),
            ("{\"event\":\"epoch\",\"epoch\":0}\n", "line 1: a malformed epoch record"),
            ("{\"event\":\"step\",\"epoch\":0,\"step\":\"x\"}\n", "line 1: a malformed step record"),
        ];
        for (text, expected) in cases {
            let message = match Metrics::parse(text) {
                Ok(_) => panic!("`{text}` parsed"),
                Err(e) => format!("{e:#}"),
            };
            assert!(message.contains(expected), "expected `{expected}` in `{message}`");
        }
    }

    #[test]
    fn spans_pad_and_never_collapse() {
        let (lo, hi) = span([1.0, 3.0].into_iter(), None);
        assert!((lo - 0.9).abs() < 1e-12 && (hi - 3.1).abs() < 1e-12, "{lo} {hi}");
        let (lo, hi) = span([2.0].into_iter(), None);
        assert!(lo < 2.0 && hi > 2.0);
        assert_eq!(span(std::iter::empty(), None), (0.0, 1.0));
        let (lo, hi) = span([0.5].into_iter(), Some((0.0, 1.0)));
        assert!(lo < 0.0 && hi > 1.0);
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(format_tick(0.06), "0.06");
        assert_eq!(format_tick(0.0), "0");
        assert_eq!(format_tick(-0.9), "-0.9");
        assert_eq!(format_tick(0.00012), "1.2e-4");
        assert_eq!(format_tick(snap_zero(-1.1e-16, (-0.85, 0.04))), "0");
        assert_eq!(format_tick(snap_zero(1.2e-4, (0.0, 2e-4))), "1.2e-4");
    }
}
