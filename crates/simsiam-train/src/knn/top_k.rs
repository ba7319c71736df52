//! The `k` largest values of a row with their indices: a bounded buffer of candidates and a
//! threshold, so most of a long row costs one comparison per element (per block of 16 when
//! none beats the threshold), instead of a selection over an index vector of the whole row.

use std::cmp::Ordering;

/// Values per block whose maximum is tested against the threshold before any one of them.
const BLOCK: usize = 16;

/// `v`'s position in [`f32::total_cmp`]'s order, as an integer (the same bit trick).
#[inline]
fn order_key(v: f32) -> i32 {
    let bits = v.to_bits() as i32;
    bits ^ (((bits >> 31) as u32) >> 1) as i32
}

/// A candidate: its order key and its index in the row.
type Candidate = (i32, u32);

/// Better first: the larger value, then (equal values) the lower index.
fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    b.0.cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Reusable storage of [`TopK::select`]: one per thread.
#[derive(Debug, Default)]
pub(crate) struct TopK {
    candidates: Vec<Candidate>,
}

impl TopK {
    /// The indices of the `min(k, row.len())` largest values of `row` in `f32::total_cmp`'s
    /// order, best first; equal values rank by index, lower first. That is the head of a
    /// stable descending sort of the row, so the choice among ties is deterministic.
    ///
    /// `row.len()` must fit in a `u32`.
    pub(crate) fn select(&mut self, row: &[f32], k: usize) -> impl ExactSizeIterator<Item = usize> + '_ {
        debug_assert!(u32::try_from(row.len()).is_ok(), "rows are indexed by u32");
        let k = k.min(row.len());
        let c = &mut self.candidates;
        c.clear();
        if k > 0 {
            c.extend(row[..k].iter().enumerate().map(|(j, &v)| (order_key(v), j as u32)));
            // Room for k more between prunings: each pruning is linear in 2k.
            let capacity = 2 * k;
            let mut threshold = c.iter().map(|e| e.0).min().unwrap_or(i32::MIN);
            let mut start = k;
            for block in row[k..].chunks(BLOCK) {
                let best = block.iter().fold(i32::MIN, |m, &v| m.max(order_key(v)));
                // A value equal to the threshold loses to the k kept ones: their indices are
                // lower.
                if best > threshold {
                    for (offset, &v) in block.iter().enumerate() {
                        let key = order_key(v);
                        if key > threshold {
                            c.push((key, (start + offset) as u32));
                            if c.len() == capacity {
                                c.select_nth_unstable_by(k - 1, rank);
                                c.truncate(k);
                                threshold = c[k - 1].0;
                            }
                        }
                    }
                }
                start += block.len();
            }
            if c.len() > k {
                c.select_nth_unstable_by(k - 1, rank);
                c.truncate(k);
            }
            c.sort_unstable_by(rank);
        }
        c.iter().map(|&(_, j)| j as usize)
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// The reference: a stable descending sort of the indices, the first k.
    fn brute_force(row: &[f32], k: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        order.truncate(k);
        order
    }

    #[test]
    fn the_order_key_orders_as_total_cmp() {
        let values =
            [f32::NEG_INFINITY, -3.5, -0.0, 0.0, 1e-40, 0.5, 1.0, f32::INFINITY, f32::NAN, -f32::NAN];
        for &a in &values {
            for &b in &values {
                assert_eq!(order_key(a).cmp(&order_key(b)), a.total_cmp(&b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn equals_a_stable_descending_sort_on_random_rows_with_ties() {
        let mut rng = ChaCha8Rng::seed_from_u64(19);
        let mut top = TopK::default();
        for trial in 0..400 {
            let n: usize = rng.random_range(0..600);
            // Few distinct values make many ties, at the k-th place too.
            let distinct = if trial % 2 == 0 { 5 } else { 1_000_000 };
            let row: Vec<f32> =
                (0..n).map(|_| rng.random_range(0..distinct) as f32 / distinct as f32).collect();
            for k in [0, 1, 2, 7, 16, 17, 100, n.saturating_sub(1), n, n + 5] {
                let ours: Vec<usize> = top.select(&row, k).collect();
                assert_eq!(ours, brute_force(&row, k), "n = {n}, k = {k}, trial {trial}");
            }
        }
    }

    #[test]
    fn rising_and_falling_rows_and_special_values() {
        let mut top = TopK::default();
        let rising: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let falling: Vec<f32> = rising.iter().rev().copied().collect();
        for row in [&rising, &falling] {
            for k in [1, 3, 200, 999, 1000, 2000] {
                assert_eq!(top.select(row, k).collect::<Vec<_>>(), brute_force(row, k), "k = {k}");
            }
        }
        let special = [0.0, -0.0, f32::NAN, 1.0, f32::NEG_INFINITY, f32::INFINITY, -1.0, 0.0, -f32::NAN];
        for k in 0..=special.len() + 1 {
            assert_eq!(top.select(&special, k).collect::<Vec<_>>(), brute_force(&special, k), "k = {k}");
        }
        let all_equal = vec![0.25f32; 300];
        assert_eq!(top.select(&all_equal, 50).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
    }
}
