//! Running the `simsiam` binary from the integration tests.

#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the binary under test with `args`.
pub fn simsiam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simsiam")).args(args).output().expect("run simsiam")
}

/// The process's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the binary, asserts success and returns its stdout.
pub fn succeed(args: &[&str]) -> String {
    let out = simsiam(args);
    assert!(out.status.success(), "simsiam {args:?} failed: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The last line of stderr, which must be the one error line.
pub fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure, got success: {}", stderr(out));
    let text = stderr(out);
    let line = text.lines().last().unwrap_or("").to_owned();
    assert!(line.starts_with("error: "), "the last line is not the error: {text}");
    line
}
