//! [`Communicator`] over NCCL: one process (or thread) per GPU. Compiled with the `nccl`
//! feature; not run by this repository's tests, and not yet compiled anywhere (see docs/cuda.md).

use std::sync::Mutex;

use candle::backend::BackendStorage;
use candle::cuda::cudarc::driver::CudaSlice;
use candle::cuda::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle::{CudaDevice, CudaStorage, DType, Device, Layout};

use super::Communicator;
use crate::{Result, TrainError};

/// The 128-byte NCCL unique id that every rank needs to join a group: rank 0 makes one with
/// [`NcclId::new`], sends [`NcclId::to_bytes`] to the others out of band (a file on a shared
/// disk, an environment variable, a socket), and they rebuild it with [`NcclId::from_bytes`].
#[derive(Debug, Clone, Copy)]
pub struct NcclId(Id);

impl NcclId {
    /// A fresh id (rank 0 only).
    pub fn new() -> Result<Self> {
        Id::new().map(Self).map_err(|e| nccl_error("ncclGetUniqueId", e))
    }

    /// The id's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.internal().iter().map(|&c| c as u8).collect()
    }

    /// An id from [`NcclId::to_bytes`]' output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut internal = [0 as std::ffi::c_char; 128];
        if bytes.len() != internal.len() {
            return Err(TrainError::Distributed(format!(
                "an NCCL id has {} bytes, got {}",
                internal.len(),
                bytes.len()
            )));
        }
        for (dst, &src) in internal.iter_mut().zip(bytes) {
            *dst = src as std::ffi::c_char;
        }
        Ok(Self(Id::uninit(internal)))
    }
}

/// Rank `rank` of an NCCL group on one CUDA device, reducing on the device's stream.
///
/// Tensors on the device are all-reduced in place on the GPU ([`Communicator::
/// all_reduce_sum_cuda`]); host buffers are copied to the device, reduced and copied back.
#[derive(Debug)]
pub struct NcclCommunicator {
    comm: Mutex<Comm>,
    device: CudaDevice,
    rank: usize,
    world: usize,
}

// SAFETY: `Comm` holds a raw `ncclComm_t`, which NCCL allows to be used from any thread but
// not from two at once; every use goes through the mutex.
unsafe impl Send for NcclCommunicator {}
// SAFETY: as above, shared access is serialised by the mutex.
unsafe impl Sync for NcclCommunicator {}

impl NcclCommunicator {
    /// Joins the group `id` as `rank` of `world` on `device` (a CUDA device, usually ordinal
    /// `rank` on a single node). Blocks until every rank has joined.
    pub fn new(device: &Device, rank: usize, world: usize, id: NcclId) -> Result<Self> {
        let Device::Cuda(cuda) = device else {
            return Err(TrainError::Config(format!("NCCL needs a CUDA device, got {device:?}")));
        };
        if rank >= world {
            return Err(TrainError::Config(format!("rank {rank} is not in a group of {world}")));
        }
        let comm = Comm::from_rank(cuda.cuda_stream(), rank, world, id.0)
            .map_err(|e| nccl_error("ncclCommInitRank", e))?;
        Ok(Self { comm: Mutex::new(comm), device: cuda.clone(), rank, world })
    }

    fn reduce_host<T>(&self, buf: &mut [T]) -> Result<()>
    where
        T: candle::cuda::cudarc::driver::DeviceRepr
            + candle::cuda::cudarc::nccl::safe::NcclType
            + Copy
            + 'static,
    {
        if buf.is_empty() || self.world == 1 {
            return Ok(());
        }
        let mut slice = self.device.clone_htod(&*buf)?;
        {
            let comm = self.comm.lock().map_err(|_| TrainError::Distributed("poisoned NCCL lock".into()))?;
            comm.all_reduce_in_place(&mut slice, &ReduceOp::Sum)
                .map_err(|e| nccl_error("ncclAllReduce", e))?;
        }
        let reduced: Vec<T> = self.device.clone_dtoh(&slice)?;
        buf.copy_from_slice(&reduced);
        Ok(())
    }

    fn reduce_device<T>(&self, src: &CudaSlice<T>, start: usize, end: usize) -> candle::Result<CudaSlice<T>>
    where
        T: candle::cuda::cudarc::driver::DeviceRepr
            + candle::cuda::cudarc::driver::ValidAsZeroBits
            + candle::cuda::cudarc::nccl::safe::NcclType,
    {
        let view = src.slice(start..end);
        let mut dst = self.device.alloc_zeros::<T>(end - start)?;
        let comm = self.comm.lock().map_err(|_| candle::Error::Msg("poisoned NCCL lock".into()))?;
        comm.all_reduce(&view, &mut dst, &ReduceOp::Sum)
            .map_err(|e| candle::Error::Msg(format!("ncclAllReduce: {e:?}")))?;
        Ok(dst)
    }
}

fn nccl_error(call: &str, e: impl std::fmt::Debug) -> TrainError {
    TrainError::Distributed(format!("{call}: {e:?}"))
}

impl Communicator for NcclCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.reduce_host(buf)
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.reduce_host(buf)
    }

    fn barrier(&self) -> Result<()> {
        let mut one = [0f32];
        self.reduce_host(&mut one)?; // the copy back waits for the reduction on every rank
        Ok(())
    }

    fn all_reduce_sum_cuda(&self, storage: &CudaStorage, layout: &Layout) -> candle::Result<CudaStorage> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle::bail!("all-reduce: the input must be contiguous");
        };
        let device = self.device.clone();
        match storage.dtype() {
            DType::F32 => {
                let out = self.reduce_device(storage.as_cuda_slice::<f32>()?, start, end)?;
                Ok(CudaStorage::wrap_cuda_slice(out, device))
            }
            DType::F64 => {
                let out = self.reduce_device(storage.as_cuda_slice::<f64>()?, start, end)?;
                Ok(CudaStorage::wrap_cuda_slice(out, device))
            }
            dtype => candle::bail!("NCCL all-reduce: unsupported dtype {dtype:?} (convert to f32)"),
        }
    }
}
