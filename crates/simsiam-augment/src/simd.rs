//! Runtime dispatch of hot loops to AVX2 on x86-64.
//!
//! The loops are plain Rust that the compiler vectorises; compiled a second time with AVX2
//! enabled they process 8 lanes instead of 4. Rust never fuses multiplies and adds on its own
//! and we never enable FMA, so both versions perform the same IEEE operations in the same
//! order and return identical bytes: the output does not depend on the CPU.

/// Defines `fn $name(args) body` as a function that runs `body` compiled for AVX2 when the CPU
/// has it, and for the baseline target otherwise.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            unsafe fn avx2($($arg: $ty),*) {
                portable($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, as checked just above.
                return unsafe { avx2($($arg),*) };
            }
            portable($($arg),*)
        }
    };
}

pub(crate) use multiversion;
