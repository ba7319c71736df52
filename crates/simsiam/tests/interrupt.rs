//! `simsiam pretrain` stopped by a signal, or resumed past a damaged checkpoint, ends with the
//! weights and metrics of an uninterrupted run: the real binary on tiny CIFAR-format data.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mod common;
use common::{fake_cifar, simsiam, stderr};

/// Epochs of every run here: enough steps after the first epoch that a signal sent then lands
/// well before the end.
const EPOCHS: usize = 6;

/// `pretrain` of a narrow ResNet on `data` into `out`: 200 images, 12 steps per epoch, every
/// step logged, kNN after the last epoch only.
fn pretrain_args(data: &Path, out: &Path) -> Vec<String> {
    let sets = [
        format!("data.path={}", data.display()),
        format!("train.output_dir={}", out.display()),
        "model.width=4".into(),
        "model.proj_hidden_dim=32".into(),
        "model.proj_output_dim=16".into(),
        "model.pred_hidden_dim=8".into(),
        "train.batch_size=16".into(),
        format!("train.epochs={EPOCHS}"),
        "train.log_every=1".into(),
        "train.knn_every=0".into(),
        "train.knn_k=5".into(),
    ];
    let mut args = vec!["pretrain".to_owned()];
    for set in sets {
        args.extend(["--set".to_owned(), set]);
    }
    args
}

fn run_ok(args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = simsiam(&args);
    assert!(out.status.success(), "simsiam {args:?} failed: {}", stderr(&out));
    stderr(&out)
}

/// The final weights' bytes and the metrics' (event, epoch, step) of an uninterrupted run,
/// computed once for the tests of this file.
struct Straight {
    weights: Vec<u8>,
    events: Vec<(String, u64, u64)>,
}

fn straight() -> &'static Straight {
    static STRAIGHT: OnceLock<Straight> = OnceLock::new();
    STRAIGHT.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("run");
        run_ok(&pretrain_args(&fake_cifar(&tmp.path().join("data"), 40), &out));
        Straight {
            weights: std::fs::read(out.join("model.safetensors")).expect("weights"),
            events: event_keys(&out.join("metrics.jsonl")),
        }
    })
}

/// Each metrics line's event, epoch and step; every line must be a whole record.
fn event_keys(path: &Path) -> Vec<(String, u64, u64)> {
    let text = std::fs::read_to_string(path).expect("metrics");
    let key = |line: &str| -> Option<(String, u64, u64)> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        Some((v["event"].as_str()?.to_owned(), v["epoch"].as_u64()?, v["step"].as_u64()?))
    };
    text.lines().map(|l| key(l).unwrap_or_else(|| panic!("not a whole record: {l}"))).collect()
}

/// Starts `args`, waits until `metrics.jsonl` holds `marker` (a step or an epoch has been
/// trained), sends `signals` one right after the other and waits for the exit; returns the
/// exit code and stderr.
fn interrupt(args: &[String], out: &Path, marker: &str, signals: &[Signal]) -> (Option<i32>, String) {
    std::fs::create_dir_all(out).expect("mkdir");
    let log_path = out.with_extension("log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_simsiam"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start simsiam");
    let deadline = Instant::now() + Duration::from_secs(300);
    let metrics = out.join("metrics.jsonl");
    while !std::fs::read_to_string(&metrics).is_ok_and(|m| m.contains(marker)) {
        if let Some(status) = child.try_wait().expect("poll simsiam") {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("simsiam ended ({status}) before `{marker}` was in the metrics: {log}");
        }
        assert!(Instant::now() < deadline, "no `{marker}` in the metrics after 300 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    for &signal in signals {
        // A later signal may find the process gone, having stopped on the earlier ones.
        let _ = kill(Pid::from_raw(child.id() as i32), signal);
    }
    let status = child.wait().expect("wait for simsiam");
    (status.code(), std::fs::read_to_string(&log_path).expect("log"))
}

fn checkpoints(out: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(out.join("checkpoints"))
        .expect("checkpoints")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    found.sort();
    found
}

#[test]
fn sigterm_saves_a_checkpoint_exits_143_and_the_resumed_run_equals_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = fake_cifar(&tmp.path().join("data"), 40);
    let out = tmp.path().join("run");
    let args = pretrain_args(&data, &out);

    let (code, log) = interrupt(&args, &out, r#""event":"step""#, &[Signal::SIGTERM]);
    assert_eq!(code, Some(143), "SIGTERM must exit 128 + 15: {log}");
    assert!(log.contains("stopped by SIGTERM") && log.contains("--resume"), "{log}");
    let newest = checkpoints(&out).pop().expect("the interruption's checkpoint");
    let state = simsiam_train::read_train_state(&newest).expect("a checkpoint that verifies");
    assert!(state.step >= 1 && state.step < EPOCHS * 12, "stopped at step {}", state.step);
    assert!(!out.join("model.safetensors").exists(), "an interrupted run wrote final weights");

    let mut resume = args.clone();
    resume.push("--resume".into());
    let log = run_ok(&resume);
    assert!(log.contains(&format!("resuming at epoch {}, step {}", state.epoch, state.step)), "{log}");
    let straight = straight();
    assert!(
        std::fs::read(out.join("model.safetensors")).expect("weights") == straight.weights,
        "the run stopped by SIGTERM and resumed differs from an uninterrupted one"
    );
    assert_eq!(event_keys(&out.join("metrics.jsonl")), straight.events);
}

#[test]
fn a_second_signal_exits_at_once_and_leaves_every_checkpoint_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = fake_cifar(&tmp.path().join("data"), 40);
    let out = tmp.path().join("run");
    let args = pretrain_args(&data, &out);

    // SIGTERM, then SIGHUP at once, maybe while the first one's checkpoint is being written.
    let (code, log) = interrupt(&args, &out, r#""event":"step""#, &[Signal::SIGTERM, Signal::SIGHUP]);
    assert!(code == Some(129) || code == Some(143), "exit {code:?}: {log}");
    for checkpoint in checkpoints(&out) {
        if let Err(e) = simsiam_train::read_train_state(&checkpoint) {
            panic!("a checkpoint left by the second signal does not verify: {e}");
        }
    }
    let mut resume = args.clone();
    resume.push("--resume".into());
    run_ok(&resume);
    assert!(
        std::fs::read(out.join("model.safetensors")).expect("weights") == straight().weights,
        "the run stopped by two signals and resumed differs from an uninterrupted one"
    );
    assert_eq!(event_keys(&out.join("metrics.jsonl")), straight().events);
}

#[test]
fn a_damaged_newest_checkpoint_is_named_skipped_and_the_run_ends_as_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = fake_cifar(&tmp.path().join("data"), 40);
    let out = tmp.path().join("run");
    let args = pretrain_args(&data, &out);

    // Ctrl-C after the first epoch: its checkpoint and the interruption's.
    let (code, log) = interrupt(&args, &out, r#""event":"epoch""#, &[Signal::SIGINT]);
    assert_eq!(code, Some(130), "SIGINT must exit 128 + 2: {log}");
    let found = checkpoints(&out);
    assert!(found.len() >= 2, "{found:?}");
    let (newest, previous) = (&found[found.len() - 1], &found[found.len() - 2]);
    let mut bytes = std::fs::read(newest).expect("checkpoint");
    let at = bytes.len() - 64; // in the tensors' data, past the header
    bytes[at] ^= 0xff;
    std::fs::write(newest, bytes).expect("damage the checkpoint");
    let previous_state = simsiam_train::read_train_state(previous).expect("the previous one verifies");

    let mut resume = args.clone();
    resume.push("--resume".into());
    let log = run_ok(&resume);
    let name = newest.file_name().expect("name").to_string_lossy().into_owned();
    assert!(log.contains("damaged") && log.contains(&name), "the damaged checkpoint is not named: {log}");
    assert!(
        log.contains(&format!("resuming at epoch {}, step {}", previous_state.epoch, previous_state.step)),
        "{log}"
    );
    let straight = straight();
    assert!(
        std::fs::read(out.join("model.safetensors")).expect("weights") == straight.weights,
        "the run resumed from the previous checkpoint differs from an uninterrupted one"
    );
    assert_eq!(event_keys(&out.join("metrics.jsonl")), straight.events);
}
