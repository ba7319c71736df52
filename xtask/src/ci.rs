//! `cargo xtask ci`: formatting, lints and the whole test suite, as CI runs them.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, project_root};

/// Runs each check in turn and stops at the first failure.
pub fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("`cargo xtask ci` takes no arguments, got `{arg}`");
    }
    let steps: [&[&str]; 3] = [
        &["fmt", "--all", "--check"],
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
        &["test", "--workspace"],
    ];
    for step in steps {
        eprintln!("$ cargo {}", step.join(" "));
        let status = Command::new(cargo())
            .args(step)
            .current_dir(project_root())
            .status()
            .with_context(|| format!("could not start `cargo {}`", step.join(" ")))?;
        if !status.success() {
            bail!("`cargo {}` failed ({status})", step.join(" "));
        }
    }
    Ok(())
}
