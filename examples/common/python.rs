//! The Python a benchmark example compares against, chosen as `cargo xtask bench` chooses it
//! (`xtask/src/bench/python.rs`); included by the examples with `#[path]`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `--python`, else `$SIMSIAM_PYTHON` (empty: none), else the checkout's `.venv`, else
/// `python3` on `PATH`; the last two only when they can import torch and Lightly.
pub fn find_python(explicit: Option<&Path>) -> Option<PathBuf> {
    let from_env = std::env::var_os("SIMSIAM_PYTHON").map(PathBuf::from);
    if let Some(chosen) = explicit.map(Path::to_path_buf).or(from_env) {
        return (!chosen.as_os_str().is_empty()).then_some(chosen);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    venv.is_file().then_some(venv).into_iter().chain([PathBuf::from("python3")]).find(|p| has_lightly(p))
}

/// Whether `python` starts and imports torch and Lightly.
fn has_lightly(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import torch, lightly"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
