//! Reproducible shuffling and batching of indices.
//!
//! The order of an epoch depends only on `(seed, epoch)`: not on how many epochs ran
//! before, on threads, or on the platform. A run restarted at epoch 7 sees exactly the
//! batches the uninterrupted run saw.
//!
//! # Derivation
//!
//! [`epoch_permutation`] keys a ChaCha8 stream cipher (`rand_chacha::ChaCha8Rng`) with
//! the 32 bytes `seed.to_le_bytes() ‖ domain.to_le_bytes() ‖ [0; 16]`, where `domain`
//! is `0` for epoch permutations, and selects stream number `epoch`. It then runs a
//! Fisher–Yates shuffle of `0..len` from the last position down: position `i` swaps
//! with `j`, uniform in `0..=i`, drawn from `next_u64()` by Lemire's multiply-and-reject
//! method (no modulo bias). Both steps are spelled out here rather than borrowed from
//! `rand`, whose shuffles may change between versions.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Domain tag of [`epoch_permutation`] in the ChaCha key.
const EPOCH_DOMAIN: u64 = 0;

/// A deterministic permutation of `0..len` that depends only on `(seed, epoch)`.
///
/// See the [module documentation](self) for the exact derivation, which is part of the
/// crate's contract: changing it would change every recorded run.
///
/// ```
/// use bigbatch_data::epoch_permutation;
///
/// let order = epoch_permutation(5, 42, 0);
/// let mut sorted = order.clone();
/// sorted.sort_unstable();
/// assert_eq!(sorted, [0, 1, 2, 3, 4]);
/// assert_eq!(order, epoch_permutation(5, 42, 0));
/// ```
pub fn epoch_permutation(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    keyed_permutation(len, seed, EPOCH_DOMAIN, epoch)
}

/// Fisher–Yates shuffle of `0..len` driven by ChaCha8 keyed by `(seed, domain)` on
/// stream `stream`.
pub(crate) fn keyed_permutation(len: usize, seed: u64, domain: u64, stream: u64) -> Vec<usize> {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&domain.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream);

    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        // `i < len <= usize::MAX`, so both casts are lossless on 32- and 64-bit targets.
        let j = uniform_below(&mut rng, i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// A ChaCha8 generator for one example's random augmentation, keyed by the 32 bytes
/// `seed ‖ domain ‖ epoch ‖ index` (each little-endian) on stream 0, so an image's
/// augmentation depends only on `(seed, epoch, index)`: not on batch composition,
/// worker count or thread scheduling.
pub(crate) fn example_rng(seed: u64, domain: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    for (chunk, word) in key.chunks_exact_mut(8).zip([seed, domain, epoch, index]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// Uniform `f64` in `[0, 1)` from the top 53 bits of `next_u64()`.
pub(crate) fn uniform_unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform integer in `0..bound` (`bound > 0`) by Lemire's nearly divisionless method
/// ("Fast random integer generation in an interval", ACM TOMACS 2019).
pub(crate) fn uniform_below(rng: &mut impl RngCore, bound: u64) -> u64 {
    debug_assert!(bound > 0);
    let mut product = u128::from(rng.next_u64()) * u128::from(bound);
    let mut low = product as u64;
    if low < bound {
        let threshold = bound.wrapping_neg() % bound;
        while low < threshold {
            product = u128::from(rng.next_u64()) * u128::from(bound);
            low = product as u64;
        }
    }
    (product >> 64) as u64
}

/// Number of batches one epoch of `len` examples yields.
///
/// With `drop_last` a final partial batch is not counted. Use it to convert epoch-based
/// schedules into steps.
///
/// # Panics
///
/// If `batch_size == 0`.
///
/// ```
/// use bigbatch_data::batches_per_epoch;
/// assert_eq!(batches_per_epoch(10, 4, false), 3);
/// assert_eq!(batches_per_epoch(10, 4, true), 2);
/// ```
pub fn batches_per_epoch(len: usize, batch_size: usize, drop_last: bool) -> usize {
    assert!(batch_size > 0, "batch_size must be positive");
    if drop_last {
        len / batch_size
    } else {
        len.div_ceil(batch_size)
    }
}

/// An iterator over batches of indices covering `0..len` once.
///
/// Each item is a `Vec<usize>` of at most `batch_size` indices. Every index appears in
/// exactly one batch, except that with `drop_last` the final partial batch (if any) is
/// skipped.
///
/// ```
/// use bigbatch_data::Batches;
///
/// let batches: Vec<Vec<usize>> = Batches::sequential(5, 2).collect();
/// assert_eq!(batches, [vec![0, 1], vec![2, 3], vec![4]]);
///
/// let epoch_3 = Batches::shuffled(1000, 128, 7, 3, true);
/// assert_eq!(epoch_3.len(), 7);
/// assert!(epoch_3.into_iter().all(|batch| batch.len() == 128));
/// ```
#[derive(Debug, Clone)]
pub struct Batches {
    order: Vec<usize>,
    batch_size: usize,
    drop_last: bool,
    position: usize,
}

impl Batches {
    /// Batches over [`epoch_permutation`]`(len, seed, epoch)`.
    ///
    /// # Panics
    ///
    /// If `batch_size == 0`.
    pub fn shuffled(len: usize, batch_size: usize, seed: u64, epoch: u64, drop_last: bool) -> Self {
        Self::from_order(epoch_permutation(len, seed, epoch), batch_size, drop_last)
    }

    /// Batches over `0..len` in order, keeping the last partial batch (for evaluation).
    ///
    /// # Panics
    ///
    /// If `batch_size == 0`.
    pub fn sequential(len: usize, batch_size: usize) -> Self {
        Self::from_order((0..len).collect(), batch_size, false)
    }

    /// Batches over an explicit order of indices.
    ///
    /// # Panics
    ///
    /// If `batch_size == 0`.
    pub fn from_order(order: Vec<usize>, batch_size: usize, drop_last: bool) -> Self {
        assert!(batch_size > 0, "batch_size must be positive");
        Batches {
            order,
            batch_size,
            drop_last,
            position: 0,
        }
    }

    /// The batch size requested (the last batch may be smaller unless `drop_last`).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Indices not yet handed out, in order (including any that `drop_last` will skip).
    pub fn remaining(&self) -> &[usize] {
        &self.order[self.position..]
    }
}

impl Iterator for Batches {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        let rest = self.remaining();
        if rest.is_empty() || (self.drop_last && rest.len() < self.batch_size) {
            return None;
        }
        let batch = rest[..rest.len().min(self.batch_size)].to_vec();
        self.position += batch.len();
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = batches_per_epoch(self.remaining().len(), self.batch_size, self.drop_last);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches {}

impl std::iter::FusedIterator for Batches {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted(mut v: Vec<usize>) -> Vec<usize> {
        v.sort_unstable();
        v
    }

    proptest! {
        #[test]
        fn each_index_exactly_once_per_epoch(len in 0usize..2000, seed: u64, epoch: u64) {
            let order = epoch_permutation(len, seed, epoch);
            prop_assert_eq!(sorted(order), (0..len).collect::<Vec<_>>());
        }

        #[test]
        fn same_seed_and_epoch_give_same_order(len in 0usize..500, seed: u64, epoch: u64) {
            prop_assert_eq!(epoch_permutation(len, seed, epoch), epoch_permutation(len, seed, epoch));
        }

        #[test]
        fn different_epochs_or_seeds_give_different_orders(
            len in 20usize..500, seed: u64, epoch in 0u64..u64::MAX, other in 1u64..1000,
        ) {
            // 20! > 2^61, so an accidental collision has probability below 1e-18.
            let base = epoch_permutation(len, seed, epoch);
            prop_assert_ne!(&base, &epoch_permutation(len, seed, epoch.wrapping_add(other)));
            prop_assert_ne!(&base, &epoch_permutation(len, seed.wrapping_add(other), epoch));
        }

        #[test]
        fn batches_cover_each_index_once(
            len in 0usize..1000, batch_size in 1usize..64, seed: u64, epoch in 0u64..8,
        ) {
            let batches: Vec<Vec<usize>> = Batches::shuffled(len, batch_size, seed, epoch, false).collect();
            prop_assert_eq!(batches.len(), len.div_ceil(batch_size));
            for batch in &batches[..batches.len().saturating_sub(1)] {
                prop_assert_eq!(batch.len(), batch_size);
            }
            if let Some(last) = batches.last() {
                let expected = if len % batch_size == 0 { batch_size } else { len % batch_size };
                prop_assert_eq!(last.len(), expected);
            }
            let all: Vec<usize> = batches.concat();
            prop_assert_eq!(&all, &epoch_permutation(len, seed, epoch));
            prop_assert_eq!(sorted(all), (0..len).collect::<Vec<_>>());
        }

        #[test]
        fn drop_last_yields_only_full_batches(len in 0usize..1000, batch_size in 1usize..64, seed: u64) {
            let batches: Vec<Vec<usize>> = Batches::shuffled(len, batch_size, seed, 0, true).collect();
            prop_assert_eq!(batches.len(), len / batch_size);
            prop_assert!(batches.iter().all(|batch| batch.len() == batch_size));
            let kept = sorted(batches.concat());
            prop_assert_eq!(kept.len(), len - len % batch_size);
            prop_assert!(kept.windows(2).all(|w| w[0] < w[1]), "no index repeats");
        }
    }

    #[test]
    fn permutation_matches_python_reference() {
        // Golden values from an independent Python implementation of the documented
        // derivation (ChaCha8 checked against Bernstein's test vector), in
        // `tests/golden/epoch_permutation.py`. If these change, every recorded run's
        // data order changes with them.
        assert_eq!(epoch_permutation(10, 0, 0), [9, 2, 3, 4, 6, 7, 0, 1, 5, 8]);
        assert_eq!(epoch_permutation(10, 0, 1), [8, 5, 0, 6, 1, 3, 4, 2, 9, 7]);
        assert_eq!(epoch_permutation(10, 42, 7), [0, 2, 3, 4, 9, 6, 8, 7, 5, 1]);
        assert_eq!(
            keyed_permutation(10, 5, 1, 3),
            [7, 0, 6, 3, 1, 4, 9, 5, 2, 8]
        );
    }

    #[test]
    fn permutation_is_roughly_uniform() {
        // Position of index 0 over 4000 epochs of a length-4 permutation: each of the 4
        // positions should get about 1000 (binomial sd ≈ 27; allow ±150).
        let mut counts = [0usize; 4];
        for epoch in 0..4000 {
            let order = epoch_permutation(4, 9, epoch);
            let position = order
                .iter()
                .position(|&i| i == 0)
                .expect("0 is in the permutation");
            counts[position] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn uniform_below_stays_in_range() {
        let mut rng = ChaCha8Rng::from_seed([1; 32]);
        for bound in [1, 2, 3, 7, u64::MAX] {
            for _ in 0..100 {
                assert!(uniform_below(&mut rng, bound) < bound);
            }
        }
    }

    #[test]
    fn sequential_batches_and_sizes() {
        let mut batches = Batches::sequential(7, 3);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches.next(), Some(vec![0, 1, 2]));
        assert_eq!(batches.remaining(), [3, 4, 5, 6]);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches.next(), Some(vec![3, 4, 5]));
        assert_eq!(batches.next(), Some(vec![6]));
        assert_eq!(batches.next(), None);
        assert_eq!(batches.next(), None);

        let dropped: Vec<Vec<usize>> = Batches::from_order(vec![5, 4, 3, 2, 1], 2, true).collect();
        assert_eq!(dropped, [vec![5, 4], vec![3, 2]]);
        assert_eq!(Batches::sequential(0, 4).next(), None);
        assert_eq!(batches_per_epoch(12, 4, true), 3);
        assert_eq!(batches_per_epoch(12, 4, false), 3);
        assert_eq!(batches_per_epoch(3, 4, true), 0);
    }
}
