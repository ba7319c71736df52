//! A command of the benchmarks, run from the project root and shown as a shell line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::project_root;

/// A command to run from the project root, shown as a shell line.
pub struct Cmd {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Cmd {
    pub fn new(program: &Path) -> Cmd {
        Cmd { program: program.to_path_buf(), args: Vec::new(), env: Vec::new() }
    }

    pub fn arg(mut self, arg: String) -> Cmd {
        self.args.push(arg);
        self
    }

    pub fn args(mut self, args: impl IntoIterator<Item = String>) -> Cmd {
        self.args.extend(args);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Cmd {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs it (stderr passes through) and returns its stdout; fails when it fails.
    pub fn output(&self) -> Result<String> {
        eprintln!("$ {self}");
        let out = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(project_root())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("could not start `{self}`"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("`{self}` failed ({}); its output:\n{stdout}", out.status);
        }
        Ok(stdout)
    }
}

/// `word` as a shell word: as it is when plain, else single-quoted.
pub fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./=,:+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.env {
            write!(f, "{k}={} ", quote(v))?;
        }
        let root = project_root();
        let program = self.program.strip_prefix(&root).unwrap_or(&self.program);
        write!(f, "{}", quote(&program.display().to_string()))?;
        for arg in &self.args {
            let arg = Path::new(arg).strip_prefix(&root).map_or(arg.clone(), |p| p.display().to_string());
            write!(f, " {}", quote(&arg))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_print_as_shell_lines() {
        let root = project_root();
        let cmd = Cmd::new(&root.join("target/release/examples/bench_step"))
            .env("SIMSIAM_PYTHON", "")
            .env("RAYON_NUM_THREADS", "2")
            .args(["--model".into(), "a b".into(), root.join("tools/x.py").display().to_string()]);
        assert_eq!(
            cmd.to_string(),
            "SIMSIAM_PYTHON='' RAYON_NUM_THREADS=2 target/release/examples/bench_step --model 'a b' tools/x.py"
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
