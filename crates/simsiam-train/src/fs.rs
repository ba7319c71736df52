//! Crash-safe file writes.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Result, TrainError};

/// Writes `bytes` to `path` so that `path` holds either its old content or all of the new:
/// a temporary sibling is written and fsynced, renamed over `path`, and the directory fsynced.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary_sibling(path);
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        TrainError::io(path, e)
    })
}

/// `dir/.name.tmp`: hidden, in the same directory so that the rename is atomic.
pub fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Makes a rename inside `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tempdir", e))?;
        let path = dir.path().join("a.json");
        atomic_write(&path, b"one")?;
        atomic_write(&path, b"two")?;
        assert_eq!(fs::read(&path).map_err(|e| TrainError::io(&path, e))?, b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).map_err(|e| TrainError::io("dir", e))?.collect();
        assert_eq!(names.len(), 1);
        Ok(())
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let err = atomic_write(Path::new("/nonexistent-dir-simsiam/x.bin"), b"x").expect_err("must fail");
        assert!(err.to_string().contains("/nonexistent-dir-simsiam/x.bin"), "{err}");
    }
}
