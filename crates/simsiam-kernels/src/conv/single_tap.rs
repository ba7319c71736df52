//! Convolutions of 1x1 maps with a 1x1 output, as in the last stage of a torchvision ResNet
//! on 32x32 images: the padding leaves one kernel tap on the single input position, so the
//! convolution is one product over channels with that tap's weights. Through im2col the
//! other taps would multiply padding zeros: eight of nine for a 3x3 kernel.

use super::Geometry;
use crate::Float;
use crate::gemm::{MatMut, MatRef, Parallelism, matmul};

/// The index (`ky * kw + kx`) of the one kernel tap that meets the input: a 1x1 map, a 1x1
/// output, a kernel wider than 1x1 and padding inside it, so the tap is `(p, p)`.
pub(super) fn tap(g: &Geometry) -> Option<usize> {
    let single = (g.h, g.w, g.oh, g.ow) == (1, 1, 1, 1) && g.kh * g.kw > 1 && g.p < g.kh && g.p < g.kw;
    single.then_some(g.p * g.kw + g.p)
}

/// The tap's weights `w[o, c, tap]` as a row-major `[co, ci]` matrix, or as `[ci, co]` when
/// `transposed`: a contiguous copy packs faster than the strided view, on every thread.
fn tap_weights<T: Float>(w: &[T], g: &Geometry, tap: usize, transposed: bool) -> Vec<T> {
    let kk = g.kh * g.kw;
    let mut out = vec![T::zero(); g.co * g.ci];
    for o in 0..g.co {
        for c in 0..g.ci {
            let at = if transposed { c * g.co + o } else { o * g.ci + c };
            out[at] = w[(o * g.ci + c) * kk + tap];
        }
    }
    out
}

fn all_threads() -> Parallelism {
    Parallelism::Rayon(rayon::current_num_threads().max(1))
}

/// `y: [n, co] = x: [n, ci] x w_tapᵀ`.
pub(super) fn forward<T: Float>(x: &[T], w: &[T], g: &Geometry, tap: usize) -> Vec<T> {
    let wt = tap_weights(w, g, tap, true);
    let mut out = vec![T::zero(); g.n * g.co];
    let (x, wt_m) = (MatRef::row_major(x, g.n, g.ci), MatRef::row_major(&wt, g.ci, g.co));
    matmul(MatMut::row_major(&mut out, g.n, g.co), x, wt_m, false, all_threads());
    out
}

/// `dx: [n, ci] = dy: [n, co] x w_tap`.
pub(super) fn input_grad<T: Float>(dy: &[T], w: &[T], g: &Geometry, tap: usize) -> Vec<T> {
    let wc = tap_weights(w, g, tap, false);
    let mut dx = vec![T::zero(); g.n * g.ci];
    let (dy, wc_m) = (MatRef::row_major(dy, g.n, g.co), MatRef::row_major(&wc, g.co, g.ci));
    matmul(MatMut::row_major(&mut dx, g.n, g.ci), dy, wc_m, false, all_threads());
    dx
}

/// `dw[o, c, tap] = (dyᵀ x)[o, c]`, zero at every other tap.
pub(super) fn weight_grad<T: Float>(x: &[T], dy: &[T], g: &Geometry, tap: usize) -> Vec<T> {
    let mut dwc = vec![T::zero(); g.co * g.ci];
    let (dyt, x) = (MatRef::row_major(dy, g.n, g.co).t(), MatRef::row_major(x, g.n, g.ci));
    matmul(MatMut::row_major(&mut dwc, g.co, g.ci), dyt, x, false, all_threads());
    let kk = g.kh * g.kw;
    let mut dw = vec![T::zero(); g.co * g.ci * kk];
    for (k, &v) in dwc.iter().enumerate() {
        dw[k * kk + tap] = v;
    }
    dw
}
