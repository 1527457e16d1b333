//! The offline protocol: leave-last-out splits and top-k ranking metrics.
//!
//! Each shopper's last interaction is held out; the model sees the rest and ranks every
//! item the shopper has not had in that rest. With one relevant item per shopper:
//! HitRate@k = share of shoppers whose item is in their top k; NDCG@k = mean of
//! 1/log2(rank + 1) (rank from 1, 0 when missed); Precision@k = HitRate@k / k;
//! MRR@k = mean of 1/rank (0 when missed); coverage@k = distinct items in anyone's top k
//! over the catalogue size.

use super::{Dataset, top_k};

/// A dataset with each shopper's last interaction held out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// What the model is trained on and what each shopper's history is when ranking.
    pub train: Dataset,
    /// Per shopper, the held-out item (`None` for a shopper without interactions).
    pub held_out: Vec<Option<u32>>,
}

/// Holds out each shopper's last interaction (histories are oldest first).
pub fn leave_last_out(data: &Dataset) -> Split {
    let mut users = data.users.clone();
    let held_out = users.iter_mut().map(Vec::pop).collect();
    Split {
        train: Dataset {
            n_items: data.n_items,
            users,
        },
        held_out,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankingMetrics {
    pub k: usize,
    /// Shoppers evaluated (those with a held-out item).
    pub users: usize,
    pub hit_rate: f64,
    pub ndcg: f64,
    pub precision: f64,
    pub mrr: f64,
    pub coverage: f64,
}

/// Adds up the metrics one ranked list at a time.
#[derive(Debug, Clone)]
pub struct MetricsAccumulator {
    k: usize,
    users: usize,
    hits: usize,
    ndcg: f64,
    reciprocal_rank: f64,
    recommended: Vec<bool>,
}

impl MetricsAccumulator {
    pub fn new(n_items: usize, k: usize) -> MetricsAccumulator {
        MetricsAccumulator {
            k,
            users: 0,
            hits: 0,
            ndcg: 0.0,
            reciprocal_rank: 0.0,
            recommended: vec![false; n_items],
        }
    }

    /// One shopper: their ranked list (best first; only the first k count) and the item
    /// they actually had next.
    pub fn add(&mut self, ranked: &[u32], held_out: u32) {
        let top = &ranked[..ranked.len().min(self.k)];
        for &item in top {
            if let Some(r) = self.recommended.get_mut(item as usize) {
                *r = true;
            }
        }
        self.users += 1;
        if let Some(position) = top.iter().position(|&i| i == held_out) {
            let rank = (position + 1) as f64;
            self.hits += 1;
            self.ndcg += 1.0 / (rank + 1.0).log2();
            self.reciprocal_rank += 1.0 / rank;
        }
    }

    pub fn finish(&self) -> RankingMetrics {
        let users = self.users.max(1) as f64;
        let hit_rate = self.hits as f64 / users;
        let covered = self.recommended.iter().filter(|&&r| r).count();
        RankingMetrics {
            k: self.k,
            users: self.users,
            hit_rate,
            ndcg: self.ndcg / users,
            precision: hit_rate / self.k.max(1) as f64,
            mrr: self.reciprocal_rank / users,
            coverage: covered as f64 / self.recommended.len().max(1) as f64,
        }
    }
}

/// Ranks, for every shopper with a held-out item, every item not in their training
/// history with `score(history, out)`, and measures the top k against the held-out item.
pub fn evaluate_split(
    split: &Split,
    k: usize,
    mut score: impl FnMut(&[u32], &mut [f32]),
) -> RankingMetrics {
    let n_items = split.train.n_items;
    let mut metrics = MetricsAccumulator::new(n_items, k);
    let mut scores = vec![0.0f32; n_items];
    let mut in_history = vec![false; n_items];
    for (history, held_out) in split.train.users.iter().zip(&split.held_out) {
        let Some(held_out) = *held_out else { continue };
        scores.fill(0.0);
        score(history, &mut scores);
        mark(&mut in_history, history, true);
        let top = top_k(&scores, k, |i| in_history[i as usize]);
        mark(&mut in_history, history, false);
        let ranked: Vec<u32> = top.iter().map(|p| p.0).collect();
        metrics.add(&ranked, held_out);
    }
    metrics.finish()
}

fn mark(flags: &mut [bool], items: &[u32], value: bool) {
    for &i in items {
        if let Some(flag) = flags.get_mut(i as usize) {
            *flag = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_last_out_holds_out_the_newest_interaction() {
        let data = Dataset {
            n_items: 4,
            users: vec![vec![3, 1, 2], vec![0], vec![]],
        };
        let split = leave_last_out(&data);
        assert_eq!(split.train.users, vec![vec![3, 1], vec![], vec![]]);
        assert_eq!(split.held_out, vec![Some(2), Some(0), None]);
    }

    #[test]
    fn metrics_match_a_hand_checked_example() {
        let mut acc = MetricsAccumulator::new(10, 3);
        acc.add(&[5, 6, 7, 8], 5); // rank 1: ndcg 1, rr 1
        acc.add(&[1, 2, 3], 3); // rank 3: ndcg 1/log2(4) = 0.5, rr 1/3
        acc.add(&[1, 2, 3, 4], 4); // rank 4 > k: a miss
        acc.add(&[], 9); // nothing recommended: a miss
        let m = acc.finish();
        assert_eq!(m.users, 4);
        assert!((m.hit_rate - 0.5).abs() < 1e-12);
        assert!((m.precision - 0.5 / 3.0).abs() < 1e-12);
        assert!((m.ndcg - 1.5 / 4.0).abs() < 1e-12);
        assert!((m.mrr - (4.0 / 3.0) / 4.0).abs() < 1e-12);
        // Items 1, 2, 3, 5, 6, 7 in some top 3, out of 10.
        assert!((m.coverage - 0.6).abs() < 1e-12);
    }

    #[test]
    fn evaluate_split_never_recommends_the_training_history() {
        let data = Dataset {
            n_items: 3,
            users: vec![vec![0, 1], vec![1, 2]],
        };
        let split = leave_last_out(&data);
        // Scores item i as i: both shoppers get item 2 at k = 1, a hit only for the second.
        let m = evaluate_split(&split, 1, |_, out| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = i as f32;
            }
        });
        assert!((m.hit_rate - 0.5).abs() < 1e-12);
        assert!((m.coverage - 1.0 / 3.0).abs() < 1e-12);
    }
}
