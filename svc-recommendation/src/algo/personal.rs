//! The personal model: what a shopper is likely to want next, from their history.
//!
//! Three parts, each chosen on the MovieLens validation split
//! (`docs/recommendations-evaluation.md`):
//! - EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): a closed-form item-item
//!   weight matrix `B = -P·diag(1/diag(P))`, zero diagonal, `P = (XᵀX + λI)⁻¹`, over the
//!   binary shopper × item matrix `X`. It is applied to the history weighted by recency
//!   (`max(decay^k, floor)` for the `k`-th most recent item): what comes next follows the
//!   latest items more than old ones.
//! - A first-order transition model: how often item `j` came right after the history's
//!   last item in training sequences, added with a small weight.
//! - A popularity de-bias: positive scores are divided by `(shoppers(j) + 1)^β`, which
//!   spreads recommendations over more of the catalogue.
//!
//! Training is `O(m³)` in the modelled items `m` (at most `max_items`, the most popular)
//! and `m²` floats of memory; scoring is `O(h·m)` for a history of `h` distinct items.

use super::linalg::Square;
use super::{AlgoError, Dataset};

/// Format tag and version of `to_bytes`; bump the version on any layout change.
const MAGIC: [u8; 4] = *b"SMRP";
const VERSION: u32 = 1;
const NOT_MODELLED: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PersonalParams {
    /// EASE's L2 regularisation: larger is smoother and leans to popular items.
    pub lambda: f32,
    /// The `k`-th most recent history item weighs `max(recency_decay^k, recency_floor)`.
    pub recency_decay: f32,
    pub recency_floor: f32,
    /// Weight of the last-item transition scores against EASE's (both scaled to max 1).
    pub transition_weight: f32,
    /// Positive scores are divided by `(shoppers + 1)^popularity_beta` (0 = off).
    pub popularity_beta: f32,
    /// Only this many items, the most popular, are modelled (memory is `max_items²`
    /// floats, training time `max_items³`); the others score `-inf`.
    pub max_items: usize,
}

impl Default for PersonalParams {
    /// Chosen on the MovieLens 100K validation split (`docs/recommendations-evaluation.md`).
    fn default() -> Self {
        PersonalParams {
            lambda: 300.0,
            recency_decay: 0.8,
            recency_floor: 0.05,
            transition_weight: 0.2,
            popularity_beta: 0.2,
            max_items: 2000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Personal {
    params: PersonalParams,
    n_items: usize,
    /// Modelled items (item indices, increasing); position = row in what follows.
    modelled: Vec<u32>,
    /// Distinct shoppers per modelled item in training.
    shoppers: Vec<u32>,
    /// `1 / (shoppers + 1)^β` per row.
    popularity_scale: Vec<f32>,
    /// EASE, `m × m` row-major: row `r` is what having item `r` adds to every item.
    weights: Vec<f32>,
    /// Per row `r`, the items seen right after it (row, count / the row's largest count),
    /// as CSR: `transitions[transition_offsets[r]..transition_offsets[r + 1]]`.
    transition_offsets: Vec<u32>,
    transitions: Vec<(u32, f32)>,
}

impl Personal {
    pub fn train(data: &Dataset, params: &PersonalParams) -> Personal {
        let n_items = data.n_items;
        let distinct_histories: Vec<Vec<u32>> = data
            .users
            .iter()
            .map(|history| {
                let mut items: Vec<u32> = history
                    .iter()
                    .copied()
                    .filter(|&i| (i as usize) < n_items)
                    .collect();
                items.sort_unstable();
                items.dedup();
                items
            })
            .collect();
        let mut shoppers_of = vec![0u32; n_items];
        for &i in distinct_histories.iter().flatten() {
            shoppers_of[i as usize] += 1;
        }
        let mut modelled: Vec<u32> = (0u32..)
            .zip(&shoppers_of)
            .filter(|p| *p.1 > 0)
            .map(|p| p.0)
            .collect();
        if modelled.len() > params.max_items {
            modelled.sort_by(|&a, &b| {
                shoppers_of[b as usize]
                    .cmp(&shoppers_of[a as usize])
                    .then(a.cmp(&b))
            });
            modelled.truncate(params.max_items);
            modelled.sort_unstable();
        }
        let m = modelled.len();
        let mut row_of = vec![NOT_MODELLED; n_items];
        for (r, &i) in (0u32..).zip(&modelled) {
            row_of[i as usize] = r;
        }
        let shoppers: Vec<u32> = modelled.iter().map(|&i| shoppers_of[i as usize]).collect();
        let rows_of = |items: &[u32]| -> Vec<u32> {
            items
                .iter()
                .map(|&i| row_of[i as usize])
                .filter(|&r| r != NOT_MODELLED)
                .collect()
        };

        // Gram matrix XᵀX of the binary shopper × item matrix, plus λ on the diagonal.
        let mut gram = Square::zeros(m);
        for items in &distinct_histories {
            let rows = rows_of(items);
            for &a in &rows {
                let gram_row = &mut gram.data[a as usize * m..(a as usize + 1) * m];
                for &b in &rows {
                    gram_row[b as usize] += 1.0;
                }
            }
        }
        let lambda = f64::from(params.lambda.max(1e-3));
        for r in 0..m {
            gram.data[r * m + r] += lambda;
        }
        let mut weights = vec![0f32; m * m];
        // XᵀX + λI is positive definite for λ > 0, so the inversion cannot fail; if it
        // did, all-zero weights leave the transition and popularity parts working.
        if gram.invert_spd() {
            let p = &gram;
            for (i, out) in weights.chunks_exact_mut(m.max(1)).enumerate() {
                for (j, (o, &pij)) in out.iter_mut().zip(p.row(i)).enumerate() {
                    if i != j {
                        *o = (-pij / p.data[j * m + j]) as f32;
                    }
                }
            }
        }

        // Transitions: consecutive pairs of each training sequence (a repeat is no step).
        let mut steps: Vec<(u32, u32)> = Vec::new();
        for history in &data.users {
            let rows: Vec<u32> = history
                .iter()
                .map(|&i| row_of.get(i as usize).copied().unwrap_or(NOT_MODELLED))
                .collect();
            for pair in rows.windows(2) {
                if pair[0] != NOT_MODELLED && pair[1] != NOT_MODELLED && pair[0] != pair[1] {
                    steps.push((pair[0], pair[1]));
                }
            }
        }
        steps.sort_unstable();
        let mut transition_offsets = Vec::with_capacity(m + 1);
        let mut transitions: Vec<(u32, f32)> = Vec::new();
        let mut next = steps.iter().peekable();
        for r in 0..m as u32 {
            transition_offsets.push(transitions.len() as u32);
            let start = transitions.len();
            while let Some(&&(from, to)) = next.peek() {
                if from != r {
                    break;
                }
                let mut count = 0u32;
                while next.next_if(|s| **s == (from, to)).is_some() {
                    count += 1;
                }
                transitions.push((to, count as f32));
            }
            let row = &mut transitions[start..];
            let top = row.iter().map(|t| t.1).fold(0.0f32, f32::max);
            for t in row.iter_mut() {
                t.1 /= top;
            }
        }
        transition_offsets.push(transitions.len() as u32);

        Personal {
            popularity_scale: popularity_scale(&shoppers, params.popularity_beta),
            params: *params,
            n_items,
            modelled,
            shoppers,
            weights,
            transition_offsets,
            transitions,
        }
    }

    /// Writes every item's score for a history (oldest first) into `out` (`n_items`
    /// slots); higher is better. Items outside the model score `-inf`. A history with
    /// no modelled item gets the modelled items by popularity.
    pub fn score(&self, history: &[u32], out: &mut [f32]) {
        let m = self.modelled.len();
        // (row, recency weight), newest first; an item seen twice keeps its larger weight.
        let mut weighted: Vec<(u32, f32)> = Vec::with_capacity(history.len());
        let mut decay = 1.0f32;
        for &item in history.iter().rev() {
            let r = self.row(item);
            if r != NOT_MODELLED {
                weighted.push((r, decay.max(self.params.recency_floor)));
            }
            decay *= self.params.recency_decay;
        }
        out.fill(f32::NEG_INFINITY);
        let mut acc = vec![0f32; m];
        if weighted.is_empty() {
            let top = self.shoppers.iter().copied().max().unwrap_or(0).max(1) as f32;
            for (a, &s) in acc.iter_mut().zip(&self.shoppers) {
                *a = s as f32 / top;
            }
        } else {
            weighted.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
            weighted.dedup_by_key(|p| p.0);
            for &(r, w) in &weighted {
                let row = &self.weights[r as usize * m..(r as usize + 1) * m];
                for (a, &b) in acc.iter_mut().zip(row) {
                    *a += w * b;
                }
            }
            let largest = acc.iter().fold(0.0f32, |l, a| l.max(a.abs()));
            if largest > 0.0 {
                for a in acc.iter_mut() {
                    *a /= largest;
                }
            }
            let last = history.last().map_or(NOT_MODELLED, |&i| self.row(i));
            if last != NOT_MODELLED && self.params.transition_weight != 0.0 {
                for &(to, t) in self.transitions_from(last) {
                    acc[to as usize] += self.params.transition_weight * t;
                }
            }
            for (a, &scale) in acc.iter_mut().zip(&self.popularity_scale) {
                *a = if *a > 0.0 { *a * scale } else { *a / scale };
            }
        }
        for (&i, &a) in self.modelled.iter().zip(&acc) {
            if let Some(o) = out.get_mut(i as usize) {
                *o = a;
            }
        }
    }

    /// Adopts `params`' scoring-time fields (`recency_decay`, `recency_floor`,
    /// `transition_weight`, `popularity_beta`) without retraining; `lambda` and
    /// `max_items` stay those the model was trained with. For tuning.
    pub fn set_scoring_params(&mut self, params: &PersonalParams) {
        self.params = PersonalParams {
            lambda: self.params.lambda,
            max_items: self.params.max_items,
            ..*params
        };
        self.popularity_scale = popularity_scale(&self.shoppers, params.popularity_beta);
    }

    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// Items the model can recommend (the most popular `max_items` seen in training).
    pub fn n_modelled(&self) -> usize {
        self.modelled.len()
    }

    pub fn params(&self) -> &PersonalParams {
        &self.params
    }

    fn row(&self, item: u32) -> u32 {
        self.modelled
            .binary_search(&item)
            .map_or(NOT_MODELLED, |r| r as u32)
    }

    fn transitions_from(&self, row: u32) -> &[(u32, f32)] {
        let r = row as usize;
        match (
            self.transition_offsets.get(r),
            self.transition_offsets.get(r + 1),
        ) {
            (Some(&start), Some(&end)) => &self.transitions[start as usize..end as usize],
            _ => &[],
        }
    }

    /// A versioned little-endian encoding, read back by `from_bytes`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let m = self.modelled.len();
        let mut out = Vec::with_capacity(64 + 4 * (3 * m + m * m + 2 * self.transitions.len()));
        out.extend_from_slice(&MAGIC);
        put_u32(&mut out, VERSION);
        let p = &self.params;
        for v in [
            p.lambda,
            p.recency_decay,
            p.recency_floor,
            p.transition_weight,
            p.popularity_beta,
        ] {
            put_f32(&mut out, v);
        }
        put_u64(&mut out, p.max_items as u64);
        put_u64(&mut out, self.n_items as u64);
        put_u64(&mut out, m as u64);
        put_u64(&mut out, self.transitions.len() as u64);
        for (&i, &s) in self.modelled.iter().zip(&self.shoppers) {
            put_u32(&mut out, i);
            put_u32(&mut out, s);
        }
        for &w in &self.weights {
            put_f32(&mut out, w);
        }
        for &o in &self.transition_offsets {
            put_u32(&mut out, o);
        }
        for &(to, t) in &self.transitions {
            put_u32(&mut out, to);
            put_f32(&mut out, t);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Personal, AlgoError> {
        let mut r = Reader { bytes };
        if r.take(4)? != MAGIC {
            return Err(AlgoError::BadMagic);
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(AlgoError::UnsupportedVersion {
                found: version,
                expected: VERSION,
            });
        }
        let params = PersonalParams {
            lambda: r.f32()?,
            recency_decay: r.f32()?,
            recency_floor: r.f32()?,
            transition_weight: r.f32()?,
            popularity_beta: r.f32()?,
            max_items: r.len()?,
        };
        let n_items = r.len()?;
        let m = r.len()?;
        let n_transitions = r.len()?;
        // Sizes first, so a corrupt length cannot make us allocate more than we were given.
        let needed = m
            .checked_mul(m)
            .and_then(|mm| mm.checked_add(3 * m + 1))
            .and_then(|words| words.checked_add(n_transitions.checked_mul(2)?))
            .and_then(|words| words.checked_mul(4));
        if needed != Some(r.bytes.len()) {
            return Err(AlgoError::Truncated);
        }
        let mut modelled = Vec::with_capacity(m);
        let mut shoppers = Vec::with_capacity(m);
        for _ in 0..m {
            let i = r.u32()?;
            if modelled.last().is_some_and(|&prev| prev >= i) {
                return Err(AlgoError::Corrupt("modelled items not increasing"));
            }
            if i as usize >= n_items {
                return Err(AlgoError::Corrupt("item index out of range"));
            }
            modelled.push(i);
            shoppers.push(r.u32()?);
        }
        let weights = (0..m * m).map(|_| r.f32()).collect::<Result<Vec<_>, _>>()?;
        let transition_offsets = (0..=m).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
        if transition_offsets.first() != Some(&0)
            || transition_offsets.windows(2).any(|w| w[0] > w[1])
            || transition_offsets.last().map(|&o| o as usize) != Some(n_transitions)
        {
            return Err(AlgoError::Corrupt("transition offsets"));
        }
        let mut transitions = Vec::with_capacity(n_transitions);
        for _ in 0..n_transitions {
            let to = r.u32()?;
            if to as usize >= m {
                return Err(AlgoError::Corrupt("transition to an unknown item"));
            }
            transitions.push((to, r.f32()?));
        }
        Ok(Personal {
            popularity_scale: popularity_scale(&shoppers, params.popularity_beta),
            params,
            n_items,
            modelled,
            shoppers,
            weights,
            transition_offsets,
            transitions,
        })
    }
}

fn popularity_scale(shoppers: &[u32], beta: f32) -> Vec<f32> {
    shoppers
        .iter()
        .map(|&s| (s as f32 + 1.0).powf(-beta))
        .collect()
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_f32(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&v.to_le_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AlgoError> {
        if self.bytes.len() < n {
            return Err(AlgoError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AlgoError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, AlgoError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn f32(&mut self) -> Result<f32, AlgoError> {
        Ok(f32::from_le_bytes(self.array()?))
    }

    fn len(&mut self) -> Result<usize, AlgoError> {
        let v = u64::from_le_bytes(self.array()?);
        usize::try_from(v).map_err(|_| AlgoError::Corrupt("length does not fit in memory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::top_k;

    /// Two tastes: items 0-2 go together, items 3-5 go together; item 6 nobody had.
    fn fixture() -> Dataset {
        Dataset {
            n_items: 7,
            users: vec![
                vec![0, 1, 2],
                vec![1, 2, 0],
                vec![0, 2],
                vec![3, 4, 5],
                vec![4, 5, 3],
                vec![3, 5],
                vec![0, 1],
                vec![4, 3],
            ],
        }
    }

    fn small_params() -> PersonalParams {
        PersonalParams {
            lambda: 1.0,
            ..PersonalParams::default()
        }
    }

    fn ranked(model: &Personal, history: &[u32], k: usize) -> Vec<u32> {
        let mut scores = vec![0.0; model.n_items()];
        model.score(history, &mut scores);
        top_k(&scores, k, |i| history.contains(&i))
            .iter()
            .map(|p| p.0)
            .collect()
    }

    #[test]
    fn prefers_items_co_consumed_with_the_history() {
        let model = Personal::train(&fixture(), &small_params());
        assert_eq!(model.n_items(), 7);
        assert_eq!(model.n_modelled(), 6);
        assert_eq!(ranked(&model, &[0, 1], 1), vec![2]);
        assert_eq!(ranked(&model, &[4], 2), vec![3, 5]);
        let mut scores = vec![0.0; 7];
        model.score(&[4], &mut scores);
        assert_eq!(scores[6], f32::NEG_INFINITY);
    }

    #[test]
    fn the_latest_items_weigh_most() {
        // Mixed history: the newest item's taste wins.
        let params = PersonalParams {
            recency_decay: 0.5,
            transition_weight: 0.0,
            ..small_params()
        };
        let model = Personal::train(&fixture(), &params);
        assert_eq!(ranked(&model, &[0, 1, 4], 1), vec![3]);
        assert!(matches!(ranked(&model, &[4, 3, 1], 1)[..], [0] | [2]));
    }

    #[test]
    fn transitions_follow_the_last_item() {
        // Everyone had 0, 1 and 2; after 0 came 1 three times, 2 never.
        let data = Dataset {
            n_items: 3,
            users: vec![vec![0, 1, 2], vec![0, 1, 2], vec![0, 1, 2], vec![2, 0]],
        };
        let only_transitions = PersonalParams {
            transition_weight: 1.0,
            popularity_beta: 0.0,
            ..small_params()
        };
        let model = Personal::train(&data, &only_transitions);
        assert_eq!(ranked(&model, &[0], 2), vec![1, 2]);
        assert_eq!(ranked(&model, &[2], 2), vec![0, 1]);
    }

    #[test]
    fn an_empty_history_gets_the_popular_items() {
        let data = Dataset {
            n_items: 4,
            users: vec![vec![2, 1], vec![2, 1], vec![2], vec![3]],
        };
        let model = Personal::train(&data, &small_params());
        assert_eq!(ranked(&model, &[], 3), vec![2, 1, 3]);
        // An unknown item is no history either.
        assert_eq!(ranked(&model, &[0, 99], 1), vec![2]);
    }

    #[test]
    fn max_items_keeps_the_most_popular() {
        let params = PersonalParams {
            max_items: 2,
            ..small_params()
        };
        let model = Personal::train(&fixture(), &params);
        let mut scores = vec![0.0; 7];
        model.score(&[3], &mut scores);
        // 0 and 3 are the two most popular (4 shoppers each).
        let finite: Vec<usize> = (0..7).filter(|&i| scores[i].is_finite()).collect();
        assert_eq!(finite, vec![0, 3]);
    }

    #[test]
    fn scoring_params_change_without_retraining() {
        let mut model = Personal::train(&fixture(), &small_params());
        let retrained = PersonalParams {
            recency_decay: 0.5,
            popularity_beta: 0.0,
            ..small_params()
        };
        model.set_scoring_params(&PersonalParams {
            lambda: 99.0,
            max_items: 1,
            ..retrained
        });
        assert_eq!(model, Personal::train(&fixture(), &retrained));
    }

    #[test]
    fn bytes_round_trip() {
        let model = Personal::train(&fixture(), &small_params());
        let decoded = Personal::from_bytes(&model.to_bytes());
        assert_eq!(decoded, Ok(model));
    }

    #[test]
    fn rejects_truncated_foreign_and_other_version_bytes() {
        let bytes = Personal::train(&fixture(), &small_params()).to_bytes();
        for cut in [0, 3, 8, 20, 60, bytes.len() - 1] {
            assert_eq!(
                Personal::from_bytes(&bytes[..cut]),
                Err(AlgoError::Truncated),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Personal::from_bytes(&longer), Err(AlgoError::Truncated));
        let mut other_version = bytes.clone();
        other_version[4..8].copy_from_slice(&(VERSION + 1).to_le_bytes());
        assert_eq!(
            Personal::from_bytes(&other_version),
            Err(AlgoError::UnsupportedVersion {
                found: VERSION + 1,
                expected: VERSION
            })
        );
        let mut fewer_items = bytes.clone();
        fewer_items[36..44].copy_from_slice(&5u64.to_le_bytes()); // n_items: 7 -> 5
        assert_eq!(
            Personal::from_bytes(&fewer_items),
            Err(AlgoError::Corrupt("item index out of range"))
        );
        let mut foreign = bytes;
        foreign[0] = b'X';
        assert_eq!(Personal::from_bytes(&foreign), Err(AlgoError::BadMagic));
    }
}
