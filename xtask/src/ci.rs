//! `cargo xtask ci`: formatting, lints and the whole test suite, as CI runs them.

use anyhow::{Context, Result, bail};

use crate::{cargo_command, project_root};

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
    // The last step fuzzes every parser that reads a user's file for 3 s each (docs/reliability.md).
    let steps: [Step; 6] = [
        (&["fmt", "--all", "--check"], &[]),
        (&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[]),
        (&["test", "--workspace"], &[]),
        // `--workspace`, so the features resolve as in the step before and nothing rebuilds.
        (&["test", "--workspace", "--test", "golden_step"], &[("SIMSIAM_WINOGRAD", "1")]),
        (&["test", "--workspace", "--lib", "--test", "golden_step"], &[("SIMSIAM_ISA", "portable")]),
        (&["xtask", "fuzz", "--seconds", "3"], &[]),
    ];
    for (step, envs) in steps {
        let shown: Vec<String> = envs.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        eprintln!("$ {}cargo {}", shown.concat(), step.join(" "));
        let status = cargo_command()
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
