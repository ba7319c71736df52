//! One fuzz target per parser or loader that reads a user's file. Each calls the real public
//! API with the input bytes (written to a file in a scratch folder where the API takes paths)
//! and asserts the promises that must hold whatever the bytes: no panic, an error names the
//! file, nothing changed or written where it must not be.

mod checkpoint;
mod cifar;
mod config;
mod embeddings;
mod folder;
mod metrics;
mod nccl_id;
mod tar_extract;

use std::path::Path;

/// What a target did with one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The parser accepted the input.
    Accepted,
    /// The parser refused it with an error (that named the file).
    Refused,
}

/// A fuzz target.
pub struct Target {
    /// Its name: the corpus folder and the `--target` argument.
    pub name: &'static str,
    /// The seeds, built by the real writers where there is one: `(file name, bytes)`. A name
    /// starting `ok-` must be accepted, `err-` refused (checked by the replay under
    /// `cargo test`).
    pub seeds: fn() -> Vec<(String, Vec<u8>)>,
    /// Runs the parser on the bytes in the (empty) scratch folder; panics when a promise is
    /// broken.
    pub run: fn(&Path, &[u8]) -> Outcome,
    /// Tokens the mutator inserts: keywords and delimiters of the format.
    pub tokens: &'static [&'static [u8]],
}

/// Every target, in the order they run.
pub fn all() -> Vec<Target> {
    vec![
        cifar::TARGET,
        folder::TARGET,
        config::TARGET,
        checkpoint::TARGET,
        tar_extract::TARGET,
        metrics::TARGET,
        embeddings::TARGET,
        nccl_id::TARGET,
    ]
}

/// `Refused` after checking that the error's message (with its causes) names `file`.
pub fn refused(error: &dyn std::fmt::Display, file: &Path) -> Outcome {
    let message = format!("{error:#}");
    let name = file.display().to_string();
    assert!(message.contains(&name), "the error does not name {name}: {message}");
    Outcome::Refused
}

/// Writes a seed through `write`, which saves into the given path, and returns its bytes.
pub fn written(write: impl FnOnce(&Path)) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary folder for a seed");
    let path = dir.path().join("seed");
    write(&path);
    std::fs::read(&path).expect("the seed just written")
}

/// Tokens every text format shares.
pub const TEXT_TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\"",
    b",",
    b"=",
    b"[",
    b"]",
    b"{",
    b"}",
    b":",
    b"-1",
    b"0",
    b"1e400",
    b"NaN",
    b"nan",
    b"inf",
    b"-inf",
    b"18446744073709551616",
    b"4294967296",
    b"\xff\xfe",
    b"\xc3\xa9",
    b"\0",
];
