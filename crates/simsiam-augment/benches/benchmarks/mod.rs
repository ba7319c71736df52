pub mod ops;
pub mod presets;

/// Deterministic pseudo-random pixels (an LCG), `width * height * 3` bytes.
pub fn noise(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..width as usize * height as usize * 3)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 24) as u8
        })
        .collect()
}
