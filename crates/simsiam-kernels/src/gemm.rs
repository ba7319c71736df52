//! A bounds-checked front end to the matrix product for strided row-major views: our own
//! `f32` kernel ([`super::sgemm`]) on CPUs with AVX2 and FMA, `gemm::gemm` otherwise.

pub(crate) use ::gemm::Parallelism;

use crate::Float;
use crate::sgemm;
pub(crate) use crate::view::{MatMut, MatRef};

/// Parallelism over all of the current rayon pool's threads.
pub(crate) fn all_threads() -> Parallelism {
    Parallelism::Rayon(rayon::current_num_threads().max(1))
}

/// `dst = lhs x rhs`, or `dst += lhs x rhs` when `accumulate`.
pub(crate) fn matmul<T: Float>(
    dst: MatMut<'_, T>,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    accumulate: bool,
    parallelism: Parallelism,
) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    assert!(dst.rows == m && dst.cols == n && rhs.rows == k, "matmul: mismatched shapes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst.data[i * dst.rs..i * dst.rs + n].fill(T::zero());
            }
        }
        return;
    }
    if crate::options::avx2()
        && let (Some(d), Some(l), Some(r)) =
            (T::as_f32_mut(dst.data), T::as_f32(lhs.data), T::as_f32(rhs.data))
    {
        let threads = match parallelism {
            Parallelism::None => 1,
            Parallelism::Rayon(0) => rayon::current_num_threads(),
            Parallelism::Rayon(n) => n,
        };
        sgemm::sgemm(d, dst.rs, lhs.with_data(l), rhs.with_data(r), accumulate, threads);
        return;
    }
    let alpha = if accumulate { T::one() } else { T::zero() };
    // SAFETY: the views' constructors checked that every index they can form lies inside
    // their slices, `dst` is borrowed mutably and so aliases neither operand, and `Float`
    // is implemented only for f32 and f64, which `gemm` supports.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            alpha,
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_naive_product_with_transposes_and_accumulation() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| i as f64 * 0.5 - 2.0).collect();
        let b: Vec<f64> = (0..n * k).map(|i| (i % 5) as f64 - 1.0).collect();
        // b is stored as [n, k]; use its transpose.
        let mut c = vec![1.0; m * n];
        matmul(
            MatMut::row_major(&mut c, m, n),
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&b, n, k).t(),
            true,
            Parallelism::None,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f64 = 1.0 + (0..k).map(|l| a[i * k + l] * b[j * k + l]).sum::<f64>();
                assert!((c[i * n + j] - want).abs() < 1e-12);
            }
        }
    }
}
