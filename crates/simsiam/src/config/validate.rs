//! The ranges of the run configuration that its types cannot express, checked in one place
//! before a run touches any file. Every message names the key as the config file writes it.

use anyhow::{Result, bail};
use simsiam_train::ScheduleStep;

use super::RunConfig;

/// Loader threads beyond this are a typo, not a machine (each holds a batch in flight).
pub const MAX_WORKERS: usize = 1024;
/// The largest side of a view: a 4096x4096 view of a batch is already gigabytes.
pub const MAX_INPUT_SIZE: u32 = 4096;

/// Refuses the first value out of range, naming its key.
pub fn validate(run: &RunConfig) -> Result<()> {
    let (d, a, m, t) = (&run.data, &run.augment, &run.model, &run.train);
    at_most("data.workers", d.workers, MAX_WORKERS)?;
    positive("augment.input_size", a.input_size as usize)?;
    at_most("augment.input_size", a.input_size as usize, MAX_INPUT_SIZE as usize)?;
    for (name, p) in [
        ("augment.cj_prob", a.cj_prob),
        ("augment.random_gray_scale", a.random_gray_scale),
        ("augment.gaussian_blur", a.gaussian_blur),
        ("augment.hf_prob", a.hf_prob),
        ("augment.vf_prob", a.vf_prob),
        ("augment.rr_prob", a.rr_prob),
    ] {
        probability(name, p)?;
    }
    for (name, value) in [
        ("augment.cj_strength", a.cj_strength),
        ("augment.cj_bright", a.cj_bright),
        ("augment.cj_contrast", a.cj_contrast),
        ("augment.cj_sat", a.cj_sat),
    ] {
        non_negative(name, value)?;
    }
    if !(a.cj_hue >= 0.0 && a.cj_hue * a.cj_strength <= 0.5) {
        bail!(
            "augment.cj_hue times augment.cj_strength must be in [0, 0.5] (a hue shift of at most half \
             the circle), got {} x {}",
            a.cj_hue,
            a.cj_strength
        );
    }
    if a.rr_degrees.iter().any(|d| !d.is_finite()) {
        bail!("augment.rr_degrees must hold finite angles, got {:?}", a.rr_degrees);
    }
    // The shape of `rr_degrees` ([], [d] or [min, max]) is checked where it is read.
    a.simsiam()?;
    if !(a.min_scale > 0.0 && a.min_scale <= 1.0) {
        bail!("augment.min_scale must be in (0, 1], got {}", a.min_scale);
    }
    for (name, value) in [
        ("model.width", m.width),
        ("model.proj_hidden_dim", m.proj_hidden_dim),
        ("model.proj_output_dim", m.proj_output_dim),
        ("model.proj_layers", m.proj_layers),
        ("model.pred_hidden_dim", m.pred_hidden_dim),
        ("train.epochs", t.epochs),
        ("train.batch_size", t.batch_size),
        ("train.log_every", t.log_every),
        ("train.checkpoint_every", t.checkpoint_every),
        ("train.keep_checkpoints", t.keep_checkpoints),
        ("train.knn_k", t.knn_k),
    ] {
        positive(name, value)?;
    }
    if t.warmup_epochs >= t.epochs {
        bail!("train.warmup_epochs ({}) must be below train.epochs ({})", t.warmup_epochs, t.epochs);
    }
    if !(t.base_lr > 0.0 && t.base_lr.is_finite()) {
        bail!("train.base_lr must be positive, got {}", t.base_lr);
    }
    if !(0.0..1.0).contains(&t.momentum) {
        bail!("train.momentum must be in [0, 1), got {}", t.momentum);
    }
    non_negative("train.weight_decay", t.weight_decay)?;
    if !(t.knn_t > 0.0 && t.knn_t.is_finite()) {
        bail!("train.knn_t (the kNN temperature) must be positive, got {}", t.knn_t);
    }
    non_negative("train.minutes", t.minutes)?;
    if t.schedule == ScheduleStep::Clock && (t.minutes == 0.0 || t.warmup_epochs > 0) {
        bail!(
            "train.schedule = \"clock\" spans the training-time budget: it needs train.minutes > 0 \
             (got {}) and no warmup, train.warmup_epochs = 0 (got {})",
            t.minutes,
            t.warmup_epochs
        );
    }
    if let Some(bad) = t.knn_at_minutes.iter().find(|m| !(**m >= 0.0 && m.is_finite())) {
        bail!("train.knn_at_minutes must hold minutes that are zero or positive, got {bad}");
    }
    if t.output_dir.as_os_str().is_empty() {
        bail!("train.output_dir must name a folder");
    }
    if t.output_dir.exists() && !t.output_dir.is_dir() {
        bail!("train.output_dir {} is not a folder", t.output_dir.display());
    }
    Ok(())
}

fn positive(name: &str, value: usize) -> Result<()> {
    if value == 0 {
        bail!("{name} must be positive, got 0");
    }
    Ok(())
}

fn at_most(name: &str, value: usize, max: usize) -> Result<()> {
    if value > max {
        bail!("{name} must be at most {max}, got {value}");
    }
    Ok(())
}

fn probability(name: &str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        bail!("{name} is a probability: it must be in [0, 1], got {p}");
    }
    Ok(())
}

fn non_negative(name: &str, value: f64) -> Result<()> {
    if !(value >= 0.0 && value.is_finite()) {
        bail!("{name} must be zero or positive, got {value}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each key's own bad value, refused with the key in the message (the binary's test,
    /// tests/validation.rs, also proves nothing is written).
    #[test]
    fn each_range_names_its_key() -> Result<()> {
        let base = RunConfig::preset("lightly-example")?;
        validate(&base)?;
        for (item, key) in [
            ("data.workers=5000", "data.workers"),
            ("augment.input_size=0", "augment.input_size"),
            ("augment.input_size=10000", "augment.input_size"),
            ("augment.cj_prob=1.5", "augment.cj_prob"),
            ("augment.random_gray_scale=-0.5", "augment.random_gray_scale"),
            ("augment.gaussian_blur=nan", "augment.gaussian_blur"),
            ("augment.hf_prob=2.0", "augment.hf_prob"),
            ("augment.vf_prob=-0.1", "augment.vf_prob"),
            ("augment.rr_prob=inf", "augment.rr_prob"),
            ("augment.cj_strength=-1.0", "augment.cj_strength"),
            ("augment.min_scale=0.0", "augment.min_scale"),
            ("augment.min_scale=1.5", "augment.min_scale"),
            ("model.width=0", "model.width"),
            ("model.proj_hidden_dim=0", "model.proj_hidden_dim"),
            ("model.proj_output_dim=0", "model.proj_output_dim"),
            ("model.proj_layers=0", "model.proj_layers"),
            ("model.pred_hidden_dim=0", "model.pred_hidden_dim"),
            ("train.epochs=0", "train.epochs"),
            ("train.batch_size=0", "train.batch_size"),
            ("train.log_every=0", "train.log_every"),
            ("train.checkpoint_every=0", "train.checkpoint_every"),
            ("train.keep_checkpoints=0", "train.keep_checkpoints"),
            ("train.knn_k=0", "train.knn_k"),
            ("train.knn_t=0.0", "train.knn_t"),
            ("train.knn_t=nan", "train.knn_t"),
            ("train.warmup_epochs=10", "train.warmup_epochs"),
            ("train.base_lr=0.0", "train.base_lr"),
            ("train.momentum=1.0", "train.momentum"),
            ("train.momentum=-0.1", "train.momentum"),
            ("train.weight_decay=-1.0", "train.weight_decay"),
            ("train.output_dir=\"\"", "train.output_dir"),
            ("train.minutes=-1.0", "train.minutes"),
            ("train.minutes=nan", "train.minutes"),
            ("train.knn_at_minutes=[15, -1]", "train.knn_at_minutes"),
            ("train.knn_at_minutes=[inf]", "train.knn_at_minutes"),
            ("train.schedule=clock", "train.schedule"),
        ] {
            let run = base.clone().with_overrides(&[item.to_owned()])?;
            let e = validate(&run).expect_err(item).to_string();
            assert!(e.starts_with(key), "{item}: {e}");
        }
        // A clock schedule spans the budget, from its first step.
        let clock = base.with_overrides(&["train.schedule=clock".into(), "train.minutes=5".into()])?;
        validate(&clock)?;
        let warm = clock.with_overrides(&["train.warmup_epochs=1".into()])?;
        assert!(validate(&warm).expect_err("warmup").to_string().starts_with("train.schedule"));
        Ok(())
    }
}
