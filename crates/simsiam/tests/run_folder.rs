//! The run folder contract through the real binary: a new run never writes into a folder that
//! holds anything, a refused resume leaves the folder as it was, a finished run says so, and
//! no command writes its output over a file it reads or a file of another kind.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod common;
use common::{error_line, fake_cifar, simsiam, snapshot, stderr, strs, tiny_run_args};

/// A scratch folder of this test binary under cargo's target tmp dir (kept for a look after
/// a failure, emptied at the next run).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("run_folder").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The CIFAR-format data every run here trains on.
fn data() -> &'static Path {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| fake_cifar(&scratch("data"), 20))
}

/// `simsiam pretrain` of the tiny network on [`data`] into `out`, then `extra` overrides.
fn pretrain_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = tiny_run_args(&data().display().to_string(), &out.display().to_string());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// One finished run of one epoch, shared by the tests that only read it (or must leave it
/// as it was).
fn finished_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = scratch("finished").join("run");
        let run = simsiam(&strs(&pretrain_args(&out, &["--set", "train.epochs=1"])));
        assert!(run.status.success(), "the shared run failed: {}", stderr(&run));
        out
    })
}

fn newest_checkpoint(run: &Path) -> PathBuf {
    std::fs::read_dir(run.join("checkpoints"))
        .expect("checkpoints")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .expect("a checkpoint")
}

/// Issue 16, defect 1: a finished run whose checkpoints were deleted to save space, or a
/// folder holding a hand-written config, lost its files to a new run started there.
#[test]
fn a_new_run_refuses_a_folder_that_holds_anything() {
    let tmp = scratch("fresh");
    let out = tmp.join("run");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("config.toml"), "# my settings, with comments\n[train]\nepochs = 2\n")
        .expect("write");
    std::fs::write(out.join("model.safetensors"), b"the weights of a finished run").expect("write");
    std::fs::write(out.join("plot.png"), b"\x89PNG\r\n\x1a\nnot really").expect("write");
    std::fs::write(out.join("metrics.jsonl"), "{\"event\":\"epoch\"}\n").expect("write");
    let before = snapshot(&out);
    let line = error_line(&simsiam(&strs(&pretrain_args(&out, &[]))));
    for name in ["config.toml", "model.safetensors", "metrics.jsonl", "plot.png"] {
        assert!(line.contains(name), "the refusal does not name {name}: {line}");
    }
    assert_eq!(snapshot(&out), before, "a refused start changed the folder");
    assert!(!out.join("checkpoints").exists());

    // Anything at all: a single note is the user's, not ours to write next to.
    let other = tmp.join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("notes.txt"), "keep me").expect("write");
    let line = error_line(&simsiam(&strs(&pretrain_args(&other, &[]))));
    assert!(line.contains("notes.txt"), "{line}");
    assert_eq!(snapshot(&other).len(), 1, "a refused start wrote files");

    // --resume without a checkpoint is a new run, under the same rule.
    let line = error_line(&simsiam(&strs(&pretrain_args(&out, &["--resume"]))));
    assert!(line.contains("model.safetensors"), "{line}");
    assert_eq!(snapshot(&out), before, "a refused --resume changed the folder");
}

/// Issue 16, defect 2: a resume refused for another batch size or sample limit had already
/// rewritten config.toml, so the folder no longer matched its checkpoints.
#[test]
fn a_refused_resume_leaves_the_folder_as_it_was() {
    let run = finished_run();
    let before = snapshot(run);
    for (change, key) in [("train.batch_size=8", "batch_size"), ("data.limit=50", "limit")] {
        let args = pretrain_args(run, &["--resume", "--set", "train.epochs=2", "--set", change]);
        let line = error_line(&simsiam(&strs(&args)));
        assert!(line.contains(key), "{change}: the refusal does not name {key}: {line}");
        assert_eq!(snapshot(run), before, "{change}: a refused resume changed the run folder");
    }
}

/// Issue 16, defect 8: resuming a run that has done all its epochs printed
/// "done: ... loss NaN, collapse 1.000".
#[test]
fn resuming_a_finished_run_says_it_is_finished() {
    let run = finished_run();
    let before = snapshot(run);
    let out = simsiam(&strs(&pretrain_args(run, &["--resume", "--set", "train.epochs=1"])));
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("already finished"), "{log}");
    assert!(!log.contains("NaN"), "{log}");
    assert_eq!(snapshot(run), before, "resuming a finished run changed its folder");
}

/// Issue 16, defect 8: `embed --out` wrote over a checkpoint and `plot --out` over the metrics.
#[test]
fn outputs_never_overwrite_inputs_of_another_kind() {
    let run = finished_run();
    let checkpoint = newest_checkpoint(run);
    let ck = checkpoint.display().to_string();
    let user_csv = scratch("outputs").join("labels.csv");
    std::fs::write(&user_csv, "file,label\na.png,cat\n").expect("write");
    let before = snapshot(run);
    for out in [checkpoint.clone(), run.join("model.safetensors"), user_csv.clone()] {
        let line = error_line(&simsiam(&["embed", "--checkpoint", &ck, "--out", &out.display().to_string()]));
        let name = out.file_name().expect("name").to_string_lossy().into_owned();
        assert!(line.contains(&name), "the refusal does not name {name}: {line}");
    }
    assert_eq!(std::fs::read_to_string(&user_csv).expect("csv"), "file,label\na.png,cat\n");
    if cfg!(feature = "figures") {
        let metrics = run.join("metrics.jsonl").display().to_string();
        for out in [metrics.clone(), run.join("config.toml").display().to_string()] {
            let line = error_line(&simsiam(&["plot", "--metrics", &metrics, "--out", &out]));
            assert!(line.contains(&out), "{line}");
        }
    }
    assert_eq!(snapshot(run), before, "a refused output changed the run folder");
}

/// Issue 16, defect 8: error lines said the same thing two or three times ("x: No such file
/// or directory (os error 2): No such file or directory (os error 2)").
#[test]
fn error_lines_say_each_thing_once() {
    let tmp = scratch("errors");
    let missing = tmp.join("absent");
    let garbage = tmp.join("garbage.safetensors");
    std::fs::write(&garbage, b"garbage").expect("write");
    let (missing_s, garbage_s) = (missing.display().to_string(), garbage.display().to_string());
    let cases: Vec<Vec<String>> = vec![
        strs_owned(&["eval", "knn", "--checkpoint", &missing_s]),
        strs_owned(&["embed", "--checkpoint", &garbage_s, "--out", "x.csv"]),
        strs_owned(&["pretrain", "--config", &missing_s]),
        pretrain_args(&tmp.join("run1"), &["--set", &format!("data.path={missing_s}")]),
        pretrain_args(
            &tmp.join("run2"),
            &["--set", "data.dataset=folder", "--set", &format!("data.path={missing_s}")],
        ),
        strs_owned(&["plot", "--metrics", &missing_s, "--out", &tmp.join("p.png").display().to_string()]),
    ];
    for args in cases {
        let out = simsiam(&strs(&args));
        if out.status.success() {
            continue; // `plot` without the `figures` feature fails otherwise; nothing to check.
        }
        let line = error_line(&out);
        // The clauses of the line; none may repeat (or hold) another.
        let parts: Vec<&str> =
            line.trim_start_matches("error: ").split(": ").map(str::trim).filter(|p| p.len() >= 8).collect();
        for (i, part) in parts.iter().enumerate() {
            for later in &parts[i + 1..] {
                assert!(!later.contains(part) && !part.contains(later), "`{later}` is said twice in: {line}");
            }
        }
    }
}

fn strs_owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}
