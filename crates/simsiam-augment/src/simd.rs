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

/// `1.5 * 2^23`: adding it to an `f32` of magnitude below `2^22` rounds to an integer (half to
/// even, the default IEEE mode) and leaves that integer in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;

/// `x` clamped to `[0, 255]`, NaN to 0, in plain comparisons that vectorise (`f32::clamp`
/// propagates NaN, and the saturating `as u8` that would follow does not vectorise).
#[inline(always)]
fn clamp_255(x: f32) -> f32 {
    let x = if x > 0.0 { x } else { 0.0 };
    if x < 255.0 { x } else { 255.0 }
}

/// Rounds half to even and saturates to `u8`: `torch.round(x).clamp(0, 255).to(torch.uint8)`,
/// equal to `x.round_ties_even() as u8` (NaN gives 0). Branch-free integer arithmetic on the
/// bits, so loops around it vectorise, which the saturating `as u8` cast prevents.
#[inline(always)]
pub(crate) fn round_u8(x: f32) -> u8 {
    (clamp_255(x) + MAGIC).to_bits() as u8
}

/// Clamps to `[0, 255]` and truncates to `u8`: `x.clamp(0.0, 255.0) as u8` (NaN gives 0),
/// torchvision's `.clamp(0, 255).to(torch.uint8)`, written so that loops vectorise.
#[inline(always)]
pub(crate) fn trunc_u8(x: f32) -> u8 {
    let x = clamp_255(x);
    let m = x + MAGIC;
    // `m - MAGIC` is `x` rounded to nearest; one less when that rounded up.
    let up = (m - MAGIC > x) as u32;
    m.to_bits().wrapping_sub(up) as u8
}

/// `x as u8` for `x` already in `[0, 255]` (no clamping): [`trunc_u8`] without the clamp.
#[inline(always)]
pub(crate) fn trunc_unit_u8(x: f32) -> u8 {
    let m = x + MAGIC;
    let up = (m - MAGIC > x) as u32;
    m.to_bits().wrapping_sub(up) as u8
}

/// `floor(x)` for `0 <= x < 2^22` (exact), in arithmetic that vectorises without SSE4.1.
#[inline(always)]
pub(crate) fn floor_small(x: f32) -> f32 {
    let r = (x + MAGIC) - MAGIC;
    if r > x { r - 1.0 } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_casts() {
        let mut values = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 255.0, 1e9, -1e9];
        // Every quarter from -3 to 259 and values just beside them.
        for i in -12..1040 {
            let x = i as f32 * 0.25;
            values.extend([x, x + 1e-4, x - 1e-4]);
        }
        for x in values {
            assert_eq!(round_u8(x), x.round_ties_even() as u8, "round {x}");
            assert_eq!(trunc_u8(x), x.clamp(0.0, 255.0) as u8, "trunc {x}");
            if (0.0..=255.0).contains(&x) {
                assert_eq!(trunc_unit_u8(x), x as u8, "trunc_unit {x}");
            }
            if x.is_finite() && (0.0..4e6).contains(&x) {
                assert_eq!(floor_small(x), x.floor(), "floor {x}");
            }
        }
    }
}
