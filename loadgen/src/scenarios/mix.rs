//! `mix`: shop traffic as a weighted draw over the other scenarios, by default
//! browse 60 / search 25 / cart 10 / checkout 5 (`--mix`). Each arrival is one
//! action of the drawn part (a checkout arrival is a whole journey). Kinds are
//! reported as `part/kind`.

use std::sync::Arc;
use std::time::Instant;

use crate::engine::{ArrivalFuture, Choice, Workload};
use crate::rng::{Rng, Weighted};
use crate::stats::{Kind, KindId};

pub struct Mix {
    parts: Vec<Arc<dyn Workload>>,
    /// Where each part's kinds start in the mix's kind table.
    bases: Vec<KindId>,
    weights: Weighted,
    kinds: Vec<Kind>,
}

impl Mix {
    /// `parts`: name, weight and workload; parts of weight 0 are left out.
    pub fn new(parts: Vec<(&str, u32, Arc<dyn Workload>)>) -> anyhow::Result<Self> {
        let (mut bases, mut kinds, mut kept, mut weights) = (vec![], vec![], vec![], vec![]);
        for (name, weight, part) in parts.into_iter().filter(|p| p.1 > 0) {
            bases.push(KindId::try_from(kinds.len())?);
            kinds.extend(part.kinds().into_iter().map(|k| Kind {
                name: format!("{name}/{}", k.name),
                journey: k.journey,
            }));
            kept.push(part);
            weights.push(weight);
        }
        Ok(Self {
            parts: kept,
            bases,
            weights: Weighted::new(&weights)
                .ok_or_else(|| anyhow::anyhow!("every mix weight is 0"))?,
            kinds,
        })
    }

    fn part_of(&self, kind: KindId) -> usize {
        self.bases.partition_point(|b| *b <= kind).saturating_sub(1)
    }
}

impl Workload for Mix {
    fn kinds(&self) -> Vec<Kind> {
        self.kinds.clone()
    }

    fn choose(&self, rng: &mut Rng) -> Choice {
        let part = self.weights.draw(rng);
        let choice = self.parts[part].choose(rng);
        Choice {
            kind: self.bases[part] + choice.kind,
            action: choice.action,
        }
    }

    fn start(
        &self,
        choice: Choice,
        rng: &mut Rng,
        intended: Instant,
        base: KindId,
    ) -> ArrivalFuture {
        let part = self.part_of(choice.kind);
        let own = self.bases[part];
        self.parts[part].start(
            Choice {
                kind: choice.kind - own,
                action: choice.action,
            },
            rng,
            intended,
            base + own,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Done, Sample};

    /// Two kinds; its one sample carries the kind it was started with.
    struct Stub(&'static str);

    impl Workload for Stub {
        fn kinds(&self) -> Vec<Kind> {
            vec![Kind::request("a"), Kind::journey(self.0)]
        }

        fn choose(&self, rng: &mut Rng) -> Choice {
            Choice {
                kind: rng.below(2) as KindId,
                action: 7,
            }
        }

        fn start(
            &self,
            choice: Choice,
            _: &mut Rng,
            intended: Instant,
            base: KindId,
        ) -> ArrivalFuture {
            Box::pin(async move {
                Done::One(Sample {
                    kind: base + choice.kind,
                    intended,
                    finished: intended,
                    outcome: Ok(()),
                })
            })
        }
    }

    #[tokio::test]
    async fn parts_keep_their_own_kinds_after_the_previous_part() {
        let mix = Mix::new(vec![
            ("first", 1, Arc::new(Stub("x"))),
            ("skipped", 0, Arc::new(Stub("y"))),
            ("second", 3, Arc::new(Stub("z"))),
        ])
        .unwrap();
        let names: Vec<String> = mix.kinds().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["first/a", "first/x", "second/a", "second/z"]);
        assert!(mix.kinds()[3].journey);
        let mut rng = Rng::new(2);
        let mut seen = [0u32; 4];
        for _ in 0..4000 {
            let choice = mix.choose(&mut rng);
            assert_eq!(choice.action, 7);
            let Done::One(sample) = mix.start(choice, &mut rng, Instant::now(), 0).await else {
                panic!("one sample");
            };
            assert_eq!(sample.kind, choice.kind);
            seen[usize::from(sample.kind)] += 1;
        }
        // Weights 1:3 between the parts.
        assert!((800..1200).contains(&(seen[0] + seen[1])), "{seen:?}");
        assert!((2800..3200).contains(&(seen[2] + seen[3])), "{seen:?}");
    }
}
