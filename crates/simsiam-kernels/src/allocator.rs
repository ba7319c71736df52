//! Process-wide `malloc` settings that let the training step reuse freed memory.
//!
//! Each step allocates and frees the same large activation and gradient buffers. glibc's
//! defaults serve every allocation above 128 KiB-32 MiB (the threshold adapts) with a fresh
//! `mmap` and return it to the kernel on `free`, so every step page-faults all of them in
//! again (about 4096 faults per 16 MiB, each zeroing a page). Measured on the 2-core AVX2 EPYC
//! with the other jobs paused (`bench_step`, A B A B, 2026-11-29): cifar-r18 at batch 256
//! 5.07-5.47 images/s without these settings and 6.29-6.51 with them; imagenet-r18 at batch 64
//! 42.7-44.6 and 46.8-47.7; peak RSS 3% higher at batch 256.

/// `mallopt` parameters, from glibc's `malloc.h`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    pub const M_TRIM_THRESHOLD: i32 = -1;
    pub const M_TOP_PAD: i32 = -2;
    pub const M_MMAP_THRESHOLD: i32 = -3;

    unsafe extern "C" {
        pub fn mallopt(param: i32, value: i32) -> i32;
    }
}

/// Tells glibc's `malloc` to keep freed memory for reuse: allocations up to 32 MiB (glibc's
/// largest threshold) come from the heap instead of fresh mappings, the heap grows in steps of
/// 256 MiB, and freed memory is returned to the kernel only past 1 GiB at the top of the
/// heap. Call it once at the start of a training program; libraries should leave the
/// decision to the program. Does nothing, and returns `false`, on other C libraries.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use glibc::*;
        // SAFETY: `mallopt` only changes allocator parameters; the values are in range.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
                && mallopt(M_TOP_PAD, 256 << 20) == 1
                && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_accepts_the_settings() {
        // Allocator settings are process-wide; later tests in this binary run with them.
        let applied = keep_freed_memory();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
        // Memory still works afterwards, large blocks included.
        let v = vec![1u8; 40 << 20];
        assert_eq!(v.iter().map(|&b| b as usize).sum::<usize>(), 40 << 20);
    }
}
