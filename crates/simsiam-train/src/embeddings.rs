//! Embedding export: Lightly's `embeddings.csv` layout and safetensors.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use candle::{DType, Device, Tensor};

use crate::fs::atomic_write;
use crate::{Result, TrainError};

/// Writes `filenames,embedding_0,...,embedding_{d-1},labels`, one row per sample, as Lightly's
/// `save_embeddings`; a sample without a label gets 0, as Lightly's unlabelled datasets do.
///
/// # Shapes
/// - `embeddings`: `[n, d]`, with `n` names and `n` labels
pub fn write_embeddings_csv(
    path: &Path,
    names: &[String],
    embeddings: &Tensor,
    labels: &[Option<usize>],
) -> Result<()> {
    let rows = rows(names, embeddings, labels)?;
    let d = rows.first().map_or(0, Vec::len);
    let mut out = String::from("filenames");
    for j in 0..d {
        let _ = write!(out, ",embedding_{j}");
    }
    out.push_str(",labels\n");
    for ((name, row), label) in names.iter().zip(&rows).zip(labels) {
        if name.contains([',', '"', '\n']) {
            let _ = write!(out, "\"{}\"", name.replace('"', "\"\""));
        } else {
            out.push_str(name);
        }
        for v in row {
            let _ = write!(out, ",{v}");
        }
        let _ = writeln!(out, ",{}", label.unwrap_or(0));
    }
    atomic_write(path, out.as_bytes())
}

/// Writes `embeddings` (`[n, d]`, f32) and `labels` (`[n]`, i64, -1 where absent) to a
/// safetensors file, with the file names as a JSON list in the metadata under `filenames`.
pub fn write_embeddings_safetensors(
    path: &Path,
    names: &[String],
    embeddings: &Tensor,
    labels: &[Option<usize>],
) -> Result<()> {
    rows(names, embeddings, labels)?;
    let labels: Vec<i64> = labels.iter().map(|l| l.map_or(-1, |l| l as i64)).collect();
    let labels = Tensor::from_vec(labels, names.len(), &Device::Cpu)?;
    let embeddings = embeddings.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let json = serde_json::to_string(names).map_err(|e| TrainError::Config(e.to_string()))?;
    let metadata = HashMap::from([("filenames".to_owned(), json)]);
    let tensors = [("embeddings", &embeddings), ("labels", &labels)];
    let bytes = safetensors::serialize(tensors, Some(metadata))
        .map_err(|e| TrainError::Checkpoint { path: path.to_owned(), reason: e.to_string() })?;
    atomic_write(path, &bytes)
}

/// Embeddings, labels and file names read back from [`write_embeddings_safetensors`].
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// File names, in row order.
    pub names: Vec<String>,
    /// `[n, d]` f32.
    pub embeddings: Tensor,
    /// Labels, `None` where absent.
    pub labels: Vec<Option<usize>>,
}

/// Reads a file written by [`write_embeddings_safetensors`].
pub fn read_embeddings_safetensors(path: &Path) -> Result<Embeddings> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let bad = |reason: String| TrainError::Checkpoint { path: path.to_owned(), reason };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let names_json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("filenames"))
        .ok_or_else(|| bad("no file names".into()))?;
    let names: Vec<String> = serde_json::from_str(names_json).map_err(|e| bad(e.to_string()))?;
    let tensors = candle::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
    let embeddings = tensors.get("embeddings").ok_or_else(|| bad("no `embeddings` tensor".into()))?.clone();
    let labels = tensors.get("labels").ok_or_else(|| bad("no `labels` tensor".into()))?.to_vec1::<i64>()?;
    if embeddings.dim(0)? != names.len() || labels.len() != names.len() {
        return Err(bad("names, embeddings and labels disagree in length".into()));
    }
    let labels = labels.into_iter().map(|l| usize::try_from(l).ok()).collect();
    Ok(Embeddings { names, embeddings, labels })
}

fn rows(names: &[String], embeddings: &Tensor, labels: &[Option<usize>]) -> Result<Vec<Vec<f32>>> {
    let (n, _) = embeddings.dims2()?;
    if n != names.len() || n != labels.len() {
        return Err(TrainError::Config(format!(
            "{n} embeddings, {} names and {} labels: one of each per sample is needed",
            names.len(),
            labels.len()
        )));
    }
    Ok(embeddings.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_lightlys_layout() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let path = dir.path().join("embeddings.csv");
        let e = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.25]], &Device::Cpu)?;
        let names = vec!["a/1.png".to_owned(), "b,2.png".to_owned()];
        write_embeddings_csv(&path, &names, &e, &[Some(3), None])?;
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        assert_eq!(
            text,
            "filenames,embedding_0,embedding_1,labels\na/1.png,0.5,-1,3\n\"b,2.png\",2,0.25,0\n"
        );
        Ok(())
    }

    #[test]
    fn safetensors_round_trip() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let path = dir.path().join("embeddings.safetensors");
        let e = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.25]], &Device::Cpu)?;
        let names = vec!["x.png".to_owned(), "y.png".to_owned()];
        write_embeddings_safetensors(&path, &names, &e, &[Some(1), None])?;
        let back = read_embeddings_safetensors(&path)?;
        assert_eq!(back.names, names);
        assert_eq!(back.labels, [Some(1), None]);
        assert_eq!(back.embeddings.to_vec2::<f32>()?, e.to_vec2::<f32>()?);
        Ok(())
    }

    #[test]
    fn mismatched_lengths_are_errors() -> Result<()> {
        let e = Tensor::zeros((2, 3), DType::F32, &Device::Cpu)?;
        let err = write_embeddings_csv(Path::new("unused.csv"), &["a".into()], &e, &[None, None]);
        assert!(err.is_err());
        Ok(())
    }
}
