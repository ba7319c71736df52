//! The fuzz targets of `cargo xtask fuzz`, on stable Rust: a mutation loop over a committed
//! seed corpus for every parser and loader that reads a user's file (see `targets/`).
//!
//! A test binary without the libtest harness, so that `cargo test --workspace` builds it with
//! the workspace's features. Modes:
//! - no arguments (as `cargo test` runs it): every built-in seed and committed corpus file once,
//!   checking no panic and that `ok-` seeds are accepted and `err-` seeds refused;
//! - `--fuzz [--seconds N] [--target NAME] [--seed S] [--hang-ms MS] [--max-rss-mib MIB]`:
//!   each target in its own process (its own peak memory), then a table;
//! - `--child NAME ...`: one target's loop (started by `--fuzz`);
//! - `--write-corpus`: writes the built-in seeds into `xtask/fuzz-corpus/TARGET/`.

mod engine;
mod mutate;
mod targets;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use engine::{Report, Settings};
use targets::{Outcome, Target};

fn root() -> PathBuf {
    let xtask = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().map(PathBuf::from).unwrap_or(xtask)
}

fn corpus_dir() -> PathBuf {
    root().join("xtask/fuzz-corpus")
}

/// The value after `flag`, parsed, or `default`.
fn value<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> Result<T, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(default),
        Some(i) => {
            let raw = args.get(i + 1).ok_or(format!("{flag} needs a value"))?;
            raw.parse().map_err(|_| format!("{flag} {raw}: not a valid value"))
        }
    }
}

fn settings(args: &[String]) -> Result<Settings, String> {
    Ok(Settings {
        seconds: value(args, "--seconds", 10.0)?,
        seed: value(args, "--seed", 0x5eed)?,
        hang: Duration::from_millis(value(args, "--hang-ms", 1000)?),
        max_rss_kib: value::<u64>(args, "--max-rss-mib", 2048)? * 1024,
        crash_dir: root().join("target/fuzz/crashes"),
        corpus_dir: corpus_dir(),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.iter().any(|a| a == "--child") {
        child(&args)
    } else if args.iter().any(|a| a == "--fuzz") {
        parent(&args)
    } else if args.iter().any(|a| a == "--write-corpus") {
        write_corpus()
    } else {
        // Under `cargo test`, whatever libtest arguments it was given.
        replay()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fuzz: {message}");
            ExitCode::FAILURE
        }
    }
}

fn find(name: &str) -> Result<Target, String> {
    let names: Vec<&str> = targets::all().iter().map(|t| t.name).collect();
    targets::all()
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| format!("no target `{name}`; the targets are {}", names.join(", ")))
}

fn child(args: &[String]) -> Result<(), String> {
    let target = find(&value(args, "--child", String::new())?)?;
    let report = engine::fuzz(&target, &settings(args)?);
    println!("{}", report.line());
    Ok(())
}

fn parent(args: &[String]) -> Result<(), String> {
    let settings = settings(args)?;
    let chosen: Vec<Target> = match value(args, "--target", String::new())? {
        name if name.is_empty() => targets::all(),
        name => vec![find(&name)?],
    };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut reports = Vec::new();
    for target in &chosen {
        eprintln!("fuzz: {} for {} s", target.name, settings.seconds);
        let mut child = Command::new(&exe)
            .args(["--child", target.name])
            .args(["--seconds", &settings.seconds.to_string(), "--seed", &settings.seed.to_string()])
            .args(["--hang-ms", &settings.hang.as_millis().to_string()])
            .args(["--max-rss-mib", &(settings.max_rss_kib / 1024).to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().ok_or("no output from the target's process")?;
        let report =
            std::io::BufReader::new(stdout).lines().map_while(Result::ok).find_map(|l| Report::parse(&l));
        let status = child.wait().map_err(|e| format!("waiting for {}: {e}", target.name))?;
        let report = match report {
            Some(r) => r,
            // Killed, or aborted (an allocation failure aborts): count it as a panic.
            None => {
                eprintln!("fuzz: {} ended without a report ({status})", target.name);
                Report { target: target.name.to_owned(), panics: 1, ..Report::default() }
            }
        };
        reports.push(report);
    }
    let table = table(&reports, &settings);
    println!("{table}");
    let out = root().join("target/fuzz/report.md");
    let _ = std::fs::create_dir_all(root().join("target/fuzz"));
    let _ = std::fs::write(&out, &table);
    let failed: Vec<&str> =
        reports.iter().filter(|r| r.panics + r.hangs + r.oom > 0).map(|r| r.target.as_str()).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} failed; inputs saved under {}", failed.join(", "), settings.crash_dir.display()))
    }
}

fn table(reports: &[Report], settings: &Settings) -> String {
    let mut out = format!(
        "| target | seconds | inputs | inputs/s | accepted | corpus | panics | hangs (> {} ms) | over {} MiB | peak memory (VmHWM) |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        settings.hang.as_millis(),
        settings.max_rss_kib / 1024
    );
    for r in reports {
        out.push_str(&format!(
            "| {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} MiB |\n",
            r.target,
            r.seconds,
            r.inputs,
            r.inputs as f64 / r.seconds.max(1e-9),
            r.accepted,
            r.corpus,
            r.panics,
            r.hangs,
            r.oom,
            r.peak_kib as f64 / 1024.0
        ));
    }
    out
}

fn write_corpus() -> Result<(), String> {
    for target in targets::all() {
        let dir = corpus_dir().join(target.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (name, bytes) in (target.seeds)() {
            let path = dir.join(&name);
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        eprintln!("fuzz: wrote the seeds of {} to {}", target.name, dir.display());
    }
    Ok(())
}

/// A target that panics on inputs holding `boom`, to check that the loop catches panics.
fn boom(_: &std::path::Path, data: &[u8]) -> Outcome {
    assert!(!data.windows(4).any(|w| w == b"boom"), "boom");
    Outcome::Accepted
}

fn replay() -> Result<(), String> {
    mutate::check_determinism();
    engine::quiet_panics();
    let scratch = engine::scratch().map_err(|e| format!("a scratch folder: {e}"))?;
    let mut failures = Vec::new();
    let bomb = Target { name: "boom", seeds: Vec::new, run: boom, tokens: &[] };
    let caught = engine::run_once(&bomb, scratch.path(), b"a boom!");
    if !matches!(&caught, Err(m) if m.contains("boom"))
        || engine::run_once(&bomb, scratch.path(), b"ok").is_err()
    {
        failures.push(format!("a panicking target was not caught as such: {caught:?}"));
    }
    let mut count = 0;
    for target in targets::all() {
        let seeds = (target.seeds)();
        let committed = engine::committed(&corpus_dir(), target.name);
        if committed.is_empty() {
            failures.push(format!("{}: no committed corpus in {}", target.name, corpus_dir().display()));
        }
        for (name, bytes) in seeds.iter().map(|(n, b)| (format!("seed {n}"), b)).chain(
            committed.iter().map(|(n, b)| (format!("{}/{n}", corpus_dir().join(target.name).display()), b)),
        ) {
            count += 1;
            let expected = if name.starts_with("seed ok-") {
                Some(Outcome::Accepted)
            } else if name.starts_with("seed err-") {
                Some(Outcome::Refused)
            } else {
                None
            };
            match engine::run_once(&target, scratch.path(), bytes) {
                Err(message) => failures.push(format!("{}: {name} panicked: {message}", target.name)),
                Ok(outcome) if expected.is_some_and(|e| e != outcome) => {
                    failures.push(format!("{}: {name} was {outcome:?}, expected {expected:?}", target.name));
                }
                Ok(_) => {}
            }
        }
    }
    println!("fuzz replay: {count} inputs through {} targets", targets::all().len());
    if failures.is_empty() { Ok(()) } else { Err(failures.join("\n")) }
}
