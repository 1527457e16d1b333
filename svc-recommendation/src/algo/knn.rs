//! Item-kNN: an item scores the summed similarity to the items in the shopper's history,
//! with neighbourhoods from co-occurrence across shoppers' histories (`cooccur`).

use super::{Dataset, ItemNeighbors, Measure, NeighborParams};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnnParams {
    /// Neighbours kept per item.
    pub top_n: usize,
    /// Pairs shared by fewer shoppers than this are ignored.
    pub min_support: u32,
}

impl Default for KnnParams {
    /// Chosen on the MovieLens validation split (`docs/recommendations-evaluation.md`).
    fn default() -> Self {
        KnnParams {
            top_n: 100,
            min_support: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ItemKnn {
    neighbors: ItemNeighbors,
}

impl ItemKnn {
    pub fn train(data: &Dataset, params: &KnnParams) -> ItemKnn {
        let neighbor_params = NeighborParams {
            min_support: params.min_support,
            top_n: params.top_n,
            measure: Measure::Cosine,
        };
        ItemKnn {
            neighbors: ItemNeighbors::build(&data.users, data.n_items, &neighbor_params),
        }
    }

    /// Writes each item's score for a history (any order) into `out` (`n_items` slots);
    /// an item in the history counts once.
    pub fn score(&self, history: &[u32], out: &mut [f32]) {
        out.fill(0.0);
        let mut items = history.to_vec();
        items.sort_unstable();
        items.dedup();
        for item in items {
            for &(j, similarity) in self.neighbors.neighbors(item) {
                if let Some(o) = out.get_mut(j as usize) {
                    *o += similarity;
                }
            }
        }
    }

    pub fn n_items(&self) -> usize {
        self.neighbors.n_items()
    }

    pub fn neighbors(&self) -> &ItemNeighbors {
        &self.neighbors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::top_k;

    #[test]
    fn recommends_what_shoppers_with_the_same_items_also_had() {
        let data = Dataset {
            n_items: 5,
            users: vec![
                vec![0, 1],
                vec![0, 1],
                vec![0, 1, 4],
                vec![2, 3],
                vec![2, 3],
            ],
        };
        let params = KnnParams {
            top_n: 10,
            min_support: 2,
        };
        let knn = ItemKnn::train(&data, &params);
        let mut scores = vec![0.0; 5];
        knn.score(&[0, 0], &mut scores);
        let top = top_k(&scores, 2, |i| i == 0);
        assert_eq!(top.first().map(|p| p.0), Some(1));
        // 4 shares a single shopper with 0: below the min support of 2.
        assert_eq!(scores[4], 0.0);
        assert_eq!(scores[2], 0.0);
    }
}
