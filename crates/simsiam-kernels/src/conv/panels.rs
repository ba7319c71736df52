//! The forward convolution with its im2col matrix packed straight into `sgemm`'s panels.
//!
//! im2col writes `ci * kh * kw` copies of the input (megabytes per chunk, past L2) and the
//! matrix product's packing reads them back. Here the packing reads the input itself, padded
//! once per chunk, and the product writes `[m, co, oh, ow]` in place: no im2col matrix, and
//! no reordering copy of the output.

use super::Geometry;
use crate::sgemm::{self, NR, OutMap, PackB};
use crate::view::MatRef;

/// Whether [`forward`] takes `g`: our `f32` product, output planes of whole register tiles
/// (so that no tile straddles two samples), and a kernel wider than 1x1 (a 1x1 kernel's
/// im2col matrix is no larger than its input, and packs faster from there).
pub(super) fn applies(g: &Geometry) -> bool {
    crate::options::avx2() && g.out_plane().is_multiple_of(NR) && g.kh * g.kw > 1
}

/// `out: [m, co, oh, ow] = conv(x: [m, ci, h, w], w)` on this thread; `pad` is scratch.
pub(super) fn forward(x: &[f32], w: &[f32], g: &Geometry, m: usize, out: &mut [f32], pad: &mut Vec<f32>) {
    let panels = Im2colPanels::new(x, g, m, pad);
    let wm = MatRef { data: w, rows: g.co, cols: g.k(), rs: g.k(), cs: 1 };
    let pp = g.out_plane();
    let map = OutMap { rs: pp, block_cols: pp, block_stride: g.co * pp };
    sgemm::sgemm_packed(&mut out[..m * g.out_sample()], map, &wm, &panels, false);
}

/// The im2col matrix `[ci * kh * kw, m * oh * ow]` of `m` samples, read from the input
/// zero-padded to `[m, ci, h + 2p, w + 2p]`.
struct Im2colPanels<'a> {
    xpad: &'a [f32],
    g: Geometry,
    m: usize,
    /// Padded height and width.
    hp: usize,
    wp: usize,
}

impl<'a> Im2colPanels<'a> {
    /// Pads `x` into `buf`, or borrows it when there is no padding.
    fn new(x: &'a [f32], g: &Geometry, m: usize, buf: &'a mut Vec<f32>) -> Self {
        let (hp, wp) = (g.h + 2 * g.p, g.w + 2 * g.p);
        let x = &x[..m * g.in_sample()];
        let xpad = if g.p == 0 {
            x
        } else {
            buf.clear();
            buf.resize(m * g.ci * hp * wp, 0.0);
            pad_planes(x, g, buf);
            &buf[..]
        };
        Self { xpad, g: *g, m, hp, wp }
    }
}

/// Copies the `h x w` planes of `x` into the middles of the zeroed `(h + 2p) x (w + 2p)`
/// planes of `dst`.
pub(super) fn pad_planes(x: &[f32], g: &Geometry, dst: &mut [f32]) {
    let wp = g.w + 2 * g.p;
    for (dst, src) in dst.chunks_exact_mut((g.h + 2 * g.p) * wp).zip(x.chunks_exact(g.h * g.w)) {
        for (y, row) in src.chunks_exact(g.w).enumerate() {
            dst[(y + g.p) * wp + g.p..][..g.w].copy_from_slice(row);
        }
    }
}

/// Copies `src[..d.len()]` into `d`, with vector moves for a register tile's common runs
/// (one output row of 16, 8 or 4 positions) instead of a `memcpy` call (LLVM merges
/// fixed-length `copy_from_slice` arms back into one variable-length call).
#[inline(always)]
fn copy_run(d: &mut [f32], src: &[f32]) {
    let n = d.len();
    let src = &src[..n];
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_storeu_ps, _mm256_loadu_ps, _mm256_storeu_ps};
        let (s, t) = (src.as_ptr(), d.as_mut_ptr());
        // SAFETY: both slices hold `n` floats; this packing runs only inside `sgemm`, which
        // asserted that this CPU has AVX2.
        unsafe {
            match n {
                16 => {
                    _mm256_storeu_ps(t, _mm256_loadu_ps(s));
                    _mm256_storeu_ps(t.add(8), _mm256_loadu_ps(s.add(8)));
                    return;
                }
                8 => return _mm256_storeu_ps(t, _mm256_loadu_ps(s)),
                4 => return _mm_storeu_ps(t, _mm_loadu_ps(s)),
                _ => {}
            }
        }
    }
    d.copy_from_slice(src);
}

impl PackB for Im2colPanels<'_> {
    fn dims(&self) -> (usize, usize) {
        (self.g.k(), self.m * self.g.out_plane())
    }

    #[inline(always)]
    fn pack(&self, pc: usize, kc: usize, jc: usize, nc: usize, dst: &mut [f32]) {
        let g = &self.g;
        let (pp, plane) = (g.out_plane(), self.hp * self.wp);
        let sample = g.ci * plane;
        for (panel, jr) in (0..nc).step_by(NR).enumerate() {
            let dst = &mut dst[panel * NR * kc..(panel + 1) * NR * kc];
            let cols = NR.min(nc - jr);
            // The panel's columns as runs along one output row: (first column, offset of
            // its window's corner in `xpad`, length).
            let mut runs = [(0usize, 0usize, 0usize); NR];
            let (mut count, mut t) = (0, 0);
            while t < cols {
                let col = jc + jr + t;
                let (j, q) = (col / pp, col % pp);
                let (oy, ox) = (q / g.ow, q % g.ow);
                let len = (g.ow - ox).min(cols - t);
                runs[count] = (t, j * sample + oy * g.s * self.wp + ox * g.s, len);
                count += 1;
                t += len;
            }
            let runs = &runs[..count];
            let (mut c, mut ky, mut kx) = (pc / (g.kh * g.kw), pc / g.kw % g.kh, pc % g.kw);
            for d in dst.chunks_exact_mut(NR).take(kc) {
                let delta = c * plane + ky * self.wp + kx;
                if g.s == 1 {
                    for &(t0, start, len) in runs {
                        copy_run(&mut d[t0..t0 + len], &self.xpad[start + delta..]);
                    }
                } else {
                    for &(t0, start, len) in runs {
                        let src = &self.xpad[start + delta..];
                        for (q, v) in d[t0..t0 + len].iter_mut().enumerate() {
                            *v = src[q * g.s];
                        }
                    }
                }
                d[cols..].fill(0.0);
                kx += 1;
                if kx == g.kw {
                    kx = 0;
                    ky += 1;
                    if ky == g.kh {
                        ky = 0;
                        c += 1;
                    }
                }
            }
        }
    }
}
