//! The run folder contract of `simsiam pretrain`: what a run may find in its folder before it
//! writes there.
//!
//! - A new run (no `--resume`, or `--resume` with no checkpoint) starts only in a folder that
//!   does not exist or is empty: anything there (a finished run's weights, a hand-written
//!   config, a note) is the user's, and is named in the refusal. The one exception: `--resume`
//!   in a folder holding only what a run writes before its first checkpoint (config,
//!   metrics, an empty `checkpoints/`) starts that run again.
//! - A resumed run continues only from a checkpoint written with the same dataset, sample
//!   limit, batch size and seed; that is checked before anything is written.
//! - Every check (config, data, checkpoint) runs before the first byte is written; on resume
//!   `config.toml` is rewritten only when the config changed, and the earlier one is kept.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use simsiam_train::{Checkpointer, TrainState, atomic_write};

use crate::config::RunConfig;
use crate::run::OutputPaths;

/// The file through which `simsiam pretrain --gpus N` hands the NCCL id to its ranks: the
/// launcher's, not the user's.
const LAUNCHER_FILES: &[&str] = &["nccl-id", "nccl-id.tmp"];

/// At most this many names in a refusal.
const NAMES_SHOWN: usize = 8;

/// How a run starts in its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStart {
    /// A new run in a new or empty folder.
    Fresh,
    /// Continue from this checkpoint.
    Resume(PathBuf),
}

/// Where `simsiam pretrain` may start in `out`, resuming when `resume` is set; refuses a new
/// run in a folder that holds anything, naming what it holds.
pub fn check_run_folder(out: &OutputPaths, resume: bool) -> Result<RunStart> {
    if out.dir.exists() && !out.dir.is_dir() {
        bail!("train.output_dir {} is not a folder", out.dir.display());
    }
    let latest = latest_checkpoint(out)?;
    if let (true, Some(path)) = (resume, &latest) {
        return Ok(RunStart::Resume(path.clone()));
    }
    let held = entries(&out.dir)?;
    if held.is_empty() {
        return Ok(RunStart::Fresh);
    }
    // `--resume` in a run stopped before its first checkpoint (a second signal, a kill): only
    // the files the run itself writes are there, so it starts again (the earlier config is
    // kept if it differs, and the metrics are brought back to step 0).
    if resume && latest.is_none() && held.iter().all(|name| written_before_a_checkpoint(name)) {
        return Ok(RunStart::Fresh);
    }
    let names = name_list(&held);
    if latest.is_some() {
        bail!(
            "{} already holds a run with checkpoints ({names}): pass --resume to continue it, or \
             choose another train.output_dir",
            out.dir.display()
        );
    }
    let why = if resume { "--resume found no checkpoint there, and it" } else { "it" };
    bail!(
        "{} is not empty: {why} holds {names}; a new run starts only in a new or empty \
         train.output_dir, so that nothing there is overwritten",
        out.dir.display()
    )
}

/// The newest checkpoint of the run in `out`, without creating anything.
pub fn latest_checkpoint(out: &OutputPaths) -> Result<Option<PathBuf>> {
    if !out.checkpoints.is_dir() {
        return Ok(None);
    }
    Ok(Checkpointer::new(&out.checkpoints, 1)?.latest()?)
}

/// Whether `name` (as [`entries`] lists it) is a file a run writes before its first
/// checkpoint: its config, metrics, TensorBoard events, or the (empty) checkpoint folder.
fn written_before_a_checkpoint(name: &str) -> bool {
    matches!(name, "checkpoints/" | "config.toml" | "metrics.jsonl")
        || name.starts_with("events.out.tfevents.")
}

/// The names in `dir` (sorted), without the launcher's files; none when it does not exist.
fn entries(dir: &Path) -> Result<Vec<String>> {
    let list = match std::fs::read_dir(dir) {
        Ok(list) => list,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in list {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !LAUNCHER_FILES.contains(&name.as_str()) {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            names.push(if is_dir { format!("{name}/") } else { name });
        }
    }
    names.sort();
    Ok(names)
}

/// `a, b and 3 more`.
fn name_list(names: &[String]) -> String {
    let shown = names.iter().take(NAMES_SHOWN).cloned().collect::<Vec<_>>().join(", ");
    match names.len().saturating_sub(NAMES_SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Refuses to resume from `state` (the checkpoint at `path`) with a config whose data or batches
/// differ: the run would silently continue on another schedule or other samples.
pub fn check_resume(
    run: &RunConfig,
    path: &Path,
    state: &TrainState,
    batches_per_epoch: usize,
) -> Result<()> {
    let stored: Option<RunConfig> = serde_json::from_value(state.config.clone()).ok();
    if let Some(stored) = &stored {
        let pairs = [
            ("data.dataset", stored.data.dataset.to_string(), run.data.dataset.to_string()),
            ("data.limit", stored.data.limit.to_string(), run.data.limit.to_string()),
            ("train.batch_size", stored.train.batch_size.to_string(), run.train.batch_size.to_string()),
            ("train.seed", stored.train.seed.to_string(), run.train.seed.to_string()),
        ];
        for (key, then, now) in pairs {
            if then != now {
                bail!(
                    "cannot resume from {}: it was written with {key} = {then}, this run has {now}; \
                     resume with the same value, or start a new run in another train.output_dir",
                    path.display()
                );
            }
        }
    }
    if state.batches_per_epoch != 0 && state.batches_per_epoch != batches_per_epoch {
        bail!(
            "cannot resume from {}: it was written with {} batches per epoch, the data now gives \
             {batches_per_epoch}: resume with the same dataset, data.limit and train.batch_size",
            path.display(),
            state.batches_per_epoch
        );
    }
    Ok(())
}

/// Writes the run's `config.toml`: on a new run, the config; on a resume, the config only when
/// it differs from the one there, which is kept as `config.<n>.toml` (its comments too).
pub fn write_config(out: &OutputPaths, run: &RunConfig) -> Result<()> {
    let text = run.to_toml()?;
    if let Ok(existing) = std::fs::read_to_string(&out.config) {
        if RunConfig::from_file(&out.config).is_ok_and(|c| c == *run) || existing == text {
            return Ok(());
        }
        let kept = (1..)
            .map(|n| out.dir.join(format!("config.{n}.toml")))
            .find(|p| !p.exists())
            .context("no free name for the earlier config")?;
        std::fs::rename(&out.config, &kept)
            .with_context(|| format!("cannot keep the earlier config as {}", kept.display()))?;
    }
    atomic_write(&out.config, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_starts_again_a_run_stopped_before_its_first_checkpoint() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let out = OutputPaths::new(&tmp.path().join("run"));
        std::fs::create_dir_all(&out.checkpoints)?;
        std::fs::write(&out.config, "[train]\n")?;
        std::fs::write(&out.metrics, "{\"event\":\"step\"}\n")?;
        assert_eq!(check_run_folder(&out, true)?, RunStart::Fresh);
        assert!(check_run_folder(&out, false).is_err(), "without --resume the folder is not empty");
        std::fs::write(out.dir.join("model.safetensors"), b"weights")?;
        assert!(check_run_folder(&out, true).is_err(), "final weights are not an unfinished run's");
        Ok(())
    }

    #[test]
    fn a_new_run_needs_an_empty_folder() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let out = OutputPaths::new(&tmp.path().join("run"));
        assert_eq!(check_run_folder(&out, false)?, RunStart::Fresh, "absent");
        std::fs::create_dir_all(&out.dir)?;
        std::fs::write(out.dir.join("nccl-id"), b"id")?;
        assert_eq!(check_run_folder(&out, true)?, RunStart::Fresh, "empty but for the launcher's id");
        std::fs::write(&out.weights, b"w")?;
        std::fs::create_dir_all(out.dir.join("figures"))?;
        let e = check_run_folder(&out, false).expect_err("weights").to_string();
        assert!(e.contains("figures/, model.safetensors;") && !e.contains("nccl-id"), "{e}");
        Ok(())
    }

    #[test]
    fn long_lists_are_cut() {
        let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
        assert_eq!(name_list(&names), "f0, f1, f2, f3, f4, f5, f6, f7 and 2 more");
        assert_eq!(name_list(&names[..2]), "f0, f1");
    }

    #[test]
    fn a_changed_config_keeps_the_earlier_one() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let out = OutputPaths::new(tmp.path());
        let run = RunConfig::preset("lightly-example")?;
        let commented = format!("# mine\n{}", run.to_toml()?);
        std::fs::write(&out.config, &commented)?;
        write_config(&out, &run)?;
        assert_eq!(std::fs::read_to_string(&out.config)?, commented, "the same config, comments kept");
        let longer = run.clone().with_overrides(&["train.epochs=20".into()])?;
        write_config(&out, &longer)?;
        assert_eq!(RunConfig::from_file(&out.config)?, longer);
        assert_eq!(std::fs::read_to_string(tmp.path().join("config.1.toml"))?, commented);
        Ok(())
    }
}
