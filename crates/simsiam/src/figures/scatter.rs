//! `simsiam scatter`: the embeddings projected to two dimensions, with image thumbnails at
//! their positions, as Lightly's `get_scatter_plot_with_thumbnails` (satellite tutorial).
//!
//! Lightly projects with sklearn's random projection; we use the deterministic
//! [`pca_2d`](super::pca_2d), then min-max normalise each axis to [0, 1] as Lightly does. Thumbnails
//! go to a seeded random subset, skipping any point closer than `min_distance` to one already
//! shown so they do not pile up; every embedding is drawn as a grey dot underneath.

use anyhow::{Result, bail};
use image::RgbImage;
use plotters::prelude::*;

use super::{check_size, draw_frame, drawing, fonts, thumbnail};

/// Each axis mapped onto [0, 1] (an axis without spread onto 0.5).
pub fn min_max_normalize(points: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let mut lo = [f64::INFINITY; 2];
    let mut hi = [f64::NEG_INFINITY; 2];
    for p in points {
        for k in 0..2 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let scale = |v: f64, k: usize| if hi[k] > lo[k] { (v - lo[k]) / (hi[k] - lo[k]) } else { 0.5 };
    points.iter().map(|p| [scale(p[0], 0), scale(p[1], 1)]).collect()
}

/// Up to `max` points to show as thumbnails: the points in a random order from `seed`, each
/// kept unless it lies closer than `min_distance` to one kept before (Lightly's rule).
pub fn choose_thumbnails(points: &[[f64; 2]], max: usize, min_distance: f64, seed: u64) -> Vec<usize> {
    let mut kept: Vec<usize> = Vec::new();
    for i in super::seeded_order(points.len(), seed) {
        if kept.len() == max {
            break;
        }
        let [x, y] = points[i];
        let far = kept.iter().all(|&j| {
            let [u, v] = points[j];
            (x - u).powi(2) + (y - v).powi(2) >= min_distance * min_distance
        });
        if far {
            kept.push(i);
        }
    }
    kept
}

/// Options of [`scatter_figure`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterOptions {
    /// Width of the figure in pixels. (1000)
    pub width: u32,
    /// Height of the figure in pixels. (1000)
    pub height: u32,
    /// Side of each thumbnail's square in pixels. (48)
    pub thumb_size: u32,
    /// Title and axis names (when a font is found). (`true`)
    pub text: bool,
    /// The title; "PCA of the embeddings" when `None`.
    pub title: Option<String>,
}

impl Default for ScatterOptions {
    fn default() -> Self {
        Self { width: 1000, height: 1000, thumb_size: 48, text: true, title: None }
    }
}

/// Draws `points` (in [0, 1]², from [`min_max_normalize`]) as dots and `thumbnails` (a row of
/// `points` and its image) centred at their points; returns the figure.
///
/// # Errors
/// A thumbnail row past the end of `points`, a thumbnail size outside 4..=512 or larger than a
/// third of the figure, a size out of range, or a drawing failure.
pub fn scatter_figure(
    points: &[[f64; 2]],
    thumbnails: &[(usize, RgbImage)],
    options: &ScatterOptions,
) -> Result<RgbImage> {
    check_size(options.width, options.height)?;
    let thumb = options.thumb_size;
    if !(4..=512).contains(&thumb) || 3 * thumb > options.width.min(options.height) {
        bail!(
            "thumbnail size {thumb}: use 4 to 512 pixels, at most a third of the figure's {}x{}",
            options.width,
            options.height
        );
    }
    if let Some((row, _)) = thumbnails.iter().find(|(row, _)| *row >= points.len()) {
        bail!("thumbnail of row {row}, but there are only {} points", points.len());
    }
    let text = options.text && fonts::text_available();
    let mut figure = RgbImage::new(options.width, options.height);
    let (w, h) = (f64::from(options.width), f64::from(options.height));
    let font = (w.min(h) / 45.0).clamp(10.0, 30.0);
    let centres = super::draw_on(&mut figure, |root| {
        root.fill(&WHITE).map_err(drawing("the background"))?;
        let margin = 10;
        let mut builder = ChartBuilder::on(root);
        builder.margin(margin);
        let (mut label_x, mut label_y, mut caption) = (0.0, 0.0, 0.0);
        if text {
            let title = options.title.as_deref().unwrap_or("PCA of the embeddings");
            builder.caption(title, ("sans-serif", font * 1.3));
            (label_x, label_y, caption) = (2.4 * font, 3.2 * font, 2.0 * font);
            builder.x_label_area_size(label_x as u32).y_label_area_size(label_y as u32);
        }
        // Pad the unit square by half a thumbnail (and a little) in data units, so thumbnails at
        // the extremes stay inside the plot.
        let plot_w = (w - 2.0 * f64::from(margin) - label_y).max(1.0);
        let plot_h = (h - 2.0 * f64::from(margin) - label_x - caption).max(1.0);
        let half = f64::from(thumb) / 2.0 + 4.0;
        let pad_x = half / (plot_w - 2.0 * half).max(1.0);
        let pad_y = half / (plot_h - 2.0 * half).max(1.0);
        let mut chart = builder
            .build_cartesian_2d(-pad_x..1.0 + pad_x, -pad_y..1.0 + pad_y)
            .map_err(drawing("the chart"))?;
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(RGBColor(240, 240, 240)).bold_line_style(RGBColor(225, 225, 225));
        if text {
            mesh.x_desc("principal component 1")
                .y_desc("principal component 2")
                .label_style(("sans-serif", font * 0.8))
                .axis_desc_style(("sans-serif", font * 0.9))
                .x_label_formatter(&|v| format!("{v:.1}"))
                .y_label_formatter(&|v| format!("{v:.1}"));
        }
        mesh.draw().map_err(drawing("the axes"))?;
        let dot = (f64::from(thumb) / 16.0).clamp(1.5, 4.0) as i32;
        chart
            .draw_series(
                points.iter().map(|p| Circle::new((p[0], p[1]), dot, RGBColor(150, 150, 150).filled())),
            )
            .map_err(drawing("the points"))?;
        Ok(thumbnails
            .iter()
            .map(|(row, _)| chart.backend_coord(&(points[*row][0], points[*row][1])))
            .collect::<Vec<_>>())
    })?;
    for ((_, image), (cx, cy)) in thumbnails.iter().zip(centres) {
        let t = thumbnail(image, thumb);
        let (x, y) = (i64::from(cx) - i64::from(t.width() / 2), i64::from(cy) - i64::from(t.height() / 2));
        image::imageops::replace(&mut figure, &t, x, y);
        draw_frame(&mut figure, (x - 1, y - 1, t.width() + 2, t.height() + 2), 1, [90, 90, 90]);
    }
    Ok(figure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_maps_onto_the_unit_square() {
        let got = min_max_normalize(&[[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]]);
        assert_eq!(got, [[0.0, 0.5], [1.0, 0.5], [0.5, 0.5]]);
    }

    #[test]
    fn thumbnails_are_seeded_spread_and_capped() {
        let points: Vec<[f64; 2]> =
            (0..100).map(|i| [f64::from(i % 10) / 9.0, f64::from(i / 10) / 9.0]).collect();
        let a = choose_thumbnails(&points, 20, 0.2, 7);
        assert_eq!(a, choose_thumbnails(&points, 20, 0.2, 7));
        assert_ne!(a, choose_thumbnails(&points, 20, 0.2, 8));
        assert!(a.len() <= 20 && a.len() >= 9, "{}", a.len());
        for (k, &i) in a.iter().enumerate() {
            for &j in &a[k + 1..] {
                let d =
                    ((points[i][0] - points[j][0]).powi(2) + (points[i][1] - points[j][1]).powi(2)).sqrt();
                assert!(d >= 0.2, "{i} and {j} are {d} apart");
            }
        }
        assert_eq!(choose_thumbnails(&points, 100, 0.0, 1).len(), 100);
        assert_eq!(choose_thumbnails(&points, 0, 0.0, 1).len(), 0);
    }
}
