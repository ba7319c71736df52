//! Outputs never overwrite inputs: a command writes its file only where nothing is, or where a
//! file of the same kind is (an earlier figure, earlier embeddings), and never over a file it
//! reads. A checkpoint, the metrics, a config, a dataset file or a user's own CSV is refused,
//! named.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// What a command writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// A PNG figure.
    Png,
    /// Embeddings as Lightly's CSV (`filenames,embedding_0,...`).
    EmbeddingsCsv,
    /// Embeddings as safetensors (`simsiam embed`).
    EmbeddingsSafetensors,
}

impl OutputKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Png => "a PNG image",
            Self::EmbeddingsCsv => "an embeddings CSV from `simsiam embed`",
            Self::EmbeddingsSafetensors => "an embeddings file from `simsiam embed`",
        }
    }

    /// Whether the file at `path` is one of this kind, by its first bytes.
    fn recognises(self, path: &Path) -> Result<bool> {
        let mut head = Vec::with_capacity(64);
        std::fs::File::open(path)
            .and_then(|f| f.take(64).read_to_end(&mut head))
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(match self {
            Self::Png => head.starts_with(b"\x89PNG\r\n\x1a\n"),
            Self::EmbeddingsCsv => head.starts_with(b"filenames,embedding_0,"),
            Self::EmbeddingsSafetensors => simsiam_train::read_embeddings_safetensors(path).is_ok(),
        })
    }
}

/// Refuses to write `out` over one of `inputs`, over a folder, or over a file that is not of
/// `kind`. Call it before the first write: `embed` calls it before any work, the figures once
/// their inputs are read (so an input's error is reported first).
pub fn check_output(out: &Path, kind: OutputKind, inputs: &[&Path]) -> Result<()> {
    for input in inputs {
        if same_file(out, input) {
            bail!("{}: refusing to write the output over a file this command reads", out.display());
        }
    }
    match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot look at {}", out.display())),
        Ok(meta) if meta.is_dir() => bail!("{}: is a folder, not a file to write", out.display()),
        Ok(_) if kind.recognises(out)? => Ok(()),
        Ok(_) => bail!(
            "{}: refusing to overwrite a file that is not {} (choose another --out, or remove it first)",
            out.display(),
            kind.describe()
        ),
    }
}

/// Whether `a` and `b` name the same existing file (through links and `..` too).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absent_files_and_files_of_the_same_kind_are_written() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let (png, csv, metrics) =
            (tmp.path().join("a.png"), tmp.path().join("e.csv"), tmp.path().join("metrics.jsonl"));
        check_output(&png, OutputKind::Png, &[])?;
        std::fs::write(&png, b"\x89PNG\r\n\x1a\nrest")?;
        check_output(&png, OutputKind::Png, &[])?;
        std::fs::write(&metrics, "{}\n")?;
        let e = check_output(&metrics, OutputKind::Png, &[]).expect_err("metrics").to_string();
        assert!(e.contains("metrics.jsonl") && e.contains("not a PNG"), "{e}");
        let e = check_output(&png, OutputKind::Png, &[&png]).expect_err("own input").to_string();
        assert!(e.contains("reads"), "{e}");
        std::fs::write(&csv, "filenames,embedding_0,labels\n")?;
        check_output(&csv, OutputKind::EmbeddingsCsv, &[])?;
        std::fs::write(&csv, "name,label\n")?;
        assert!(check_output(&csv, OutputKind::EmbeddingsCsv, &[]).is_err());
        assert!(check_output(tmp.path(), OutputKind::Png, &[]).is_err(), "a folder");
        Ok(())
    }
}
