//! Bias-free 2-D convolution (one group, no dilation) through im2col/col2im and `gemm`.
//!
//! The batch is cut into chunks of whole samples whose im2col matrices hold about
//! [`target_columns`] columns each, at least one chunk per thread once each gets
//! [`MIN_COLUMNS_PER_THREAD`]; chunks run in parallel on rayon, each with a single-threaded
//! product, and a batch that fits one chunk runs one product on all threads instead. Chunks
//! whose shape [`panels`] takes unfold straight into the product's packed panels instead of an
//! im2col matrix; stride-1 input gradients are forward convolutions with flipped weights
//! instead of col2im. `f32` weight gradients pack both operands straight from the tensors
//! ([`weight_panels`]). 1x1 stride-1 convolutions of a single sample skip im2col: the input
//! already is the matrix, and convolutions of maps with fewer positions than kernel taps (1x1
//! and 2x2 maps under 3x3 kernels) are one product with a dense matrix of the taps that meet
//! the input ([`dense`]). 3x3, stride-1, padding-1 `f32` convolutions on wide maps, or with
//! 512 channels below AVX-512, take the Winograd path instead ([`winograd`];
//! [`KernelOptions::winograd`](crate::KernelOptions) turns it off or takes it wherever it fits).

use candle::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{MatMut, MatRef, Parallelism, matmul};
use crate::buffer::zeroed;
use crate::{Float, contiguous_slice, dispatch2, on_cpu_fast_path};

mod dense;
mod panels;
mod weight_panels;
mod winograd;

/// Stride and zero padding of a convolution, the same along both axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between windows.
    pub stride: usize,
    /// Zeros added on each side.
    pub padding: usize,
}

/// Convolves `x` with `weight`, without bias, as `torch.nn.functional.conv2d` with one group
/// and no dilation. Differentiable in both arguments.
///
/// `f32`/`f64` tensors on the CPU go through our kernels (any layout: non-contiguous inputs
/// are copied first); anything else through candle's `conv2d`.
///
/// # Shapes
/// - `x`: `[batch, in, h, w]`
/// - `weight`: `[out, in, kh, kw]`
/// - returns `[batch, out, (h + 2p - kh) / s + 1, (w + 2p - kw) / s + 1]`
pub fn conv2d(x: &Tensor, weight: &Tensor, params: Conv2dParams) -> Result<Tensor> {
    // CUDA goes to candle's conv2d (cuDNN with the `cudnn` feature): candle's storage-level
    // convolutions take parameters that only candle can build, so no `cuda_fwd` here.
    if on_cpu_fast_path(x, weight) {
        Geometry::new(x.dims4()?, weight.dims4()?, params)?;
        x.contiguous()?.apply_op2(&weight.contiguous()?, Conv2dOp(params))
    } else {
        x.conv2d(weight, params.padding, params.stride, 1, 1)
    }
}

/// The gradient of [`conv2d`] with respect to its input, for an input of `h x w`: a
/// transposed convolution through `gemm` and col2im. Not differentiable.
///
/// # Shapes
/// - `dy`: `[batch, out, oh, ow]`, `weight`: `[out, in, kh, kw]`
/// - returns `[batch, in, h, w]`
pub fn conv2d_input_grad(
    dy: &Tensor,
    weight: &Tensor,
    params: Conv2dParams,
    (h, w): (usize, usize),
) -> Result<Tensor> {
    if !dy.device().is_cpu() {
        // candle's own formula (its conv2d backward): a transposed convolution.
        let (_, _, kh, kw) = weight.dims4()?;
        let (_, _, oh, ow) = dy.dims4()?;
        let (s, p) = (params.stride, params.padding);
        // One output padding for both axes: the larger, then cut to h x w.
        let pad_h = (h + 2 * p).saturating_sub((oh.max(1) - 1) * s + kh);
        let pad_w = (w + 2 * p).saturating_sub((ow.max(1) - 1) * s + kw);
        let dx = dy.conv_transpose2d(weight, p, pad_h.max(pad_w), s, 1)?;
        return dx.narrow(2, 0, h)?.narrow(3, 0, w);
    }
    dy.contiguous()?.apply_op2_no_bwd(&weight.contiguous()?, &ConvInputGrad { params, h, w })
}

/// The gradient of [`conv2d`] with respect to its weight, for a `kh x kw` kernel: one matrix
/// product over the whole batch. Not differentiable.
///
/// # Shapes
/// - `x`: `[batch, in, h, w]`, `dy`: `[batch, out, oh, ow]`
/// - returns `[out, in, kh, kw]`
pub fn conv2d_weight_grad(
    x: &Tensor,
    dy: &Tensor,
    params: Conv2dParams,
    (kh, kw): (usize, usize),
) -> Result<Tensor> {
    if !x.device().is_cpu() {
        // candle's own formula (its conv2d backward): a convolution over the batch axis.
        let (s, p) = (params.stride, params.padding);
        let g = x.transpose(0, 1)?.conv2d(&dy.transpose(0, 1)?, p, 1, s, 1)?.transpose(0, 1)?;
        return g.narrow(2, 0, kh)?.narrow(3, 0, kw);
    }
    x.contiguous()?.apply_op2_no_bwd(&dy.contiguous()?, &ConvWeightGrad { params, kh, kw })
}

/// Columns of one chunk's im2col matrix to aim for ([`crate::KernelOptions::conv_columns`]).
fn target_columns() -> usize {
    crate::kernel_options().conv_columns
}

/// Fewer output columns per thread than this stay in one chunk, whose product splits its
/// rows over the threads instead (each thread then packs its rows of the weights only).
const MIN_COLUMNS_PER_THREAD: usize = 256;

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    s: usize,
    p: usize,
}

impl Geometry {
    fn new(
        (n, ci, h, w): (usize, usize, usize, usize),
        (co, wci, kh, kw): (usize, usize, usize, usize),
        params: Conv2dParams,
    ) -> Result<Self> {
        let Conv2dParams { stride: s, padding: p } = params;
        if wci != ci || s == 0 || kh == 0 || kw == 0 || h + 2 * p < kh || w + 2 * p < kw {
            candle::bail!(
                "conv2d: input [{n}, {ci}, {h}, {w}] and weight [{co}, {wci}, {kh}, {kw}] do not fit with {params:?}"
            );
        }
        let (oh, ow) = ((h + 2 * p - kh) / s + 1, (w + 2 * p - kw) / s + 1);
        Ok(Self { n, ci, h, w, co, kh, kw, oh, ow, s, p })
    }

    /// Rows of the im2col matrix.
    fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }

    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    fn in_sample(&self) -> usize {
        self.ci * self.h * self.w
    }

    fn out_sample(&self) -> usize {
        self.co * self.oh * self.ow
    }

    /// Whether the forward pass unfolds straight into the product's panels: chunks of
    /// samples on one thread each, and a shape [`panels`] takes.
    fn unfolds_into_panels(&self) -> bool {
        matches!(self.chunking().1, Parallelism::None) && panels::applies(self)
    }

    /// For a stride-1 convolution with a square kernel wider than 1x1 and padding below its
    /// size: the convolution that gives its input gradient, `dx = conv(dy, flip(w)ᵀ)` with
    /// padding `k - 1 - p`, when that one unfolds into panels (and has at least 16 output
    /// channels, which a network's first layer, with 3, does not), in place of a product into
    /// a column matrix and col2im.
    fn input_grad_as_forward(&self) -> Option<Self> {
        let k = self.kh;
        if self.s != 1 || self.kw != k || k < 2 || self.p >= k || self.ci < 16 {
            return None;
        }
        let (h, w, oh, ow) = (self.oh, self.ow, self.h, self.w);
        let g = Self { n: self.n, ci: self.co, h, w, co: self.ci, oh, ow, s: 1, p: k - 1 - self.p, ..*self };
        g.unfolds_into_panels().then_some(g)
    }

    /// A 1x1, stride-1, unpadded convolution: im2col is the identity.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.s == 1 && self.p == 0
    }

    /// Samples per chunk, and the `gemm` parallelism each chunk should use.
    fn chunking(&self) -> (usize, Parallelism) {
        let threads = rayon::current_num_threads().max(1);
        let total = self.n * self.out_plane().max(1);
        let mut chunks = total.div_ceil(target_columns()).max(1);
        // One chunk per thread as soon as each gets a few hundred columns: one chunk would
        // unfold on one thread, and its threads would each pack all of the unfolded matrix.
        if chunks > 1 || total >= threads * MIN_COLUMNS_PER_THREAD {
            chunks = chunks.div_ceil(threads) * threads;
        }
        let chunks = chunks.min(self.n).max(1);
        let per_chunk = self.n.div_ceil(chunks).max(1);
        let parallelism = if self.n.div_ceil(per_chunk) == 1 && threads > 1 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        (per_chunk, parallelism)
    }
}

/// The output positions `lo..hi` along one axis whose input position `o * s + k - p` lies in
/// `0..len`.
fn valid_range(out: usize, len: usize, s: usize, p: usize, k: usize) -> (usize, usize) {
    let lo = if p > k { (p - k).div_ceil(s) } else { 0 }.min(out);
    let hi = if len + p > k { ((len - 1 + p - k) / s + 1).min(out) } else { 0 };
    (lo, hi.max(lo))
}

/// Unfolds `m` samples `x: [m, ci, h, w]` into `col: [ci * kh * kw, m * oh * ow]`.
fn im2col<T: Float>(x: &[T], g: &Geometry, m: usize, col: &mut [T]) {
    let (plane, pp) = (g.h * g.w, g.out_plane());
    let cols = m * pp;
    let zero = T::zero();
    for c in 0..g.ci {
        for ky in 0..g.kh {
            let (ylo, yhi) = valid_range(g.oh, g.h, g.s, g.p, ky);
            for kx in 0..g.kw {
                let (xlo, xhi) = valid_range(g.ow, g.w, g.s, g.p, kx);
                let row = (c * g.kh + ky) * g.kw + kx;
                let dst_row = &mut col[row * cols..(row + 1) * cols];
                for j in 0..m {
                    let src = &x[(j * g.ci + c) * plane..][..plane];
                    let dst = &mut dst_row[j * pp..(j + 1) * pp];
                    dst[..ylo * g.ow].fill(zero);
                    dst[yhi * g.ow..].fill(zero);
                    for oy in ylo..yhi {
                        let iy = oy * g.s + ky - g.p;
                        let srow = &src[iy * g.w..(iy + 1) * g.w];
                        let d = &mut dst[oy * g.ow..(oy + 1) * g.ow];
                        d[..xlo].fill(zero);
                        d[xhi..].fill(zero);
                        if g.s == 1 {
                            let off = xlo + kx - g.p;
                            d[xlo..xhi].copy_from_slice(&srow[off..off + (xhi - xlo)]);
                        } else {
                            for (ox, v) in d[xlo..xhi].iter_mut().enumerate() {
                                *v = srow[(ox + xlo) * g.s + kx - g.p];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Folds `col: [ci * kh * kw, m * oh * ow]` back, adding into `dx: [m, ci, h, w]`.
fn col2im<T: Float>(col: &[T], g: &Geometry, m: usize, dx: &mut [T]) {
    let (plane, pp) = (g.h * g.w, g.out_plane());
    let cols = m * pp;
    for c in 0..g.ci {
        for ky in 0..g.kh {
            let (ylo, yhi) = valid_range(g.oh, g.h, g.s, g.p, ky);
            for kx in 0..g.kw {
                let (xlo, xhi) = valid_range(g.ow, g.w, g.s, g.p, kx);
                let row = (c * g.kh + ky) * g.kw + kx;
                let src_row = &col[row * cols..(row + 1) * cols];
                for j in 0..m {
                    let dst = &mut dx[(j * g.ci + c) * plane..][..plane];
                    let src = &src_row[j * pp..(j + 1) * pp];
                    for oy in ylo..yhi {
                        let iy = oy * g.s + ky - g.p;
                        let drow = &mut dst[iy * g.w..(iy + 1) * g.w];
                        let s = &src[oy * g.ow + xlo..oy * g.ow + xhi];
                        if g.s == 1 {
                            let off = xlo + kx - g.p;
                            for (d, &v) in drow[off..off + s.len()].iter_mut().zip(s) {
                                *d += v;
                            }
                        } else {
                            for (ox, &v) in s.iter().enumerate() {
                                drow[(ox + xlo) * g.s + kx - g.p] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Gathers `m` samples of `dy: [m, co, pp]` into `[co, m * pp]`.
fn gather_channels_first<T: Float>(dy: &[T], co: usize, pp: usize, m: usize, dst: &mut Vec<T>) {
    let cols = m * pp;
    dst.resize(co * cols, T::zero());
    for j in 0..m {
        for c in 0..co {
            dst[c * cols + j * pp..][..pp].copy_from_slice(&dy[(j * co + c) * pp..][..pp]);
        }
    }
}

/// The im2col matrix `[k, m * pp]` of `m` samples, borrowed from `x` when the convolution
/// is pointwise over one sample, else unfolded into `buf`.
fn unfold<'a, T: Float>(x: &'a [T], g: &Geometry, m: usize, buf: &'a mut Vec<T>) -> MatRef<'a, T> {
    let cols = m * g.out_plane();
    if g.is_pointwise() && m == 1 {
        return MatRef::row_major(x, g.k(), cols);
    }
    buf.resize(g.k() * cols, T::zero());
    im2col(x, g, m, buf);
    MatRef::row_major(buf, g.k(), cols)
}

/// `dy` of `m` samples as a `[co, m * pp]` matrix, borrowed when `m == 1`.
fn channels_first<'a, T: Float>(dy: &'a [T], g: &Geometry, m: usize, buf: &'a mut Vec<T>) -> MatRef<'a, T> {
    let pp = g.out_plane();
    if m == 1 {
        return MatRef::row_major(dy, g.co, pp);
    }
    gather_channels_first(dy, g.co, pp, m, buf);
    MatRef::row_major(buf, g.co, m * pp)
}

fn forward<T: Float>(x: &[T], w: &[T], g: &Geometry) -> Vec<T> {
    if dense::applies(g) {
        return dense::forward(x, w, g);
    }
    let (k, pp) = (g.k(), g.out_plane());
    let mut out = zeroed(g.n * g.out_sample(), T::zero());
    let (nb, par) = g.chunking();
    let wm = MatRef::row_major(w, g.co, k);
    // Chunks on one thread each unfold straight into the product's panels where they can.
    let direct = g.unfolds_into_panels();
    out.par_chunks_mut(nb * g.out_sample()).enumerate().for_each_init(
        || (Vec::new(), Vec::new(), Vec::new()),
        |(col, tmp, pad), (i, out)| {
            let m = out.len() / g.out_sample();
            let x = &x[i * nb * g.in_sample()..][..m * g.in_sample()];
            if direct && let (Some(x), Some(w), Some(out)) = (T::as_f32(x), T::as_f32(w), T::as_f32_mut(out))
            {
                panels::forward(x, w, g, m, out, pad);
                return;
            }
            let rhs = unfold(x, g, m, col);
            if m == 1 {
                matmul(MatMut::row_major(out, g.co, pp), wm, rhs, false, par);
                return;
            }
            let cols = m * pp;
            tmp.resize(g.co * cols, T::zero());
            matmul(MatMut::row_major(tmp, g.co, cols), wm, rhs, false, par);
            for j in 0..m {
                for c in 0..g.co {
                    out[(j * g.co + c) * pp..][..pp].copy_from_slice(&tmp[c * cols + j * pp..][..pp]);
                }
            }
        },
    );
    out
}

/// `w: [co, ci, kh, kw]` as `[ci, co, kh, kw]`, each kernel rotated by 180 degrees.
///
/// On all threads: this is a pass over the layer's weights on every backward step.
fn flip_transpose<T: Float>(w: &[T], g: &Geometry) -> Vec<T> {
    let kk = g.kh * g.kw;
    let mut out = zeroed(g.co * g.ci * kk, T::zero());
    out.par_chunks_mut(g.co * kk).enumerate().for_each(|(c, dst)| {
        for (o, dst) in dst.chunks_exact_mut(kk).enumerate() {
            let src = &w[(o * g.ci + c) * kk..][..kk];
            for (d, &v) in dst.iter_mut().zip(src.iter().rev()) {
                *d = v;
            }
        }
    });
    out
}

fn input_grad<T: Float>(dy: &[T], w: &[T], g: &Geometry) -> Vec<T> {
    if dense::applies(g) {
        return dense::input_grad(dy, w, g);
    }
    if let Some(tg) = g.input_grad_as_forward() {
        return forward(dy, &flip_transpose(w, g), &tg);
    }
    let (k, pp) = (g.k(), g.out_plane());
    let mut dx = zeroed(g.n * g.in_sample(), T::zero());
    let (nb, par) = g.chunking();
    let wt = MatRef::row_major(w, g.co, k).t();
    dx.par_chunks_mut(nb * g.in_sample()).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(dcol, dyb), (i, dx)| {
            let m = dx.len() / g.in_sample();
            let dy = &dy[i * nb * g.out_sample()..][..m * g.out_sample()];
            let dym = channels_first(dy, g, m, dyb);
            if g.is_pointwise() && m == 1 {
                matmul(MatMut::row_major(dx, g.ci, pp), wt, dym, false, par);
                return;
            }
            let cols = m * pp;
            dcol.resize(k * cols, T::zero());
            matmul(MatMut::row_major(dcol, k, cols), wt, dym, false, par);
            col2im(dcol, g, m, dx);
        },
    );
    dx
}

fn weight_grad<T: Float>(x: &[T], dy: &[T], g: &Geometry) -> Vec<T> {
    if dense::applies(g) {
        return dense::weight_grad(x, dy, g);
    }
    let k = g.k();
    if crate::options::avx2() {
        let mut dw = zeroed(g.co * k, T::zero());
        if let (Some(x), Some(dy), Some(out)) = (T::as_f32(x), T::as_f32(dy), T::as_f32_mut(&mut dw)) {
            weight_panels::weight_grad(x, dy, g, out);
            return dw;
        }
    }
    let (nb, par) = g.chunking();
    let chunks = g.n.div_ceil(nb);
    let groups = rayon::current_num_threads().min(chunks).max(1);
    // One accumulator per group of consecutive chunks, summed at the end.
    let mut partials: Vec<Vec<T>> = (0..groups)
        .into_par_iter()
        .map(|grp| {
            let mut acc = vec![T::zero(); g.co * k];
            let (mut col, mut dyb) = (Vec::new(), Vec::new());
            for (idx, i) in (grp * chunks / groups..(grp + 1) * chunks / groups).enumerate() {
                let m = nb.min(g.n - i * nb);
                let x = &x[i * nb * g.in_sample()..][..m * g.in_sample()];
                let dy = &dy[i * nb * g.out_sample()..][..m * g.out_sample()];
                let dym = channels_first(dy, g, m, &mut dyb);
                let colm = unfold(x, g, m, &mut col);
                matmul(MatMut::row_major(&mut acc, g.co, k), dym, colm.t(), idx > 0, par);
            }
            acc
        })
        .collect();
    let mut dw = partials.swap_remove(0);
    for p in partials {
        for (a, b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    dw
}

/// Runs `f` on two `f32` operands when the Winograd path takes `g`; `None` otherwise.
fn winograd_f32(
    op: &str,
    g: &Geometry,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    f: fn(&[f32], &[f32], &Geometry) -> Vec<f32>,
) -> Result<Option<CpuStorage>> {
    if !matches!(s1, CpuStorage::F32(_)) || !winograd::applies(g) {
        return Ok(None);
    }
    let a = contiguous_slice::<f32>(s1, l1, op, "first operand")?;
    let b = contiguous_slice::<f32>(s2, l2, op, "second operand")?;
    Ok(Some(CpuStorage::F32(f(a, b, g))))
}

/// The convolution: `(x, weight) -> y`.
struct Conv2dOp(Conv2dParams);

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "simsiam-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1.shape().dims4()?, l2.shape().dims4()?, self.0)?;
        let out = if let Some(out) = winograd_f32(self.name(), &g, s1, l1, s2, l2, winograd::forward)? {
            out
        } else {
            dispatch2!(self.name(), s1, l1, s2, l2, |x, w| forward(x, w, &g))
        };
        Ok((out, Shape::from((g.n, g.co, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (_, _, h, width) = x.dims4()?;
        let (_, _, kh, kw) = w.dims4()?;
        // The input of a network's first layer needs no gradient.
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(w, &ConvInputGrad { params: self.0, h, w: width })?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(&dy, &ConvWeightGrad { params: self.0, kh, kw })?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// The input gradient: `(dy, weight) -> dx`, for an input of `h x w`.
struct ConvInputGrad {
    params: Conv2dParams,
    h: usize,
    w: usize,
}

impl CustomOp2 for ConvInputGrad {
    fn name(&self) -> &'static str {
        "simsiam-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, co, oh, ow) = l1.shape().dims4()?;
        let wdims = l2.shape().dims4()?;
        let g = Geometry::new((n, wdims.1, self.h, self.w), wdims, self.params)?;
        if (co, oh, ow) != (g.co, g.oh, g.ow) {
            candle::bail!("{}: gradient {:?} does not match {g:?}", self.name(), l1.shape());
        }
        let out = if let Some(out) = winograd_f32(self.name(), &g, s1, l1, s2, l2, winograd::input_grad)? {
            out
        } else {
            dispatch2!(self.name(), s1, l1, s2, l2, |dy, w| input_grad(dy, w, &g))
        };
        Ok((out, Shape::from((g.n, g.ci, g.h, g.w))))
    }
}

/// The weight gradient: `(x, dy) -> dweight`, for a `kh x kw` kernel.
struct ConvWeightGrad {
    params: Conv2dParams,
    kh: usize,
    kw: usize,
}

impl CustomOp2 for ConvWeightGrad {
    fn name(&self) -> &'static str {
        "simsiam-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let xdims = l1.shape().dims4()?;
        let (n, co, oh, ow) = l2.shape().dims4()?;
        let g = Geometry::new(xdims, (co, xdims.1, self.kh, self.kw), self.params)?;
        if (n, oh, ow) != (g.n, g.oh, g.ow) {
            candle::bail!("{}: gradient {:?} does not match {g:?}", self.name(), l2.shape());
        }
        let out = if let Some(out) = winograd_f32(self.name(), &g, s1, l1, s2, l2, winograd::weight_grad)? {
            out
        } else {
            dispatch2!(self.name(), s1, l1, s2, l2, |x, dy| weight_grad(x, dy, &g))
        };
        Ok((out, Shape::from((g.co, g.ci, g.kh, g.kw))))
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, Var};

    use super::*;
    use crate::testing::rel;

    /// Our op against candle's conv2d on `view(x)` and `wview(w)`: output, and the gradients
    /// that reach `x` and `w` through the views.
    fn check_views(
        x: &Tensor,
        view: impl Fn(&Tensor) -> Result<Tensor>,
        w: &Tensor,
        wview: impl Fn(&Tensor) -> Result<Tensor>,
        params: Conv2dParams,
    ) -> Result<()> {
        let (xv, wv) = (Var::from_tensor(x)?, Var::from_tensor(w)?);
        let (xi, wi) = (view(xv.as_tensor())?, wview(wv.as_tensor())?);
        let ours = conv2d(&xi, &wi, params)?;
        let reference = xi.conv2d(&wi, params.padding, params.stride, 1, 1)?;
        let dy = Tensor::randn(0.0, 1.0, ours.shape(), x.device())?.to_dtype(x.dtype())?;
        let tol = if x.dtype() == DType::F64 { 1e-12 } else { 1e-5 };
        let e = rel(&ours, &reference)?;
        assert!(e < tol, "forward {params:?} {:?}: {e}", xi.shape());
        let g_ours = (ours * &dy)?.sum_all()?.backward()?;
        // Candle's own conv2d backward mis-sizes the input gradient of non-square inputs, so
        // the reference gradients come from direct loops, carried back through the views.
        let (dx, dw) = naive_grads(&xi, &wi, &dy, params)?;
        let g_ref = ((&xi * dx)?.sum_all()? + (&wi * dw)?.sum_all()?)?.backward()?;
        for (name, v) in [("input", xv.as_tensor()), ("weight", wv.as_tensor())] {
            let (a, b) = (g_ours.get(v).expect("our gradient"), g_ref.get(v).expect("reference gradient"));
            let e = rel(a, b)?;
            assert!(e < tol, "{name} gradient {params:?} {:?} {:?}: {e}", xi.shape(), wi.shape());
        }
        Ok(())
    }

    /// The input and weight gradients of `sum(conv2d(x, w) * dy)` by direct summation in f64.
    fn naive_grads(x: &Tensor, w: &Tensor, dy: &Tensor, p: Conv2dParams) -> Result<(Tensor, Tensor)> {
        let (n, ci, h, wd) = x.dims4()?;
        let (co, _, kh, kw) = w.dims4()?;
        let (_, _, oh, ow) = dy.dims4()?;
        let v = |t: &Tensor| t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>();
        let (xs, ws, dys) = (v(x)?, v(w)?, v(dy)?);
        let (mut dx, mut dw) = (vec![0f64; xs.len()], vec![0f64; ws.len()]);
        for b in 0..n {
            for o in 0..co {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let g = dys[((b * co + o) * oh + oy) * ow + ox];
                        for c in 0..ci {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let (iy, ix) = (
                                        (oy * p.stride + ky) as isize - p.padding as isize,
                                        (ox * p.stride + kx) as isize - p.padding as isize,
                                    );
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((b * ci + c) * h + iy as usize) * wd + ix as usize;
                                    let wi = ((o * ci + c) * kh + ky) * kw + kx;
                                    dx[xi] += g * ws[wi];
                                    dw[wi] += g * xs[xi];
                                }
                            }
                        }
                    }
                }
            }
        }
        let dev = x.device();
        Ok((
            Tensor::from_vec(dx, x.shape(), dev)?.to_dtype(x.dtype())?,
            Tensor::from_vec(dw, w.shape(), dev)?.to_dtype(w.dtype())?,
        ))
    }

    fn check(x: &Tensor, w: &Tensor, params: Conv2dParams) -> Result<()> {
        check_views(x, |t| Ok(t.clone()), w, |t| Ok(t.clone()), params)
    }

    fn randn(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::randn(0f64, 1.0, shape, &Device::Cpu)?.to_dtype(dtype)
    }

    #[test]
    fn matches_candle_on_odd_sizes_strides_and_paddings() -> Result<()> {
        for dtype in [DType::F32, DType::F64] {
            for &(n, ci, h, w, co, kh, kw, stride, padding) in &[
                (2, 3, 7, 5, 4, 3, 3, 1, 1),
                (1, 5, 9, 9, 6, 3, 3, 2, 1),
                (3, 4, 8, 6, 5, 1, 1, 1, 0),
                (2, 6, 7, 7, 3, 1, 1, 2, 0),
                (2, 3, 11, 10, 4, 7, 7, 2, 3),
                (1, 2, 5, 6, 3, 2, 3, 1, 0),
                (4, 3, 6, 5, 2, 3, 2, 3, 2),
                (5, 8, 2, 2, 7, 3, 3, 1, 1),
                (3, 2, 1, 1, 4, 3, 3, 1, 1),
                // Wide channels: register-tile edges in every product, batch 1.
                (1, 33, 9, 7, 17, 3, 3, 1, 1),
            ] {
                let x = randn(&[n, ci, h, w], dtype)?;
                let wt = randn(&[co, ci, kh, kw], dtype)?;
                check(&x, &wt, Conv2dParams { stride, padding })?;
            }
        }
        Ok(())
    }

    #[test]
    fn matches_candle_on_non_contiguous_inputs() -> Result<()> {
        for dtype in [DType::F32, DType::F64] {
            let same = |t: &Tensor| Ok(t.clone());
            // A transposed input, made by candle ops.
            let transposed = |t: &Tensor| {
                let v = t.transpose(2, 3)?;
                assert!(!v.is_contiguous());
                Ok(v)
            };
            let w = randn(&[4, 3, 3, 3], dtype)?;
            check_views(
                &randn(&[2, 3, 6, 7], dtype)?,
                transposed,
                &w,
                same,
                Conv2dParams { stride: 1, padding: 1 },
            )?;
            // A narrowed input.
            let narrowed = |t: &Tensor| {
                let v = t.narrow(1, 1, 3)?.narrow(3, 2, 6)?;
                assert!(!v.is_contiguous());
                Ok(v)
            };
            check_views(
                &randn(&[4, 5, 9, 9], dtype)?,
                narrowed,
                &w,
                same,
                Conv2dParams { stride: 2, padding: 1 },
            )?;
            // A transposed weight.
            check_views(
                &randn(&[2, 3, 5, 6], dtype)?,
                same,
                &randn(&[4, 3, 2, 3], dtype)?,
                transposed,
                Conv2dParams { stride: 1, padding: 1 },
            )?;
        }
        Ok(())
    }

    #[test]
    fn maps_smaller_than_the_kernel_take_the_dense_product() -> Result<()> {
        // 1x1 maps: 3x3 padding 1 at strides 1 and 2, 5x5 padding 2, a 2x3 kernel at stride
        // 2; 2x2 maps: 3x3 padding 1 at strides 1 and 2 (onto 2x2 and 1x1), 2x3 padding 1
        // (onto a 3x2 output); padding past the kernel (no tap meets the input: zeros). Wide
        // channels and a batch over several register tiles; batch 1.
        for dtype in [DType::F32, DType::F64] {
            for &(n, ci, co, hw, kh, kw, stride, padding) in &[
                (64, 40, 24, 1, 3, 3, 1, 1),
                (9, 16, 33, 1, 3, 3, 2, 1),
                (5, 7, 6, 1, 5, 5, 1, 2),
                (3, 4, 5, 1, 2, 3, 2, 1),
                (1, 20, 8, 1, 3, 3, 1, 1),
                (64, 40, 24, 2, 3, 3, 1, 1),
                (7, 16, 33, 2, 3, 3, 2, 1),
                (5, 8, 6, 2, 2, 3, 1, 1),
                (1, 20, 8, 2, 3, 3, 1, 1),
                (2, 3, 4, 1, 3, 3, 5, 3),
            ] {
                let params = Conv2dParams { stride, padding };
                let g = Geometry::new((n, ci, hw, hw), (co, ci, kh, kw), params)?;
                assert!(dense::applies(&g), "{g:?}");
                check(&randn(&[n, ci, hw, hw], dtype)?, &randn(&[co, ci, kh, kw], dtype)?, params)?;
            }
        }
        Ok(())
    }

    #[test]
    fn many_chunks_and_one_chunk_agree() -> Result<()> {
        // 40 samples of 16x16 split into several chunks; one sample of 1x1 is one chunk.
        for (shape, wshape) in [([40, 4, 16, 16], [6, 4, 3, 3]), ([1, 16, 1, 1], [8, 16, 1, 1])] {
            check(
                &randn(&shape, DType::F32)?,
                &randn(&wshape, DType::F32)?,
                Conv2dParams { stride: 1, padding: 1 },
            )?;
        }
        Ok(())
    }

    #[test]
    fn unfolding_into_panels_matches_on_the_shapes_it_takes() -> Result<()> {
        if !crate::options::avx2() {
            eprintln!("skipped: below the AVX2 level, convolutions never unfold into sgemm's panels");
            return Ok(());
        }
        // Over 2048 output columns, so several chunks, planes of whole 16-column tiles: rows
        // of 16, 8, 4 and 12 positions, stride 2, no padding (the input borrowed).
        for &(x, w, stride, padding) in &[
            ([12, 5, 16, 16], [7, 5, 3, 3], 1, 1),
            ([24, 3, 32, 32], [4, 3, 3, 3], 2, 1),
            ([40, 6, 8, 8], [5, 6, 3, 3], 1, 1),
            ([140, 4, 4, 4], [3, 4, 3, 3], 1, 1),
            ([12, 4, 18, 18], [5, 4, 3, 3], 1, 0),
            ([24, 3, 32, 32], [4, 3, 2, 2], 2, 0),
            ([50, 3, 4, 12], [4, 3, 3, 3], 1, 1),
            // Input gradients through the forward path: 3x3 and 5x5 kernels.
            ([12, 16, 16, 16], [8, 16, 3, 3], 1, 1),
            ([12, 20, 16, 16], [7, 20, 5, 5], 1, 2),
        ] {
            let geometry = Geometry::new(
                (x[0], x[1], x[2], x[3]),
                (w[0], w[1], w[2], w[3]),
                Conv2dParams { stride, padding },
            )?;
            assert!(geometry.unfolds_into_panels(), "{x:?}");
            assert_eq!(geometry.input_grad_as_forward().is_some(), x[1] >= 16, "{x:?}");
            check(&randn(&x, DType::F32)?, &randn(&w, DType::F32)?, Conv2dParams { stride, padding })?;
        }
        Ok(())
    }

    #[test]
    fn wide_weight_gradients_do_not_depend_on_the_thread_count() -> Result<()> {
        if !crate::options::avx2() {
            eprintln!("skipped: below the AVX2 level, f32 weight gradients sum per thread group");
            return Ok(());
        }
        // At least 128 columns of `dw` per thread on 3 threads, so the threads split columns:
        // 3x3 stride 1 (eight-row packing), stride 2, and 1x1.
        for &(x, w, stride, padding) in &[
            ([12, 48, 16, 16], [7, 48, 3, 3], 1, 1),
            ([12, 48, 9, 9], [4, 48, 3, 3], 2, 1),
            ([12, 400, 4, 4], [9, 400, 1, 1], 2, 0),
        ] {
            let params = Conv2dParams { stride, padding };
            let x = randn(&x, DType::F32)?;
            let dy = randn(conv2d(&x, &randn(&w, DType::F32)?, params)?.dims(), DType::F32)?;
            let grad = |threads: usize| -> Result<Vec<f32>> {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(candle::Error::wrap)?;
                pool.install(|| conv2d_weight_grad(&x, &dy, params, (w[2], w[3]))?.flatten_all()?.to_vec1())
            };
            let one = grad(1)?;
            for threads in [2, 3] {
                assert!(one == grad(threads)?, "{x:?} {w:?} on {threads} threads");
            }
        }
        Ok(())
    }

    #[test]
    fn narrow_weight_gradients_sum_the_threads_parts_everywhere() -> Result<()> {
        // 72 columns of `dw`, fewer than 128 per thread: the threads split the batch, and
        // their partial sums (256 x 72, more than one chunk of the parallel sum) are added.
        let params = Conv2dParams { stride: 1, padding: 1 };
        let (xs, ws) = ([16, 8, 8, 8], [256, 8, 3, 3]);
        let x = randn(&xs, DType::F32)?;
        let dy = randn(conv2d(&x, &randn(&ws, DType::F32)?, params)?.dims(), DType::F32)?;
        let grad = |threads: usize| -> Result<Vec<f32>> {
            let pool =
                rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(candle::Error::wrap)?;
            pool.install(|| conv2d_weight_grad(&x, &dy, params, (3, 3))?.flatten_all()?.to_vec1())
        };
        let one = grad(1)?;
        for threads in [2, 3] {
            let many = grad(threads)?;
            let worst =
                one.iter().zip(&many).map(|(a, b)| (a - b).abs() / a.abs().max(1.0)).fold(0f32, f32::max);
            assert!(worst < 1e-4, "{threads} threads: off by {worst}");
        }
        Ok(())
    }

    #[test]
    fn an_empty_batch_has_zero_weight_gradients() -> Result<()> {
        for dtype in [DType::F32, DType::F64] {
            // Narrow (the threads would split the batch) and wide (they split columns).
            for (ci, co) in [(3, 4), (48, 8)] {
                let x = randn(&[0, ci, 5, 5], dtype)?;
                let dy = randn(&[0, co, 5, 5], dtype)?;
                let dw = conv2d_weight_grad(&x, &dy, Conv2dParams { stride: 1, padding: 1 }, (3, 3))?;
                assert_eq!(dw.dims(), [co, ci, 3, 3]);
                assert_eq!(dw.abs()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?, 0.0);
            }
        }
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_errors() -> Result<()> {
        let x = randn(&[1, 3, 4, 4], DType::F32)?;
        let w = randn(&[2, 4, 3, 3], DType::F32)?;
        assert!(conv2d(&x, &w, Conv2dParams { stride: 1, padding: 1 }).is_err());
        let w = randn(&[2, 3, 7, 7], DType::F32)?;
        assert!(conv2d(&x, &w, Conv2dParams { stride: 1, padding: 1 }).is_err());
        Ok(())
    }
}
