//! Winograd `F(2x2, 3x3)` for the 3x3, stride-1, padding-1 `f32` convolutions of a ResNet:
//! forward, input gradient and weight gradient, each with 16 products instead of 36 per
//! 2x2 output tile (2.25x fewer multiplications; Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2015).
//!
//! With `U = G g Gᵀ` (filter), `V = Bᵀ d B` (4x4 input tile) and `Y = Aᵀ (U ⊙ V) A`, the
//! 16 elementwise positions become 16 matrix products over channels. The weight gradient
//! follows from the same identity: `dg = Gᵀ (Σ_tiles (A dY Aᵀ) ⊙ V) G`, again 16 products.
//! The input gradient is the forward convolution of `dy` with the flipped, transposed filter.
//! Batches are cut into chunks of whole samples, as in the im2col path.

use rayon::prelude::*;

use super::Geometry;
use crate::kernels::sgemm::{self, View};

/// Tiles per chunk to aim for: wide enough for efficient products, small enough for cache.
const TARGET_TILES: usize = 1024;

/// Whether the Winograd path takes this convolution: only when switched on with
/// `SIMSIAM_WINOGRAD=1` (read once), and [`fits`].
///
/// Off by default: on the CIFAR ResNet-18 step (2-core AVX2 EPYC, batch 64) it measured
/// 6.4 images/s against 7.1 for im2col onto the same product, because the scalar tile
/// transforms cost more than the 2.25x fewer multiplications save at these channel counts.
pub(super) fn applies(g: &Geometry) -> bool {
    use std::sync::OnceLock;
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("SIMSIAM_WINOGRAD").is_ok_and(|v| v == "1")) && fits(g)
}

/// Whether Winograd can run this convolution: 3x3, stride 1, padding 1, feature maps of at
/// least 2x2 (a 1x1 map would compute four outputs to keep one), at least 16 input and output
/// channels (the 16 products run over channels: an RGB stem's three would leave them mostly
/// overhead), and our `f32` product available.
fn fits(g: &Geometry) -> bool {
    sgemm::available()
        && (g.kh, g.kw, g.s, g.p) == (3, 3, 1, 1)
        && g.h >= 2
        && g.w >= 2
        && g.n > 0
        && g.ci >= 16
        && g.co >= 16
}

/// 2x2 output tiles per sample along each axis.
fn tiles(g: &Geometry) -> (usize, usize) {
    (g.h.div_ceil(2), g.w.div_ceil(2))
}

/// Samples per chunk and threads per product: at least one chunk per thread when the batch
/// allows, else one chunk whose products use every thread.
fn chunking(g: &Geometry) -> (usize, usize) {
    let threads = rayon::current_num_threads().max(1);
    let (ty, tx) = tiles(g);
    let per = TARGET_TILES.div_ceil(ty * tx).clamp(1, g.n).min(g.n.div_ceil(threads)).max(1);
    let gemm_threads = if g.n.div_ceil(per) == 1 { threads } else { 1 };
    (per, gemm_threads)
}

/// `U[e][co][ci]` for the 16 positions `e`, from `w: [co, ci, 3, 3]`.
fn transform_filter(w: &[f32], co: usize, ci: usize) -> Vec<f32> {
    let mut u = vec![0.0; 16 * co * ci];
    for (oc, k) in w.chunks_exact(9).enumerate() {
        // G g: rows of the 4x3 intermediate.
        let mut t = [[0f32; 3]; 4];
        for x in 0..3 {
            let (g0, g1, g2) = (k[x], k[3 + x], k[6 + x]);
            t[0][x] = g0;
            t[1][x] = 0.5 * (g0 + g1 + g2);
            t[2][x] = 0.5 * (g0 - g1 + g2);
            t[3][x] = g2;
        }
        // (G g) Gᵀ.
        for (r, row) in t.iter().enumerate() {
            let [g0, g1, g2] = *row;
            let v = [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2];
            for (c, &val) in v.iter().enumerate() {
                u[(r * 4 + c) * co * ci + oc] = val;
            }
        }
    }
    u
}

/// `V[e][c][p]` for `m` samples of `x: [m, ci, h, w]`, tile `p` counting samples, then tile
/// rows, then tile columns.
fn transform_input(x: &[f32], g: &Geometry, ci: usize, m: usize, v: &mut Vec<f32>) {
    let (ty, tx) = tiles(g);
    let pcount = m * ty * tx;
    v.resize(16 * ci * pcount, 0.0);
    let (h, w) = (g.h, g.w);
    for j in 0..m {
        for c in 0..ci {
            let plane = &x[(j * ci + c) * h * w..][..h * w];
            for ty_i in 0..ty {
                for tx_i in 0..tx {
                    // The 4x4 input patch at (2 ty - 1, 2 tx - 1), zero outside the map.
                    let mut d = [[0f32; 4]; 4];
                    for (r, row) in d.iter_mut().enumerate() {
                        let y = (2 * ty_i + r) as isize - 1;
                        if y < 0 || y >= h as isize {
                            continue;
                        }
                        let src = &plane[y as usize * w..][..w];
                        for (cc, val) in row.iter_mut().enumerate() {
                            let xx = (2 * tx_i + cc) as isize - 1;
                            if xx >= 0 && xx < w as isize {
                                *val = src[xx as usize];
                            }
                        }
                    }
                    // Bᵀ d, then (Bᵀ d) B.
                    let mut t = [[0f32; 4]; 4];
                    for col in 0..4 {
                        t[0][col] = d[0][col] - d[2][col];
                        t[1][col] = d[1][col] + d[2][col];
                        t[2][col] = d[2][col] - d[1][col];
                        t[3][col] = d[1][col] - d[3][col];
                    }
                    let p = (j * ty + ty_i) * tx + tx_i;
                    for (r, row) in t.iter().enumerate() {
                        let vals = [row[0] - row[2], row[1] + row[2], row[2] - row[1], row[1] - row[3]];
                        for (cc, &val) in vals.iter().enumerate() {
                            v[((r * 4 + cc) * ci + c) * pcount + p] = val;
                        }
                    }
                }
            }
        }
    }
}

/// `Z[e][c][p] = (A dY Aᵀ)[e]` for `m` samples of `dy: [m, co, h, w]` (stride 1, so the
/// output has the input's size), zero beyond the map.
fn transform_output_grad(dy: &[f32], g: &Geometry, m: usize, z: &mut Vec<f32>) {
    let (ty, tx) = tiles(g);
    let (co, h, w) = (g.co, g.h, g.w);
    let pcount = m * ty * tx;
    z.resize(16 * co * pcount, 0.0);
    for j in 0..m {
        for c in 0..co {
            let plane = &dy[(j * co + c) * h * w..][..h * w];
            for ty_i in 0..ty {
                for tx_i in 0..tx {
                    let mut q = [[0f32; 2]; 2];
                    for (r, row) in q.iter_mut().enumerate() {
                        let y = 2 * ty_i + r;
                        if y >= h {
                            continue;
                        }
                        for (cc, val) in row.iter_mut().enumerate() {
                            let xx = 2 * tx_i + cc;
                            if xx < w {
                                *val = plane[y * w + xx];
                            }
                        }
                    }
                    // A q (4x2), then (A q) Aᵀ (4x4); A = [[1,0],[1,1],[1,-1],[0,-1]].
                    let t = [
                        q[0],
                        [q[0][0] + q[1][0], q[0][1] + q[1][1]],
                        [q[0][0] - q[1][0], q[0][1] - q[1][1]],
                        [-q[1][0], -q[1][1]],
                    ];
                    let p = (j * ty + ty_i) * tx + tx_i;
                    for (r, row) in t.iter().enumerate() {
                        let vals = [row[0], row[0] + row[1], row[0] - row[1], -row[1]];
                        for (cc, &val) in vals.iter().enumerate() {
                            z[((r * 4 + cc) * co + c) * pcount + p] = val;
                        }
                    }
                }
            }
        }
    }
}

/// Writes `Y = Aᵀ M A` of every tile of `mm[e][c][p]` into `out: [m, co, h, w]`.
fn transform_output(mm: &[f32], g: &Geometry, co: usize, m: usize, out: &mut [f32]) {
    let (ty, tx) = tiles(g);
    let (h, w) = (g.h, g.w);
    let pcount = m * ty * tx;
    let stride = co * pcount;
    for j in 0..m {
        for c in 0..co {
            let plane = &mut out[(j * co + c) * h * w..][..h * w];
            for ty_i in 0..ty {
                for tx_i in 0..tx {
                    let p = (j * ty + ty_i) * tx + tx_i;
                    let at = |e: usize| mm[e * stride + c * pcount + p];
                    // Aᵀ M: two rows of four; Aᵀ = [[1,1,1,0],[0,1,-1,-1]].
                    let t: [[f32; 4]; 2] = [
                        std::array::from_fn(|col| at(col) + at(4 + col) + at(8 + col)),
                        std::array::from_fn(|col| at(4 + col) - at(8 + col) - at(12 + col)),
                    ];
                    for (r, row) in t.iter().enumerate() {
                        let y = 2 * ty_i + r;
                        if y >= h {
                            continue;
                        }
                        let vals = [row[0] + row[1] + row[2], row[1] - row[2] - row[3]];
                        for (cc, &val) in vals.iter().enumerate() {
                            let xx = 2 * tx_i + cc;
                            if xx < w {
                                plane[y * w + xx] = val;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The 16 products `dst[e] (+)= lhs[e] x rhs[e]` with `lhs[e]: [rows, inner]` row-major and
/// `rhs[e]` the `[inner, cols]` view `rhs_view(e)`.
#[allow(clippy::too_many_arguments)]
fn products(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    (rows, inner, cols): (usize, usize, usize),
    rhs_transposed: bool,
    accumulate: bool,
    threads: usize,
) {
    for e in 0..16 {
        let a = View { data: &lhs[e * rows * inner..][..rows * inner], rows, cols: inner, rs: inner, cs: 1 };
        let b_data = &rhs[e * inner * cols..][..inner * cols];
        // A transposed right-hand side is stored as [cols, inner].
        let b = if rhs_transposed {
            View { data: b_data, rows: inner, cols, rs: 1, cs: inner }
        } else {
            View { data: b_data, rows: inner, cols, rs: cols, cs: 1 }
        };
        sgemm::sgemm(&mut dst[e * rows * cols..][..rows * cols], cols, a, b, accumulate, threads);
    }
}

/// The forward convolution of `x: [n, ci, h, w]` with `w: [co, ci, 3, 3]`.
pub(super) fn forward(x: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    let u = transform_filter(w, g.co, g.ci);
    convolve(x, &u, g)
}

/// Forward convolution with a transformed filter `u`.
fn convolve(x: &[f32], u: &[f32], g: &Geometry) -> Vec<f32> {
    let (ty, tx) = tiles(g);
    let (per, threads) = chunking(g);
    let (in_sample, out_sample) = (g.ci * g.h * g.w, g.co * g.h * g.w);
    let mut out = vec![0.0; g.n * out_sample];
    out.par_chunks_mut(per * out_sample).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(v, mm), (i, out)| {
            let m = out.len() / out_sample;
            let x = &x[i * per * in_sample..][..m * in_sample];
            transform_input(x, g, g.ci, m, v);
            let pcount = m * ty * tx;
            mm.resize(16 * g.co * pcount, 0.0);
            products(mm, u, v, (g.co, g.ci, pcount), false, false, threads);
            transform_output(mm, g, g.co, m, out);
        },
    );
    out
}

/// The input gradient: `dy: [n, co, h, w]` convolved with the flipped filter transposed to
/// `[ci, co, 3, 3]`.
pub(super) fn input_grad(dy: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    let mut flipped = vec![0.0; w.len()];
    for o in 0..g.co {
        for c in 0..g.ci {
            for k in 0..9 {
                flipped[(c * g.co + o) * 9 + 8 - k] = w[(o * g.ci + c) * 9 + k];
            }
        }
    }
    let u = transform_filter(&flipped, g.ci, g.co);
    let swapped = Geometry { ci: g.co, co: g.ci, ..*g };
    convolve(dy, &u, &swapped)
}

/// The weight gradient `[co, ci, 3, 3]`, summed over the batch.
pub(super) fn weight_grad(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (ty, tx) = tiles(g);
    let (per, threads) = chunking(g);
    let chunks = g.n.div_ceil(per);
    let groups = rayon::current_num_threads().clamp(1, chunks);
    let (in_sample, out_sample) = (g.ci * g.h * g.w, g.co * g.h * g.w);
    // One transformed accumulator `[16][co][ci]` per group of consecutive chunks.
    let partials: Vec<Vec<f32>> = (0..groups)
        .into_par_iter()
        .map(|grp| {
            let mut acc = vec![0.0; 16 * g.co * g.ci];
            let (mut v, mut z) = (Vec::new(), Vec::new());
            for (idx, i) in (grp * chunks / groups..(grp + 1) * chunks / groups).enumerate() {
                let m = per.min(g.n - i * per);
                transform_input(&x[i * per * in_sample..][..m * in_sample], g, g.ci, m, &mut v);
                transform_output_grad(&dy[i * per * out_sample..][..m * out_sample], g, m, &mut z);
                let pcount = m * ty * tx;
                products(&mut acc, &z, &v, (g.co, pcount, g.ci), true, idx > 0, threads);
            }
            acc
        })
        .collect();
    let mut acc = vec![0.0f32; 16 * g.co * g.ci];
    for p in &partials {
        for (a, b) in acc.iter_mut().zip(p) {
            *a += b;
        }
    }
    // dg = Gᵀ Z G per (co, ci); Gᵀ = [[1, .5, .5, 0], [0, .5, -.5, 0], [0, .5, .5, 1]].
    let pairs = g.co * g.ci;
    let mut dw = vec![0.0; pairs * 9];
    for (k, out) in dw.chunks_exact_mut(9).enumerate() {
        let z = |r: usize, c: usize| acc[(r * 4 + c) * pairs + k];
        let t: [[f32; 4]; 3] = [
            std::array::from_fn(|col| z(0, col) + 0.5 * (z(1, col) + z(2, col))),
            std::array::from_fn(|col| 0.5 * (z(1, col) - z(2, col))),
            std::array::from_fn(|col| 0.5 * (z(1, col) + z(2, col)) + z(3, col)),
        ];
        for (r, row) in t.iter().enumerate() {
            out[r * 3] = row[0] + 0.5 * (row[1] + row[2]);
            out[r * 3 + 1] = 0.5 * (row[1] - row[2]);
            out[r * 3 + 2] = 0.5 * (row[1] + row[2]) + row[3];
        }
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::super::{Conv2dParams, forward as direct_forward, input_grad as direct_input_grad};
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn rel(ours: &[f32], reference: &[f32]) -> f64 {
        let diff: f64 = ours.iter().zip(reference).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
        let norm: f64 = reference.iter().map(|&b| (b as f64).powi(2)).sum();
        (diff / norm).sqrt()
    }

    #[test]
    fn matches_im2col_on_odd_sizes_batch_one_and_many_chunks() {
        if !sgemm::available() {
            eprintln!("skipped: this CPU lacks AVX2/FMA, so Winograd never runs here");
            return;
        }
        // (batch, in, out, h, w): odd maps, batch 1, a 2x2 map, many chunks of 8x8 maps.
        for &(n, ci, co, h, w) in
            &[(2, 16, 17, 7, 5), (1, 33, 16, 9, 9), (3, 16, 16, 2, 2), (40, 16, 24, 8, 8)]
        {
            let g = Geometry::new((n, ci, h, w), (co, ci, 3, 3), Conv2dParams { stride: 1, padding: 1 })
                .expect("geometry");
            assert!(fits(&g));
            let (x, wt, dy) = (values(n * ci * h * w, 1), values(co * ci * 9, 2), values(n * co * h * w, 3));
            let e = rel(&forward(&x, &wt, &g), &direct_forward(&x, &wt, &g));
            assert!(e < 1e-5, "forward {n}x{ci}x{h}x{w} -> {co}: {e}");
            let e = rel(&input_grad(&dy, &wt, &g), &direct_input_grad(&dy, &wt, &g));
            assert!(e < 1e-5, "input gradient {n}x{ci}x{h}x{w} -> {co}: {e}");
            let e = rel(&weight_grad(&x, &dy, &g), &super::super::weight_grad(&x, &dy, &g));
            assert!(e < 1e-5, "weight gradient {n}x{ci}x{h}x{w} -> {co}: {e}");
        }
    }

    #[test]
    fn small_maps_and_channels_and_other_strides_do_not_fit() {
        let g = |n, ci, co, hw, k, s, p| {
            Geometry::new((n, ci, hw, hw), (co, ci, k, k), Conv2dParams { stride: s, padding: p }).expect("g")
        };
        assert!(!fits(&g(2, 3, 64, 32, 3, 1, 1)), "an RGB stem");
        assert!(!fits(&g(2, 64, 64, 1, 3, 1, 1)), "a 1x1 map");
        assert!(!fits(&g(2, 64, 64, 8, 3, 2, 1)), "stride 2");
        assert!(!fits(&g(2, 64, 64, 8, 1, 1, 0)), "1x1 kernel");
    }
}
