//! `cargo xtask ci`: formatting, lints and the whole test suite, as CI runs them.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo_command, project_root};

/// One check: `cargo` arguments and environment variables.
type Step = (&'static [&'static str], &'static [(&'static str, &'static str)]);

/// The tests repeated with the kernels held to each lower ISA level: every unit test, the
/// golden steps and the recipe-shape comparisons with candle's ops.
const PER_ISA_TESTS: &[&str] = &[
    "test",
    "--workspace",
    "--lib",
    "--test",
    "golden_step",
    "--test",
    "fast_path_recipe",
    "--test",
    "taped_backward",
];

/// Runs each check in turn and stops at the first failure.
pub fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("`cargo xtask ci` takes no arguments, got `{arg}`");
    }
    // (arguments, environment): the last steps repeat the PyTorch golden steps and the
    // recipe-shape comparisons with candle's ops with every 3x3 convolution that fits on the
    // Winograd path, which the default takes on wide maps only (the fixtures' maps are narrow),
    // and every unit test, golden step and recipe-shape comparison with the kernels
    // held to each lower level (`avx2`, then `portable`: no vector code of ours), so each
    // level this machine has is tested (a level above the CPU's runs as the CPU's). The last
    // step fuzzes every parser that reads a user's file for 3 s each (docs/reliability.md).
    let steps: [Step; 9] = [
        (&["fmt", "--all", "--check"], &[]),
        (&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[]),
        (&["test", "--workspace"], &[]),
        // `--workspace`, so the features resolve as in the step before and nothing rebuilds.
        (
            &["test", "--workspace", "--test", "golden_step", "--test", "fast_path_recipe"],
            &[("SIMSIAM_WINOGRAD", "1")],
        ),
        (PER_ISA_TESTS, &[("SIMSIAM_ISA", "avx2")]),
        (PER_ISA_TESTS, &[("SIMSIAM_ISA", "portable")]),
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
        (&["xtask", "fuzz", "--seconds", "3"], &[]),
    ];
    let cross = aarch64_check();
    let cross = cross.as_deref().map(|step| (step, &[][..]));
    for (step, envs) in steps.iter().copied().chain(cross) {
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

/// The 64-bit ARM target the kernels must keep compiling for (Graviton, Apple silicon under
/// Linux): the crates without C dependencies are checked for it, so no x86-only code escapes
/// its `cfg(target_arch)` guards.
const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// The aarch64 check this machine can run, as `cargo` arguments: none without the target's
/// standard library; the libraries only without a C cross compiler, because the tests' and
/// benches' criterion builds C (its `alloca` dependency) for the target; otherwise every target.
fn aarch64_check() -> Option<Vec<&'static str>> {
    if !aarch64_installed() {
        eprintln!("skipped: the {AARCH64} standard library is not installed (`rustup target add {AARCH64}`)");
        return None;
    }
    let scope = if cross_c_compiler() {
        "--all-targets"
    } else {
        eprintln!(
            "the {AARCH64} check covers the libraries only: their tests and benches need a C cross \
             compiler for criterion (aarch64-linux-gnu-gcc, Debian's gcc-aarch64-linux-gnu)"
        );
        "--lib"
    };
    let mut args = vec!["check", "--target", AARCH64, scope];
    for krate in ["simsiam-kernels", "simsiam-models", "simsiam-loss", "simsiam-augment"] {
        args.extend(["-p", krate]);
    }
    Some(args)
}

/// Whether rustup has the aarch64 standard library (`.ci/run` tries to add it).
fn aarch64_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == AARCH64))
}

/// Whether the C compiler the `cc` crate looks for when building for [`AARCH64`] runs here
/// (`.ci/run` tries to install it), or one is named the way `cc` reads it.
fn cross_c_compiler() -> bool {
    std::env::var_os("CC_aarch64_unknown_linux_gnu").is_some()
        || Command::new("aarch64-linux-gnu-gcc").arg("--version").output().is_ok_and(|o| o.status.success())
}
