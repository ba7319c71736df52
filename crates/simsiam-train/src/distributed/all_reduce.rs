//! All-reduce on candle tensors, differentiable: the gradient of a sum over ranks is the sum
//! over ranks of the gradients, so the backward pass of an all-reduce is an all-reduce.

use std::sync::Arc;

use candle::backend::BackendStorage;
use candle::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use super::Communicator;

/// The elementwise sum of `x` over all ranks, on every rank, differentiable: its backward
/// pass all-reduces the incoming gradient, which makes every rank's backward pass compute the
/// gradient of the sum of all ranks' losses with respect to its own inputs. Every rank must
/// call it (and run the backward pass through it) in the same order.
///
/// `f32` and `f64` are reduced as they are; other dtypes through `f32`.
pub fn all_reduce_sum(x: &Tensor, comm: &Arc<dyn Communicator>) -> candle::Result<Tensor> {
    apply(x, comm, true)
}

/// [`all_reduce_sum`] without a backward pass: for gradients, statistics and metrics.
pub fn all_reduce_sum_detached(x: &Tensor, comm: &Arc<dyn Communicator>) -> candle::Result<Tensor> {
    apply(&x.detach(), comm, false)
}

fn apply(x: &Tensor, comm: &Arc<dyn Communicator>, grad: bool) -> candle::Result<Tensor> {
    if comm.world_size() == 1 {
        return Ok(x.clone());
    }
    let op = AllReduceSum { comm: comm.clone() };
    match x.dtype() {
        DType::F32 | DType::F64 => {
            let x = x.contiguous()?;
            if grad { x.apply_op1(op) } else { x.apply_op1_no_bwd(&op) }
        }
        dtype => {
            let x = x.to_dtype(DType::F32)?.contiguous()?;
            let y = if grad { x.apply_op1(op)? } else { x.apply_op1_no_bwd(&op)? };
            y.to_dtype(dtype)
        }
    }
}

struct AllReduceSum {
    comm: Arc<dyn Communicator>,
}

/// Sums a contiguous `f32` or `f64` host buffer over the ranks of `comm`.
pub(crate) fn host_all_reduce<C: Communicator + ?Sized>(
    comm: &C,
    storage: &CpuStorage,
    layout: &Layout,
) -> candle::Result<CpuStorage> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle::bail!("all-reduce: the input must be contiguous");
    };
    match storage {
        CpuStorage::F32(v) => {
            let mut buf = v[start..end].to_vec();
            comm.all_reduce_sum_f32(&mut buf).map_err(candle::Error::wrap)?;
            Ok(CpuStorage::F32(buf))
        }
        CpuStorage::F64(v) => {
            let mut buf = v[start..end].to_vec();
            comm.all_reduce_sum_f64(&mut buf).map_err(candle::Error::wrap)?;
            Ok(CpuStorage::F64(buf))
        }
        s => candle::bail!("all-reduce: unsupported dtype {:?}", s.dtype()),
    }
}

impl CustomOp1 for AllReduceSum {
    fn name(&self) -> &'static str {
        "simsiam-all-reduce-sum"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        Ok((host_all_reduce(self.comm.as_ref(), storage, layout)?, layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle::CudaStorage,
        layout: &Layout,
    ) -> candle::Result<(candle::CudaStorage, Shape)> {
        Ok((self.comm.all_reduce_sum_cuda(storage, layout)?, layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle::Result<Option<Tensor>> {
        let op = AllReduceSum { comm: self.comm.clone() };
        Ok(Some(dy.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}
