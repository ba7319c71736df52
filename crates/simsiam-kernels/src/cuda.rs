//! CUDA kernels for max-pooling and training-mode batch normalisation, `f32` only.
//!
//! The CUDA C source ([`SOURCE`]) is compiled to PTX with NVRTC on first use (once per
//! process) and loaded into each device as the module [`MODULE`]. Every kernel mirrors the CPU
//! kernel it replaces: the same window arithmetic and first-maximum rule for max-pooling, the
//! same per-channel values (mean, variance, the `f32`-rounded mean and scale) for batch
//! normalisation, with explicit `__fmul_rn`/`__fadd_rn` so that the forward and backward
//! passes compute the ReLU mask from the same bits. Reductions use a fixed tree, so results
//! are deterministic (no atomics).

use std::sync::OnceLock;

use candle::backend::BackendStorage;
use candle::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchConfig, PushKernelArg};
use candle::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle::{Layout, Result};

use crate::max_pool::MaxPool2dConfig;

/// The module name our kernels are loaded under in each device.
pub(crate) const MODULE: &str = "simsiam_kernels";

/// Threads per block; the block reduction assumes a power of two.
const THREADS: u32 = 256;

/// CUDA C source of every kernel, `cuda.cu` (no includes, so NVRTC needs no header path).
pub const SOURCE: &str = include_str!("cuda.cu");

/// The PTX of [`SOURCE`], compiled once per process.
pub fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    let compiled = PTX.get_or_init(|| {
        candle::cuda_backend::cudarc::nvrtc::compile_ptx(SOURCE)
            .map(|p| p.to_src())
            .map_err(|e| format!("{e:?}"))
    });
    match compiled {
        Ok(ptx) => Ok(ptx),
        Err(e) => candle::bail!("NVRTC could not compile simsiam's kernels: {e}"),
    }
}

/// A grid-stride launch over `total` elements.
fn elementwise(total: usize) -> LaunchConfig {
    // Enough blocks to fill any current GPU; the kernels loop over the rest.
    let blocks = total.div_ceil(THREADS as usize).clamp(1, 65_536) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// One block per channel.
fn per_channel(c: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (c as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// The contiguous `f32` elements of `storage` under `layout`.
fn view<'a>(storage: &'a CudaStorage, layout: &Layout, op: &str) -> Result<CudaView<'a, f32>> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle::bail!("{op}: the CUDA kernel needs a contiguous input")
    };
    Ok(storage.as_cuda_slice::<f32>()?.slice(start..end))
}

fn int(v: usize, op: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| candle::Error::Msg(format!("{op}: size {v} exceeds i32")))
}

/// Max-pool forward: `x` `[n, c, h, w]` -> `[n, c, oh, ow]`.
pub(crate) fn max_pool_fwd(
    x: &CudaStorage,
    layout: &Layout,
    c: MaxPool2dConfig,
    (planes, h, w, oh, ow): (usize, usize, usize, usize, usize),
) -> Result<CudaStorage> {
    const OP: &str = "max_pool2d";
    let dev = x.device().clone();
    let xs = view(x, layout, OP)?;
    let total = planes * oh * ow;
    let mut y = dev.alloc_zeros::<f32>(total)?;
    let func = dev.get_or_load_custom_func("max_pool_fwd", MODULE, ptx()?)?;
    let mut b = func.builder();
    let (planes, dims) = (planes as i64, [h, w, oh, ow, c.kernel, c.stride, c.padding].map(|v| int(v, OP)));
    let dims: Vec<i32> = dims.into_iter().collect::<Result<_>>()?;
    b.arg(&xs);
    b.arg(&mut y);
    b.arg(&planes);
    for d in &dims {
        b.arg(d);
    }
    // SAFETY: the arguments match the kernel's signature; buffers hold the sizes it indexes.
    unsafe { b.launch(elementwise(total)) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(y, dev))
}

/// Max-pool backward: `(x, dy)` -> `dx`, `x`'s shape.
pub(crate) fn max_pool_bwd(
    x: &CudaStorage,
    lx: &Layout,
    dy: &CudaStorage,
    ldy: &Layout,
    c: MaxPool2dConfig,
    (planes, h, w, oh, ow): (usize, usize, usize, usize, usize),
) -> Result<CudaStorage> {
    const OP: &str = "max_pool2d backward";
    let dev = x.device().clone();
    let (xs, dys) = (view(x, lx, OP)?, view(dy, ldy, OP)?);
    let total = planes * h * w;
    let mut dx = dev.alloc_zeros::<f32>(total)?;
    let func = dev.get_or_load_custom_func("max_pool_bwd", MODULE, ptx()?)?;
    let mut b = func.builder();
    let planes = planes as i64;
    let dims: Vec<i32> = [h, w, oh, ow, c.kernel, c.stride, c.padding]
        .map(|v| int(v, OP))
        .into_iter()
        .collect::<Result<_>>()?;
    b.arg(&xs);
    b.arg(&dys);
    b.arg(&mut dx);
    b.arg(&planes);
    for d in &dims {
        b.arg(d);
    }
    // SAFETY: as in `max_pool_fwd`.
    unsafe { b.launch(elementwise(total)) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(dx, dev))
}

/// Per-channel values of a batch-norm forward pass, copied to the host: mean, var, invstd,
/// mean_t, scale, shift (see the CPU kernel's `Saved`).
pub(crate) type Stats = [Vec<f64>; 6];

/// `(n, c, s)`: samples, channels, positions per channel.
pub(crate) type BnDims = (usize, usize, usize);

/// Batch-norm forward: `y` and the statistics.
pub(crate) fn batch_norm_fwd(
    x: &CudaStorage,
    lx: &Layout,
    wb: Option<(&CudaStorage, &Layout, &CudaStorage, &Layout)>,
    (n, c, s): BnDims,
    eps: f64,
    relu: bool,
) -> Result<(CudaStorage, Stats)> {
    const OP: &str = "batch_norm";
    let dev = x.device().clone();
    let xs = view(x, lx, OP)?;
    let total = n * c * s;
    let mut st = dev.alloc_zeros::<f64>(6 * c)?;
    let (ni, ci, si) = (int(n, OP)?, int(c, OP)?, s as i64);
    {
        let func = dev.get_or_load_custom_func("bn_stats", MODULE, ptx()?)?;
        let mut b = func.builder();
        let wbv = match wb {
            Some((w, lw, bias, lb)) => Some((view(w, lw, OP)?, view(bias, lb, OP)?)),
            None => None,
        };
        // Without affine the kernel never reads w and b: pass x in their place.
        let (ws, bs) = match &wbv {
            Some((w, bias)) => (w, bias),
            None => (&xs, &xs),
        };
        let affine = i32::from(wb.is_some());
        b.arg(&xs);
        b.arg(ws);
        b.arg(bs);
        b.arg(&mut st);
        b.arg(&ni);
        b.arg(&ci);
        b.arg(&si);
        b.arg(&eps);
        b.arg(&affine);
        // SAFETY: as in `max_pool_fwd`; st holds 6c values.
        unsafe { b.launch(per_channel(c)) }.w()?;
    }
    let mut y = dev.alloc_zeros::<f32>(total)?;
    apply(&dev, &xs, &mut y, &st, (total, c, s), relu)?;
    let host = dev.clone_dtoh(&st)?;
    let stats = std::array::from_fn(|i| host[i * c..(i + 1) * c].to_vec());
    Ok((CudaStorage::wrap_cuda_slice(y, dev), stats))
}

fn apply(
    dev: &CudaDevice,
    xs: &CudaView<'_, f32>,
    y: &mut CudaSlice<f32>,
    st: &CudaSlice<f64>,
    (total, c, s): (usize, usize, usize),
    relu: bool,
) -> Result<()> {
    let func = dev.get_or_load_custom_func("bn_apply", MODULE, ptx()?)?;
    let mut b = func.builder();
    let (total_i, ci, si, relu) = (total as i64, int(c, "batch_norm")?, s as i64, i32::from(relu));
    b.arg(xs);
    b.arg(y);
    b.arg(st);
    b.arg(&total_i);
    b.arg(&ci);
    b.arg(&si);
    b.arg(&relu);
    // SAFETY: as in `max_pool_fwd`.
    unsafe { b.launch(elementwise(total)) }.w()?;
    Ok(())
}

/// Batch-norm backward: `[dx (x's elements), dweight (c), dbias (c)]`, given the forward
/// pass's statistics.
pub(crate) fn batch_norm_bwd(
    x: &CudaStorage,
    lx: &Layout,
    dy: &CudaStorage,
    ldy: &Layout,
    stats: [&[f64]; 6],
    (n, c, s): BnDims,
    relu: bool,
) -> Result<CudaStorage> {
    const OP: &str = "batch_norm backward";
    let dev = x.device().clone();
    let (xs, dys) = (view(x, lx, OP)?, view(dy, ldy, OP)?);
    let total = n * c * s;
    let host: Vec<f64> = stats.concat();
    if host.len() != 6 * c {
        candle::bail!("{OP}: statistics for {} channels, expected {c}", host.len() / 6);
    }
    let st = dev.clone_htod(host.as_slice())?;
    let mut k = dev.alloc_zeros::<f64>(2 * c)?;
    let mut out = dev.alloc_zeros::<f32>(total + 2 * c)?;
    let (ni, ci, si, len, relu) = (int(n, OP)?, int(c, OP)?, s as i64, total as i64, i32::from(relu));
    {
        let func = dev.get_or_load_custom_func("bn_bwd_sums", MODULE, ptx()?)?;
        let mut b = func.builder();
        b.arg(&xs);
        b.arg(&dys);
        b.arg(&st);
        b.arg(&mut k);
        b.arg(&mut out);
        b.arg(&len);
        b.arg(&ni);
        b.arg(&ci);
        b.arg(&si);
        b.arg(&relu);
        // SAFETY: as in `max_pool_fwd`; out holds total + 2c values, k 2c.
        unsafe { b.launch(per_channel(c)) }.w()?;
    }
    {
        let func = dev.get_or_load_custom_func("bn_bwd_dx", MODULE, ptx()?)?;
        let mut b = func.builder();
        b.arg(&xs);
        b.arg(&dys);
        b.arg(&st);
        b.arg(&k);
        b.arg(&mut out);
        b.arg(&len);
        b.arg(&ci);
        b.arg(&si);
        b.arg(&relu);
        // SAFETY: as in `max_pool_fwd`; the kernel writes the first `total` values only.
        unsafe { b.launch(elementwise(total)) }.w()?;
    }
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}

#[cfg(test)]
mod tests {
    /// Needs no GPU: NVRTC alone compiles the source (the library loads without a driver).
    #[test]
    fn source_compiles_with_nvrtc() {
        match super::ptx() {
            Ok(ptx) => {
                for f in ["max_pool_fwd", "max_pool_bwd", "bn_stats", "bn_apply", "bn_bwd_sums", "bn_bwd_dx"]
                {
                    assert!(ptx.contains(&format!(".entry {f}(")), "{f} missing from the PTX");
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
}
