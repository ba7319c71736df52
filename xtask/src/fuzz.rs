//! `cargo xtask fuzz`: the fuzz targets of `xtask/tests/fuzz/` on stable Rust.
//!
//! They are a test binary without the libtest harness, so `cargo test --workspace --test fuzz`
//! builds them with the workspace's features (the build `cargo test --workspace` already made,
//! nothing of candle rebuilt) and this binary stays small.

use anyhow::{Context, Result, bail};

use crate::{cargo_command, project_root};

pub const USAGE: &str = "\
  fuzz               every parser and loader that reads a user's file, mutated inputs from
                     xtask/fuzz-corpus/ [--seconds N (10, per target)] [--target NAME] [--seed S]
                     [--hang-ms MS (1000)] [--max-rss-mib MIB (2048)]; crashing inputs go to
                     target/fuzz/crashes/TARGET/, the table to target/fuzz/report.md
                     [--write-corpus: write the built-in seeds into xtask/fuzz-corpus/]
";

const VALUED: [&str; 5] = ["--seconds", "--target", "--seed", "--hang-ms", "--max-rss-mib"];

/// Builds the targets and runs them; fails when any target panicked, hung or ran out of memory.
pub fn run(args: &[String]) -> Result<()> {
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            flag if VALUED.contains(&flag) => {
                if args.get(i + 1).is_none() {
                    bail!("`{flag}` needs a value");
                }
                i += 2;
            }
            "--write-corpus" => i += 1,
            other => bail!("`cargo xtask fuzz` does not take `{other}`\n\n{USAGE}"),
        }
    }
    let mode = if args.iter().any(|a| a == "--write-corpus") { None } else { Some("--fuzz") };
    let status = cargo_command()
        .args(["test", "--workspace", "--test", "fuzz", "--"])
        .args(mode)
        .args(args)
        .current_dir(project_root())
        .status()
        .context("could not start `cargo test --workspace --test fuzz`")?;
    if !status.success() {
        bail!("fuzzing failed ({status})");
    }
    Ok(())
}
