//! Embeddings read back from `simsiam embed`: Lightly's `embeddings.csv` layout
//! (`filenames,embedding_0,...,embedding_{d-1},labels`) or the safetensors file.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::RgbImage;
use simsiam_data::Dataset;

/// `n` embeddings of dimension `dim`, row-major, with their file names and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingTable {
    /// File names (dataset sample names), in row order.
    pub names: Vec<String>,
    /// The dimension of each embedding.
    pub dim: usize,
    /// `n * dim` values, row `i` at `i * dim..(i + 1) * dim`.
    pub values: Vec<f32>,
    /// Labels; a CSV's unlabelled rows read back as label 0, as Lightly writes them.
    pub labels: Vec<Option<usize>>,
}

impl EmbeddingTable {
    /// A table from rows; `None` unless every row has the same positive length, one per name.
    pub fn from_rows(names: Vec<String>, rows: &[Vec<f32>], labels: Vec<Option<usize>>) -> Option<Self> {
        let dim = rows.first()?.len();
        if dim == 0 || rows.len() != names.len() || labels.len() != names.len() {
            return None;
        }
        if rows.iter().any(|r| r.len() != dim) {
            return None;
        }
        Some(Self { names, dim, values: rows.concat(), labels })
    }

    /// The number of embeddings.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// `true` without embeddings.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Embedding `i`, `None` past the end.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        self.values.get(i * self.dim..(i + 1) * self.dim)
    }

    /// The embeddings in row order.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f32> {
        self.values.chunks_exact(self.dim.max(1))
    }

    /// The row of the file `name`, if any.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// The images of embedding rows, from the dataset the embeddings were computed on: row `i`
/// is sample `i` of the dataset, as `simsiam embed` writes them, and must carry its name.
pub struct EmbeddedImages<'a> {
    table: &'a EmbeddingTable,
    dataset: &'a dyn Dataset,
    source: &'a Path,
}

impl<'a> EmbeddedImages<'a> {
    /// Pairs `table` (read from `source`, named in errors) with `dataset`.
    ///
    /// # Errors
    /// When the two differ in length.
    pub fn new(table: &'a EmbeddingTable, dataset: &'a dyn Dataset, source: &'a Path) -> Result<Self> {
        if table.len() != dataset.len() {
            bail!(
                "{}: {} embeddings, but the dataset has {} images: give the dataset (and data.limit) `simsiam embed` ran on",
                source.display(),
                table.len(),
                dataset.len()
            );
        }
        Ok(Self { table, dataset, source })
    }

    /// The image of row `row`.
    ///
    /// # Errors
    /// When it cannot be read, or the dataset's sample has another name than the row.
    pub fn image(&self, row: usize) -> Result<RgbImage> {
        let sample =
            self.dataset.get(row).with_context(|| format!("cannot read image {row} of the dataset"))?;
        let expected = self.table.names.get(row).map_or("", String::as_str);
        if sample.name != expected {
            bail!(
                "{}: row {row} is `{expected}` but image {row} of the dataset is `{}`: the embeddings are of another dataset",
                self.source.display(),
                sample.name
            );
        }
        Ok(sample.image)
    }
}

/// Reads `path`: `.csv` as Lightly's layout, `.safetensors` as `simsiam embed` writes it.
///
/// # Errors
/// An unreadable file, another extension, a malformed line (named with its number), a value
/// that is not a finite number, or no embeddings at all; every message names the file.
pub fn read_embeddings(path: &Path) -> Result<EmbeddingTable> {
    let table = match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the embeddings {}", path.display()))?;
            parse_csv(&text).with_context(|| format!("{}: not an embeddings CSV", path.display()))?
        }
        Some("safetensors") => {
            let e = simsiam_train::read_embeddings_safetensors(path)
                .with_context(|| format!("cannot read the embeddings {}", path.display()))?;
            let (n, dim) = e
                .embeddings
                .dims2()
                .with_context(|| format!("{}: the `embeddings` tensor is not a matrix", path.display()))?;
            let values = e
                .embeddings
                .to_dtype(candle::DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .with_context(|| format!("{}: cannot read the `embeddings` tensor", path.display()))?;
            if n == 0 || dim == 0 {
                bail!("{}: holds no embeddings", path.display());
            }
            if let Some(i) = (0..n).find(|&i| values[i * dim..(i + 1) * dim].iter().any(|v| !v.is_finite())) {
                bail!("{}: embedding {i} ({}) is not finite", path.display(), e.names[i]);
            }
            EmbeddingTable { names: e.names, dim, values, labels: e.labels }
        }
        _ => bail!("{}: embeddings must be a .csv or .safetensors file", path.display()),
    };
    Ok(table)
}

/// Parses Lightly's CSV layout; errors name the line.
pub fn parse_csv(text: &str) -> Result<EmbeddingTable> {
    let mut records = csv_records(text)?.into_iter();
    let (_, header) = records.next().context("empty file: no header line")?;
    let d = header.len().saturating_sub(2);
    let layout_ok = header.len() >= 3
        && header[0] == "filenames"
        && header[header.len() - 1] == "labels"
        && header[1..=d].iter().enumerate().all(|(j, h)| *h == format!("embedding_{j}"));
    if !layout_ok {
        bail!("line 1: the header is not `filenames,embedding_0,...,embedding_<d-1>,labels`");
    }
    let (mut names, mut values, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for (line, fields) in records {
        if fields.len() != d + 2 {
            bail!("line {line}: {} fields, the header has {}", fields.len(), d + 2);
        }
        for (j, field) in fields[1..=d].iter().enumerate() {
            let v: f32 =
                field.trim().parse().ok().filter(|v: &f32| v.is_finite()).with_context(|| {
                    format!("line {line}: embedding_{j} is `{field}`, not a finite number")
                })?;
            values.push(v);
        }
        let label = fields[d + 1].trim();
        let label = label
            .parse::<usize>()
            .with_context(|| format!("line {line}: the label `{label}` is not a class index"))?;
        names.push(fields[0].clone());
        labels.push(Some(label));
    }
    if names.is_empty() {
        bail!("no embeddings after the header");
    }
    Ok(EmbeddingTable { names, dim: d, values, labels })
}

/// The records of a CSV text with their first line numbers (1-based); quoted fields may hold
/// commas, doubled quotes and newlines. Blank lines are skipped.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let mut out = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    let (mut line, mut start_line) = (1, 1);
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() && !was_quoted => (quoted, was_quoted) = (true, true),
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '\n') => {
                if field.ends_with('\r') && !was_quoted {
                    field.pop();
                }
                fields.push(std::mem::take(&mut field));
                if !(fields.len() == 1 && fields[0].is_empty() && !was_quoted) {
                    out.push((start_line, std::mem::take(&mut fields)));
                }
                fields.clear();
                was_quoted = false;
                line += 1;
                start_line = line;
            }
            (false, '\r') if was_quoted && chars.peek() == Some(&'\n') => {}
            (false, c) => {
                if was_quoted {
                    bail!("line {line}: text after a closing quote");
                }
                field.push(c);
            }
        }
    }
    if quoted {
        bail!("line {start_line}: a quote is never closed");
    }
    if !field.is_empty() || !fields.is_empty() || was_quoted {
        fields.push(field);
        out.push((start_line, fields));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lightly_csv_parses_with_quoted_names() -> Result<()> {
        let text =
            "filenames,embedding_0,embedding_1,labels\na/1.png,0.5,-1,3\n\"b,2\"\"x\n.png\",2,0.25,0\n";
        let t = parse_csv(text)?;
        assert_eq!(t.names, ["a/1.png", "b,2\"x\n.png"]);
        assert_eq!((t.dim, t.values.as_slice()), (2, &[0.5, -1.0, 2.0, 0.25][..]));
        assert_eq!(t.labels, [Some(3), Some(0)]);
        assert_eq!(t.row(1), Some(&[2.0, 0.25][..]));
        assert_eq!(t.row(2), None);
        assert_eq!(t.rows().count(), 2);
        assert_eq!(t.index_of("a/1.png"), Some(0));
        let crlf = parse_csv("filenames,embedding_0,labels\r\nx,1,2\r\n")?;
        assert_eq!((crlf.names[0].as_str(), crlf.labels[0]), ("x", Some(2)));
        Ok(())
    }

    #[test]
    fn malformed_csv_names_the_line() {
        let cases = [
            ("", "no header"),
            ("name,embedding_0,labels\n", "line 1"),
            ("filenames,embedding_0,labels\n", "no embeddings"),
            ("filenames,embedding_0,labels\na,1,0\nb,1\n", "line 3: 2 fields"),
            ("filenames,embedding_0,labels\na,1,0\n\nb,x,0\n", "line 4: embedding_0 is `x`"),
            ("filenames,embedding_0,labels\na,NaN,0\n", "line 2"),
            ("filenames,embedding_0,labels\na,1,-1\n", "line 2: the label"),
            ("filenames,embedding_0,labels\n\"a,1,0\n", "never closed"),
        ];
        for (text, expected) in cases {
            let message = match parse_csv(text) {
                Ok(_) => panic!("`{text}` parsed"),
                Err(e) => format!("{e:#}"),
            };
            assert!(message.contains(expected), "`{text}`: expected `{expected}` in `{message}`");
        }
    }

    #[test]
    fn rows_must_agree() {
        assert!(EmbeddingTable::from_rows(vec!["a".into()], &[vec![1.0, 2.0]], vec![None]).is_some());
        assert!(EmbeddingTable::from_rows(vec!["a".into()], &[vec![]], vec![None]).is_none());
        let two = [vec![1.0, 2.0], vec![1.0]];
        assert!(EmbeddingTable::from_rows(vec!["a".into(), "b".into()], &two, vec![None, None]).is_none());
    }
}
