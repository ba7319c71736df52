//! Explicit, portable randomness: per-sample ChaCha8 streams and the few samplers we need.
//!
//! Every random op takes `&mut ChaCha8Rng`. A sample's generator is derived from
//! `(seed, epoch, index)` only, never from a thread or a worker id, so a batch gives identical
//! bytes on any number of threads. The samplers below are written here rather than taken from
//! `rand`'s distributions so that their output is fixed by this crate, not by a `rand` release.

use rand::{Rng, SeedableRng};
pub use rand_chacha::ChaCha8Rng;

/// One step of splitmix64 (Steele, Lea and Flood, 2014): adds the golden-ratio increment to
/// `state` and returns the mixed output.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 32-byte ChaCha key for a sample.
///
/// The mixing is documented so other implementations can reproduce it: a splitmix64 state
/// starts at `seed`; `epoch` and then `index` are each folded in by
/// `state = splitmix64(state) ^ value` (one splitmix64 step, its output xored with the value);
/// the four little-endian `u64` words of the key are then four further splitmix64 outputs.
pub fn sample_seed(seed: u64, epoch: u64, index: u64) -> [u8; 32] {
    let mut state = seed;
    state = splitmix64(&mut state) ^ epoch;
    state = splitmix64(&mut state) ^ index;
    let mut key = [0u8; 32];
    for word in key.chunks_exact_mut(8) {
        word.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    key
}

/// The generator of sample `index` in `epoch` of a run seeded with `seed`.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(sample_seed(seed, epoch, index))
}

/// The generator of view `view` of a sample: the sample's key on ChaCha stream `view`, so the
/// views of one sample are independent and each can be computed on any thread.
pub fn view_rng(seed: u64, epoch: u64, index: u64, view: u64) -> ChaCha8Rng {
    let mut rng = sample_rng(seed, epoch, index);
    rng.set_stream(view);
    rng
}

/// A uniform `f64` in `[0, 1)` with 53 random bits.
pub fn unit_f64(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform `f64` in `[lo, hi)` (`lo` when `lo == hi`).
pub fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * unit_f64(rng)
}

/// `true` with probability `p`, as torchvision's `torch.rand(1) < p`. Draws even when `p` is 0
/// or 1, so the stream does not depend on the probabilities.
pub fn bernoulli(rng: &mut ChaCha8Rng, p: f64) -> bool {
    unit_f64(rng) < p
}

/// An integer uniform in `[0, n)` (`0` when `n == 0`), by Lemire's multiply-shift; its bias,
/// below `n / 2^64`, is irrelevant for image sizes.
pub fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

/// Shuffles `items` uniformly in place (Fisher-Yates from the back): for `i` from
/// `len - 1` down to 1, swaps `items[i]` with `items[below(rng, i + 1)]`, one draw per step.
/// Every seeded order in the workspace (colour-jitter order, epoch order, figure samples)
/// comes from here, so this draw pattern is part of their reproducibility.
pub fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A uniformly random permutation of `0..N`: `0..N` [`shuffle`]d.
pub fn permutation<const N: usize>(rng: &mut ChaCha8Rng) -> [usize; N] {
    let mut out = std::array::from_fn(|i| i);
    shuffle(&mut out, rng);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of splitmix64 seeded with 0 (the reference C implementation).
        let mut s = 0;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn seeds_differ_by_every_input() {
        let base = sample_seed(1, 2, 3);
        assert_ne!(base, sample_seed(0, 2, 3));
        assert_ne!(base, sample_seed(1, 3, 3));
        assert_ne!(base, sample_seed(1, 2, 4));
        assert_ne!(sample_seed(0, 1, 0), sample_seed(0, 0, 1));
        assert_eq!(base, sample_seed(1, 2, 3));
    }

    #[test]
    fn views_are_distinct_streams() {
        let mut a = view_rng(7, 0, 0, 0);
        let mut b = view_rng(7, 0, 0, 1);
        assert_ne!(a.next_u64(), b.next_u64());
        let mut c = view_rng(7, 0, 0, 0);
        let mut d = sample_rng(7, 0, 0);
        assert_eq!(c.next_u64(), d.next_u64());
    }

    #[test]
    fn samplers_stay_in_range() {
        let mut rng = sample_rng(0, 0, 0);
        for _ in 0..1000 {
            let u = uniform(&mut rng, -2.0, 3.0);
            assert!((-2.0..3.0).contains(&u));
            assert!(below(&mut rng, 5) < 5);
        }
        assert_eq!(below(&mut rng, 0), 0);
        assert!(!bernoulli(&mut rng, 0.0));
        assert!(bernoulli(&mut rng, 1.0));
        let mut p = permutation::<4>(&mut rng);
        p.sort_unstable();
        assert_eq!(p, [0, 1, 2, 3]);
    }

    #[test]
    fn shuffle_keeps_the_orders_of_the_three_loops_it_replaced() {
        // Values printed by the loops before they were merged into `shuffle` (the figures'
        // `seeded_order(10, 42)`, colour jitter's `permutation::<4>`, and the loader's
        // `epoch_permutation(12, 7, 3)`): any change to the draw pattern changes them.
        let mut order: Vec<usize> = (0..10).collect();
        let mut rng = sample_rng(42, 0, 0);
        shuffle(&mut order, &mut rng);
        assert_eq!(order, [3, 4, 1, 9, 2, 6, 7, 8, 5, 0]);
        // Exactly one draw per position from the back: the stream continues where it did.
        assert_eq!(rng.next_u64(), 169_464_138_418_922_223);
        assert_eq!(permutation::<4>(&mut sample_rng(0, 0, 0)), [1, 3, 0, 2]);
        let mut rng = sample_rng(7, 3, u64::MAX);
        rng.set_stream(0x5348_5546_464c_4521);
        let mut order: Vec<usize> = (0..12).collect();
        shuffle(&mut order, &mut rng);
        assert_eq!(order, [0, 5, 11, 1, 10, 4, 8, 9, 6, 3, 2, 7]);
    }

    #[test]
    fn shuffle_handles_short_slices_without_drawing() {
        let mut rng = sample_rng(1, 2, 3);
        let mut empty: [u8; 0] = [];
        shuffle(&mut empty, &mut rng);
        let mut one = ['a'];
        shuffle(&mut one, &mut rng);
        assert_eq!(one, ['a']);
        assert_eq!(rng.next_u64(), sample_rng(1, 2, 3).next_u64());
    }
}
