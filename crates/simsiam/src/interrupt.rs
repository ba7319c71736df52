//! Stopping a run cleanly on a signal: SIGINT (Ctrl-C), SIGTERM (`kill`, `timeout`, Slurm,
//! Kubernetes) and SIGHUP (a closed terminal) set the trainer's interrupt flag, so that it saves
//! a checkpoint after the step in progress and returns; the program then exits with 128 plus
//! the signal's number (130, 143, 129), as a shell reports a process the signal ended. A
//! second signal exits at once with that code: checkpoints are written atomically and the
//! metrics file is repaired on resume, so nothing on disk is corrupted by it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, LazyLock, Once};

use anyhow::Result;

/// The flag the handler sets, shared with the trainer.
static FLAG: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
/// The first signal that arrived, 0 before any.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static INSTALL: Once = Once::new();

/// The process's signal handlers, installed once; [`Interrupt::install`] hands out the flag.
#[derive(Debug, Clone)]
pub struct Interrupt {
    flag: Arc<AtomicBool>,
}

impl Interrupt {
    /// Installs the handlers (the first call in a process) and clears an earlier signal, so that
    /// a second run in the same process starts uninterrupted.
    pub fn install() -> Result<Self> {
        let interrupt = Self::cleared();
        let mut result = Ok(());
        INSTALL.call_once(|| result = platform::install());
        result?;
        Ok(interrupt)
    }

    /// The flag and the signal cleared.
    fn cleared() -> Self {
        let flag = FLAG.clone(); // initialised before any handler can read it
        flag.store(false, Ordering::SeqCst);
        SIGNAL.store(0, Ordering::SeqCst);
        Self { flag }
    }

    /// The flag to give the trainer ([`simsiam_train::Trainer::with_interrupt_flag`]).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// The first signal received since [`Interrupt::install`], if any.
    pub fn signal(&self) -> Option<Signal> {
        match SIGNAL.load(Ordering::SeqCst) {
            0 => None,
            number => Some(Signal(number)),
        }
    }
}

/// A signal that stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    /// SIGINT, what Ctrl-C sends.
    pub const INTERRUPT: Self = Self(2);

    /// SIGTERM, what `kill`, `timeout`, Slurm and Kubernetes send.
    pub const TERMINATE: Self = Self(15);

    /// Its number (2, 15, 1).
    pub fn number(self) -> i32 {
        self.0
    }

    /// The exit code a program stopped by it returns: 128 plus its number.
    pub fn exit_code(self) -> u8 {
        u8::try_from(128 + self.0).unwrap_or(u8::MAX)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("SIGHUP"),
            2 => f.write_str("SIGINT"),
            15 => f.write_str("SIGTERM"),
            n => write!(f, "signal {n}"),
        }
    }
}

/// Records `signal` and sets the flag; a second signal exits at once with 128 plus its number.
/// Only atomics: it runs inside a signal handler.
fn on_signal(signal: i32, exit_now: impl FnOnce(i32)) {
    if SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        exit_now(128 + signal);
        return;
    }
    FLAG.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
mod platform {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

    extern "C" fn handle(signal: nix::libc::c_int) {
        // SAFETY: `_exit` is async-signal-safe; it skips destructors and buffered output,
        // which is the point of a second signal.
        super::on_signal(signal, |code| unsafe { nix::libc::_exit(code) });
    }

    pub(super) fn install() -> anyhow::Result<()> {
        let action = SigAction::new(SigHandler::Handler(handle), SaFlags::SA_RESTART, SigSet::empty());
        for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            // SAFETY: the handler only touches atomics (the flag is initialised before this) or
            // calls `_exit`, both allowed in a signal handler.
            unsafe { sigaction(signal, &action) }
                .map_err(|e| anyhow::anyhow!("cannot handle {signal}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(not(unix))]
mod platform {
    /// Ctrl-C only, through the `ctrlc` crate.
    pub(super) fn install() -> anyhow::Result<()> {
        ctrlc::set_handler(|| super::on_signal(super::Signal::INTERRUPT.number(), |c| std::process::exit(c)))
            .map_err(|e| anyhow::anyhow!("cannot handle Ctrl-C: {e}"))
    }
}

/// A run stopped by a signal after saving its checkpoint: `simsiam` exits with
/// [`Signal::exit_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    /// The signal.
    pub signal: Signal,
    /// The epoch in progress.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Whether a checkpoint of that step is saved (not when the signal came before the first).
    pub saved: bool,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let saved =
            if self.saved { "the checkpoint is saved: rerun with --resume" } else { "nothing to save" };
        write!(f, "stopped by {} at epoch {}, step {}; {saved}", self.signal, self.epoch, self.step)
    }
}

impl std::error::Error for Interrupted {}

/// `simsiam pretrain --gpus N` stopped by a signal, which the launcher passed on to every rank
/// (each saved its checkpoint and stopped as [`Interrupted`]): the launcher exits with
/// [`Signal::exit_code`] too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The signal.
    pub signal: Signal,
}

impl fmt::Display for Forwarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stopped by {}, passed on to every rank: rerun with --resume", self.signal)
    }
}

impl std::error::Error for Forwarded {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_128_plus_the_signal() {
        assert_eq!(Signal(2).exit_code(), 130);
        assert_eq!(Signal(15).exit_code(), 143);
        assert_eq!(Signal(1).exit_code(), 129);
        assert_eq!(Signal(15).to_string(), "SIGTERM");
    }

    #[test]
    fn the_first_signal_sets_the_flag_and_a_second_exits_with_its_code() {
        let interrupt = Interrupt::cleared(); // no handler: the test process keeps its own
        let mut exits = Vec::new();
        on_signal(15, |c| exits.push(c));
        assert!(interrupt.flag().load(Ordering::SeqCst));
        assert_eq!(interrupt.signal(), Some(Signal(15)));
        on_signal(2, |c| exits.push(c));
        assert_eq!(exits, [130]);
        assert_eq!(interrupt.signal(), Some(Signal(15)), "the first signal picks the exit code");
        let again = Interrupt::cleared();
        assert!(!again.flag().load(Ordering::SeqCst) && again.signal().is_none());
    }
}
