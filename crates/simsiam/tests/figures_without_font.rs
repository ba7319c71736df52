//! Figures drawn with their text turned off never touch a font: in this process no font is
//! registered, so any text would fail to draw (plotters' `FontUnavailable`).

use image::{Rgb, RgbImage};
use simsiam::figures::{self, Metrics, NeighborsOptions, PlotOptions, Query, ScatterOptions};

#[test]
fn every_figure_draws_without_a_font() -> anyhow::Result<()> {
    let metrics = Metrics::parse(concat!(
        "{\"event\":\"step\",\"epoch\":0,\"step\":5,\"loss\":-0.5,\"lr\":0.06,\"collapse\":0.3}\n",
        "{\"event\":\"step\",\"epoch\":0,\"step\":10,\"loss\":-0.6,\"lr\":0.05,\"collapse\":0.2}\n",
        "{\"event\":\"epoch\",\"epoch\":0,\"step\":10,\"loss\":-0.55,\"lr\":0.05,\"collapse\":0.2,\"knn_top1\":0.3}\n",
    ))?;
    let plot = figures::plot_metrics(&metrics, &PlotOptions { text: false, ..PlotOptions::default() })?;
    assert_eq!(plot.dimensions(), (1200, 900));

    let images: Vec<RgbImage> =
        (0..9u8).map(|i| RgbImage::from_pixel(8, 8, Rgb([20 * i, 100, 200]))).collect();
    let names: Vec<String> = (0..9).map(|i| format!("{i}.png")).collect();
    let query = Query { index: 0, neighbors: (1..9).map(|i| (i, 1.0 - i as f32 / 10.0)).collect() };
    let options = NeighborsOptions { thumb_size: 16, text: false };
    let grid = figures::neighbors_figure(&[query], &names, |i| Ok(images[i].clone()), &options)?;
    assert_eq!(grid.dimensions(), figures::GridLayout::new(16, false).size(1));

    let points: Vec<[f64; 2]> = (0..9).map(|i| [f64::from(i) / 8.0, f64::from(i % 3) / 2.0]).collect();
    let thumbs: Vec<(usize, RgbImage)> = [0, 4, 8].iter().map(|&i| (i, images[i].clone())).collect();
    let options = ScatterOptions { width: 200, height: 150, thumb_size: 16, text: false, title: None };
    let scatter = figures::scatter_figure(&points, &thumbs, &options)?;
    assert_eq!(scatter.dimensions(), (200, 150));
    Ok(())
}
