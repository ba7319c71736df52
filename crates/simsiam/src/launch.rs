//! `simsiam pretrain --gpus N`: one process per GPU, data-parallel over NCCL.
//!
//! The launcher re-executes this binary `N` times with `SIMSIAM_RANK`, `SIMSIAM_WORLD_SIZE`
//! and `SIMSIAM_NCCL_ID` (a file in the run directory) in the environment. Rank 0 writes a
//! fresh NCCL unique id to that file (atomically); the others wait for it. Each rank trains on
//! `cuda:RANK` with its seed-derived shard of every global batch (`ShardedBatches`), gradients
//! are averaged by all-reduce (`Trainer::with_communicator`), and rank 0 alone writes
//! checkpoints, metrics, weights and the plot. Batch norm stays per rank (see docs/cuda.md).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::{DeviceKind, RunConfig};
use crate::interrupt::{Forwarded, Interrupt, Signal};
use crate::run::OutputPaths;
use crate::run_folder::check_run_folder;

/// The environment variables that make a process one rank of a group.
pub const RANK: &str = "SIMSIAM_RANK";
/// The group's size.
pub const WORLD_SIZE: &str = "SIMSIAM_WORLD_SIZE";
/// The file through which rank 0 hands the NCCL unique id to the others.
pub const NCCL_ID: &str = "SIMSIAM_NCCL_ID";

/// This process's place in a group, from the launcher's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rank {
    /// 0-based rank, also the CUDA device ordinal.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
    /// Where the NCCL id is exchanged.
    pub id_file: PathBuf,
}

impl Rank {
    /// `None` outside a launched group; an error when the variables are inconsistent.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// As [`Rank::from_env`], reading variables through `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let (Some(rank), Some(world)) = (get(RANK), get(WORLD_SIZE)) else {
            if get(RANK).is_some() || get(WORLD_SIZE).is_some() {
                bail!("{RANK} and {WORLD_SIZE} must be set together");
            }
            return Ok(None);
        };
        let rank: usize = rank.parse().with_context(|| format!("{RANK}={rank} is not a number"))?;
        let world: usize = world.parse().with_context(|| format!("{WORLD_SIZE}={world} is not a number"))?;
        if world == 0 || rank >= world {
            bail!("rank {rank} is not in a group of {world}");
        }
        let id_file = get(NCCL_ID).with_context(|| format!("{NCCL_ID} is not set"))?;
        Ok(Some(Self { rank, world, id_file: PathBuf::from(id_file) }))
    }

    /// `cuda:RANK`.
    pub fn device(&self) -> DeviceKind {
        DeviceKind::Cuda(Some(self.rank))
    }

    /// Whether this process writes the run's files: rank 0 of a group, or a process alone.
    pub fn is_primary() -> Result<bool> {
        Ok(Self::from_env()?.is_none_or(|r| r.rank == 0))
    }
}

/// `simsiam pretrain --gpus N` with `N > 1`: checks the run and its folder (a new run only in
/// a new or empty folder, see [`crate::run_folder`]), then starts one rank per GPU with the
/// command's arguments `args` (without the program name) and waits for all.
pub fn launch_run(gpus: usize, run: &RunConfig, resume: bool, args: &[String]) -> Result<()> {
    if Rank::from_env()?.is_some() {
        bail!("--gpus inside a launched rank");
    }
    if !cfg!(feature = "nccl") {
        bail!("--gpus {gpus} needs a build with the `nccl` feature");
    }
    run.validate()?;
    check_run_folder(&OutputPaths::new(&run.train.output_dir), resume)?;
    launch(gpus, &rank_args(args), &run.train.output_dir)
}

/// The arguments a rank runs with: the launcher's, without `--gpus N` / `--gpus=N`.
pub fn rank_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--gpus" {
            it.next();
        } else if !a.starts_with("--gpus=") {
            out.push(a.clone());
        }
    }
    out
}

/// Starts `gpus` copies of this binary with `args` (already without `--gpus`) and waits for
/// all; when one fails, the others are stopped.
pub fn launch(gpus: usize, args: &[String], run_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    let id_file = run_dir.join("nccl-id");
    // A stale id from an earlier run would make the ranks join a dead group.
    match std::fs::remove_file(&id_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", id_file.display()));
        }
        _ => {}
    }
    // A signal to the launcher (Slurm's SIGTERM, a `kill`) is passed on to every rank, so each
    // saves its checkpoint at the next step and stops.
    let interrupt = Interrupt::install()?;
    let exe = std::env::current_exe().context("cannot find this binary to re-execute it")?;
    let mut children: Vec<Child> = Vec::with_capacity(gpus);
    for rank in 0..gpus {
        let child = Command::new(&exe)
            .args(args)
            .env(RANK, rank.to_string())
            .env(WORLD_SIZE, gpus.to_string())
            .env(NCCL_ID, &id_file)
            .spawn()
            .with_context(|| format!("cannot start rank {rank}"));
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                stop(&mut children);
                return Err(e);
            }
        }
    }
    wait_all(children, || interrupt.signal())
}

fn stop(children: &mut [Child]) {
    for c in children.iter_mut() {
        // Already exited is fine.
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Polls the ranks; the first failure stops the rest. Once `signal` reports one, it is passed
/// on to every rank still running, the ranks are waited for, and the result is [`Forwarded`].
fn wait_all(mut children: Vec<Child>, signal: impl Fn() -> Option<Signal>) -> Result<()> {
    let mut done = vec![false; children.len()];
    let mut forwarded = None;
    while done.iter().any(|d| !d) {
        if let (None, Some(s)) = (forwarded, signal()) {
            for (c, _) in children.iter_mut().zip(&done).filter(|(_, d)| !**d) {
                pass_on(c, s);
            }
            forwarded = Some(s);
        }
        for (rank, c) in children.iter_mut().enumerate() {
            if done[rank] {
                continue;
            }
            if let Some(status) = c.try_wait().context("cannot wait for a rank")? {
                done[rank] = true;
                // After a signal, ranks stop with 128 + it: that is no failure.
                if !status.success() && forwarded.is_none() {
                    stop(&mut children);
                    bail!("rank {rank} failed ({status}); the other ranks were stopped");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match forwarded {
        Some(signal) => Err(Forwarded { signal }.into()),
        None => Ok(()),
    }
}

/// Sends `signal` to the rank `child`.
#[cfg(unix)]
fn pass_on(child: &Child, signal: Signal) {
    use nix::sys::signal::{Signal as NixSignal, kill};
    use nix::unistd::Pid;
    if let (Ok(pid), Ok(s)) = (i32::try_from(child.id()), NixSignal::try_from(signal.number())) {
        // A rank that has just exited is no error.
        let _ = kill(Pid::from_raw(pid), s);
    }
}

/// Stops the rank `child` (no signals to pass on here).
#[cfg(not(unix))]
fn pass_on(child: &mut Child, _: Signal) {
    let _ = child.kill();
}

/// Rank 0: writes `bytes` to `path` atomically (a reader never sees half an id).
pub fn publish_id(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move the NCCL id to {}", path.display()))
}

/// The length of an NCCL unique id, the whole content of the id file.
pub const NCCL_ID_BYTES: usize = 128;

/// The other ranks: waits up to `timeout` for rank 0's id.
///
/// # Errors
/// No file after `timeout`, or a file that is not [`NCCL_ID_BYTES`] long (written by something
/// else), naming the file.
pub fn read_id(path: &Path, timeout: Duration) -> Result<Vec<u8>> {
    let start = Instant::now();
    loop {
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() != NCCL_ID_BYTES => bail!(
                "{} holds {} bytes, not a {NCCL_ID_BYTES}-byte NCCL id from rank 0",
                path.display(),
                bytes.len()
            ),
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).with_context(|| format!("no NCCL id from rank 0 in {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A signal to the launcher reaches every rank: two stand-in ranks (`sleep 30`) stop at
    /// once, and the launcher reports the signal, for its 128 + signal exit.
    #[cfg(unix)]
    #[test]
    fn a_signal_is_passed_on_to_every_rank() -> Result<()> {
        let spawn = || Command::new("sleep").arg("30").spawn().context("sleep");
        let children = vec![spawn()?, spawn()?];
        let start = Instant::now();
        let err = wait_all(children, || Some(Signal::TERMINATE)).expect_err("a forwarded signal");
        let forwarded = err.downcast_ref::<Forwarded>().expect("Forwarded");
        assert_eq!((forwarded.signal, forwarded.signal.exit_code()), (Signal::TERMINATE, 143));
        assert!(start.elapsed() < Duration::from_secs(10), "the ranks did not get the signal");
        Ok(())
    }

    /// Without a signal, a failing rank still stops the others.
    #[cfg(unix)]
    #[test]
    fn a_failing_rank_stops_the_others() -> Result<()> {
        let children = vec![
            Command::new("sleep").arg("30").spawn().context("sleep")?,
            Command::new("false").spawn().context("false")?,
        ];
        let start = Instant::now();
        let err = wait_all(children, || None).expect_err("a failed rank");
        assert!(err.to_string().contains("rank 1 failed"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
        Ok(())
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn rank_from_environment() -> Result<()> {
        assert_eq!(Rank::from_vars(vars(&[]))?, None);
        let r = Rank::from_vars(vars(&[(RANK, "1"), (WORLD_SIZE, "2"), (NCCL_ID, "/r/nccl-id")]))?
            .context("a rank")?;
        assert_eq!(r, Rank { rank: 1, world: 2, id_file: PathBuf::from("/r/nccl-id") });
        assert_eq!(r.device().to_string(), "cuda:1");
        for bad in [
            vec![(RANK, "0")],
            vec![(RANK, "2"), (WORLD_SIZE, "2"), (NCCL_ID, "f")],
            vec![(RANK, "x"), (WORLD_SIZE, "2"), (NCCL_ID, "f")],
            vec![(RANK, "0"), (WORLD_SIZE, "2")],
        ] {
            assert!(Rank::from_vars(vars(&bad)).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn ranks_run_without_gpus() {
        let args: Vec<String> =
            ["pretrain", "--gpus", "4", "--preset", "cifar10-paper", "--gpus=2", "--set", "train.epochs=1"]
                .map(String::from)
                .to_vec();
        assert_eq!(rank_args(&args), ["pretrain", "--preset", "cifar10-paper", "--set", "train.epochs=1"]);
    }

    #[test]
    fn the_id_goes_through_a_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("nccl-id");
        assert!(read_id(&path, Duration::from_millis(50)).is_err(), "no id yet");
        let reader = {
            let path = path.clone();
            std::thread::spawn(move || read_id(&path, Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(150));
        publish_id(&path, &[7u8; 128])?;
        let got = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
        assert_eq!(got, vec![7u8; 128]);
        Ok(())
    }

    #[test]
    fn an_id_file_of_another_length_is_refused_naming_it() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("nccl-id");
        for len in [0, 127, 129] {
            std::fs::write(&path, vec![1u8; len])?;
            let error = format!("{:#}", read_id(&path, Duration::ZERO).err().context("accepted")?);
            assert!(error.contains(&path.display().to_string()), "{error}");
            assert!(error.contains(&format!("holds {len} bytes")), "{error}");
        }
        Ok(())
    }
}
