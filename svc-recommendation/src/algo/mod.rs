//! Recommendation algorithms, in pure Rust and in memory: most-popular, item-kNN over
//! co-occurrence, and the personal model (see `personal`). Items are dense indices
//! `0..n_items`; mapping product ids to indices is the service's job.
//!
//! Offline figures and how the defaults were chosen: `docs/recommendations-evaluation.md`.

pub mod cooccur;
pub mod knn;
mod linalg;
pub mod metrics;
pub mod personal;
pub mod popularity;

use std::cmp::Ordering;

pub use cooccur::{ItemNeighbors, Measure, NeighborParams};
pub use knn::{ItemKnn, KnnParams};
pub use personal::{Personal, PersonalParams};
pub use popularity::Popularity;

/// Interactions per user: item indices, oldest first. Duplicates are allowed (a shopper
/// can buy an item twice).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dataset {
    pub n_items: usize,
    pub users: Vec<Vec<u32>>,
}

impl Dataset {
    /// Number of interactions over all users.
    pub fn n_interactions(&self) -> usize {
        self.users.iter().map(Vec::len).sum()
    }
}

/// Why a model could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgoError {
    #[error("not a serialized recommendation model")]
    BadMagic,
    #[error("model format version {found}, this build reads {expected}")]
    UnsupportedVersion { found: u32, expected: u32 },
    /// The bytes end before the model does, or go on after it.
    #[error("model bytes truncated or with trailing data")]
    Truncated,
    /// A field holds a value the model cannot have (an index out of range, …).
    #[error("corrupt model: {0}")]
    Corrupt(&'static str),
}

/// Orders (item, score) pairs best first: higher score, then lower index.
fn best_first(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `k` best items by score, best first (ties go to the lower index). NaN and -inf
/// scores, and the items `exclude` returns true for, are never returned.
pub fn top_k(scores: &[f32], k: usize, exclude: impl Fn(u32) -> bool) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut candidates: Vec<(u32, f32)> = scores
        .iter()
        .zip(0u32..)
        .filter(|&(&s, i)| !s.is_nan() && s != f32::NEG_INFINITY && !exclude(i))
        .map(|(&s, i)| (i, s))
        .collect();
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k - 1, best_first);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(best_first);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_best_first_with_ties_to_the_lower_index() {
        let scores = [0.5, 2.0, 1.0, 2.0, -1.0];
        assert_eq!(
            top_k(&scores, 3, |_| false),
            vec![(1, 2.0), (3, 2.0), (2, 1.0)]
        );
        assert_eq!(top_k(&scores, 10, |_| false).len(), 5);
        assert!(top_k(&scores, 0, |_| false).is_empty());
    }

    #[test]
    fn top_k_skips_excluded_nan_and_negative_infinity() {
        let scores = [f32::NAN, 3.0, f32::NEG_INFINITY, 1.0, 2.0, f32::INFINITY];
        let top = top_k(&scores, 10, |i| i == 1);
        assert_eq!(top, vec![(5, f32::INFINITY), (4, 2.0), (3, 1.0)]);
    }
}
