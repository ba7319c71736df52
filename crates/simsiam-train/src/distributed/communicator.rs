//! The collective operations data parallelism needs, behind a small trait, and an in-process
//! implementation: `N` workers as threads of one process.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::{Result, TrainError};

/// A group of `world_size` workers that call the same collective operations in the same
/// order. Every rank must call every collective, with buffers of the same length; a rank that
/// calls one the others never call waits (or, in-process, gets an error once a peer leaves).
///
/// The sums are elementwise over ranks and every rank receives the same result, bit for bit.
pub trait Communicator: Send + Sync + std::fmt::Debug {
    /// This worker's rank, `0..world_size`.
    fn rank(&self) -> usize;

    /// The number of workers.
    fn world_size(&self) -> usize;

    /// Replaces `buf` by its elementwise sum over all ranks.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()>;

    /// Replaces `buf` by its elementwise sum over all ranks.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;

    /// Returns once every rank has called `barrier`.
    fn barrier(&self) -> Result<()>;

    /// Sums a CUDA tensor's storage over all ranks. The default copies to the host and back
    /// through [`Communicator::all_reduce_sum_f32`]; the NCCL communicator reduces on the
    /// device.
    #[cfg(feature = "cuda")]
    fn all_reduce_sum_cuda(
        &self,
        storage: &candle::CudaStorage,
        layout: &candle::Layout,
    ) -> candle::Result<candle::CudaStorage> {
        use candle::backend::{BackendDevice, BackendStorage};
        let host = storage.to_cpu_storage()?;
        let reduced = super::all_reduce::host_all_reduce(self, &host, layout)?;
        storage.device().storage_from_cpu_storage(&reduced)
    }
}

/// Whether rank 0 is this worker: the one that writes checkpoints and logs.
pub fn is_primary(comm: &dyn Communicator) -> bool {
    comm.rank() == 0
}

/// `world_size` workers in one process, one [`LocalCommunicator`] per thread.
///
/// A collective deposits each rank's buffer in a shared slot and waits for all; every rank
/// then sums the slots in rank order `((b0 + b1) + b2) + ...`, so the result is the same on
/// every rank and in every run. When a communicator is dropped (its thread returned, with an
/// error or not, or panicked), ranks waiting in or entering a later collective get
/// [`TrainError::Distributed`] instead of waiting forever.
#[derive(Debug)]
pub struct LocalCommunicator {
    rank: usize,
    calls: Mutex<u64>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    world: usize,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug)]
struct State {
    /// Ranks arrived at the current collective.
    arrived: usize,
    /// Collectives completed.
    generation: u64,
    /// Ranks whose communicator was dropped.
    left: Vec<usize>,
    /// Buffers of collective `k` in `slots[k % 2]`: a rank can be at most one collective
    /// ahead of the slowest, so two sets suffice.
    slots: [Vec<Slot>; 2],
}

#[derive(Debug, Clone)]
enum Slot {
    Empty,
    Barrier,
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl LocalCommunicator {
    /// A group of `world_size` (at least 1) communicators, ranks `0..world_size` in order; hand
    /// one to each worker thread.
    pub fn group(world_size: usize) -> Result<Vec<Self>> {
        if world_size == 0 {
            return Err(TrainError::Config("a communicator group needs at least one worker".into()));
        }
        let shared = Arc::new(Shared {
            world: world_size,
            state: Mutex::new(State {
                arrived: 0,
                generation: 0,
                left: Vec::new(),
                slots: [vec![Slot::Empty; world_size], vec![Slot::Empty; world_size]],
            }),
            wake: Condvar::new(),
        });
        Ok((0..world_size).map(|rank| Self { rank, calls: Mutex::new(0), shared: shared.clone() }).collect())
    }

    /// A group of one: collectives return at once, sums are the identity.
    pub fn single() -> Self {
        let shared = Arc::new(Shared {
            world: 1,
            state: Mutex::new(State {
                arrived: 0,
                generation: 0,
                left: Vec::new(),
                slots: [vec![Slot::Empty], vec![Slot::Empty]],
            }),
            wake: Condvar::new(),
        });
        Self { rank: 0, calls: Mutex::new(0), shared }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.shared.state.lock().map_err(|_| distributed("a worker panicked inside a collective"))
    }

    /// Deposits `slot`, waits for every rank, and returns all ranks' slots in rank order.
    fn exchange(&self, slot: Slot) -> Result<Vec<Slot>> {
        let world = self.shared.world;
        if world == 1 {
            return Ok(vec![slot]);
        }
        let call = {
            let mut calls = self.calls.lock().map_err(|_| distributed("poisoned call counter"))?;
            let call = *calls;
            *calls += 1;
            call
        };
        let parity = (call % 2) as usize;
        let mut state = self.lock()?;
        if let Some(rank) = state.left.first() {
            return Err(distributed(&format!(
                "rank {rank} has left the group; rank {} cannot complete collective {call}",
                self.rank
            )));
        }
        state.slots[parity][self.rank] = slot;
        state.arrived += 1;
        if state.arrived == world {
            state.arrived = 0;
            state.generation += 1;
            self.shared.wake.notify_all();
        } else {
            while state.generation == call {
                if let Some(rank) = state.left.first() {
                    return Err(distributed(&format!(
                        "rank {rank} left the group while rank {} waited in collective {call}",
                        self.rank
                    )));
                }
                state = self.shared.wake.wait(state).map_err(|_| distributed("poisoned state"))?;
            }
        }
        // Every rank of this collective has deposited; nobody can overwrite these slots
        // before every rank has arrived at the next collective, i.e. finished reading.
        Ok(state.slots[parity].clone())
    }
}

impl Drop for LocalCommunicator {
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.left.push(self.rank);
            self.shared.wake.notify_all();
        }
    }
}

fn distributed(message: &str) -> TrainError {
    TrainError::Distributed(message.to_owned())
}

/// Sums the slots in rank order into `buf`.
fn sum_into<T: Copy + std::ops::Add<Output = T>>(
    buf: &mut [T],
    slots: &[Slot],
    get: impl Fn(&Slot) -> Option<&Vec<T>>,
) -> Result<()> {
    let mut parts = Vec::with_capacity(slots.len());
    for (rank, slot) in slots.iter().enumerate() {
        let part = get(slot).ok_or_else(|| {
            distributed(&format!("rank {rank} called a different collective (or another dtype)"))
        })?;
        if part.len() != buf.len() {
            return Err(distributed(&format!(
                "all-reduce lengths differ: {} here, {} on rank {rank}",
                buf.len(),
                part.len()
            )));
        }
        parts.push(part);
    }
    if let Some((first, rest)) = parts.split_first() {
        buf.copy_from_slice(first);
        for part in rest {
            for (b, &p) in buf.iter_mut().zip(part.iter()) {
                *b = *b + p;
            }
        }
    }
    Ok(())
}

impl Communicator for LocalCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.shared.world
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        if self.shared.world == 1 {
            return Ok(());
        }
        let slots = self.exchange(Slot::F32(buf.to_vec()))?;
        sum_into(buf, &slots, |s| if let Slot::F32(v) = s { Some(v) } else { None })
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        if self.shared.world == 1 {
            return Ok(());
        }
        let slots = self.exchange(Slot::F64(buf.to_vec()))?;
        sum_into(buf, &slots, |s| if let Slot::F64(v) = s { Some(v) } else { None })
    }

    fn barrier(&self) -> Result<()> {
        let slots = self.exchange(Slot::Barrier)?;
        match slots.iter().position(|s| !matches!(s, Slot::Barrier)) {
            Some(rank) => Err(distributed(&format!("rank {rank} called another collective than barrier"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_in_rank_order_on_every_rank() -> Result<()> {
        let group = LocalCommunicator::group(3)?;
        let results: Vec<Result<Vec<f32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|comm| {
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for round in 0..50 {
                            let mut buf = vec![comm.rank() as f32 + round as f32, 1e8, 1.0];
                            comm.all_reduce_sum_f32(&mut buf)?;
                            out.extend(buf);
                            comm.barrier()?;
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(distributed("panic")))).collect()
        });
        let results: Vec<Vec<f32>> = results.into_iter().collect::<Result<_>>()?;
        assert!(results.iter().all(|r| r == &results[0]));
        assert_eq!(&results[0][..3], &[3.0, 3e8, 3.0]);
        Ok(())
    }

    #[test]
    fn a_departed_rank_is_an_error_not_a_hang() -> Result<()> {
        let mut group = LocalCommunicator::group(2)?;
        let survivor = group.remove(0);
        drop(group);
        let mut buf = [1f64];
        assert!(matches!(survivor.all_reduce_sum_f64(&mut buf), Err(TrainError::Distributed(_))));
        Ok(())
    }

    #[test]
    fn mismatched_lengths_are_an_error() -> Result<()> {
        let group = LocalCommunicator::group(2)?;
        let errors: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|comm| {
                    s.spawn(move || {
                        let mut buf = vec![0f32; 1 + comm.rank()];
                        comm.all_reduce_sum_f32(&mut buf).is_err()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(false)).collect()
        });
        assert_eq!(errors, vec![true, true]);
        Ok(())
    }
}
