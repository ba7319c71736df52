//! Convolutions of 1x1 maps with a 1x1 output, as in the last stage of a torchvision ResNet
//! on 32x32 images: the padding leaves one kernel tap on the single input position, so the
//! convolution is one product over channels with that tap's weights. Through im2col the
//! other taps would multiply padding zeros: eight of nine for a 3x3 kernel.

use rayon::prelude::*;

use super::Geometry;
use crate::Float;
use crate::buffer::zeroed;
use crate::gemm::{MatMut, MatRef, Parallelism, matmul};

/// The index (`ky * kw + kx`) of the one kernel tap that meets the input: a 1x1 map, a 1x1
/// output, a kernel wider than 1x1 and padding inside it, so the tap is `(p, p)`.
pub(super) fn tap(g: &Geometry) -> Option<usize> {
    let single = (g.h, g.w, g.oh, g.ow) == (1, 1, 1, 1) && g.kh * g.kw > 1 && g.p < g.kh && g.p < g.kw;
    single.then_some(g.p * g.kw + g.p)
}

/// The tap's weights `w[o, c, tap]` as a row-major `[co, ci]` matrix, or as `[ci, co]` when
/// `transposed`: a contiguous copy packs faster than the strided view, on every thread. The
/// rows are gathered on the rayon threads: from megabytes of weights (512 x 512 x 9), one
/// thread's gather was a serial stretch of the step.
fn tap_weights<T: Float>(w: &[T], g: &Geometry, tap: usize, transposed: bool) -> Vec<T> {
    let kk = g.kh * g.kw;
    let (co, ci) = (g.co, g.ci);
    let mut out = zeroed(co * ci, T::zero());
    if transposed {
        // Rows `c0..c0 + 16` of `[ci, co]` per task: each output channel's 16 kernels there lie
        // side by side in `w`, so the reads stay sequential.
        const ROWS: usize = 16;
        out.par_chunks_mut((ROWS * co).max(1)).enumerate().for_each(|(block, rows)| {
            let c0 = block * ROWS;
            let n = rows.len() / co.max(1);
            for o in 0..co {
                let kernels = &w[(o * ci + c0) * kk..];
                for r in 0..n {
                    rows[r * co + o] = kernels[r * kk + tap];
                }
            }
        });
    } else {
        out.par_chunks_mut(ci.max(1)).zip(w.par_chunks((ci * kk).max(1))).for_each(|(row, kernels)| {
            for (v, kernel) in row.iter_mut().zip(kernels.chunks_exact(kk)) {
                *v = kernel[tap];
            }
        });
    }
    out
}

fn all_threads() -> Parallelism {
    Parallelism::Rayon(rayon::current_num_threads().max(1))
}

/// `y: [n, co] = x: [n, ci] x w_tapᵀ`.
pub(super) fn forward<T: Float>(x: &[T], w: &[T], g: &Geometry, tap: usize) -> Vec<T> {
    let wt = tap_weights(w, g, tap, true);
    let mut out = zeroed(g.n * g.co, T::zero());
    let (x, wt_m) = (MatRef::row_major(x, g.n, g.ci), MatRef::row_major(&wt, g.ci, g.co));
    matmul(MatMut::row_major(&mut out, g.n, g.co), x, wt_m, false, all_threads());
    out
}

/// `dx: [n, ci] = dy: [n, co] x w_tap`.
pub(super) fn input_grad<T: Float>(dy: &[T], w: &[T], g: &Geometry, tap: usize) -> Vec<T> {
    let wc = tap_weights(w, g, tap, false);
    let mut dx = zeroed(g.n * g.ci, T::zero());
    let (dy, wc_m) = (MatRef::row_major(dy, g.n, g.co), MatRef::row_major(&wc, g.co, g.ci));
    matmul(MatMut::row_major(&mut dx, g.n, g.ci), dy, wc_m, false, all_threads());
    dx
}

/// `dw[o, c, tap] = (dyᵀ x)[o, c]`, zero at every other tap.
pub(super) fn weight_grad<T: Float>(x: &[T], dy: &[T], g: &Geometry, tap: usize) -> Vec<T> {
    let mut dwc = zeroed(g.co * g.ci, T::zero());
    let (dyt, x) = (MatRef::row_major(dy, g.n, g.co).t(), MatRef::row_major(x, g.n, g.ci));
    matmul(MatMut::row_major(&mut dwc, g.co, g.ci), dyt, x, false, all_threads());
    let kk = g.kh * g.kw;
    let mut dw = zeroed(g.co * g.ci * kk, T::zero());
    dw.par_chunks_mut((g.ci * kk).max(1)).zip(dwc.par_chunks(g.ci.max(1))).for_each(|(kernels, values)| {
        for (kernel, &v) in kernels.chunks_exact_mut(kk).zip(values) {
            kernel[tap] = v;
        }
    });
    dw
}
