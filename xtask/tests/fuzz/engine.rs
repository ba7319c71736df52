//! The loop of one target in its own process: every corpus entry once, then mutated inputs
//! until the time is up. A panic is caught and its input saved; an input still running after
//! the hang limit, or a process above the memory limit, is saved by a watchdog thread, which
//! then ends the process (a thread cannot be stopped).

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mutate::Mutator;
use crate::targets::{Outcome, TEXT_TOKENS, Target};

/// Inputs are cut to this length: enough for every format's seeds and some growth.
pub const MAX_LEN: usize = 64 * 1024;
/// At most this many panicking inputs are saved per target.
const MAX_SAVED: u64 = 20;
/// Accepted inputs join the corpus up to this size (a cheap stand-in for coverage feedback:
/// inputs a parser accepts are the ones that reach its deeper code).
const MAX_CORPUS: usize = 1024;

/// What a target's process reports, one line of `key=value` pairs prefixed `FUZZ-RESULT`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub target: String,
    pub inputs: u64,
    pub accepted: u64,
    pub panics: u64,
    pub hangs: u64,
    pub oom: u64,
    pub peak_kib: u64,
    pub corpus: u64,
    pub seconds: f64,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "FUZZ-RESULT target={} inputs={} accepted={} panics={} hangs={} oom={} peak_kib={} corpus={} seconds={:.1}",
            self.target,
            self.inputs,
            self.accepted,
            self.panics,
            self.hangs,
            self.oom,
            self.peak_kib,
            self.corpus,
            self.seconds
        )
    }

    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("FUZZ-RESULT ")?;
        let mut r = Self::default();
        for pair in rest.split(' ') {
            let (k, v) = pair.split_once('=')?;
            match k {
                "target" => r.target = v.to_owned(),
                "inputs" => r.inputs = v.parse().ok()?,
                "accepted" => r.accepted = v.parse().ok()?,
                "panics" => r.panics = v.parse().ok()?,
                "hangs" => r.hangs = v.parse().ok()?,
                "oom" => r.oom = v.parse().ok()?,
                "peak_kib" => r.peak_kib = v.parse().ok()?,
                "corpus" => r.corpus = v.parse().ok()?,
                "seconds" => r.seconds = v.parse().ok()?,
                _ => return None,
            }
        }
        Some(r)
    }
}

/// Limits and places of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seconds: f64,
    pub seed: u64,
    pub hang: Duration,
    pub max_rss_kib: u64,
    /// `target/fuzz/crashes`: each target's crashing inputs go in a sub-folder.
    pub crash_dir: PathBuf,
    /// `xtask/fuzz-corpus`: each target's committed corpus is a sub-folder.
    pub corpus_dir: PathBuf,
}

/// A field of `/proc/self/status` in KiB (`VmHWM`: peak resident memory, `VmRSS`: now).
pub fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// FNV-1a, to name saved inputs by their content.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Writes a crashing input (and why) under `dir`, returning its path.
pub fn save(dir: &Path, kind: &str, input: &[u8], why: &str) -> PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("{kind}-{:016x}", hash(input)));
    let _ = std::fs::write(&path, input);
    let _ = std::fs::write(path.with_extension("txt"), why);
    path
}

/// The committed corpus of a target: every file of its folder, in name order.
pub fn committed(corpus_dir: &Path, target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(corpus_dir.join(target)) else { return Vec::new() };
    let mut files: Vec<_> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| Some((p.file_name()?.to_string_lossy().into_owned(), std::fs::read(&p).ok()?)))
        .collect()
}

static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

thread_local! {
    /// Whether this thread is running a target's input (whose panics are expected findings).
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keeps the panic messages of inputs for the saved `.txt` instead of printing each one;
/// any other panic (in the harness itself) is printed as usual.
pub fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if IN_TARGET.with(std::cell::Cell::get) {
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = info.to_string();
            }
        } else {
            default(info);
        }
    }));
}

/// One input through the target in a fresh scratch folder: `Err(message)` on a panic.
pub fn run_once(target: &Target, scratch: &Path, input: &[u8]) -> Result<Outcome, String> {
    let dir = scratch.join("run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir)
        .map_err(|e| format!("cannot make the scratch folder {}: {e}", dir.display()))?;
    IN_TARGET.with(|t| t.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| (target.run)(&dir, input)));
    IN_TARGET.with(|t| t.set(false));
    result.map_err(|_| LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default())
}

/// The scratch folder, in memory (`/dev/shm`) where there is one: every input writes and
/// removes files, which on a disk costs milliseconds, in memory microseconds.
pub fn scratch() -> std::io::Result<tempfile::TempDir> {
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("simsiam-fuzz-");
        b
    };
    builder().tempdir_in("/dev/shm").or_else(|_| builder().tempdir())
}

/// What the main thread shares with the watchdog.
struct Shared {
    /// Milliseconds since `start` (plus one) when the running input began; 0 between inputs.
    began_ms: AtomicU64,
    input: Mutex<Vec<u8>>,
    report: Mutex<Report>,
}

/// Runs `target` for `settings.seconds` and returns its report.
pub fn fuzz(target: &Target, settings: &Settings) -> Report {
    quiet_panics();
    let start = Instant::now();
    let crash_dir = settings.crash_dir.join(target.name);
    let scratch = scratch().expect("a scratch folder");
    let shared = Arc::new(Shared {
        began_ms: AtomicU64::new(0),
        input: Mutex::new(Vec::new()),
        report: Mutex::new(Report { target: target.name.to_owned(), ..Report::default() }),
    });
    watchdog(Arc::clone(&shared), start, settings.clone(), crash_dir.clone());

    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut seen = HashSet::new();
    let seeds = (target.seeds)().into_iter().chain(committed(&settings.corpus_dir, target.name));
    for (_, bytes) in seeds {
        if seen.insert(hash(&bytes)) {
            corpus.push(bytes);
        }
    }
    let tokens: Vec<&[u8]> = target.tokens.iter().chain(TEXT_TOKENS).copied().collect();
    let mut mutator = Mutator::new(settings.seed, MAX_LEN);
    let deadline = Duration::from_secs_f64(settings.seconds);
    let mut next = 0;
    loop {
        // The corpus as it is first, then mutations of random entries.
        let input = if next < corpus.len() {
            next += 1;
            corpus[next - 1].clone()
        } else {
            if start.elapsed() >= deadline {
                break;
            }
            let mut input = corpus[mutator.below(corpus.len())].clone();
            mutator.mutate(&mut input, &corpus, &tokens);
            input
        };
        if let Ok(mut current) = shared.input.lock() {
            current.clone_from(&input);
        }
        shared.began_ms.store(start.elapsed().as_millis() as u64 + 1, Ordering::SeqCst);
        let result = run_once(target, scratch.path(), &input);
        shared.began_ms.store(0, Ordering::SeqCst);
        let mut report = shared.report.lock().expect("the report");
        report.inputs += 1;
        match result {
            Ok(Outcome::Accepted) => {
                report.accepted += 1;
                if corpus.len() < MAX_CORPUS && seen.insert(hash(&input)) {
                    corpus.push(input);
                }
            }
            Ok(Outcome::Refused) => {}
            Err(message) => {
                report.panics += 1;
                if report.panics <= MAX_SAVED {
                    let path = save(&crash_dir, "panic", &input, &message);
                    eprintln!("{}: panic, input saved to {}: {message}", target.name, path.display());
                }
            }
        }
    }
    let mut report = shared.report.lock().expect("the report").clone();
    report.corpus = corpus.len() as u64;
    report.seconds = start.elapsed().as_secs_f64();
    report.peak_kib = proc_status_kib("VmHWM");
    report
}

/// Every 20 ms: an input running past the hang limit, or memory above the limit, saves the
/// input, prints the report and ends the process (exit 3 for a hang, 4 for memory).
fn watchdog(shared: Arc<Shared>, start: Instant, settings: Settings, crash_dir: PathBuf) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let began = shared.began_ms.load(Ordering::SeqCst);
            let now = start.elapsed().as_millis() as u64 + 1;
            let hung = began != 0 && now.saturating_sub(began) > settings.hang.as_millis() as u64;
            let rss = proc_status_kib("VmRSS");
            let oom = rss > settings.max_rss_kib;
            if !(hung || oom) {
                continue;
            }
            let input = shared.input.lock().map(|i| i.clone()).unwrap_or_default();
            let mut report = shared.report.lock().map(|r| r.clone()).unwrap_or_default();
            let (kind, why, code) = if hung {
                report.hangs += 1;
                ("hang", format!("still running after {:?}", settings.hang), 3)
            } else {
                report.oom += 1;
                ("oom", format!("resident memory {rss} KiB above {} KiB", settings.max_rss_kib), 4)
            };
            let path = save(&crash_dir, kind, &input, &why);
            eprintln!("{}: {why}, input saved to {}", report.target, path.display());
            report.inputs += 1;
            report.seconds = start.elapsed().as_secs_f64();
            report.peak_kib = proc_status_kib("VmHWM");
            println!("{}", report.line());
            std::process::exit(code);
        }
    });
}
