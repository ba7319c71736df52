//! Our single-precision matrix product for x86-64 CPUs with AVX2 and FMA.
//!
//! The `gemm` crate reaches only 17-24 GFLOP/s per core on the convolution shapes of a CIFAR
//! ResNet (64-512 rows, thousands of columns), a third of the 78 GFLOP/s one core peaks at. This
//! is the classic BLIS blocking instead: `B` packed into `KC x NR` column panels that stay in
//! L1, `A` packed into `MR x KC` row panels that stream from L2, and a `6 x 16` register tile
//! (12 accumulators, two `B` vectors, one broadcast `A` value: 15 of the 16 `ymm` registers).
//! On AVX-512 the same panels feed `12 x 32` tiles (two row panels by two column panels, 24 of
//! the 32 `zmm` registers accumulating), each value summed as by the AVX2 kernel, to the bit.
//! Edges are zero-padded in the packed buffers, so the micro-kernel always computes full tiles.
//! Packing buffers are reused per thread: fresh megabyte buffers page-fault on every call.
//! Products wider than tall split their columns over the threads, taller ones their rows, so
//! that each thread packs its share of the larger operand.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::view::MatRef;

/// Rows of the register tile.
pub(crate) const MR: usize = 6;
/// Columns of the register tile (two AVX vectors).
pub(crate) const NR: usize = 16;
/// Depth of a packed block: a `KC x NR` panel of `B` is 16 KiB, half of L1.
const KC: usize = 256;
/// Rows of `A` packed at once: `MC x KC` is 96 KiB, in L2.
const MC: usize = 96;
/// Columns of `B` packed at once: `KC x NC` is 2 MiB.
const NC: usize = 2048;

/// Whether this CPU can run [`sgemm`] (AVX2 and FMA), whatever the options say: the safety
/// condition of its `unsafe` calls. Callers choose the path with `options::avx2()`.
pub(crate) fn available() -> bool {
    crate::Isa::detected() >= crate::Isa::Avx2
}

/// `c = a x b`, or `c += a x b` when `accumulate`, with `c` row-major (row stride `c_rs`),
/// its rows (its columns when wider than tall: [`split_columns`]) split over `threads` rayon
/// workers.
///
/// The caller checked [`available`] and that the views lie inside their slices; shapes are
/// checked here with assertions (they are ours, never a user's).
pub(crate) fn sgemm(
    c: &mut [f32],
    c_rs: usize,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    accumulate: bool,
    threads: usize,
) {
    let (m, n) = (a.rows, b.cols);
    assert!(a.cols == b.rows && c_rs >= n, "sgemm: mismatched shapes");
    assert!(m == 0 || n == 0 || c.len() >= (m - 1) * c_rs + n, "sgemm: output too short");
    assert!(available(), "sgemm: needs AVX2 and FMA");
    if m == 0 || n == 0 {
        return;
    }
    let threads = threads.max(1);
    if threads > 1 && n > m && n >= threads * 2 * NR {
        return split_columns(c, c_rs, a, b, accumulate, threads);
    }
    // Split rows into whole register tiles, one contiguous block of `c` per worker.
    let per = m.div_ceil(threads).div_ceil(MR) * MR;
    if per >= m {
        return single(c, c_rs, a, b, accumulate);
    }
    let c = &mut c[..(m - 1) * c_rs + n];
    c.par_chunks_mut(per * c_rs).enumerate().for_each(|(i, c)| {
        let rows = per.min(m - i * per);
        let a = MatRef { data: &a.data[i * per * a.rs..], rows, ..a };
        single(c, c_rs, a, b, accumulate);
    });
}

/// [`sgemm`] with the columns split over the workers, for products wider than tall (a batch
/// of 64 samples against a layer's weights): splitting rows would have each worker pack all
/// of `b`, the larger operand; this way each packs `a` and its share of `b`. Each worker
/// computes its columns into a buffer of its own, copied into `c` afterwards (`m x n` values
/// against the product's `2 m n k` operations); every value is summed as with rows split.
fn split_columns(
    c: &mut [f32],
    c_rs: usize,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    accumulate: bool,
    threads: usize,
) {
    let (m, n) = (a.rows, b.cols);
    // Whole pairs of column panels, so the AVX-512 kernel covers each block.
    let per = n.div_ceil(threads).div_ceil(2 * NR) * 2 * NR;
    let blocks: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(per))
        .into_par_iter()
        .map(|t| {
            let (j0, cols) = (t * per, per.min(n - t * per));
            let mut block = vec![0f32; m * cols];
            if accumulate {
                for (i, row) in block.chunks_exact_mut(cols).enumerate() {
                    row.copy_from_slice(&c[i * c_rs + j0..][..cols]);
                }
            }
            let b = MatRef { data: &b.data[j0 * b.cs..], cols, ..b };
            single(&mut block, cols, a, b, accumulate);
            (j0, block)
        })
        .collect();
    for (j0, block) in blocks {
        let cols = block.len() / m;
        for (i, row) in block.chunks_exact(cols).enumerate() {
            c[i * c_rs + j0..][..cols].copy_from_slice(row);
        }
    }
}

/// A left-hand operand that packs itself: a convolution's output gradient, `[m, co, pp]`,
/// is read as the `[co, m * pp]` matrix its weight gradient needs without a reordering copy.
pub(crate) trait PackA {
    /// Rows and columns (the product's depth).
    fn dims(&self) -> (usize, usize);

    /// Packs rows `ic..ic + mc`, columns `pc..pc + kc` into `MR`-row panels, each `kc` groups
    /// of `MR` values, zero-padding the last panel's missing rows.
    fn pack(&self, ic: usize, mc: usize, pc: usize, kc: usize, dst: &mut [f32]);
}

impl PackA for MatRef<'_, f32> {
    fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    #[inline(always)]
    fn pack(&self, ic: usize, mc: usize, pc: usize, kc: usize, dst: &mut [f32]) {
        pack_a(*self, ic, mc, pc, kc, dst);
    }
}

/// A right-hand operand that packs itself: convolutions unfold their input straight into
/// the panels ([`super::conv`]) instead of writing an im2col matrix first.
pub(crate) trait PackB {
    /// Rows (the product's depth) and columns.
    fn dims(&self) -> (usize, usize);

    /// Packs rows `pc..pc + kc`, columns `jc..jc + nc` into `NR`-column panels, each `kc` rows
    /// of `NR` values, zero-padding the last panel's missing columns.
    fn pack(&self, pc: usize, kc: usize, jc: usize, nc: usize, dst: &mut [f32]);
}

impl PackB for MatRef<'_, f32> {
    fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    #[inline(always)]
    fn pack(&self, pc: usize, kc: usize, jc: usize, nc: usize, dst: &mut [f32]) {
        pack_b(*self, pc, kc, jc, nc, dst);
    }
}

/// Where the product's element `(i, j)` goes: `(j / block_cols) * block_stride + i * rs +
/// j % block_cols`. One block is a row-major matrix; a convolution's output `[m, co, pp]` is
/// `m` blocks of `pp` columns, `co * pp` apart, so the product lands there without a copy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutMap {
    pub(crate) rs: usize,
    pub(crate) block_cols: usize,
    pub(crate) block_stride: usize,
}

impl OutMap {
    /// A row-major matrix with row stride `rs`.
    pub(crate) fn row_major(rs: usize) -> Self {
        Self { rs, block_cols: usize::MAX, block_stride: 0 }
    }

    fn at(&self, i: usize, j: usize) -> usize {
        (j / self.block_cols) * self.block_stride + i * self.rs + j % self.block_cols
    }
}

/// `c = a x b` or `c += a x b` on this thread, `c` laid out by `out`, both operands packing
/// themselves.
pub(crate) fn sgemm_packed(c: &mut [f32], out: OutMap, a: &impl PackA, b: &impl PackB, accumulate: bool) {
    let (k, n) = b.dims();
    let (m, ak) = a.dims();
    assert!(ak == k && out.rs >= n.min(out.block_cols), "sgemm: mismatched shapes");
    assert!(m == 0 || n == 0 || c.len() > out.at(m - 1, n - 1), "sgemm: output too short");
    assert!(available(), "sgemm: needs AVX2 and FMA");
    if m == 0 || n == 0 {
        return;
    }
    PACKED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let (pa, pb) = &mut *bufs;
            blocked_avx2(c, out, a, b, accumulate, pa, pb);
        }
        // Only reachable if a kernel ever re-entered itself on this thread.
        Err(_) => blocked_avx2(c, out, a, b, accumulate, &mut Vec::new(), &mut Vec::new()),
    });
}

/// [`blocked`] with the packing compiled for AVX2 (the packers are inlined into it): a
/// baseline x86-64 build turns their 32- and 64-byte copies into `memcpy` calls.
#[allow(clippy::too_many_arguments)]
fn blocked_avx2(
    c: &mut [f32],
    out: OutMap,
    a: &impl PackA,
    b: &impl PackB,
    accumulate: bool,
    pa: &mut Vec<f32>,
    pb: &mut Vec<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        fn avx2(
            c: &mut [f32],
            out: OutMap,
            a: &impl PackA,
            b: &impl PackB,
            accumulate: bool,
            pa: &mut Vec<f32>,
            pb: &mut Vec<f32>,
        ) {
            blocked(c, out, a, b, accumulate, pa, pb);
        }
        // SAFETY: `sgemm_packed` asserted that this CPU has AVX2 and FMA.
        unsafe { avx2(c, out, a, b, accumulate, pa, pb) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    blocked(c, out, a, b, accumulate, pa, pb);
}

thread_local! {
    /// Packed `A` and `B` blocks, reused across calls on this thread.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

fn single(c: &mut [f32], c_rs: usize, a: MatRef<'_, f32>, b: MatRef<'_, f32>, accumulate: bool) {
    sgemm_packed(c, OutMap::row_major(c_rs), &a, &b, accumulate);
}

/// The BLIS loop nest around the micro-kernel, on one thread.
#[inline(always)]
fn blocked(
    c: &mut [f32],
    out: OutMap,
    a: &impl PackA,
    b: &impl PackB,
    accumulate: bool,
    pa: &mut Vec<f32>,
    pb: &mut Vec<f32>,
) {
    let (m, k) = a.dims();
    let n = b.dims().1;
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    c[out.at(i, j)] = 0.0;
                }
            }
        }
        return;
    }
    pa.resize(MC * KC, 0.0);
    pb.resize(KC * NC.min(n.div_ceil(NR) * NR), 0.0);
    let avx512 = crate::options::avx512();
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            b.pack(pc, kc, jc, nc, pb);
            let add = accumulate || pc > 0;
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                a.pack(ic, mc, pc, kc, pa);
                let mut jr = 0;
                while jr < nc {
                    let nr = NR.min(nc - jr);
                    let j = jc + jr;
                    // A tile inside one block is a strided matrix; one across blocks goes
                    // through `out.at` value by value. Divisions once per column panel.
                    let (block, col) = (j / out.block_cols, j % out.block_cols);
                    let base = block * out.block_stride + col;
                    // Two whole panels, each inside a block (the same one, or the second at the
                    // start of the next: a 4x4 map's 16 columns): one `MR x 2 NR` tile on
                    // 16-lane registers, twice the FMAs in flight of one `MR x NR` tile. The
                    // second half lies `second` values after the first.
                    let second = if col + 2 * NR <= out.block_cols {
                        Some(NR)
                    } else if col + NR == out.block_cols {
                        Some(out.block_stride - col)
                    } else {
                        None
                    };
                    if let Some(second) = second.filter(|_| avx512 && jr + 2 * NR <= nc) {
                        let bp = &pb[jr * kc..(jr + 2 * NR) * kc];
                        let mut ir = 0;
                        while ir < mc {
                            let c = &mut c[base + (ic + ir) * out.rs..];
                            // Two whole row panels as well: a `2 MR x 2 NR` tile, 24 of the 32
                            // registers accumulating, half the `B` loads per FMA.
                            if ir + 2 * MR <= mc {
                                quad_tile(kc, &pa[ir * kc..(ir + 2 * MR) * kc], bp, c, (out.rs, second), add);
                                ir += 2 * MR;
                                continue;
                            }
                            let mr = MR.min(mc - ir);
                            pair_tile(kc, &pa[ir * kc..(ir + MR) * kc], bp, c, (out.rs, second), mr, add);
                            ir += MR;
                        }
                        jr += 2 * NR;
                        continue;
                    }
                    let bp = &pb[jr * kc..(jr + NR) * kc];
                    let inside = col + nr <= out.block_cols;
                    for ir in (0..mc).step_by(MR) {
                        let mr = MR.min(mc - ir);
                        let ap = &pa[ir * kc..(ir + MR) * kc];
                        if inside {
                            let c = &mut c[base + (ic + ir) * out.rs..];
                            tile(kc, ap, bp, c, out.rs, mr, nr, add);
                        } else {
                            scattered_tile(kc, ap, bp, c, out, (ic + ir, j), (mr, nr), add);
                        }
                    }
                    jr += NR;
                }
            }
        }
    }
}

/// Packs rows `ic..ic + mc`, columns `pc..pc + kc` of `a` into `MR`-row panels, each `kc`
/// groups of `MR` values, zero-padding the last panel.
#[inline(always)]
fn pack_a(a: MatRef<'_, f32>, ic: usize, mc: usize, pc: usize, kc: usize, dst: &mut [f32]) {
    for (panel, ir) in (0..mc).step_by(MR).enumerate() {
        let dst = &mut dst[panel * MR * kc..(panel + 1) * MR * kc];
        let rows = MR.min(mc - ir);
        if a.cs == 1 {
            let start = |i: usize| (ic + ir + i) * a.rs + pc;
            // One run: each row is contiguous over the whole panel.
            pack_panel_rows(|i, p, len| &a.data[start(i) + p..][..len], |_| kc, rows, kc, dst);
            continue;
        }
        for i in 0..MR {
            for p in 0..kc {
                dst[p * MR + i] = if i < rows { a.at(ic + ir + i, pc + p) } else { 0.0 };
            }
        }
    }
}

/// Packs one `MR`-row panel of `kc` steps from `rows` rows whose values lie in contiguous
/// runs: `row(i, p, len)` is row `i`'s steps `p..p + len`, where `run(p)` (at least `len`)
/// is the length of the run that starts at step `p`, the same for every row. Rows
/// `rows..MR` are zeros.
#[inline(always)]
pub(crate) fn pack_panel_rows<'a>(
    row: impl Fn(usize, usize, usize) -> &'a [f32],
    run: impl Fn(usize) -> usize,
    rows: usize,
    kc: usize,
    dst: &mut [f32],
) {
    let rows = rows.min(MR);
    let mut p = 0;
    while p < kc {
        let len = run(p).min(kc - p);
        let srcs: [&[f32]; MR] = std::array::from_fn(|i| if i < rows { &row(i, p, len)[..len] } else { &[] });
        let mut t = 0;
        while t + 8 <= len {
            pack_8_steps(&srcs, t, rows, &mut dst[(p + t) * MR..(p + t + 8) * MR]);
            t += 8;
        }
        for q in t..len {
            for (i, src) in srcs.iter().enumerate() {
                dst[(p + q) * MR + i] = if i < rows { src[q] } else { 0.0 };
            }
        }
        p += len;
    }
}

/// `dst[q * MR + i] = srcs[i][t + q]` for `q < 8`, `i < rows`; zeros for the other rows.
#[inline(always)]
fn pack_8_steps(srcs: &[&[f32]; MR], t: usize, rows: usize, dst: &mut [f32]) {
    assert!(srcs[..rows].iter().all(|s| s.len() >= t + 8) && dst.len() >= 8 * MR, "sgemm: packing");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sgemm's packing runs only after `sgemm_packed` asserted AVX2; the rows and
    // `dst` are long enough (asserted above; `pack_panel_rows` keeps `rows <= MR`).
    unsafe {
        let ptrs = std::array::from_fn(|i| srcs[i].as_ptr().wrapping_add(t));
        x86::pack_6x8(&ptrs, rows, dst.as_mut_ptr());
    }
    #[cfg(not(target_arch = "x86_64"))]
    for q in 0..8 {
        for i in 0..MR {
            dst[q * MR + i] = if i < rows { srcs[i][t + q] } else { 0.0 };
        }
    }
}

/// Packs rows `pc..pc + kc`, columns `jc..jc + nc` of `b` into `NR`-column panels, each `kc`
/// rows of `NR` values, zero-padding the last panel.
#[inline(always)]
fn pack_b(b: MatRef<'_, f32>, pc: usize, kc: usize, jc: usize, nc: usize, dst: &mut [f32]) {
    for (panel, jr) in (0..nc).step_by(NR).enumerate() {
        let dst = &mut dst[panel * NR * kc..(panel + 1) * NR * kc];
        let cols = NR.min(nc - jr);
        if b.cs == 1 {
            for p in 0..kc {
                let src = &b.data[(pc + p) * b.rs + jc + jr..][..cols];
                let d = &mut dst[p * NR..(p + 1) * NR];
                if cols == NR {
                    // A constant length, so the copy is two vector moves, not a `memcpy` call.
                    d.copy_from_slice(&src[..NR]);
                } else {
                    d[..cols].copy_from_slice(src);
                    d[cols..].fill(0.0);
                }
            }
        } else if b.rs == 1 && cols == NR && kc >= 8 {
            // Column-major source, a full panel: 8x8 blocks transposed in registers.
            let first = (jc + jr) * b.cs + pc;
            let last = first + (NR - 1) * b.cs + kc;
            assert!(last <= b.data.len() && dst.len() >= kc * NR, "sgemm: packing out of bounds");
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `sgemm` asserted AVX2; the 16 columns of `kc` values from `first` lie in
            // `b.data` and `dst` holds `kc * NR` values (both asserted above).
            unsafe {
                x86::pack_columns(b.data.as_ptr().add(first), b.cs, kc, dst.as_mut_ptr());
            }
        } else {
            // Column-major source: walk each column contiguously.
            for j in 0..NR {
                if j >= cols {
                    for p in 0..kc {
                        dst[p * NR + j] = 0.0;
                    }
                    continue;
                }
                for p in 0..kc {
                    dst[p * NR + j] = b.at(pc + p, jc + jr + j);
                }
            }
        }
    }
}

/// One `MR x NR` tile: `c[..mr, ..nr] (+)= ap x bp` over `kc`.
#[allow(clippy::too_many_arguments)]
fn tile(kc: usize, ap: &[f32], bp: &[f32], c: &mut [f32], c_rs: usize, mr: usize, nr: usize, add: bool) {
    assert!(ap.len() >= kc * MR && bp.len() >= kc * NR, "sgemm: packed panels too short");
    assert!(mr <= MR && nr <= NR && mr > 0 && c.len() >= (mr - 1) * c_rs + nr, "sgemm: tile");
    if mr == MR && nr == NR {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `sgemm` asserted AVX2 and FMA, `options::avx512` that the CPU has AVX-512F;
        // the panels hold `kc` steps each and `c` holds `MR` rows of `NR` values at stride
        // `c_rs` (both asserted above).
        unsafe {
            if crate::options::avx512() {
                x86::micro_kernel_avx512(kc, ap.as_ptr(), bp.as_ptr(), c.as_mut_ptr(), c_rs, add);
            } else {
                x86::micro_kernel(kc, ap.as_ptr(), bp.as_ptr(), c.as_mut_ptr(), c_rs, add);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        portable_micro_kernel(kc, ap, bp, c, c_rs, add);
        return;
    }
    // An edge tile: compute the full tile aside, then copy or add its valid part.
    let mut acc = [0f32; MR * NR];
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as above; `acc` holds a full tile with row stride `NR`.
    unsafe {
        if crate::options::avx512() {
            x86::micro_kernel_avx512(kc, ap.as_ptr(), bp.as_ptr(), acc.as_mut_ptr(), NR, false);
        } else {
            x86::micro_kernel(kc, ap.as_ptr(), bp.as_ptr(), acc.as_mut_ptr(), NR, false);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    portable_micro_kernel(kc, ap, bp, &mut acc, NR, false);
    for i in 0..mr {
        let row = &mut c[i * c_rs..i * c_rs + nr];
        let src = &acc[i * NR..i * NR + nr];
        if add {
            for (d, &s) in row.iter_mut().zip(src) {
                *d += s;
            }
        } else {
            row.copy_from_slice(src);
        }
    }
}

/// The micro-kernel in plain Rust, for targets without our x86 one (`sgemm` itself runs only
/// where `available()`, so this keeps the module whole rather than fast): `c = a x b` or
/// `c += a x b` on one `MR x NR` tile of packed panels.
#[cfg(not(target_arch = "x86_64"))]
fn portable_micro_kernel(kc: usize, ap: &[f32], bp: &[f32], c: &mut [f32], c_rs: usize, add: bool) {
    let mut acc = [0f32; MR * NR];
    for (a, b) in ap.chunks_exact(MR).zip(bp.chunks_exact(NR)).take(kc) {
        for (i, &ai) in a.iter().enumerate() {
            for (j, &bj) in b.iter().enumerate() {
                acc[i * NR + j] += ai * bj;
            }
        }
    }
    for i in 0..MR {
        let row = &mut c[i * c_rs..i * c_rs + NR];
        for (d, &s) in row.iter_mut().zip(&acc[i * NR..(i + 1) * NR]) {
            *d = if add { *d + s } else { s };
        }
    }
}

/// Two `MR x NR` tiles, `c` holding `mr` rows of `NR` values at stride `c_rs` from offset 0
/// (the first tile) and from offset `second` (the second; `NR` for two side by side), and
/// `bp` the two panels one after the other: the AVX-512 pair kernel for whole tiles, [`tile`]
/// twice for the last rows. Only called where `options::avx512()`.
fn pair_tile(
    kc: usize,
    ap: &[f32],
    bp: &[f32],
    c: &mut [f32],
    (c_rs, second): (usize, usize),
    mr: usize,
    add: bool,
) {
    assert!(ap.len() >= kc * MR && bp.len() >= 2 * kc * NR, "sgemm: packed panels too short");
    assert!(mr <= MR && mr > 0 && second >= NR, "sgemm: pair tile");
    assert!(c.len() >= second + (mr - 1) * c_rs + NR, "sgemm: pair tile");
    let (b0, b1) = bp.split_at(kc * NR);
    #[cfg(target_arch = "x86_64")]
    if mr == MR && crate::options::avx512() {
        // SAFETY: the CPU has AVX-512F, AVX2 and FMA (`options::avx512`); the panels hold `kc`
        // steps each and `c` holds `MR` rows of `NR` values at stride `c_rs` from 0 and from
        // `second` (asserted); the caller's blocks keep the two tiles apart.
        unsafe {
            let c = c.as_mut_ptr();
            x86::micro_kernel_avx512_wide(
                kc,
                [ap.as_ptr()],
                [b0.as_ptr(), b1.as_ptr()],
                [c, c.add(second)],
                c_rs,
                add,
            );
        }
        return;
    }
    tile(kc, ap, b0, c, c_rs, mr, NR, add);
    tile(kc, ap, b1, &mut c[second..], c_rs, mr, NR, add);
}

/// Two whole `MR`-row panels (`ap`, one after the other) against two `NR`-column panels:
/// the `2 MR x 2 NR` AVX-512 kernel, `c` as for [`pair_tile`] with `2 MR` rows. Only called
/// where `options::avx512()`.
fn quad_tile(kc: usize, ap: &[f32], bp: &[f32], c: &mut [f32], (c_rs, second): (usize, usize), add: bool) {
    assert!(ap.len() >= 2 * kc * MR && bp.len() >= 2 * kc * NR, "sgemm: packed panels too short");
    assert!(second >= NR && c.len() >= second + (2 * MR - 1) * c_rs + NR, "sgemm: quad tile");
    let (a0, a1) = ap.split_at(kc * MR);
    #[cfg(target_arch = "x86_64")]
    if crate::options::avx512() {
        let (b0, b1) = bp.split_at(kc * NR);
        // SAFETY: as in `pair_tile`, with `2 MR` rows.
        unsafe {
            let c = c.as_mut_ptr();
            let (a, b) = ([a0.as_ptr(), a1.as_ptr()], [b0.as_ptr(), b1.as_ptr()]);
            x86::micro_kernel_avx512_wide(kc, a, b, [c, c.add(second)], c_rs, add);
        }
        return;
    }
    pair_tile(kc, a0, bp, c, (c_rs, second), MR, add);
    pair_tile(kc, a1, bp, &mut c[MR * c_rs..], (c_rs, second), MR, add);
}

/// One `MR x NR` tile at `(i0, j0)` whose columns cross blocks of `out`.
#[allow(clippy::too_many_arguments)]
fn scattered_tile(
    kc: usize,
    ap: &[f32],
    bp: &[f32],
    c: &mut [f32],
    out: OutMap,
    (i0, j0): (usize, usize),
    (mr, nr): (usize, usize),
    add: bool,
) {
    let mut acc = [0f32; MR * NR];
    tile(kc, ap, bp, &mut acc, NR, MR, NR, false);
    for i in 0..mr {
        for j in 0..nr {
            let d = &mut c[out.at(i0 + i, j0 + j)];
            *d = if add { *d + acc[i * NR + j] } else { acc[i * NR + j] };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// Packs `NR` columns of `kc` contiguous values each (column `j` at `src + j * cs`) into
    /// `kc` rows of `NR`: `dst[p * NR + j] = src[j * cs + p]`, eight rows at a time through
    /// [`pack_8_rows`].
    ///
    /// # Safety
    /// The CPU has AVX2; `src` points to `NR` columns of `kc` readable floats at stride `cs`
    /// and `dst` to `kc * NR` writable floats.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pack_columns(src: *const f32, cs: usize, kc: usize, dst: *mut f32) {
        let offsets: [usize; NR] = std::array::from_fn(|j| j * cs);
        let blocks = kc / 8;
        for blk in 0..blocks {
            // SAFETY: rows `8 blk..8 blk + 8` of every column are in bounds (caller's contract).
            unsafe { pack_8_rows(src.add(blk * 8), &offsets, dst.add(blk * 8 * NR)) };
        }
        for p in blocks * 8..kc {
            for j in 0..NR {
                // SAFETY: as above, for the remaining rows.
                unsafe { *dst.add(p * NR + j) = *src.add(j * cs + p) };
            }
        }
    }

    /// Eight rows of a packed panel from `NR` columns of eight contiguous values each:
    /// `dst[q * NR + j] = src[offsets[j] + q]` for `q < 8`, through two 8x8 register
    /// transposes.
    ///
    /// # Safety
    /// The CPU has AVX2; `src + offsets[j]` points to 8 readable floats for every `j`, and
    /// `dst` to `8 * NR` writable floats.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) unsafe fn pack_8_rows(src: *const f32, offsets: &[usize; NR], dst: *mut f32) {
        for half in 0..NR / 8 {
            // SAFETY: each column's eight values are in bounds (caller's contract).
            unsafe {
                let cols = std::array::from_fn(|j| _mm256_loadu_ps(src.add(offsets[half * 8 + j])));
                for (q, row) in transpose8(cols).into_iter().enumerate() {
                    _mm256_storeu_ps(dst.add(q * NR + half * 8), row);
                }
            }
        }
    }

    /// Eight steps of an `MR`-row panel of `A`: `dst[q * MR + i] = rows[i][q]` for `q < 8`,
    /// zeros for rows `count..MR`, through an 8x8 register transpose whose rows are stored
    /// overlapping (each 8-wide store's last two values are overwritten by the next one).
    ///
    /// # Safety
    /// The CPU has AVX2; `rows[i]` points to 8 readable floats for `i < count <= MR`, and
    /// `dst` to `8 * MR` writable floats.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn pack_6x8(rows: &[*const f32; MR], count: usize, dst: *mut f32) {
        // SAFETY: the reads and writes stay in the ranges of the caller's contract: stores
        // `q < 7` write `dst[6q..6q + 8]`, inside `8 * MR`, and the last writes six values.
        unsafe {
            let c = std::array::from_fn(|i| {
                if i < count.min(MR) { _mm256_loadu_ps(rows[i]) } else { _mm256_setzero_ps() }
            });
            let t = transpose8(c);
            for (q, &row) in t.iter().enumerate().take(7) {
                _mm256_storeu_ps(dst.add(q * MR), row);
            }
            _mm_storeu_ps(dst.add(7 * MR), _mm256_castps256_ps128(t[7]));
            _mm_storel_pd(dst.add(7 * MR + 4).cast(), _mm_castps_pd(_mm256_extractf128_ps::<1>(t[7])));
        }
    }

    /// The transpose of an 8x8 block held as eight rows.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn transpose8(c: [__m256; 8]) -> [__m256; 8] {
        let (t0, t1) = (_mm256_unpacklo_ps(c[0], c[1]), _mm256_unpackhi_ps(c[0], c[1]));
        let (t2, t3) = (_mm256_unpacklo_ps(c[2], c[3]), _mm256_unpackhi_ps(c[2], c[3]));
        let (t4, t5) = (_mm256_unpacklo_ps(c[4], c[5]), _mm256_unpackhi_ps(c[4], c[5]));
        let (t6, t7) = (_mm256_unpacklo_ps(c[6], c[7]), _mm256_unpackhi_ps(c[6], c[7]));
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// `c[i * c_rs + j] (+)= sum over p < kc of a[p*MR + i] * b[p*NR + j]` for the full
    /// `MR x NR` tile, adding to `c` when `add`.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a` and `b` point to `kc * MR` and `kc * NR` floats; `c` to
    /// `MR` rows of `NR` writable floats at stride `c_rs`.
    #[target_feature(enable = "avx2,fma")]
    #[inline(never)]
    pub(super) unsafe fn micro_kernel(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c_out: *mut f32,
        c_rs: usize,
        add: bool,
    ) {
        // The tile of `c` is read (or written) only after the loop: fetch its lines now, so
        // the misses overlap the products instead of stalling the epilogue.
        for i in 0..MR {
            // Prefetches never fault; the addresses are row `i` of the tile.
            let row = c_out.wrapping_add(i * c_rs);
            _mm_prefetch::<_MM_HINT_T0>(row.cast());
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(NR - 1).cast());
        }
        let mut c = [[_mm256_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (a, b);
        // One step of depth `p` ahead of the pointers.
        let step = |c: &mut [[__m256; 2]; MR], a: *const f32, b: *const f32, p: usize| {
            // SAFETY: the caller keeps `p` steps inside both panels.
            unsafe {
                let b0 = _mm256_loadu_ps(b.add(p * NR));
                let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
                for (i, ci) in c.iter_mut().enumerate() {
                    let ai = _mm256_broadcast_ss(&*a.add(p * MR + i));
                    ci[0] = _mm256_fmadd_ps(ai, b0, ci[0]);
                    ci[1] = _mm256_fmadd_ps(ai, b1, ci[1]);
                }
            }
        };
        // Four steps per iteration: less loop overhead between the FMAs.
        for _ in 0..kc / 4 {
            step(&mut c, a, b, 0);
            step(&mut c, a, b, 1);
            step(&mut c, a, b, 2);
            step(&mut c, a, b, 3);
            // SAFETY: four steps stay inside the panels (caller's contract).
            unsafe {
                a = a.add(4 * MR);
                b = b.add(4 * NR);
            }
        }
        for _ in 0..kc % 4 {
            step(&mut c, a, b, 0);
            // SAFETY: as above, one step.
            unsafe {
                a = a.add(MR);
                b = b.add(NR);
            }
        }
        for (i, ci) in c.iter().enumerate() {
            // SAFETY: row `i` of `c_out` holds `NR` floats (caller's contract).
            unsafe {
                let row = c_out.add(i * c_rs);
                let (mut lo, mut hi) = (ci[0], ci[1]);
                if add {
                    lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
                    hi = _mm256_add_ps(hi, _mm256_loadu_ps(row.add(8)));
                }
                _mm256_storeu_ps(row, lo);
                _mm256_storeu_ps(row.add(8), hi);
            }
        }
    }

    /// [`micro_kernel_avx512`] on `P` row panels `a[q]` (rows `q MR..(q + 1) MR` of the
    /// tile) and two column panels `b[h]`, whose `NR` columns go to `c_out[h]`: `12 P`
    /// accumulators, so the FMAs cover their latency, and each pair of `B` loads feeds `12 P`
    /// FMAs; every value summed as by the AVX2 kernel (the same bits).
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX2 and FMA; each `a[q]` points to `kc * MR` floats, `b[0]` and
    /// `b[1]` to `kc * NR` each, `c_out[0]` and `c_out[1]` to `P MR` rows of `NR` writable
    /// floats at stride `c_rs`, the two apart.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline(never)]
    pub(super) unsafe fn micro_kernel_avx512_wide<const P: usize>(
        kc: usize,
        a: [*const f32; P],
        b: [*const f32; 2],
        c_out: [*mut f32; 2],
        c_rs: usize,
        add: bool,
    ) {
        for i in 0..P * MR {
            for half in c_out {
                // Prefetches never fault; the address is row `i` of a half of the tile.
                _mm_prefetch::<_MM_HINT_T0>(half.wrapping_add(i * c_rs).cast());
            }
        }
        let mut c = [[[_mm512_setzero_ps(); 2]; MR]; P];
        let (mut a, [mut b0, mut b1]) = (a, b);
        let step = |c: &mut [[[__m512; 2]; MR]; P],
                    a: &[*const f32; P],
                    b0: *const f32,
                    b1: *const f32,
                    p: usize| {
            // SAFETY: the caller keeps `p` steps inside the panels.
            unsafe {
                let (v0, v1) = (_mm512_loadu_ps(b0.add(p * NR)), _mm512_loadu_ps(b1.add(p * NR)));
                for (cq, aq) in c.iter_mut().zip(a) {
                    for (i, ci) in cq.iter_mut().enumerate() {
                        let ai = _mm512_set1_ps(*aq.add(p * MR + i));
                        ci[0] = _mm512_fmadd_ps(ai, v0, ci[0]);
                        ci[1] = _mm512_fmadd_ps(ai, v1, ci[1]);
                    }
                }
            }
        };
        for _ in 0..kc / 4 {
            for p in 0..4 {
                step(&mut c, &a, b0, b1, p);
            }
            // SAFETY: four steps stay inside the panels (caller's contract).
            unsafe {
                a = a.map(|aq| aq.add(4 * MR));
                (b0, b1) = (b0.add(4 * NR), b1.add(4 * NR));
            }
        }
        for _ in 0..kc % 4 {
            step(&mut c, &a, b0, b1, 0);
            // SAFETY: as above, one step.
            unsafe {
                a = a.map(|aq| aq.add(MR));
                (b0, b1) = (b0.add(NR), b1.add(NR));
            }
        }
        for (q, cq) in c.iter().enumerate() {
            for (i, ci) in cq.iter().enumerate() {
                for (&sum, half) in ci.iter().zip(c_out) {
                    // SAFETY: row `q MR + i` of each half holds `NR` floats (caller's contract).
                    unsafe {
                        let row = half.add((q * MR + i) * c_rs);
                        let sum = if add { _mm512_add_ps(sum, _mm512_loadu_ps(row)) } else { sum };
                        _mm512_storeu_ps(row, sum);
                    }
                }
            }
        }
    }

    /// [`micro_kernel`] on 16-lane registers: one `NR = 16` row of `b` per load, each row of
    /// the tile in one register, half the instructions of the AVX2 kernel. Every value is
    /// summed in the same order with the same fused multiply-adds, so the results are the AVX2
    /// kernel's to the bit. (Splitting the depth over two sets of accumulators would put more
    /// FMAs in flight, but rounds differently: on the PyTorch golden steps a BatchNorm weight
    /// gradient then missed its 1e-4 bound at 1.2e-4.)
    ///
    /// # Safety
    /// The CPU has AVX-512F (and AVX2 and FMA); the pointers as for [`micro_kernel`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline(never)]
    pub(super) unsafe fn micro_kernel_avx512(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c_out: *mut f32,
        c_rs: usize,
        add: bool,
    ) {
        for i in 0..MR {
            // Prefetches never fault; the addresses are row `i` of the tile.
            let row = c_out.wrapping_add(i * c_rs);
            _mm_prefetch::<_MM_HINT_T0>(row.cast());
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(NR - 1).cast());
        }
        let mut c = [_mm512_setzero_ps(); MR];
        let (mut a, mut b) = (a, b);
        let step = |c: &mut [__m512; MR], a: *const f32, b: *const f32, p: usize| {
            // SAFETY: the caller keeps `p` steps inside both panels.
            unsafe {
                let bp = _mm512_loadu_ps(b.add(p * NR));
                for (i, ci) in c.iter_mut().enumerate() {
                    *ci = _mm512_fmadd_ps(_mm512_set1_ps(*a.add(p * MR + i)), bp, *ci);
                }
            }
        };
        for _ in 0..kc / 4 {
            step(&mut c, a, b, 0);
            step(&mut c, a, b, 1);
            step(&mut c, a, b, 2);
            step(&mut c, a, b, 3);
            // SAFETY: four steps stay inside the panels (caller's contract).
            unsafe {
                a = a.add(4 * MR);
                b = b.add(4 * NR);
            }
        }
        for _ in 0..kc % 4 {
            step(&mut c, a, b, 0);
            // SAFETY: as above, one step.
            unsafe {
                a = a.add(MR);
                b = b.add(NR);
            }
        }
        for (i, &ci) in c.iter().enumerate() {
            // SAFETY: row `i` of `c_out` holds `NR` floats (caller's contract).
            unsafe {
                let row = c_out.add(i * c_rs);
                let mut sum = ci;
                if add {
                    sum = _mm512_add_ps(sum, _mm512_loadu_ps(row));
                }
                _mm512_storeu_ps(row, sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_, f32>, b: MatRef<'_, f32>) -> Vec<f64> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols).map(|p| a.at(i, p) as f64 * b.at(p, j) as f64).sum();
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_a_naive_product_on_edge_shapes_strides_threads_and_accumulation() {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX2/FMA, so sgemm is never used here");
            return;
        }
        for &(m, n, k) in
            &[(1, 1, 1), (5, 17, 3), (6, 16, 256), (13, 35, 257), (97, 2050, 300), (64, 40, 600)]
        {
            for transposed in [false, true] {
                for threads in [1, 2, 3] {
                    let ad = values(m * k, 1);
                    let bd = values(k * n, 2);
                    let a = MatRef { data: &ad, rows: m, cols: k, rs: k, cs: 1 };
                    // `b` row-major [k, n], or the transpose of a row-major [n, k].
                    let b = if transposed {
                        MatRef { data: &bd, rows: k, cols: n, rs: 1, cs: k }
                    } else {
                        MatRef { data: &bd, rows: k, cols: n, rs: n, cs: 1 }
                    };
                    let want = naive(a, b);
                    let c_rs = n + 3;
                    let mut c = vec![0.5f32; m * c_rs];
                    sgemm(&mut c, c_rs, a, b, true, threads);
                    for i in 0..m {
                        for j in 0..n {
                            let got = c[i * c_rs + j] as f64;
                            let expect = want[i * n + j] + 0.5;
                            assert!((got - expect).abs() < 1e-3, "{m}x{n}x{k} t={transposed} ({i},{j})");
                        }
                        assert!(c[i * c_rs + n..(i + 1) * c_rs].iter().all(|&v| v == 0.5), "padding");
                    }
                    sgemm(&mut c, c_rs, a, b, false, threads);
                    for i in 0..m {
                        for j in 0..n {
                            assert!((c[i * c_rs + j] as f64 - want[i * n + j]).abs() < 1e-3);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn blocked_outputs_take_every_tile_inside_and_across_blocks() {
        if !available() {
            eprintln!("skipped: this CPU lacks AVX2/FMA, so sgemm is never used here");
            return;
        }
        // Columns in blocks of 16 (every tile inside one) and of 5 and 21 (tiles across
        // blocks), blocks `stride` apart with a gap, as a convolution's `[m, co, pp]` output.
        for &(m, n, k, block_cols) in
            &[(13, 64, 40, 16), (7, 35, 300, 5), (20, 50, 9, 21), (6, 16, 0, 5), (13, 100, 40, 40)]
        {
            let ad = values(m * k, 3);
            let bd = values(k * n, 4);
            let a = MatRef { data: &ad, rows: m, cols: k, rs: k, cs: 1 };
            let b = MatRef { data: &bd, rows: k, cols: n, rs: n, cs: 1 };
            let stride = m * block_cols + 3;
            let out = OutMap { rs: block_cols, block_cols, block_stride: stride };
            let want = naive(a, b);
            let mut c = vec![0.5f32; n.div_ceil(block_cols) * stride];
            sgemm_packed(&mut c, out, &a, &b, true);
            let mut touched = vec![false; c.len()];
            for i in 0..m {
                for j in 0..n {
                    let at = out.at(i, j);
                    touched[at] = true;
                    let got = c[at] as f64;
                    assert!((got - want[i * n + j] - 0.5).abs() < 1e-3, "{m}x{n}x{k}/{block_cols} ({i},{j})");
                }
            }
            assert!(c.iter().zip(&touched).all(|(&v, &t)| t || v == 0.5), "wrote outside the map");
            sgemm_packed(&mut c, out, &a, &b, false);
            for i in 0..m {
                for j in 0..n {
                    assert!((c[out.at(i, j)] as f64 - want[i * n + j]).abs() < 1e-3);
                }
            }
        }
    }

    /// The AVX-512 micro-kernel sums in the AVX2 kernel's order: the same bits, for every
    /// depth remainder, with and without accumulation.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_micro_kernel_gives_the_avx2_bits() {
        if crate::Isa::detected() < crate::Isa::Avx512 {
            eprintln!("skipped: this CPU lacks AVX-512F");
            return;
        }
        for kc in [0, 1, 3, 4, 7, 256] {
            let (ap, bp) = (values(kc * MR, 7), values(kc * NR, 8));
            for add in [false, true] {
                let c_rs = NR + 3;
                let start = values(MR * c_rs, 9);
                let (mut c2, mut c512) = (start.clone(), start);
                // SAFETY: the CPU has AVX-512F (checked above, with AVX2 and FMA); the panels
                // hold `kc` steps and the outputs `MR` rows of `NR` at stride `c_rs`.
                unsafe {
                    x86::micro_kernel(kc, ap.as_ptr(), bp.as_ptr(), c2.as_mut_ptr(), c_rs, add);
                    x86::micro_kernel_avx512(kc, ap.as_ptr(), bp.as_ptr(), c512.as_mut_ptr(), c_rs, add);
                }
                let bits = |c: &[f32]| c.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&c2), bits(&c512), "kc {kc}, add {add}");

                // The pair kernel: two panels against two AVX2 tiles.
                let bp2 = values(kc * NR, 10);
                let c_rs = 2 * NR + 5;
                let start = values(MR * c_rs, 11);
                let (mut c2, mut pair) = (start.clone(), start);
                // SAFETY: as above, with `MR` rows of `2 NR` at stride `c_rs`.
                unsafe {
                    x86::micro_kernel(kc, ap.as_ptr(), bp.as_ptr(), c2.as_mut_ptr(), c_rs, add);
                    x86::micro_kernel(kc, ap.as_ptr(), bp2.as_ptr(), c2.as_mut_ptr().add(NR), c_rs, add);
                    let b = [bp.as_ptr(), bp2.as_ptr()];
                    let c = [pair.as_mut_ptr(), pair.as_mut_ptr().add(NR)];
                    x86::micro_kernel_avx512_wide(kc, [ap.as_ptr()], b, c, c_rs, add);
                }
                assert_eq!(bits(&c2), bits(&pair), "pair: kc {kc}, add {add}");

                // The quad kernel: two row panels and two column panels against four AVX2 tiles.
                let ap2 = values(kc * MR, 12);
                let start = values(2 * MR * c_rs, 13);
                let (mut c2, mut quad) = (start.clone(), start);
                // SAFETY: as above, with `2 MR` rows of `2 NR` at stride `c_rs`.
                unsafe {
                    for (q, a) in [&ap, &ap2].into_iter().enumerate() {
                        for (h, b) in [&bp, &bp2].into_iter().enumerate() {
                            let c = c2.as_mut_ptr().add(q * MR * c_rs + h * NR);
                            x86::micro_kernel(kc, a.as_ptr(), b.as_ptr(), c, c_rs, add);
                        }
                    }
                    let (a, b) = ([ap.as_ptr(), ap2.as_ptr()], [bp.as_ptr(), bp2.as_ptr()]);
                    let c = [quad.as_mut_ptr(), quad.as_mut_ptr().add(NR)];
                    x86::micro_kernel_avx512_wide(kc, a, b, c, c_rs, add);
                }
                assert_eq!(bits(&c2), bits(&quad), "quad: kc {kc}, add {add}");
            }
        }
    }
}
