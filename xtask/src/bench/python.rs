//! Finding a Python with torch (and torchvision, lightly) for the reference benchmarks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::project_root;

/// A Python with torch, and the versions of what it can import.
#[derive(Debug, Clone)]
pub struct Python {
    pub path: PathBuf,
    pub torch: String,
    pub torchvision: Option<String>,
    pub lightly: Option<String>,
}

impl Python {
    /// `torch 2.9.1, torchvision 0.24.1, lightly 1.6.0 (`/path/to/python`)`.
    pub fn describe(&self) -> String {
        format!(
            "torch {}, torchvision {}, lightly {} (`{}`)",
            self.torch,
            self.torchvision.as_deref().unwrap_or("missing"),
            self.lightly.as_deref().unwrap_or("missing"),
            self.path.display()
        )
    }
}

const PROBE: &str = "\
import importlib
for name in ('torch', 'torchvision', 'lightly'):
    try:
        print(name + '=' + importlib.import_module(name).__version__)
    except ImportError:
        if name == 'torch':
            raise
";

/// Imports torch (and, when present, torchvision and lightly) with `path`; why not on failure.
fn probe(path: &Path) -> Result<Python, String> {
    let out = Command::new(path)
        .args(["-c", PROBE])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not start it ({e})"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("no torch ({})", stderr.lines().last().unwrap_or("").trim()));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let version =
        |name: &str| stdout.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('=')).map(str::to_owned);
    Ok(Python {
        path: path.to_path_buf(),
        torch: version("torch").ok_or("printed no torch version")?,
        torchvision: version("torchvision"),
        lightly: version("lightly"),
    })
}

/// `--python`, else `$SIMSIAM_PYTHON`, else the checkout's `.venv`, else `python3`, if it has
/// torch; otherwise why each candidate failed.
pub fn find_python(explicit: Option<&Path>) -> Result<Python, String> {
    let candidates: Vec<(PathBuf, &str)> = match (explicit, std::env::var_os("SIMSIAM_PYTHON")) {
        (Some(p), _) => vec![(p.to_path_buf(), "--python")],
        (None, Some(p)) => vec![(PathBuf::from(p), "SIMSIAM_PYTHON")],
        (None, None) => {
            let venv = project_root().join(".venv/bin/python");
            let venv = venv.is_file().then_some((venv, ".venv"));
            venv.into_iter().chain([(PathBuf::from("python3"), "PATH")]).collect()
        }
    };
    let mut reasons = Vec::new();
    for (path, source) in candidates {
        match probe(&path) {
            Ok(python) => return Ok(python),
            Err(why) => reasons.push(format!("`{}` (from {source}): {why}", path.display())),
        }
    }
    Err(reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_python_says_why() {
        let why = find_python(Some(Path::new("/nonexistent/python"))).expect_err("no such python");
        assert!(why.contains("/nonexistent/python") && why.contains("could not start"), "{why}");
    }
}
