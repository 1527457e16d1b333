//! A small, fast, seedable random source (SplitMix64): arrivals pick their
//! action and their product with it, a few nanoseconds each, and a run is
//! reproducible from its `--seed`.

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// An independent stream for lane `n` of the same seed.
    pub fn fork(&self, n: u64) -> Self {
        let mut forked = Self(self.0 ^ n.wrapping_mul(0xA076_1D64_78BD_642F));
        forked.next_u64();
        forked
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `(0, 1]`: never 0, so `ln` of it is finite.
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// Choices with integer weights, drawn in O(log n).
#[derive(Clone, Debug)]
pub struct Weighted {
    cumulative: Vec<u32>,
}

impl Weighted {
    /// `None` when every weight is 0.
    pub fn new(weights: &[u32]) -> Option<Self> {
        let mut total = 0u32;
        let cumulative = weights
            .iter()
            .map(|w| {
                total = total.saturating_add(*w);
                total
            })
            .collect();
        (total > 0).then_some(Self { cumulative })
    }

    pub fn draw(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        let point = rng.below(total as usize) as u32;
        self.cumulative.partition_point(|c| *c <= point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            seen[rng.below(5)] += 1;
        }
        assert!(seen.iter().all(|n| (1_700..2_300).contains(n)), "{seen:?}");
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn weights_are_honoured_and_zero_weights_never_drawn() {
        let weighted = Weighted::new(&[60, 0, 25, 15]).unwrap();
        let mut rng = Rng::new(1);
        let mut seen = [0u32; 4];
        for _ in 0..100_000 {
            seen[weighted.draw(&mut rng)] += 1;
        }
        assert_eq!(seen[1], 0);
        assert!((59_000..61_000).contains(&seen[0]), "{seen:?}");
        assert!((24_000..26_000).contains(&seen[2]), "{seen:?}");
        assert!(Weighted::new(&[0, 0]).is_none());
    }

    #[test]
    fn forks_differ() {
        let rng = Rng::new(3);
        assert_ne!(rng.fork(0).next_u64(), rng.fork(1).next_u64());
    }
}
