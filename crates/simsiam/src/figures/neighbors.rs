//! `simsiam neighbors`: a query image and its 8 nearest neighbours in a 3x3 grid, as Lightly's
//! `plot_nearest_neighbors_3x3`.
//!
//! Similarity is the cosine of the L2-normalised embeddings. The query sits in the top-left
//! cell inside a red frame; its neighbours follow in reading order, most similar first. With a
//! font, each cell has a two-line caption: `query` or a neighbour's rank and similarity, then
//! the file name. Several queries stack their grids top to bottom.

use anyhow::{Result, bail};
use image::RgbImage;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{EmbeddingTable, check_size, draw_frame, drawing, fonts, thumbnail};

/// The neighbours shown with each query (a 3x3 grid).
pub const NEIGHBORS: usize = 8;

/// The colour of the query's frame.
pub const QUERY_FRAME: [u8; 3] = [220, 30, 30];

/// Unit-length embeddings, for cosine similarities by dot products.
#[derive(Debug, Clone)]
pub struct CosineIndex {
    unit: Vec<f32>,
    dim: usize,
}

impl CosineIndex {
    /// L2-normalises every row of `table` (a zero row stays zero: similarity 0 to all).
    pub fn new(table: &EmbeddingTable) -> Self {
        let mut unit = table.values.clone();
        for row in unit.chunks_exact_mut(table.dim.max(1)) {
            let norm = row.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v = (f64::from(*v) / norm) as f32);
            }
        }
        Self { unit, dim: table.dim.max(1) }
    }

    /// The `k` rows most similar to row `query` (itself excluded), most similar first, ties in
    /// row order, with their cosine similarities.
    ///
    /// # Errors
    /// When `query` is past the end.
    pub fn nearest(&self, query: usize, k: usize) -> Result<Vec<(usize, f32)>> {
        let n = self.unit.len() / self.dim;
        let Some(q) = self.unit.get(query * self.dim..(query + 1) * self.dim) else {
            bail!("query row {query} is past the end of {n} embeddings");
        };
        let mut scored: Vec<(usize, f32)> = self
            .unit
            .chunks_exact(self.dim)
            .enumerate()
            .filter(|&(i, _)| i != query)
            .map(|(i, row)| (i, row.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        Ok(scored)
    }
}

/// The `k` nearest neighbours of row `query` of `table` by cosine similarity; see
/// [`CosineIndex::nearest`].
///
/// # Errors
/// When `query` is past the end.
pub fn nearest_neighbors(table: &EmbeddingTable, query: usize, k: usize) -> Result<Vec<(usize, f32)>> {
    CosineIndex::new(table).nearest(query, k)
}

/// The row a `--query` names: a file name of `table`, or else a row index.
///
/// # Errors
/// When it is neither; the message names `source`, the embeddings file.
pub fn resolve_query(table: &EmbeddingTable, query: &str, source: &std::path::Path) -> Result<usize> {
    if let Some(i) = table.index_of(query) {
        return Ok(i);
    }
    match query.parse::<usize>() {
        Ok(i) if i < table.len() => Ok(i),
        _ => bail!(
            "{}: the query `{query}` is neither a file name there nor a row index below {}",
            source.display(),
            table.len()
        ),
    }
}

/// A query row and its neighbours (row, cosine similarity), most similar first.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The query's row in the embeddings.
    pub index: usize,
    /// The neighbours, at most [`NEIGHBORS`] of them.
    pub neighbors: Vec<(usize, f32)>,
}

/// Options of [`neighbors_figure`].
#[derive(Debug, Clone, PartialEq)]
pub struct NeighborsOptions {
    /// The side of each thumbnail's square, in pixels. (96)
    pub thumb_size: u32,
    /// Captions under the thumbnails (when a font is found). (`true`)
    pub text: bool,
}

impl Default for NeighborsOptions {
    fn default() -> Self {
        Self { thumb_size: 96, text: true }
    }
}

/// Where the cells of the 3x3 grids lie: `pad` pixels around and between the thumbnail
/// squares, a caption strip under each, the grids of several queries stacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridLayout {
    /// The side of a thumbnail's square.
    pub thumb: u32,
    /// Space around and between cells.
    pub pad: u32,
    /// Height of the caption strip under each thumbnail (0 without text).
    pub caption: u32,
}

impl GridLayout {
    /// The layout of thumbnails of side `thumb`, with or without captions.
    pub fn new(thumb: u32, captions: bool) -> Self {
        let pad = (thumb / 10).max(6);
        let caption = if captions {
            Self::font_for(thumb).mul_add(2.4, 3.0).ceil() as u32 + (pad / 2).max(2)
        } else {
            0
        };
        Self { thumb, pad, caption }
    }

    fn font_for(thumb: u32) -> f64 {
        (f64::from(thumb) / 8.0).clamp(10.0, 24.0)
    }

    /// The width of the query's frame, drawn around its thumbnail in the padding.
    pub fn border(&self) -> u32 {
        (self.pad / 2).max(2)
    }

    /// The captions' font size in pixels.
    pub fn caption_font(&self) -> f64 {
        Self::font_for(self.thumb)
    }

    /// The height of one query's grid.
    pub fn grid_height(&self) -> u32 {
        self.pad + 3 * (self.thumb + self.caption + self.pad)
    }

    /// The figure's size for `queries` stacked grids.
    pub fn size(&self, queries: usize) -> (u32, u32) {
        let width = self.pad + 3 * (self.thumb + self.pad);
        (width, self.grid_height().saturating_mul(queries as u32))
    }

    /// The thumbnail square of `cell` (0 the query, 1..=8 its neighbours in reading order) in
    /// the grid of the `query`-th query: `(x, y, side, side)`.
    pub fn thumb_rect(&self, query: usize, cell: usize) -> (u32, u32, u32, u32) {
        let (row, col) = ((cell / 3) as u32, (cell % 3) as u32);
        let x = self.pad + col * (self.thumb + self.pad);
        let y = query as u32 * self.grid_height() + self.pad + row * (self.thumb + self.caption + self.pad);
        (x, y, self.thumb, self.thumb)
    }
}

/// Draws each query's 3x3 grid, stacked top to bottom; `image(row)` supplies the image of an
/// embedding row and `names` the captions' file names.
///
/// # Errors
/// No query, a query with more than [`NEIGHBORS`] neighbours, a thumbnail size outside
/// 8..=1024, a figure too large, or an error of `image`.
pub fn neighbors_figure(
    queries: &[Query],
    names: &[String],
    mut image: impl FnMut(usize) -> Result<RgbImage>,
    options: &NeighborsOptions,
) -> Result<RgbImage> {
    if queries.is_empty() {
        bail!("no query to draw");
    }
    if let Some(q) = queries.iter().find(|q| q.neighbors.len() > NEIGHBORS) {
        bail!("query {} has {} neighbours: a 3x3 grid shows {NEIGHBORS}", q.index, q.neighbors.len());
    }
    if !(8..=1024).contains(&options.thumb_size) {
        bail!("thumbnail size {}: use 8 to 1024 pixels", options.thumb_size);
    }
    let text = options.text && fonts::text_available();
    let layout = GridLayout::new(options.thumb_size, text);
    let (width, height) = layout.size(queries.len());
    check_size(width, height)?;
    let mut figure = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut captions = Vec::new();
    for (qi, query) in queries.iter().enumerate() {
        let cells =
            std::iter::once((query.index, None)).chain(query.neighbors.iter().map(|&(i, s)| (i, Some(s))));
        for (cell, (row, similarity)) in cells.enumerate() {
            let thumb = thumbnail(&image(row)?, layout.thumb);
            let (x, y, side, _) = layout.thumb_rect(qi, cell);
            let (dx, dy) = ((side - thumb.width()) / 2, (side - thumb.height()) / 2);
            image::imageops::replace(&mut figure, &thumb, i64::from(x + dx), i64::from(y + dy));
            let name = names.get(row).map_or("", String::as_str).to_owned();
            let first = match similarity {
                None => "query".to_owned(),
                Some(s) => format!("#{cell}  cosine {s:.3}"),
            };
            captions.push((x, y + side, first, name, similarity.is_none()));
        }
        let (x, y, side, _) = layout.thumb_rect(qi, 0);
        let border = layout.border();
        let frame = (
            i64::from(x) - i64::from(border),
            i64::from(y) - i64::from(border),
            side + 2 * border,
            side + 2 * border,
        );
        draw_frame(&mut figure, frame, border, QUERY_FRAME);
    }
    if text {
        let size = layout.caption_font();
        let width = i32::try_from(layout.thumb + layout.pad).unwrap_or(i32::MAX);
        super::draw_on(&mut figure, |root| {
            let style =
                TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
            let query_style = style.clone().color(&RGBColor(QUERY_FRAME[0], QUERY_FRAME[1], QUERY_FRAME[2]));
            let fits =
                |text: &str| root.estimate_text_size(text, &style).map_or(true, |(w, _)| w as i32 <= width);
            for (x, y, first, name, is_query) in &captions {
                let (x, y) = (*x as i32, (*y + layout.border()) as i32 + 2);
                let first_style = if *is_query { &query_style } else { &style };
                // `#1  cosine 0.873`, or `#1  0.873` where that does not fit.
                let first = if fits(first) { first.clone() } else { first.replace("  cosine", "") };
                root.draw_text(&first, first_style, (x, y)).map_err(drawing("a caption"))?;
                let mut max = name.chars().count();
                let mut shown = name.clone();
                while max > 4 && !fits(&shown) {
                    max -= 1;
                    shown = shorten(name, max);
                }
                root.draw_text(&shown, &style, (x, y + (1.2 * size) as i32)).map_err(drawing("a caption"))?;
            }
            Ok(())
        })?;
    }
    Ok(figure)
}

/// `text` cut to `max` characters with an ellipsis in the middle.
fn shorten(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        return text.to_owned();
    }
    let kept = max.saturating_sub(3).max(2);
    let head = kept / 2;
    let tail = kept - head;
    let (head, tail): (String, String) =
        (chars[..head].iter().collect(), chars[chars.len() - tail..].iter().collect());
    format!("{head}...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_are_ranked_by_cosine_similarity() -> Result<()> {
        // Row 0 is the query; rows at angles 10, 40, 70 degrees from it, and row 4 along it at
        // another length (cosine 1, as normalised).
        let angle = |d: f64| vec![d.to_radians().cos() as f32, d.to_radians().sin() as f32];
        let rows = [vec![1.0, 0.0], angle(70.0), angle(10.0), angle(40.0), vec![5.0, 0.0]];
        let names = (0..5).map(|i| i.to_string()).collect();
        let table =
            EmbeddingTable::from_rows(names, &rows, vec![None; 5]).ok_or_else(|| anyhow::anyhow!("rows"))?;
        let got = nearest_neighbors(&table, 0, 3)?;
        let order: Vec<usize> = got.iter().map(|p| p.0).collect();
        assert_eq!(order, [4, 2, 3]);
        assert!((got[0].1 - 1.0).abs() < 1e-6 && (got[1].1 - 10f32.to_radians().cos()).abs() < 1e-6);
        assert!(nearest_neighbors(&table, 5, 3).is_err());
        Ok(())
    }

    #[test]
    fn cells_tile_without_overlap() {
        let layout = GridLayout::new(40, true);
        let (w, h) = layout.size(2);
        let rects: Vec<_> =
            (0..2).flat_map(|q| (0..9).map(move |c| (q, c))).map(|(q, c)| layout.thumb_rect(q, c)).collect();
        for (i, a) in rects.iter().enumerate() {
            assert!(a.0 + a.2 <= w && a.1 + a.3 <= h, "{a:?} outside {w}x{h}");
            for b in &rects[i + 1..] {
                let apart = a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
        assert_eq!(layout.thumb_rect(0, 0).0, layout.thumb_rect(0, 3).0);
        assert!(layout.thumb_rect(1, 0).1 > layout.thumb_rect(0, 8).1);
    }

    #[test]
    fn long_captions_are_shortened_in_the_middle() {
        assert_eq!(shorten("abcdefghij", 20), "abcdefghij");
        assert_eq!(shorten("abcdefghij", 7), "ab...ij");
        assert_eq!(shorten("abcdefghij", 8), "ab...hij");
    }
}
