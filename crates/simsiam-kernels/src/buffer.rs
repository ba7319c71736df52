//! Output buffers for kernels that write them from several threads.

use rayon::prelude::*;

/// Below this many elements one thread zeroes the buffer: splitting would cost more.
const PARALLEL_FROM: usize = 1 << 15;

/// `len` copies of `zero`, written by the rayon threads of the calling pool when the buffer is
/// large. The kernels fill their outputs in parallel; a `vec![zero; len]` of megabytes was a
/// serial stretch before each of them (the calling thread zeroing while the others wait).
pub(crate) fn zeroed<T: Copy + Send + Sync>(len: usize, zero: T) -> Vec<T> {
    if len < PARALLEL_FROM || rayon::current_num_threads() == 1 {
        return vec![zero; len];
    }
    let mut buffer = Vec::with_capacity(len);
    buffer.par_extend(rayon::iter::repeat_n(zero, len));
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_len_zeros_on_any_number_of_threads() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool");
            for len in [0, 7, PARALLEL_FROM - 1, PARALLEL_FROM, 3 * PARALLEL_FROM + 5] {
                let v = pool.install(|| zeroed(len, 0f32));
                assert_eq!(v.len(), len);
                assert!(v.iter().all(|&x| x == 0.0), "{threads} threads, {len}");
            }
        }
    }
}
