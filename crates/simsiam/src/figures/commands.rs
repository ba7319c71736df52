//! `simsiam plot`, `simsiam neighbors` and `simsiam scatter`: files in, PNG files out. Every
//! figure is drawn before any is written, so an error leaves existing outputs as they were.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use image::RgbImage;
use simsiam_data::Dataset;

use super::embeddings::EmbeddedImages;
use super::neighbors::{CosineIndex, NEIGHBORS, resolve_query};
use super::{
    EmbeddingTable, NeighborsOptions, PlotOptions, Query, ScatterOptions, choose_thumbnails, fonts,
    min_max_normalize, neighbors_figure, pca_2d, plot_metrics, read_embeddings, read_metrics, save_png,
    scatter_figure, seeded_order,
};
use crate::config::RunConfig;
use crate::outputs::{OutputKind, check_output};
use crate::run::open_datasets;

/// Uses the font file at `path` for the text, when given (otherwise `$SIMSIAM_FONT`, then the
/// system's fonts).
pub fn use_font(path: Option<&Path>) -> Result<()> {
    match path {
        Some(path) => fonts::use_font_file(path),
        None => Ok(()),
    }
}

/// Draws the 2x2 panels of a run's `metrics.jsonl` into `out`.
pub fn draw_plot(metrics: &Path, out: &Path, options: &PlotOptions) -> Result<()> {
    let records = read_metrics(metrics)?;
    let figure = plot_metrics(&records, options)?;
    // After the input's errors, before any write.
    check_output(out, OutputKind::Png, &[metrics])?;
    save_png(&figure, out)
}

/// Embeddings from `simsiam embed` and the training images they were computed on.
struct EmbeddedData {
    source: PathBuf,
    table: EmbeddingTable,
    dataset: Arc<dyn Dataset>,
}

impl EmbeddedData {
    /// The embeddings file and the training images of `run` (with its `limit`, drawn from its
    /// seed).
    fn load(source: &Path, run: &RunConfig) -> Result<Self> {
        let table = read_embeddings(source)?;
        let dataset = open_datasets(&run.data, run.train.seed)?.train;
        Ok(Self { source: source.to_owned(), table, dataset })
    }

    /// The row-to-image lookup, once the table is checked against the dataset.
    fn images(&self) -> Result<EmbeddedImages<'_>> {
        EmbeddedImages::new(&self.table, self.dataset.as_ref(), &self.source)
    }
}

/// What `simsiam neighbors` draws.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighborsRequest {
    /// File names from the embeddings or row indices; empty: `num_queries` seeded picks.
    pub queries: Vec<String>,
    /// Random queries when `queries` is empty.
    pub num_queries: usize,
    /// Seed of the random queries.
    pub seed: u64,
    /// All queries in one figure; otherwise one file per query (`OUT_<row>.png` when several).
    pub stack: bool,
    /// Thumbnail side in pixels.
    pub thumb_size: u32,
}

/// Draws query images and their nearest neighbours from the `embeddings` of `run`'s training
/// images; returns the files written.
pub fn draw_neighbors(
    embeddings: &Path,
    run: &RunConfig,
    request: &NeighborsRequest,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let loaded = EmbeddedData::load(embeddings, run)?;
    let (table, source) = (&loaded.table, embeddings);
    let lookup = loaded.images()?;
    if table.len() < NEIGHBORS + 1 {
        bail!(
            "{}: {} embeddings; a query and {NEIGHBORS} neighbours need at least {}",
            source.display(),
            table.len(),
            NEIGHBORS + 1
        );
    }
    let num_queries = request.num_queries;
    let rows: Vec<usize> = if request.queries.is_empty() {
        if num_queries == 0 || num_queries > table.len() {
            bail!("--num-queries {num_queries}: use 1 to {}", table.len());
        }
        seeded_order(table.len(), request.seed).into_iter().take(num_queries).collect()
    } else {
        request.queries.iter().map(|q| resolve_query(table, q, source)).collect::<Result<_>>()?
    };
    let index = CosineIndex::new(table);
    let queries = rows
        .iter()
        .map(|&row| Ok(Query { index: row, neighbors: index.nearest(row, NEIGHBORS)? }))
        .collect::<Result<Vec<_>>>()?;
    let options = NeighborsOptions { thumb_size: request.thumb_size, ..NeighborsOptions::default() };
    let draw = |qs: &[Query]| neighbors_figure(qs, &table.names, |row| lookup.image(row), &options);
    let figures: Vec<(PathBuf, RgbImage)> = if request.stack || queries.len() == 1 {
        vec![(out.to_owned(), draw(&queries)?)]
    } else {
        queries
            .iter()
            .map(|q| Ok((numbered(out, q.index), draw(std::slice::from_ref(q))?)))
            .collect::<Result<_>>()?
    };
    for (path, _) in &figures {
        check_output(path, OutputKind::Png, &[embeddings])?;
    }
    for (path, figure) in &figures {
        save_png(figure, path)?;
    }
    Ok(figures.into_iter().map(|(path, _)| path).collect())
}

/// `out` with `_<row>` before its extension: `nn.png` -> `nn_42.png`.
fn numbered(out: &Path, row: usize) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = out.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    out.with_file_name(format!("{stem}_{row}{ext}"))
}

/// What `simsiam scatter` draws.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterRequest {
    /// At most this many thumbnails, on a seeded random subset.
    pub num_images: usize,
    /// Thumbnails closer than this (on the [0, 1] axes) to one already drawn are skipped.
    pub min_distance: f64,
    /// Seed of the subset.
    pub seed: u64,
    /// Size and thumbnails of the figure; its title says how many are shown.
    pub options: ScatterOptions,
}

/// How many thumbnails a scatter plot shows, of how many embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScatterSummary {
    /// Thumbnails drawn.
    pub shown: usize,
    /// Embeddings projected.
    pub embeddings: usize,
}

/// Draws the 2-D PCA of the `embeddings` of `run`'s training images with thumbnails into
/// `out`.
pub fn draw_scatter(
    embeddings: &Path,
    run: &RunConfig,
    request: &ScatterRequest,
    out: &Path,
) -> Result<ScatterSummary> {
    let min_distance = request.min_distance;
    if !(min_distance >= 0.0 && min_distance.is_finite()) {
        bail!("--min-distance {min_distance}: use a distance of 0 or more");
    }
    let loaded = EmbeddedData::load(embeddings, run)?;
    let (table, lookup) = (&loaded.table, loaded.images()?);
    let points = min_max_normalize(&pca_2d(&table.values, table.dim)?);
    let shown = choose_thumbnails(&points, request.num_images, min_distance, request.seed);
    let thumbs = shown.iter().map(|&row| Ok((row, lookup.image(row)?))).collect::<Result<Vec<_>>>()?;
    let title = format!("PCA of {} embeddings ({} shown)", table.len(), thumbs.len());
    let figure =
        scatter_figure(&points, &thumbs, &ScatterOptions { title: Some(title), ..request.options.clone() })?;
    check_output(out, OutputKind::Png, &[embeddings])?;
    save_png(&figure, out)?;
    Ok(ScatterSummary { shown: thumbs.len(), embeddings: table.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_files_keep_the_extension() {
        assert_eq!(numbered(Path::new("out/nn.png"), 42), PathBuf::from("out/nn_42.png"));
        assert_eq!(numbered(Path::new("nn"), 3), PathBuf::from("nn_3"));
    }
}
