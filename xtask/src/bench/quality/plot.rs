//! The PNG of `bench quality`: kNN top-1 against training minutes, one curve a side (through
//! the minute marks, epoch ends as open circles), the marks as dashed vertical lines.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use image::RgbImage;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::curve::Curve;

/// Fonts plotters' `ab_glyph` backend can use, where common systems keep them.
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a sans-serif font ($SIMSIAM_FONT, else a system one): the axes need text.
fn register_a_font() -> Result<()> {
    let from_env = std::env::var("SIMSIAM_FONT").ok();
    let path = from_env
        .iter()
        .map(String::as_str)
        .chain(FONTS)
        .find(|p| Path::new(p).is_file())
        .context("no font for the figure's text: set SIMSIAM_FONT to a .ttf file")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    for style in [FontStyle::Normal, FontStyle::Bold] {
        register_font("sans-serif", style, bytes).map_err(|_| anyhow!("{path}: not a usable font"))?;
    }
    Ok(())
}

/// One side: its name, colour and runs (one per seed).
pub struct Series<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    pub runs: &'a [Curve],
}

/// Draws the figure into `path` (1200x800).
pub fn draw(path: &Path, title: &str, marks: &[f64], sides: &[Series]) -> Result<()> {
    register_a_font()?;
    let (width, height) = (1200u32, 800u32);
    let points = |c: &Curve| -> Vec<(f64, f64)> {
        let mut p: Vec<(f64, f64)> =
            c.marks.iter().filter_map(|m| Some((m.minute, 100.0 * m.knn_top1?))).collect();
        // A schedule that ended before the budget: the line goes on to where training ended.
        if let Some(end) = c.schedule_end().and_then(|e| Some((e.minute, 100.0 * e.knn_top1?))) {
            if p.iter().all(|q| q.0 < end.0) {
                p.push(end);
            }
        }
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        p
    };
    let epoch_points = |c: &Curve| -> Vec<(f64, f64)> {
        c.epochs.iter().filter_map(|e| Some((e.train_seconds / 60.0, 100.0 * e.knn_top1?))).collect()
    };
    let all: Vec<(f64, f64)> = sides
        .iter()
        .flat_map(|s| s.runs.iter().flat_map(|c| [points(c), epoch_points(c)].concat()))
        .collect();
    if all.is_empty() {
        bail!("no kNN point to draw");
    }
    let x_max = all.iter().map(|p| p.0).chain(marks.iter().copied()).fold(1.0f64, f64::max) * 1.05;
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(p.1), h.max(p.1)));
    let (y_lo, y_hi) = ((lo - 2.0).floor().max(0.0), (hi + 2.0).ceil().min(100.0));

    let mut image = RgbImage::new(width, height);
    {
        let buffer: &mut [u8] = &mut image;
        let root = BitMapBackend::with_buffer(buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, y_lo..y_hi)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("training minutes (evaluation not counted)")
            .y_desc("kNN top-1 (%)")
            .label_style(("sans-serif", 16))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for &m in marks {
            let dashes = DashedLineSeries::new([(m, y_lo), (m, y_hi)], 6, 6, RGBColor(170, 170, 170).into());
            chart.draw_series(dashes).map_err(|e| anyhow!("{e}"))?;
        }
        for side in sides {
            let color = side.color;
            for (i, run) in side.runs.iter().enumerate() {
                let line = chart
                    .draw_series(LineSeries::new(points(run), color.stroke_width(3)))
                    .map_err(|e| anyhow!("{e}"))?;
                if i == 0 {
                    line.label(side.name)
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3)));
                }
                chart
                    .draw_series(points(run).into_iter().map(|p| Circle::new(p, 5, color.filled())))
                    .map_err(|e| anyhow!("{e}"))?;
                chart
                    .draw_series(
                        epoch_points(run).into_iter().map(|p| Circle::new(p, 6, color.stroke_width(2))),
                    )
                    .map_err(|e| anyhow!("{e}"))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 18))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    image.save(path).with_context(|| format!("could not write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_are_drawn_in_their_colours() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("quality.png");
        let run = |k: f64| {
            let text = format!(
                "{{\"event\":\"knn_mark\",\"minute\":1,\"epoch\":0,\"step\":3,\"images\":9,\"train_seconds\":60,\"knn_top1\":{k}}}\n\
                 {{\"event\":\"knn_mark\",\"minute\":2,\"epoch\":0,\"step\":6,\"images\":18,\"train_seconds\":120,\"knn_top1\":{}}}\n",
                k + 0.05
            );
            Curve::parse(&text)
        };
        let (ours, torch) = ([run(0.3)?], [run(0.2)?]);
        let (red, blue) = (RGBColor(214, 39, 40), RGBColor(31, 119, 180));
        let series = [
            Series { name: "simsiam-rs", color: red, runs: &ours },
            Series { name: "PyTorch + Lightly", color: blue, runs: &torch },
        ];
        if let Err(e) = draw(&path, "test", &[1.0, 2.0], &series) {
            // Only a machine without any font may fail, and then it must say so.
            assert!(e.to_string().contains("no font"), "{e:#}");
            return Ok(());
        }
        let png = image::open(&path)?.to_rgb8();
        assert_eq!(png.dimensions(), (1200, 800));
        let has = |c: RGBColor| png.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        assert!(has(red) && has(blue));
        Ok(())
    }
}
