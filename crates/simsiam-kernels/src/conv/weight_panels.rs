//! The weight gradient with both operands packed straight from the tensors:
//! `dw[co, k] = dy[co, n * pp] x im2col(x)[k, n * pp]ᵀ`.
//!
//! No im2col matrix (`k` copies of the input, past L2) and no reordering copy of `dy`. Where
//! `dw` is wide, the threads split its columns, so no partial sums of the whole `dw` are added
//! up at the end, and each value is one sum over the batch in a fixed order, the same for any
//! thread count; where it is narrow, they split the batch and add their partial sums in order.

use rayon::prelude::*;

use super::Geometry;
use super::panels::pad_planes;
use crate::buffer::zeroed;
use crate::sgemm::{self, MR, NR, OutMap, PackA, PackB, pack_panel_rows};

/// Fewer columns of `dw` per thread than this, and the threads split the batch instead: each
/// thread packs all of `dy` in the column split, which costs more than the product where
/// `dw` is narrow (a network's first layer, 1x1 convolutions).
const MIN_COLUMNS_PER_THREAD: usize = 128;

/// Elements of `dw` per task where the threads add up their partial sums.
const SUM_CHUNK: usize = 1 << 14;

/// `dw: [co, ci, kh, kw] = Σ over the batch of dy ⋆ x`, on all threads.
pub(super) fn weight_grad(x: &[f32], dy: &[f32], g: &Geometry, dw: &mut [f32]) {
    let (hp, wp) = (g.h + 2 * g.p, g.w + 2 * g.p);
    let mut buf: Vec<f32>;
    let xpad = if g.p == 0 {
        &x[..g.n * g.in_sample()]
    } else {
        // Zeroed by the threads too: a serial fill of the whole padded batch stalled the other.
        buf = zeroed(g.n * g.ci * hp * wp, 0.0);
        buf.par_chunks_mut(g.ci * hp * wp)
            .zip(x.par_chunks(g.in_sample()))
            .for_each(|(dst, src)| pad_planes(src, g, dst));
        &buf[..]
    };
    let (k, depth) = (g.k(), g.n * g.out_plane());
    let dw = &mut dw[..g.co * k];
    if depth == 0 {
        dw.fill(0.0);
        return;
    }
    // The product over depth `r0..r0 + len` and columns `col0..col0 + cols` into `out`.
    let product = |(r0, len): (usize, usize), (col0, cols): (usize, usize), out: &mut [f32]| {
        let a = ChannelsFirst { dy, co: g.co, pp: g.out_plane(), r0, depth: len };
        let b = Im2colRows { xpad, g: *g, hp, wp, r0, depth: len, col0, cols };
        sgemm::sgemm_packed(out, OutMap::row_major(cols), &a, &b, false);
    };
    let threads = rayon::current_num_threads().max(1);
    if threads == 1 {
        return product((0, depth), (0, k), dw);
    }
    if k >= threads * MIN_COLUMNS_PER_THREAD {
        // Whole panels of columns per thread.
        let per = k.div_ceil(NR).div_ceil(threads) * NR;
        let parts: Vec<(usize, Vec<f32>)> = (0..k)
            .into_par_iter()
            .step_by(per)
            .map(|col0| {
                let cols = per.min(k - col0);
                let mut out = vec![0.0; g.co * cols];
                product((0, depth), (col0, cols), &mut out);
                (col0, out)
            })
            .collect();
        // Assembled row by row on all threads (`dw` is the size of the layer's weights).
        dw.par_chunks_exact_mut(k).enumerate().for_each(|(row, dst)| {
            for (col0, part) in &parts {
                let cols = part.len() / g.co;
                dst[*col0..col0 + cols].copy_from_slice(&part[row * cols..][..cols]);
            }
        });
    } else {
        // One partial `dw` per thread over its share of the batch, summed in order.
        // Multiples of 8, so that the eight-row packing stays aligned to output rows.
        let per = depth.div_ceil(threads).next_multiple_of(8);
        let parts: Vec<Vec<f32>> = (0..depth)
            .into_par_iter()
            .step_by(per)
            .map(|r0| {
                let mut out = vec![0.0; g.co * k];
                product((r0, per.min(depth - r0)), (0, k), &mut out);
                out
            })
            .collect();
        // Summed in the threads' order for every element (the same bits for any split of
        // `dw`), on all threads.
        dw.par_chunks_mut(SUM_CHUNK).enumerate().for_each(|(i, dst)| {
            let at = i * SUM_CHUNK;
            dst.copy_from_slice(&parts[0][at..at + dst.len()]);
            for part in &parts[1..] {
                for (d, v) in dst.iter_mut().zip(&part[at..]) {
                    *d += v;
                }
            }
        });
    }
}

/// Columns `r0..r0 + depth` of `dy: [n, co, pp]` read as the `[co, n * pp]` matrix.
struct ChannelsFirst<'a> {
    dy: &'a [f32],
    co: usize,
    pp: usize,
    r0: usize,
    depth: usize,
}

impl PackA for ChannelsFirst<'_> {
    fn dims(&self) -> (usize, usize) {
        (self.co, self.depth)
    }

    #[inline(always)]
    fn pack(&self, ic: usize, mc: usize, pc: usize, kc: usize, dst: &mut [f32]) {
        let pp = self.pp;
        for (panel, ir) in (0..mc).step_by(MR).enumerate() {
            let dst = &mut dst[panel * MR * kc..(panel + 1) * MR * kc];
            // Step `p` is position `q` of sample `j`'s plane: runs end with the plane.
            let at = |p: usize| ((self.r0 + pc + p) / pp, (self.r0 + pc + p) % pp);
            let row = |i: usize, p: usize, len: usize| {
                let (j, q) = at(p);
                &self.dy[(j * self.co + ic + ir + i) * pp + q..][..len]
            };
            pack_panel_rows(row, |p| pp - at(p).1, MR.min(mc - ir), kc, dst);
        }
    }
}

/// Rows `r0..r0 + depth`, columns `col0..col0 + cols` of the transposed im2col matrix
/// `[n * oh * ow, ci * kh * kw]`, read from the input zero-padded to `[n, ci, h + 2p, w + 2p]`.
struct Im2colRows<'a> {
    xpad: &'a [f32],
    g: Geometry,
    /// Padded height and width.
    hp: usize,
    wp: usize,
    r0: usize,
    depth: usize,
    col0: usize,
    cols: usize,
}

impl PackB for Im2colRows<'_> {
    fn dims(&self) -> (usize, usize) {
        (self.depth, self.cols)
    }

    #[inline(always)]
    fn pack(&self, pc: usize, kc: usize, jc: usize, nc: usize, dst: &mut [f32]) {
        let g = &self.g;
        let (pp, plane) = (g.out_plane(), self.hp * self.wp);
        let sample = g.ci * plane;
        let kk = g.kh * g.kw;
        for (panel, jr) in (0..nc).step_by(NR).enumerate() {
            let dst = &mut dst[panel * NR * kc..(panel + 1) * NR * kc];
            let cols = NR.min(nc - jr);
            // Where each column's tap sits relative to its window's corner; a last panel's
            // missing columns read the first one's, and are zeroed after.
            let mut offsets = [0usize; NR];
            for (t, o) in offsets.iter_mut().enumerate().take(cols) {
                let col = self.col0 + jc + jr + t;
                *o = col / kk * plane + col / g.kw % g.kh * self.wp + col % g.kw;
            }
            let first = offsets[0];
            offsets[cols..].fill(first);
            let mut p = 0;
            while p < kc {
                let r = self.r0 + pc + p;
                let (j, q) = (r / pp, r % pp);
                let (oy, ox) = (q / g.ow, q % g.ow);
                let corner = j * sample + oy * g.s * self.wp + ox * g.s;
                let d = &mut dst[p * NR..];
                // Eight output positions along one row of a stride-1 convolution are eight
                // contiguous values of every column.
                if g.s == 1 && ox + 8 <= g.ow && p + 8 <= kc {
                    pack_8_rows(&self.xpad[corner..], &offsets, &mut d[..8 * NR]);
                    if cols < NR {
                        d[..8 * NR].chunks_exact_mut(NR).for_each(|row| row[cols..].fill(0.0));
                    }
                    p += 8;
                    continue;
                }
                for (v, &o) in d[..cols].iter_mut().zip(&offsets) {
                    *v = self.xpad[corner + o];
                }
                d[cols..NR].fill(0.0);
                p += 1;
            }
        }
    }
}

/// `dst[q * NR + t] = src[offsets[t] + q]` for `q < 8`.
#[inline(always)]
fn pack_8_rows(src: &[f32], offsets: &[usize; NR], dst: &mut [f32]) {
    let reach = offsets.iter().max().map_or(0, |&o| o + 8);
    assert!(reach <= src.len() && dst.len() >= 8 * NR, "weight gradient packing out of bounds");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `weight_grad` runs only where `sgemm::available` (AVX2); every column's eight
    // values and the eight destination rows are in bounds (asserted above).
    unsafe {
        sgemm::x86::pack_8_rows(src.as_ptr(), offsets, dst.as_mut_ptr());
    }
    #[cfg(not(target_arch = "x86_64"))]
    for q in 0..8 {
        for (t, &o) in offsets.iter().enumerate() {
            dst[q * NR + t] = src[o + q];
        }
    }
}
