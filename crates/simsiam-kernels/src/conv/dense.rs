//! Convolutions of maps with fewer positions than their kernel has taps, as in the last
//! stages of a torchvision ResNet on 32x32 images (2x2 and 1x1 maps under 3x3 kernels).
//! There each output value meets each input position through at most one tap, so the
//! convolution is one product with a dense `[co·oh·ow, ci·h·w]` matrix made from the weights,
//! and the NCHW tensors are the product's other operand and result as they lie. Through
//! im2col most products would multiply padding zeros: 5 of 9 on a 2x2 map, 8 of 9 on a 1x1
//! map; here none do, and nothing is unfolded.

use rayon::prelude::*;

use super::Geometry;
use crate::Float;
use crate::buffer::zeroed;
use crate::gemm::{MatMut, MatRef, all_threads, matmul};

/// The dense matrix's largest size in values (64 MiB of `f32`, 16 times a 512-channel 2x2
/// layer's): a bound on the scratch memory; larger layers keep im2col.
const MAX_VALUES: usize = 1 << 24;

/// Whether `g` takes this path: fewer input positions than kernel taps, so the dense product
/// does fewer operations than im2col's (`h·w` against `kh·kw` per output value and channel
/// pair).
pub(super) fn applies(g: &Geometry) -> bool {
    g.h * g.w < g.kh * g.kw && g.co * g.out_plane() * g.ci * g.h * g.w <= MAX_VALUES
}

/// For each output position `o` and input position `i` (row-major in their maps), the kernel
/// tap (`ky * kw + kx`) joining them, if any: `table[o * h·w + i]`.
fn taps(g: &Geometry) -> Vec<Option<usize>> {
    let hw = g.h * g.w;
    let mut table = vec![None; g.out_plane() * hw];
    for (o, row) in table.chunks_exact_mut(hw.max(1)).enumerate() {
        let (oy, ox) = (o / g.ow, o % g.ow);
        for (i, t) in row.iter_mut().enumerate() {
            let (iy, ix) = (i / g.w, i % g.w);
            // Input `iy` meets output `oy` through tap `ky = iy + p - oy·s`, if in the kernel.
            let ky = (iy + g.p).checked_sub(oy * g.s).filter(|&k| k < g.kh);
            let kx = (ix + g.p).checked_sub(ox * g.s).filter(|&k| k < g.kw);
            *t = ky.zip(kx).map(|(ky, kx)| ky * g.kw + kx);
        }
    }
    table
}

/// The dense matrix `d[(o, op), (c, ip)] = w[o, c, tap(op, ip)]`, zero where no tap joins the
/// two positions. Built on all threads, each row from one output channel's kernels read in
/// order: it is a pass over the layer's weights on every step.
fn dense_weights<T: Float>(w: &[T], g: &Geometry) -> Vec<T> {
    let (kk, hw, pp) = (g.kh * g.kw, g.h * g.w, g.out_plane());
    // `kk` (past the kernel) where no tap joins the positions.
    let table: Vec<usize> = taps(g).into_iter().map(|t| t.unwrap_or(kk)).collect();
    let cols = g.ci * hw;
    let mut d = zeroed(g.co * pp * cols, T::zero());
    d.par_chunks_mut((pp * cols).max(1)).enumerate().for_each(|(o, block)| {
        let kernels = &w[o * g.ci * kk..][..g.ci * kk];
        for (op, row) in block.chunks_exact_mut(cols.max(1)).enumerate() {
            let taps = &table[op * hw..][..hw];
            for (kernel, out) in kernels.chunks_exact(kk).zip(row.chunks_exact_mut(hw.max(1))) {
                for (v, &t) in out.iter_mut().zip(taps) {
                    *v = kernel.get(t).copied().unwrap_or(T::zero());
                }
            }
        }
    });
    d
}

/// `y: [n, co·oh·ow] = x: [n, ci·h·w] x dᵀ`.
pub(super) fn forward<T: Float>(x: &[T], w: &[T], g: &Geometry) -> Vec<T> {
    let (cols, rows) = (g.ci * g.h * g.w, g.co * g.out_plane());
    let d = dense_weights(w, g);
    let mut out = zeroed(g.n * rows, T::zero());
    let (x, dt) = (MatRef::row_major(x, g.n, cols), MatRef::row_major(&d, rows, cols).t());
    matmul(MatMut::row_major(&mut out, g.n, rows), x, dt, false, all_threads());
    out
}

/// `dx: [n, ci·h·w] = dy: [n, co·oh·ow] x d`.
pub(super) fn input_grad<T: Float>(dy: &[T], w: &[T], g: &Geometry) -> Vec<T> {
    let (cols, rows) = (g.ci * g.h * g.w, g.co * g.out_plane());
    let d = dense_weights(w, g);
    let mut dx = zeroed(g.n * cols, T::zero());
    let (dy, d) = (MatRef::row_major(dy, g.n, rows), MatRef::row_major(&d, rows, cols));
    matmul(MatMut::row_major(&mut dx, g.n, cols), dy, d, false, all_threads());
    dx
}

/// `dw[o, c, t]`: the sum of `(dyᵀ x)[(o, op), (c, ip)]` over the position pairs that tap `t`
/// joins.
pub(super) fn weight_grad<T: Float>(x: &[T], dy: &[T], g: &Geometry) -> Vec<T> {
    let (hw, pp, kk) = (g.h * g.w, g.out_plane(), g.kh * g.kw);
    let (cols, rows) = (g.ci * hw, g.co * pp);
    let mut dd = zeroed(rows * cols, T::zero());
    let (dyt, x) = (MatRef::row_major(dy, g.n, rows).t(), MatRef::row_major(x, g.n, cols));
    matmul(MatMut::row_major(&mut dd, rows, cols), dyt, x, false, all_threads());
    let table = taps(g);
    let mut dw = zeroed(g.co * g.ci * kk, T::zero());
    dw.par_chunks_mut((g.ci * kk).max(1)).zip(dd.par_chunks((pp * cols).max(1))).for_each(
        |(kernels, block)| {
            for (op, row) in block.chunks_exact(cols.max(1)).enumerate() {
                let taps = &table[op * hw..][..hw];
                for (kernel, values) in kernels.chunks_exact_mut(kk).zip(row.chunks_exact(hw.max(1))) {
                    for (&v, t) in values.iter().zip(taps) {
                        if let Some(t) = *t {
                            kernel[t] += v;
                        }
                    }
                }
            }
        },
    );
    dw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Conv2dParams;

    fn geometry(hw: usize, k: usize, s: usize, p: usize) -> Geometry {
        let params = Conv2dParams { stride: s, padding: p };
        Geometry::new((2, 3, hw, hw), (4, 3, k, k), params).expect("valid geometry")
    }

    #[test]
    fn taps_join_each_pair_of_positions_a_kernel_reaches() {
        // 2x2 map, 3x3 kernel, padding 1: every output meets every input; output (0, 0)
        // meets input (0, 0) through the centre tap and input (1, 1) through the corner.
        let t = taps(&geometry(2, 3, 1, 1));
        assert!(t.iter().all(Option::is_some));
        assert_eq!((t[0], t[3]), (Some(4), Some(8)));
        assert_eq!((t[3 * 4], t[3 * 4 + 3]), (Some(0), Some(4)));
        // Stride 2 onto a 1x1 output: the four taps in the lower right meet the input.
        let t = taps(&geometry(2, 3, 2, 1));
        assert_eq!(t, vec![Some(4), Some(5), Some(7), Some(8)]);
        // Padding past the kernel: no tap meets the input.
        assert_eq!(taps(&geometry(1, 3, 5, 3)), vec![None]);
    }

    #[test]
    fn takes_maps_smaller_than_the_kernel_only() {
        assert!(applies(&geometry(1, 3, 1, 1)));
        assert!(applies(&geometry(2, 3, 1, 1)));
        assert!(applies(&geometry(2, 3, 2, 1)));
        assert!(!applies(&geometry(3, 3, 1, 1)));
        assert!(!applies(&geometry(4, 3, 1, 1)));
        assert!(!applies(&geometry(1, 1, 1, 0)));
    }
}
