//! Fast CPU training kernels for candle: convolution, batch normalisation and max-pooling as
//! candle custom ops with their backward passes, for any candle CNN.
//!
//! - [`conv2d`]: bias-free, single-group, undilated 2-D convolution through im2col onto our
//!   AVX2/FMA `f32` matrix product (the `gemm` crate's elsewhere), Winograd `F(2x2, 3x3)` on
//!   wide maps, with its input and weight gradients as further custom ops.
//! - [`batch_norm_train`]: training-mode batch normalisation (statistics, normalisation,
//!   affine and an optional ReLU) as one op per direction, and [`batch_norm_add_relu_train`],
//!   which also adds a residual block's identity before the ReLU; [`batch_norm_eval`]:
//!   evaluation mode (running statistics, the residual, the ReLU) in one pass on the CPU;
//!   [`batch_norm_train_taped`]: training mode outside candle's graph, with a tape for a
//!   network's own backward pass (candle's autograd zero-fills every gradient and adds into it).
//! - [`linear`]: a fully connected layer's `x wᵀ` and its gradients on the same product.
//! - [`max_pool2d`]: PyTorch's `MaxPool2d` with padding and overlapping windows (candle's has
//!   neither), forward and backward.
//! - [`sgd_step`]: one `torch.optim.SGD` update of a parameter and its momentum buffer in
//!   place, in two parallel passes.
//! - [`KernelOptions`]: the program's choices (vector level, Winograd, candle's stock ops
//!   instead), installed once with [`set_kernel_options`]; this crate reads no environment.
//! - [`keep_freed_memory`]: glibc `malloc` settings that let a training loop reuse its freed
//!   step buffers; [`park_idle_candle_threads`]: candle's element-wise threads park between
//!   ops instead of spinning beside our kernels' threads.
//!
//! The kernels run for `f32` and `f64` tensors on the CPU. With the `cuda` feature, batch norm
//! and max-pooling run our own CUDA kernels on `f32` CUDA tensors ([`cuda`], compiled with
//! NVRTC at first use) and the convolutions go to candle's CUDA conv2d (cuDNN with `cudnn`).
//! Other dtypes and devices fall back to candle's stock ops.

mod allocator;
mod batch_norm;
mod batch_norm_eval;
mod buffer;
mod candle_threads;
mod conv;
#[cfg(feature = "cuda")]
pub mod cuda;
mod gemm;
mod linear;
mod max_pool;
mod options;
mod sgd_step;
mod sgemm;
#[cfg(test)]
mod testing;
mod view;

pub use allocator::keep_freed_memory;
pub use batch_norm::{
    BatchNormGrads, BatchNormStats, BatchNormTape, batch_norm_add_relu_train, batch_norm_train,
    batch_norm_train_taped, taped_backward_applies,
};
pub use batch_norm_eval::batch_norm_eval;
pub use candle_threads::park_idle_candle_threads;
pub use conv::{Conv2dParams, conv2d, conv2d_input_grad, conv2d_weight_grad};
pub use linear::linear;
pub use max_pool::{MaxPool2dConfig, max_pool2d, max_pool2d_backward};
pub use options::{Isa, KernelOptions, Winograd, kernel_options, set_kernel_options};
pub use sgd_step::{SgdStep, sgd_step};

use candle::backend::BackendStorage;
use candle::{CpuStorage, DType, Layout, Result, Tensor, WithDType};

/// The element types the kernels handle: `f32` and `f64`.
pub(crate) trait Float: WithDType + Default {
    /// The storage variant that holds this type.
    fn slice(storage: &CpuStorage) -> Option<&[Self]>;
    /// The same elements as `f32`, when `Self` is `f32` (for our own `f32` matrix product).
    fn as_f32(data: &[Self]) -> Option<&[f32]>;
    /// The same elements as mutable `f32`, when `Self` is `f32`.
    fn as_f32_mut(data: &mut [Self]) -> Option<&mut [f32]>;
}

impl Float for f32 {
    fn slice(storage: &CpuStorage) -> Option<&[Self]> {
        match storage {
            CpuStorage::F32(d) => Some(d),
            _ => None,
        }
    }
    fn as_f32(data: &[Self]) -> Option<&[f32]> {
        Some(data)
    }
    fn as_f32_mut(data: &mut [Self]) -> Option<&mut [f32]> {
        Some(data)
    }
}

impl Float for f64 {
    fn slice(storage: &CpuStorage) -> Option<&[Self]> {
        match storage {
            CpuStorage::F64(d) => Some(d),
            _ => None,
        }
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

/// Defines `fn $name<T: Float>(args) -> R` that runs `$kernel::<T>(args)` compiled for AVX2
/// and FMA where the CPU has them (detected once), as PyTorch picks its vectorised kernels at
/// run time while the build targets plain x86-64. `$kernel` should be `#[inline(always)]`, so
/// that its loops are compiled into the AVX2 copy. Mul and add are never fused into FMA
/// without permission, so both copies give the same bits.
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $kernel:ident;) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        fn $name<T: Float>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if crate::options::avx2() {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2<T: Float>($($arg: $ty),*) $(-> $ret)? {
                    $kernel::<T>($($arg),*)
                }
                // SAFETY: `options::avx2` checked that this CPU has AVX2 and FMA.
                return unsafe { avx2::<T>($($arg),*) };
            }
            $kernel::<T>($($arg),*)
        }
    };
}
pub(crate) use avx2_dispatch;

/// Whether `t` can go through our kernels: an f32 or f64 tensor on the CPU, or an f32 tensor
/// on a CUDA device (with the `cuda` feature), unless [`KernelOptions::stock`] sends
/// everything through candle's stock ops.
pub(crate) fn on_fast_path(t: &Tensor) -> bool {
    let cpu = t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64);
    let cuda = cfg!(feature = "cuda") && t.device().is_cuda() && t.dtype() == DType::F32;
    !kernel_options().stock && (cpu || cuda)
}

/// Whether an op of `x` and `w` takes our CPU kernels: both on the CPU, the same dtype, and
/// `x` on the [`on_fast_path`].
pub(crate) fn on_cpu_fast_path(x: &Tensor, w: &Tensor) -> bool {
    x.device().is_cpu() && on_fast_path(x) && w.device().is_cpu() && w.dtype() == x.dtype()
}

/// Evaluates `$body` with the type `$T` bound to the element type of `$storage` (`f32` or
/// `f64`) and wraps the `Vec<$T>` it returns back into a [`CpuStorage`]; other dtypes are an
/// error naming the op `$op`. The one place the kernels turn a dtype into a type.
macro_rules! with_float {
    ($storage:expr, $op:expr, |$T:ident| $body:expr) => {
        match candle::backend::BackendStorage::dtype($storage) {
            candle::DType::F32 => {
                type $T = f32;
                candle::CpuStorage::F32($body)
            }
            candle::DType::F64 => {
                type $T = f64;
                candle::CpuStorage::F64($body)
            }
            dtype => candle::bail!("{}: unsupported dtype {dtype:?}", $op),
        }
    };
}
pub(crate) use with_float;

/// [`with_float!`] on two operands' contiguous slices, bound to `$a` and `$b` in `$body`.
macro_rules! dispatch2 {
    ($op:expr, $s1:expr, $l1:expr, $s2:expr, $l2:expr, |$a:ident, $b:ident| $body:expr) => {
        $crate::with_float!($s1, $op, |T| {
            let $a = $crate::contiguous_slice::<T>($s1, $l1, $op, "first operand")?;
            let $b = $crate::contiguous_slice::<T>($s2, $l2, $op, "second operand")?;
            $body
        })
    };
}
pub(crate) use dispatch2;

/// The contiguous elements of a tensor's storage, or an error naming the op and operand.
pub(crate) fn contiguous_slice<'a, T: Float>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
    what: &str,
) -> Result<&'a [T]> {
    let Some(data) = T::slice(storage) else {
        candle::bail!("{op}: {what} has dtype {:?}, expected {:?}", storage.dtype(), T::DTYPE)
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle::bail!("{op}: {what} must be contiguous"),
    }
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
