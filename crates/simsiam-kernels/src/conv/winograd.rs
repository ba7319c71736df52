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
use crate::Winograd;
use crate::buffer::zeroed;
use crate::sgemm;
use crate::view::MatRef;

mod rows;

/// Tiles per chunk to aim for: wide enough for efficient products, small enough that the
/// transformed chunks (16 values per tile and channel) stay in cache. 256 against 1024:
/// 44-49 ms against 70 for the forward pass of a 64-channel 32x32 layer at batch 64.
const TARGET_TILES: usize = 256;

/// Whether the Winograd path takes this convolution: when it [`fits`] and either its rows
/// hold at least [`MIN_ROW_TILES`] tiles, so the tile transforms run eight tiles per vector
/// ([`rows`]), or it has [`MIN_CHANNELS`] channels in and out, so the products outweigh the
/// scalar transforms, on CPUs below the AVX-512 level.
/// [`KernelOptions::winograd`](crate::KernelOptions) turns the path off or takes it for every
/// convolution that fits.
///
/// Measured per layer with `profile_kernels` (2-core AVX2 EPYC, batch 64, forward / input
/// gradient / weight gradient in ms, ranges over 2-4 runs) on the CIFAR ResNet-18: 64
/// channels at 32x32 44-49 / 44-60 / 48-56 against 66-89 / 61-79 / 60-70 through im2col; 128
/// at 16x16 39-51 / 40-50 / 39-52 against 64-72 / 66-76 / 56-83; 512 at 4x4 52-52 / 54-59 /
/// 57-63 against 54-79 / 57-87 / 59-93. 256 channels at 8x8 were level, and the 8x8 and 4x4
/// layers of the ImageNet-style ResNet-18 on 32x32 images lost (64 channels at 8x8: 7.2-8.1
/// ms per pass against 4.5-6.1). The whole cifar-r18 step at batch 64, A B A B: 251 G
/// instructions and 103-108 G cycles through im2col, 174 G and 88-89 G with this choice.
/// On a 2-core AVX-512 Xeon, where im2col's product runs `2 MR x 2 NR` tiles across the
/// 16-column blocks of a 4x4 map, 512 channels at 4x4 are 19 / 22 / 23 ms through im2col
/// against 31 / 32 / 37 through Winograd (2026-12-07): there the channel rule is off.
pub(super) fn applies(g: &Geometry) -> bool {
    fits(g)
        && match crate::kernel_options().winograd {
            Winograd::Off => false,
            Winograd::Always => true,
            Winograd::Auto => {
                tiles(g).1 >= MIN_ROW_TILES || (g.ci.min(g.co) >= MIN_CHANNELS && !crate::options::avx512())
            }
        }
}

/// Tiles per row from which the Winograd path is the default: one vector of tile transforms.
const MIN_ROW_TILES: usize = 8;

/// Input and output channels from which the Winograd path is the default on any map.
const MIN_CHANNELS: usize = 512;

/// Whether Winograd can run this convolution: 3x3, stride 1, padding 1, feature maps of at
/// least 2x2 (a 1x1 map would compute four outputs to keep one), at least 16 input and output
/// channels (the 16 products run over channels: an RGB stem's three would leave them mostly
/// overhead), and our `f32` product available.
fn fits(g: &Geometry) -> bool {
    crate::options::avx2()
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
    // One plane at a time, zero-padded by one on every side and to whole tiles, so every
    // 4x4 patch (at (2 ty - 1, 2 tx - 1)) lies inside it. The border is never written.
    let wp = 2 * tx + 2;
    let mut padded = vec![0f32; (2 * ty + 2) * wp];
    let e_stride = ci * pcount;
    for j in 0..m {
        for c in 0..ci {
            let plane = &x[(j * ci + c) * h * w..][..h * w];
            for (y, row) in plane.chunks_exact(w).enumerate() {
                padded[(y + 1) * wp + 1..][..w].copy_from_slice(row);
            }
            for ty_i in 0..ty {
                let rows: [&[f32]; 4] = std::array::from_fn(|r| &padded[(2 * ty_i + r) * wp..][..wp]);
                let first = c * pcount + (j * ty + ty_i) * tx;
                let done = rows::input(&rows, tx, &mut v[first..], e_stride);
                for tx_i in done..tx {
                    let d: [[f32; 4]; 4] =
                        std::array::from_fn(|r| std::array::from_fn(|cc| rows[r][2 * tx_i + cc]));
                    // Bᵀ d, then (Bᵀ d) B.
                    let mut t = [[0f32; 4]; 4];
                    for col in 0..4 {
                        t[0][col] = d[0][col] - d[2][col];
                        t[1][col] = d[1][col] + d[2][col];
                        t[2][col] = d[2][col] - d[1][col];
                        t[3][col] = d[1][col] - d[3][col];
                    }
                    for (r, row) in t.iter().enumerate() {
                        let vals = [row[0] - row[2], row[1] + row[2], row[2] - row[1], row[1] - row[3]];
                        for (cc, &val) in vals.iter().enumerate() {
                            v[(r * 4 + cc) * e_stride + first + tx_i] = val;
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
    let e_stride = co * pcount;
    // The row below an odd map's last one.
    let zeros = vec![0f32; w];
    for j in 0..m {
        for c in 0..co {
            let plane = &dy[(j * co + c) * h * w..][..h * w];
            for ty_i in 0..ty {
                let rows: [&[f32]; 2] = std::array::from_fn(|r| {
                    let y = 2 * ty_i + r;
                    if y < h { &plane[y * w..][..w] } else { &zeros[..] }
                });
                let first = c * pcount + (j * ty + ty_i) * tx;
                // Vectors only for tiles whose two columns lie inside the map.
                let done = rows::output_grad(rows, w / 2, &mut z[first..], e_stride);
                for tx_i in done..tx {
                    let q: [[f32; 2]; 2] = std::array::from_fn(|r| {
                        std::array::from_fn(|cc| rows[r].get(2 * tx_i + cc).copied().unwrap_or(0.0))
                    });
                    // A q (4x2), then (A q) Aᵀ (4x4); A = [[1,0],[1,1],[1,-1],[0,-1]].
                    let t = [
                        q[0],
                        [q[0][0] + q[1][0], q[0][1] + q[1][1]],
                        [q[0][0] - q[1][0], q[0][1] - q[1][1]],
                        [-q[1][0], -q[1][1]],
                    ];
                    for (r, row) in t.iter().enumerate() {
                        let vals = [row[0], row[0] + row[1], row[0] - row[1], -row[1]];
                        for (cc, &val) in vals.iter().enumerate() {
                            z[(r * 4 + cc) * e_stride + first + tx_i] = val;
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
    // Where the second row of an odd map's last tiles goes.
    let mut spill = vec![0f32; w];
    for j in 0..m {
        for c in 0..co {
            let plane = &mut out[(j * co + c) * h * w..][..h * w];
            for ty_i in 0..ty {
                let y = 2 * ty_i;
                let (top, below) = plane[y * w..].split_at_mut(w);
                let second = if y + 1 < h { &mut below[..w] } else { &mut spill[..] };
                let first = c * pcount + (j * ty + ty_i) * tx;
                // Vectors only for tiles whose two columns lie inside the map.
                let done = rows::output(&mm[first..], stride, w / 2, [&mut *top, &mut *second]);
                for tx_i in done..tx {
                    let at = |e: usize| mm[e * stride + first + tx_i];
                    // Aᵀ M: two rows of four; Aᵀ = [[1,1,1,0],[0,1,-1,-1]].
                    let t: [[f32; 4]; 2] = [
                        std::array::from_fn(|col| at(col) + at(4 + col) + at(8 + col)),
                        std::array::from_fn(|col| at(4 + col) - at(8 + col) - at(12 + col)),
                    ];
                    for (row, dst) in t.iter().zip([&mut *top, &mut *second]) {
                        let vals = [row[0] + row[1] + row[2], row[1] - row[2] - row[3]];
                        for (cc, &val) in vals.iter().enumerate() {
                            if let Some(d) = dst.get_mut(2 * tx_i + cc) {
                                *d = val;
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
        let a =
            MatRef { data: &lhs[e * rows * inner..][..rows * inner], rows, cols: inner, rs: inner, cs: 1 };
        let b_data = &rhs[e * inner * cols..][..inner * cols];
        // A transposed right-hand side is stored as [cols, inner].
        let b = if rhs_transposed {
            MatRef { data: b_data, rows: inner, cols, rs: 1, cs: inner }
        } else {
            MatRef { data: b_data, rows: inner, cols, rs: cols, cs: 1 }
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
    let mut out = zeroed(g.n * out_sample, 0.0);
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
    let flipped = super::flip_transpose(w, g);
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
    use crate::testing::values;

    fn rel(ours: &[f32], reference: &[f32]) -> f64 {
        let diff: f64 = ours.iter().zip(reference).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
        let norm: f64 = reference.iter().map(|&b| (b as f64).powi(2)).sum();
        (diff / norm).sqrt()
    }

    #[test]
    fn matches_im2col_on_odd_sizes_batch_one_and_many_chunks() {
        if !crate::options::avx2() {
            eprintln!("skipped: below the AVX2 level, Winograd never runs");
            return;
        }
        // (batch, in, out, h, w): odd maps, batch 1, a 2x2 map, many chunks of 8x8 maps, and
        // rows of eight tiles or more (the vector transforms), odd and even.
        for &(n, ci, co, h, w) in &[
            (2, 16, 17, 7, 5),
            (1, 33, 16, 9, 9),
            (3, 16, 16, 2, 2),
            (40, 16, 24, 8, 8),
            (2, 16, 16, 16, 16),
            (1, 17, 20, 17, 33),
            (2, 16, 16, 6, 50),
        ] {
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
