//! Item-to-item similarity from co-occurrence in baskets: a basket is a set of items seen
//! together, a shopper's whole history for item-kNN, or one order for "frequently bought
//! together". Counting is sparse (per item, only the baskets that hold it are visited),
//! so the cost is the sum of squared basket sizes, not `n_items²`.

use super::best_first;

/// How a pair's co-occurrence count becomes a similarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// `c(i,j) / sqrt(n(i) · n(j))`, with `n(i)` the baskets holding `i`: symmetric, in (0, 1].
    Cosine,
    /// `c(i,j) · N / (n(i) · n(j))`, with `N` the non-empty baskets: how much more often
    /// the pair is seen together than if the items were independent.
    Lift,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborParams {
    /// Pairs seen together in fewer baskets than this are dropped (at least 1 applies).
    pub min_support: u32,
    /// Neighbours kept per item, the most similar ones.
    pub top_n: usize,
    pub measure: Measure,
}

impl Default for NeighborParams {
    fn default() -> Self {
        NeighborParams {
            min_support: 2,
            top_n: 50,
            measure: Measure::Cosine,
        }
    }
}

/// Each item's most similar items, best first, in one flat (CSR) array.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemNeighbors {
    offsets: Vec<usize>,
    entries: Vec<(u32, f32)>,
}

impl ItemNeighbors {
    /// Items `>= n_items` are ignored; an item counts once per basket however often it is in it.
    pub fn build(baskets: &[Vec<u32>], n_items: usize, params: &NeighborParams) -> ItemNeighbors {
        let sets: Vec<Vec<u32>> = baskets
            .iter()
            .map(|basket| {
                let mut set: Vec<u32> = basket
                    .iter()
                    .copied()
                    .filter(|&i| (i as usize) < n_items)
                    .collect();
                set.sort_unstable();
                set.dedup();
                set
            })
            .collect();
        let n_baskets = sets.iter().filter(|s| !s.is_empty()).count() as f64;

        // Inverted index: the baskets holding each item.
        let mut holding: Vec<Vec<u32>> = vec![Vec::new(); n_items];
        for (b, set) in (0u32..).zip(&sets) {
            for &i in set {
                holding[i as usize].push(b);
            }
        }
        let support: Vec<f64> = holding.iter().map(|h| h.len() as f64).collect();

        let min_support = params.min_support.max(1);
        let mut pair_counts = vec![0u32; n_items];
        let mut touched: Vec<u32> = Vec::new();
        let mut offsets = Vec::with_capacity(n_items + 1);
        let mut entries = Vec::new();
        offsets.push(0);
        for i in 0..n_items {
            for &b in &holding[i] {
                for &j in &sets[b as usize] {
                    if j as usize != i {
                        let c = &mut pair_counts[j as usize];
                        if *c == 0 {
                            touched.push(j);
                        }
                        *c += 1;
                    }
                }
            }
            let mut row: Vec<(u32, f32)> = Vec::with_capacity(touched.len());
            for &j in &touched {
                let c = std::mem::take(&mut pair_counts[j as usize]);
                if c >= min_support {
                    let (ni, nj) = (support[i], support[j as usize]);
                    let similarity = match params.measure {
                        Measure::Cosine => f64::from(c) / (ni * nj).sqrt(),
                        Measure::Lift => f64::from(c) * n_baskets / (ni * nj),
                    };
                    row.push((j, similarity as f32));
                }
            }
            touched.clear();
            if row.len() > params.top_n {
                if params.top_n > 0 {
                    row.select_nth_unstable_by(params.top_n - 1, best_first);
                }
                row.truncate(params.top_n);
            }
            row.sort_unstable_by(best_first);
            entries.extend_from_slice(&row);
            offsets.push(entries.len());
        }
        ItemNeighbors { offsets, entries }
    }

    /// The item's neighbours, best first, never the item itself (empty for an unknown item).
    pub fn neighbors(&self, item: u32) -> &[(u32, f32)] {
        let i = item as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&start), Some(&end)) => &self.entries[start..end],
            _ => &[],
        }
    }

    /// Number of items the neighbourhoods were built for.
    pub fn n_items(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baskets() -> Vec<Vec<u32>> {
        // Item supports: n0 = 3, n1 = 3, n2 = 2, n3 = 1. Pairs: c01 = 2, c02 = 2, c12 = 1,
        // c13 = 1. Four non-empty baskets; the duplicate 0 in the first counts once.
        vec![vec![0, 1, 0], vec![0, 2], vec![0, 1, 2], vec![1, 3], vec![]]
    }

    #[test]
    fn cosine_matches_hand_computed_values() {
        let params = NeighborParams {
            min_support: 1,
            top_n: 10,
            measure: Measure::Cosine,
        };
        let nn = ItemNeighbors::build(&baskets(), 4, &params);
        let close = |got: &[(u32, f32)], want: &[(u32, f32)]| {
            assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
            for (g, w) in got.iter().zip(want) {
                assert_eq!(g.0, w.0, "{got:?} vs {want:?}");
                assert!((g.1 - w.1).abs() < 1e-6, "{got:?} vs {want:?}");
            }
        };
        // cos(0,2) = 2/sqrt(6) > cos(0,1) = 2/3.
        close(nn.neighbors(0), &[(2, 2.0 / 6f32.sqrt()), (1, 2.0 / 3.0)]);
        // Item 1: cos(1,0) = 2/3 > cos(1,3) = 1/sqrt(3) > cos(1,2) = 1/sqrt(6).
        close(
            nn.neighbors(1),
            &[
                (0, 2.0 / 3.0),
                (3, 1.0 / 3f32.sqrt()),
                (2, 1.0 / 6f32.sqrt()),
            ],
        );
        close(nn.neighbors(3), &[(1, 1.0 / 3f32.sqrt())]);
        assert!(nn.neighbors(4).is_empty());
        assert_eq!(nn.n_items(), 4);
    }

    #[test]
    fn lift_matches_hand_computed_values_and_min_support_drops_rare_pairs() {
        let params = NeighborParams {
            min_support: 2,
            top_n: 10,
            measure: Measure::Lift,
        };
        let nn = ItemNeighbors::build(&baskets(), 4, &params);
        // lift(0,2) = 2·4/(3·2) = 4/3; lift(0,1) = 2·4/(3·3) = 8/9. Pairs seen once are gone.
        let n0 = nn.neighbors(0);
        assert_eq!(n0.iter().map(|p| p.0).collect::<Vec<_>>(), vec![2, 1]);
        assert!((n0[0].1 - 4.0 / 3.0).abs() < 1e-6);
        assert!((n0[1].1 - 8.0 / 9.0).abs() < 1e-6);
        assert_eq!(
            nn.neighbors(1).iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![0]
        );
        assert!(nn.neighbors(3).is_empty());
    }

    #[test]
    fn top_n_keeps_the_most_similar() {
        let params = NeighborParams {
            min_support: 1,
            top_n: 1,
            measure: Measure::Cosine,
        };
        let nn = ItemNeighbors::build(&baskets(), 4, &params);
        assert_eq!(
            nn.neighbors(1).iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![0]
        );
        let none = NeighborParams { top_n: 0, ..params };
        assert!(
            ItemNeighbors::build(&baskets(), 4, &none)
                .neighbors(1)
                .is_empty()
        );
    }
}
