//! The Winograd tile transforms of one row of 2x2 output tiles, eight tiles per AVX2 vector.
//!
//! Each function transforms the first `8 * (count / 8)` tiles of the row and returns how many
//! it did; the caller transforms the rest one tile at a time. Neighbouring tiles overlap by
//! two columns, so a tile's four input columns are the even and odd elements of two 16-float
//! loads, two columns apart. Every sum is the scalar path's, in the same order, so both paths
//! give the same bits. Off x86-64 (where Winograd never runs) they do nothing.

/// `V[e] = (Bᵀ d B)[e]` of the tiles `0..count` of a row: tile `t`'s 4x4 patch is
/// `rows[r][2t + cc]`. `V[e]` of tile `t` goes to `dst[e * e_stride + t]`.
pub(super) fn input(rows: &[&[f32]; 4], count: usize, dst: &mut [f32], e_stride: usize) -> usize {
    let groups = count / 8;
    if groups == 0 {
        return 0;
    }
    assert!(rows.iter().all(|r| r.len() >= 16 * groups + 2), "winograd: input rows too short");
    assert!(dst.len() >= 15 * e_stride + 8 * groups, "winograd: transformed input too short");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: Winograd runs only where `sgemm` is available (AVX2 and FMA); tile group `k`
    // reads `rows[r][16k..16k + 18]` and writes `dst[e * e_stride + 8k..][..8]`, in bounds
    // by the assertions above.
    unsafe {
        let src = rows.map(|r| r.as_ptr());
        for k in 0..groups {
            x86::input_group(&src, 16 * k, dst.as_mut_ptr().add(8 * k), e_stride);
        }
        8 * groups
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// `Y = Aᵀ M A` of the tiles `0..count` of a row, for tiles whose two output columns lie
/// inside `out` rows of `width`: `M[e]` of tile `t` is `src[e * e_stride + t]`; tile `t`'s
/// outputs go to `out[r][2t..2t + 2]`.
pub(super) fn output(src: &[f32], e_stride: usize, count: usize, out: [&mut [f32]; 2]) -> usize {
    let groups = count / 8;
    if groups == 0 {
        return 0;
    }
    assert!(src.len() >= 15 * e_stride + 8 * groups, "winograd: products too short");
    assert!(out.iter().all(|r| r.len() >= 16 * groups), "winograd: output rows too short");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in `input`: group `k` reads `src[e * e_stride + 8k..][..8]` and writes
    // `out[r][16k..16k + 16]`, in bounds by the assertions above.
    unsafe {
        let [r0, r1] = out;
        let dst = [r0.as_mut_ptr(), r1.as_mut_ptr()];
        for k in 0..groups {
            x86::output_group(src.as_ptr().add(8 * k), e_stride, dst.map(|d| d.add(16 * k)));
        }
        8 * groups
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// `Z[e] = (A q Aᵀ)[e]` of the tiles `0..count` of a row of the output gradient: tile `t`'s
/// 2x2 patch is `rows[r][2t + cc]`; `Z[e]` of tile `t` goes to `dst[e * e_stride + t]`.
pub(super) fn output_grad(rows: [&[f32]; 2], count: usize, dst: &mut [f32], e_stride: usize) -> usize {
    let groups = count / 8;
    if groups == 0 {
        return 0;
    }
    assert!(rows.iter().all(|r| r.len() >= 16 * groups), "winograd: gradient rows too short");
    assert!(dst.len() >= 15 * e_stride + 8 * groups, "winograd: transformed gradient too short");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in `input`: group `k` reads `rows[r][16k..16k + 16]` and writes
    // `dst[e * e_stride + 8k..][..8]`, in bounds by the assertions above.
    unsafe {
        let src = rows.map(|r| r.as_ptr());
        for k in 0..groups {
            x86::output_grad_group(&src, 16 * k, dst.as_mut_ptr().add(8 * k), e_stride);
        }
        8 * groups
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The even and odd elements of the 16 floats at `src`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn deinterleave(src: *const f32) -> (__m256, __m256) {
        // SAFETY: the caller's 16 floats.
        let (a, b) = unsafe { (_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(8))) };
        // Per 128-bit lane [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pairs in order.
        let order = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(v)));
        (order(_mm256_shuffle_ps::<0x88>(a, b)), order(_mm256_shuffle_ps::<0xDD>(a, b)))
    }

    /// Eight tiles of [`super::input`], whose patches start at column `x0` of `rows`.
    ///
    /// # Safety
    /// AVX2; `rows[r][x0..x0 + 18]` readable, `dst[e * e_stride..][..8]` writable.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn input_group(rows: &[*const f32; 4], x0: usize, dst: *mut f32, e_stride: usize) {
        // d[r][cc]: column cc of the eight patches' row r.
        let d: [[__m256; 4]; 4] = std::array::from_fn(|r| {
            // SAFETY: 18 floats from `x0` (caller's contract).
            let ((d0, d1), (d2, d3)) =
                unsafe { (deinterleave(rows[r].add(x0)), deinterleave(rows[r].add(x0 + 2))) };
            [d0, d1, d2, d3]
        });
        // Bᵀ d, then (Bᵀ d) B, as in `transform_input`.
        let t: [[__m256; 4]; 4] = [
            std::array::from_fn(|c| _mm256_sub_ps(d[0][c], d[2][c])),
            std::array::from_fn(|c| _mm256_add_ps(d[1][c], d[2][c])),
            std::array::from_fn(|c| _mm256_sub_ps(d[2][c], d[1][c])),
            std::array::from_fn(|c| _mm256_sub_ps(d[1][c], d[3][c])),
        ];
        for (r, row) in t.iter().enumerate() {
            let vals = [
                _mm256_sub_ps(row[0], row[2]),
                _mm256_add_ps(row[1], row[2]),
                _mm256_sub_ps(row[2], row[1]),
                _mm256_sub_ps(row[1], row[3]),
            ];
            for (c, v) in vals.into_iter().enumerate() {
                // SAFETY: position `e` of the eight tiles (caller's contract).
                unsafe { _mm256_storeu_ps(dst.add((r * 4 + c) * e_stride), v) };
            }
        }
    }

    /// Eight tiles of [`super::output`]: `M[e]` at `src + e * e_stride`, outputs to
    /// `out[r][..16]`.
    ///
    /// # Safety
    /// AVX2; `src[e * e_stride..][..8]` readable, `out[r][..16]` writable.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn output_group(src: *const f32, e_stride: usize, out: [*mut f32; 2]) {
        // SAFETY: position `e` of the eight tiles (caller's contract).
        let at = |e: usize| unsafe { _mm256_loadu_ps(src.add(e * e_stride)) };
        // Aᵀ M, then (Aᵀ M) A, as in `transform_output`.
        let t: [[__m256; 4]; 2] = [
            std::array::from_fn(|c| _mm256_add_ps(_mm256_add_ps(at(c), at(4 + c)), at(8 + c))),
            std::array::from_fn(|c| _mm256_sub_ps(_mm256_sub_ps(at(4 + c), at(8 + c)), at(12 + c))),
        ];
        for (row, dst) in t.iter().zip(out) {
            let y0 = _mm256_add_ps(_mm256_add_ps(row[0], row[1]), row[2]);
            let y1 = _mm256_sub_ps(_mm256_sub_ps(row[1], row[2]), row[3]);
            // Tile t's two columns next to each other: [y0_0 y1_0 y0_1 y1_1 ...].
            let (lo, hi) = (_mm256_unpacklo_ps(y0, y1), _mm256_unpackhi_ps(y0, y1));
            // SAFETY: 16 floats of the output row (caller's contract).
            unsafe {
                _mm256_storeu_ps(dst, _mm256_permute2f128_ps::<0x20>(lo, hi));
                _mm256_storeu_ps(dst.add(8), _mm256_permute2f128_ps::<0x31>(lo, hi));
            }
        }
    }

    /// Eight tiles of [`super::output_grad`], whose patches start at column `x0` of `rows`.
    ///
    /// # Safety
    /// AVX2; `rows[r][x0..x0 + 16]` readable, `dst[e * e_stride..][..8]` writable.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn output_grad_group(
        rows: &[*const f32; 2],
        x0: usize,
        dst: *mut f32,
        e_stride: usize,
    ) {
        // SAFETY: 16 floats from `x0` (caller's contract).
        let q = rows.map(|r| unsafe { deinterleave(r.add(x0)) });
        let neg = |v: __m256| _mm256_xor_ps(v, _mm256_set1_ps(-0.0));
        // A q, then (A q) Aᵀ, as in `transform_output_grad`.
        let t = [
            q[0],
            (_mm256_add_ps(q[0].0, q[1].0), _mm256_add_ps(q[0].1, q[1].1)),
            (_mm256_sub_ps(q[0].0, q[1].0), _mm256_sub_ps(q[0].1, q[1].1)),
            (neg(q[1].0), neg(q[1].1)),
        ];
        for (r, &(a, b)) in t.iter().enumerate() {
            let vals = [a, _mm256_add_ps(a, b), _mm256_sub_ps(a, b), neg(b)];
            for (c, v) in vals.into_iter().enumerate() {
                // SAFETY: position `e` of the eight tiles (caller's contract).
                unsafe { _mm256_storeu_ps(dst.add((r * 4 + c) * e_stride), v) };
            }
        }
    }
}
