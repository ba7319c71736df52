//! The shuffled order of an epoch.

use simsiam_augment::rng::{sample_rng, shuffle};

/// ChaCha stream of the shuffling generator, far from the view streams (`0..views`).
const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4521;

/// The order of `n` samples in `epoch`: `0..n` shuffled by `simsiam_augment::rng::shuffle`
/// (Fisher-Yates) with the ChaCha8 generator `sample_rng(seed, epoch, u64::MAX)` on stream
/// `0x5348_5546_464C_4521`, so it depends only on `(seed, epoch)`.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = sample_rng(seed, epoch, u64::MAX);
    rng.set_stream(SHUFFLE_STREAM);
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_the_one_of_earlier_releases() {
        // Printed by the loop this function had before it called `shuffle`.
        assert_eq!(epoch_permutation(12, 7, 3), [0, 5, 11, 1, 10, 4, 8, 9, 6, 3, 2, 7]);
        assert_eq!(epoch_permutation(0, 7, 3), Vec::<usize>::new());
        assert_eq!(epoch_permutation(1, 7, 3), [0]);
    }
}
