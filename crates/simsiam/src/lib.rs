//! SimSiam self-supervised pretraining in Rust.
//!
//! This crate is the facade over the `simsiam-*` crates and holds the `simsiam` command-line
//! tool. The commands arrive with the CLI issue.

pub use simsiam_train as train;
