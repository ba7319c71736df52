//! Figures of a run and of its embeddings, as PNG images: what Lightly's tutorials draw with
//! matplotlib, drawn with `plotters` into an in-memory RGB buffer.
//!
//! - [`plot`]: loss, collapse level, learning rate and kNN accuracy from `metrics.jsonl`, in a
//!   2x2 grid of panels (`simsiam plot`).
//! - [`neighbors`]: a query image and its 8 nearest neighbours by cosine similarity in a 3x3
//!   grid (`simsiam neighbors`), Lightly's `plot_nearest_neighbors_3x3`.
//! - [`scatter`]: a 2-D [`pca`] projection of the embeddings with image thumbnails at their
//!   positions (`simsiam scatter`), Lightly's `get_scatter_plot_with_thumbnails`.
//! - [`embeddings`]: embeddings read back from `simsiam embed`'s CSV (Lightly's layout) or
//!   safetensors.
//! - [`commands`]: the three commands, from files to PNG files.
//!
//! The module is the `figures` feature of the crate (on by default): without it the crate
//! does not depend on `plotters` or `image`, and the tool's figure commands say so.
//!
//! Every figure is an [`image::RgbImage`]; [`save_png`] writes one atomically, so a failed
//! command leaves an existing file as it was. Text needs a TrueType font, found at run time
//! ([`fonts`]); without one the figures are drawn without text and a warning says so.

pub mod commands;
pub mod embeddings;
pub mod fonts;
pub mod neighbors;
pub mod pca;
pub mod plot;
pub mod scatter;

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use image::RgbImage;
use plotters::backend::{BitMapBackend, RGBPixel};
use plotters::coord::Shift;
use plotters::drawing::{DrawingArea, IntoDrawingArea};

pub use commands::{
    NeighborsRequest, ScatterRequest, ScatterSummary, draw_neighbors, draw_plot, draw_scatter, use_font,
};
pub use embeddings::{EmbeddingTable, read_embeddings};
pub use neighbors::{GridLayout, NeighborsOptions, Query, nearest_neighbors, neighbors_figure};
pub use pca::pca_2d;
pub use plot::{Metrics, PlotOptions, plot_metrics, read_metrics};
pub use scatter::{ScatterOptions, choose_thumbnails, min_max_normalize, scatter_figure};

/// The largest side of a figure, in pixels (plotters indexes pixels with `u32` products).
pub const MAX_SIDE: u32 = 16_384;

/// The drawing area a figure is drawn on: plotters over a borrowed RGB buffer.
pub type Canvas<'a> = DrawingArea<BitMapBackend<'a, RGBPixel>, Shift>;

/// Checks a figure's size: both sides positive and at most [`MAX_SIDE`].
pub fn check_size(width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        bail!("a figure of {width}x{height} pixels: each side must be between 1 and {MAX_SIDE}");
    }
    Ok(())
}

/// Runs `draw` on a plotters canvas over `image`'s pixels (which it keeps, so thumbnails pasted
/// before show through) and returns what `draw` returns.
pub fn draw_on<T>(image: &mut RgbImage, draw: impl FnOnce(&Canvas<'_>) -> Result<T>) -> Result<T> {
    let (width, height) = image.dimensions();
    check_size(width, height)?;
    let buffer: &mut [u8] = image;
    let backend = BitMapBackend::<RGBPixel>::with_buffer_and_format(buffer, (width, height))
        .map_err(|e| anyhow!("cannot draw on a {width}x{height} buffer: {e}"))?;
    let root = backend.into_drawing_area();
    let out = draw(&root)?;
    root.present().map_err(|e| anyhow!("cannot finish the figure: {e}"))?;
    Ok(out)
}

/// Turns a plotters drawing error into one line saying what could not be drawn.
pub(crate) fn drawing<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> anyhow::Error {
    move |e| anyhow!("cannot draw {what}: {e}")
}

/// Writes `image` as a PNG, atomically: on any error an existing file at `path` is untouched.
pub fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .with_context(|| format!("{}: cannot encode the PNG", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    simsiam_train::atomic_write(path, &bytes)?;
    Ok(())
}

/// `0..n` in a random order fixed by `seed` (`simsiam_augment::rng::shuffle` on our ChaCha8
/// stream).
pub fn seeded_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    simsiam_augment::rng::shuffle(&mut order, &mut simsiam_augment::rng::sample_rng(seed, 0, 0));
    order
}

/// `image` resized to fit a `side` x `side` square, keeping its aspect ratio (nearest-neighbour
/// when enlarging, so CIFAR's 32x32 pixels stay crisp; a triangle filter when shrinking).
pub fn thumbnail(image: &RgbImage, side: u32) -> RgbImage {
    use image::imageops::{FilterType, resize};
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 || side == 0 {
        return RgbImage::new(side.max(1), side.max(1));
    }
    let scale = f64::from(side) / f64::from(w.max(h));
    let (tw, th) = (
        ((f64::from(w) * scale).round() as u32).clamp(1, side),
        ((f64::from(h) * scale).round() as u32).clamp(1, side),
    );
    let filter = if scale >= 1.0 { FilterType::Nearest } else { FilterType::Triangle };
    resize(image, tw, th, filter)
}

/// Fills the `thickness`-pixel frame just inside the rectangle at `(x, y)` of `w` x `h` pixels
/// (clipped to the image).
pub fn draw_frame(image: &mut RgbImage, (x, y, w, h): (i64, i64, u32, u32), thickness: u32, colour: [u8; 3]) {
    let (iw, ih) = (i64::from(image.width()), i64::from(image.height()));
    let t = i64::from(thickness);
    for py in y..y + i64::from(h) {
        for px in x..x + i64::from(w) {
            let edge = px < x + t || py < y + t || px >= x + i64::from(w) - t || py >= y + i64::from(h) - t;
            if edge && (0..iw).contains(&px) && (0..ih).contains(&py) {
                image.put_pixel(px as u32, py as u32, image::Rgb(colour));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_keep_the_aspect_ratio() {
        let wide = RgbImage::new(64, 32);
        assert_eq!(thumbnail(&wide, 16).dimensions(), (16, 8));
        assert_eq!(thumbnail(&RgbImage::new(32, 32), 96).dimensions(), (96, 96));
    }

    #[test]
    fn frames_are_clipped_to_the_image() {
        let mut image = RgbImage::new(10, 10);
        draw_frame(&mut image, (-2, -2, 8, 8), 3, [255, 0, 0]);
        assert_eq!(image.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(image.get_pixel(2, 2).0, [0, 0, 0]);
        assert_eq!(image.get_pixel(5, 0).0, [255, 0, 0]);
        assert_eq!(image.get_pixel(9, 9).0, [0, 0, 0]);
    }

    #[test]
    fn sizes_are_checked() {
        assert!(check_size(0, 10).is_err());
        assert!(check_size(10, MAX_SIDE + 1).is_err());
        assert!(check_size(10, 10).is_ok());
    }

    #[test]
    fn saving_replaces_the_file_whole() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sub/a.png");
        let mut image = RgbImage::new(3, 2);
        image.put_pixel(1, 1, image::Rgb([9, 8, 7]));
        save_png(&image, &path)?;
        let back = image::open(&path)?.to_rgb8();
        assert_eq!(back, image);
        Ok(())
    }
}
