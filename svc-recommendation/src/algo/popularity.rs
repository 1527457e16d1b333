//! Most-popular: every shopper gets the items with the most interactions. The baseline
//! every other model has to beat, and the fallback for shoppers with no history.

use super::Dataset;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Popularity {
    counts: Vec<u32>,
}

impl Popularity {
    /// Counts every interaction (a repeat purchase counts again).
    pub fn train(data: &Dataset) -> Popularity {
        let mut counts = vec![0u32; data.n_items];
        for &item in data.users.iter().flatten() {
            if let Some(c) = counts.get_mut(item as usize) {
                *c += 1;
            }
        }
        Popularity { counts }
    }

    /// Writes each item's interaction count into `out` (which has `n_items` slots).
    pub fn score(&self, out: &mut [f32]) {
        for (o, &c) in out.iter_mut().zip(&self.counts) {
            *o = c as f32;
        }
    }

    /// Interactions per item.
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::top_k;

    #[test]
    fn counts_every_interaction_and_ranks_by_count() {
        let data = Dataset {
            n_items: 4,
            users: vec![vec![0, 2, 2], vec![2, 1], vec![1]],
        };
        let pop = Popularity::train(&data);
        assert_eq!(pop.counts(), &[1, 2, 3, 0]);
        let mut scores = vec![0.0; 4];
        pop.score(&mut scores);
        let ranked: Vec<u32> = top_k(&scores, 4, |_| false).iter().map(|p| p.0).collect();
        assert_eq!(ranked, vec![2, 1, 0, 3]);
    }
}
