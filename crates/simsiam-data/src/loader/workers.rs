//! The prefetching worker engine shared by the loaders, generic over what a batch is: a job
//! builds batch number `b`; the engine runs jobs on a thread pool at most `prefetch` ahead of
//! the consumer and hands the results back in order.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::error::{DataError, Result};

/// The worker pool and in-flight window of a loader.
#[derive(Debug, Clone)]
pub(super) struct Engine {
    pool: Arc<rayon::ThreadPool>,
    inline: bool,
    window: usize,
}

impl Engine {
    /// `workers` threads (0: each batch is built in the consumer's thread when asked for) and
    /// at most `prefetch` batches in flight.
    ///
    /// # Errors
    /// [`DataError::Config`] for a zero `prefetch`; [`DataError::Worker`] when the threads
    /// cannot start.
    pub(super) fn new(workers: usize, prefetch: usize) -> Result<Self> {
        if prefetch == 0 {
            return Err(DataError::Config("prefetch must be at least 1".into()));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .thread_name(|i| format!("simsiam-data-{i}"))
            .build()
            .map_err(|e| DataError::Worker(format!("cannot start worker threads: {e}")))?;
        Ok(Self { pool: Arc::new(pool), inline: workers == 0, window: prefetch })
    }

    /// The `total` batches `job(0)`, `job(1)`, ..., in order.
    pub(super) fn run<T: Send + 'static>(&self, total: usize, job: Job<T>) -> Batches<T> {
        let (tx, rx) = sync_channel(self.window);
        let mut batches = Batches {
            engine: self.clone(),
            job,
            total,
            submitted: 0,
            yielded: 0,
            tx,
            rx,
            pending: BTreeMap::new(),
            cancelled: Arc::new(AtomicBool::new(false)),
        };
        // Start at once: the first batches build while the caller is busy elsewhere.
        if !self.inline {
            batches.refill();
        }
        batches
    }
}

/// Builds batch number `b`.
pub(super) type Job<T> = Arc<dyn Fn(usize) -> Result<T> + Send + Sync>;

/// Runs `job(b)`, turning a panic into an error.
fn run_job<T>(job: &Job<T>, b: usize) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(|| job(b)))
        .unwrap_or_else(|_| Err(DataError::Worker(format!("a worker panicked while building batch {b}"))))
}

/// The batches of one pass, in order, built by the loader's workers at most `prefetch` ahead
/// of the consumer. Dropping it stops the work that has not started.
pub struct Batches<T> {
    engine: Engine,
    job: Job<T>,
    total: usize,
    submitted: usize,
    yielded: usize,
    tx: SyncSender<(usize, Result<T>)>,
    rx: Receiver<(usize, Result<T>)>,
    pending: BTreeMap<usize, Result<T>>,
    cancelled: Arc<AtomicBool>,
}

impl<T> std::fmt::Debug for Batches<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("total", &self.total)
            .field("submitted", &self.submitted)
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Batches<T> {
    /// Keeps `window` batches in flight.
    fn refill(&mut self) {
        while self.submitted < self.total && self.submitted - self.yielded < self.engine.window {
            let (b, job, tx, cancelled) =
                (self.submitted, self.job.clone(), self.tx.clone(), self.cancelled.clone());
            self.engine.pool.spawn(move || {
                if !cancelled.load(Ordering::Relaxed) {
                    // The receiver is gone only when the consumer dropped the iterator.
                    let _ = tx.send((b, run_job(&job, b)));
                }
            });
            self.submitted += 1;
        }
    }
}

impl<T: Send + 'static> Iterator for Batches<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.yielded >= self.total {
            return None;
        }
        if self.engine.inline {
            let (job, b) = (&self.job, self.yielded);
            self.yielded += 1;
            return Some(self.engine.pool.install(|| run_job(job, b)));
        }
        self.refill();
        loop {
            if let Some(batch) = self.pending.remove(&self.yielded) {
                self.yielded += 1;
                self.refill();
                return Some(batch);
            }
            match self.rx.recv() {
                Ok((b, batch)) => {
                    self.pending.insert(b, batch);
                }
                Err(_) => {
                    self.yielded = self.total;
                    return Some(Err(DataError::Worker("workers stopped".into())));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.yielded;
        (left, Some(left))
    }
}

impl<T: Send + 'static> ExactSizeIterator for Batches<T> {}

impl<T> Drop for Batches<T> {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

/// Number of batches of `n` samples.
pub(super) fn num_batches(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last { n / batch_size } else { n.div_ceil(batch_size) }
}
