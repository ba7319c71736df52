//! `cargo xtask ci`: formatting, lints and the whole test suite, as CI runs them.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, project_root};

/// One check: `cargo` arguments and environment variables.
type Step = (&'static [&'static str], &'static [(&'static str, &'static str)]);

/// Runs each check in turn and stops at the first failure.
pub fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("`cargo xtask ci` takes no arguments, got `{arg}`");
    }
    // (arguments, environment): the last steps repeat the PyTorch golden steps with every 3x3
    // convolution that fits on the Winograd path, which the default takes on wide maps only
    // (the fixtures' maps are narrow), and every unit test and golden step with the kernels
    // held to their portable level (no AVX2 code), so each level this machine has is tested.
    let steps: [Step; 7] = [
        (&["fmt", "--all", "--check"], &[]),
        (&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[]),
        (&["test", "--workspace"], &[]),
        // `--workspace`, so the features resolve as in the step before and nothing rebuilds.
        (&["test", "--workspace", "--test", "golden_step"], &[("SIMSIAM_WINOGRAD", "1")]),
        (&["test", "--workspace", "--lib", "--test", "golden_step"], &[("SIMSIAM_ISA", "portable")]),
        // Videos in image folders (FFmpeg's programs at run time): the lints, simsiam-data's
        // own tests and the CLI's media test with the feature on.
        (
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                "simsiam/video",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
        (
            &[
                "test",
                "--workspace",
                "--features",
                "simsiam/video",
                "--lib",
                "--test",
                "media",
                "--test",
                "datasets",
            ],
            &[],
        ),
    ];
    for (step, envs) in steps {
        let shown: Vec<String> = envs.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        eprintln!("$ {}cargo {}", shown.concat(), step.join(" "));
        let status = Command::new(cargo())
            .args(step)
            .envs(envs.iter().copied())
            .current_dir(project_root())
            .status()
            .with_context(|| format!("could not start `cargo {}`", step.join(" ")))?;
        if !status.success() {
            bail!("`{}cargo {}` failed ({status})", shown.concat(), step.join(" "));
        }
    }
    Ok(())
}
