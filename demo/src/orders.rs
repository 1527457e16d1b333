//! Deterministic demo purchase history over the demo catalog: a few thousand
//! confirmed orders by shoppers with category affinities, who buy accessories
//! with their main products, so the recommendation service has plausible
//! signals to train on the first time `make run` starts it.
//!
//! Shoppers follow a persona (a home cook buys cookware, coffee and cookbooks;
//! a runner buys running gear, fitness kit and shoes), prefer each category's
//! best sellers (a skewed pick over a fixed per-category ranking), and buy
//! with a main product one of two accessories tied to it (a given laptop
//! comes with one of "its" two bags), which is what "bought together" finds.
//! Everything derives from one fixed seed: identical on every call.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::catalog::{Catalog, Rng, SeedProduct, demo_catalog, shuffled};

/// One confirmed demo order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOrder {
    pub id: Uuid,
    pub user_id: Uuid,
    pub confirmed_at: DateTime<Utc>,
    /// Distinct products, each once.
    pub lines: Vec<DemoOrderLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOrderLine {
    pub product_id: Uuid,
    pub quantity: i32,
}

const SEED: u64 = 0x0DE2_5EED_0BAD_CAFE;
const SHOPPERS: usize = 800;
/// 2026-01-01T00:00:00Z: orders come after every demo product was created.
const WINDOW_START_MS: u64 = 1_767_225_600_000;
/// Orders are spread over 90 days.
const WINDOW_MS: u64 = 90 * 24 * 60 * 60 * 1_000;
/// 2025-06-01T00:00:00Z: when the demo shoppers' (v7) ids say they signed up.
const SIGN_UP_MS: u64 = 1_748_736_000_000;

/// What a kind of shopper buys: leaf category slugs, the first the most often.
const PERSONAS: &[&[&str]] = &[
    &["headphones", "speakers", "smart-home"],
    &["laptops", "phones", "headphones", "bags"],
    &["cameras", "bags", "camping"],
    &["cookware", "coffee-tea", "cooking"],
    &["running", "fitness", "mens-shoes", "womens-shoes"],
    &["cycling", "jackets", "fitness"],
    &["camping", "jackets", "bags", "running"],
    &["furniture", "bedding", "smart-home", "coffee-tea"],
    &["fiction", "science", "cooking"],
    &["childrens-books", "board-games", "building-sets", "puzzles"],
    &["womens-shoes", "jackets", "bags", "mens-shoes"],
    &["phones", "smart-home", "speakers"],
];

/// Accessories bought with a main product: (main leaf, accessory leaf, chance in %).
const ACCESSORIES: &[(&str, &str, usize)] = &[
    ("laptops", "bags", 55),
    ("laptops", "headphones", 20),
    ("phones", "headphones", 45),
    ("cameras", "bags", 50),
    ("coffee-tea", "cookware", 30),
    ("cookware", "cooking", 35),
    ("running", "fitness", 35),
    ("cycling", "jackets", 30),
    ("camping", "jackets", 35),
    ("board-games", "puzzles", 30),
    ("bedding", "furniture", 20),
    ("smart-home", "speakers", 30),
    ("building-sets", "childrens-books", 30),
];

/// The demo catalog's products by leaf slug, each leaf in a fixed
/// best-seller order.
struct Shelves<'a> {
    leaves: Vec<(&'a str, Vec<&'a SeedProduct>)>,
}

impl<'a> Shelves<'a> {
    fn new(catalog: &'a Catalog, rng: &mut Rng) -> Self {
        let leaves = catalog
            .categories
            .iter()
            .filter(|c| c.parent_id.is_some())
            .map(|leaf| {
                let products: Vec<&SeedProduct> = catalog
                    .products
                    .iter()
                    .filter(|p| p.category_id == leaf.id)
                    .collect();
                let ranked = shuffled(products.len(), rng)
                    .into_iter()
                    .map(|i| products[i])
                    .collect();
                (leaf.slug.as_str(), ranked)
            })
            .collect();
        Self { leaves }
    }

    fn leaf(&self, slug: &str) -> &[&'a SeedProduct] {
        self.leaves
            .iter()
            .find(|(s, _)| *s == slug)
            .map_or(&[], |(_, products)| products.as_slice())
    }

    /// A product of `slug`, skewed towards its best sellers: the square of a
    /// uniform draw puts half the picks in the top quarter.
    fn pick(&self, slug: &str, rng: &mut Rng) -> Option<&'a SeedProduct> {
        let products = self.leaf(slug);
        if products.is_empty() {
            return None;
        }
        let u = rng.below(10_000) as f64 / 10_000.0;
        let index = ((products.len() as f64) * u * u) as usize;
        products.get(index.min(products.len() - 1)).copied()
    }

    /// One of the two accessories of `leaf` that go with `main`.
    fn accessory(&self, main: &SeedProduct, leaf: &str, rng: &mut Rng) -> Option<&'a SeedProduct> {
        let products = self.leaf(leaf);
        if products.is_empty() {
            return None;
        }
        let anchor = main.id.as_u128() as usize;
        let index = (anchor.wrapping_mul(7) + rng.below(2)) % products.len();
        products.get(index).copied()
    }
}

/// Builds the deterministic demo orders; every call returns an identical value.
pub fn demo_orders() -> Vec<DemoOrder> {
    let catalog = demo_catalog();
    let mut rng = Rng(SEED);
    let shelves = Shelves::new(&catalog, &mut rng);
    let mut orders = Vec::new();
    for shopper in 0..SHOPPERS {
        let user_id = rng.uuid_v7(SIGN_UP_MS + shopper as u64 * 60_000);
        let persona = PERSONAS[rng.below(PERSONAS.len())];
        let order_count = 1 + rng.below(4) + rng.below(4);
        for _ in 0..order_count {
            let unix_ms = WINDOW_START_MS + rng.below(WINDOW_MS as usize) as u64;
            let mut products: Vec<&SeedProduct> = Vec::new();
            let mains = 1 + usize::from(rng.below(10) < 3);
            for _ in 0..mains {
                // The persona's first category is its favourite.
                let leaf = if rng.below(2) == 0 {
                    persona[0]
                } else {
                    persona[rng.below(persona.len())]
                };
                let Some(main) = shelves.pick(leaf, &mut rng) else {
                    continue;
                };
                products.push(main);
                for (from, to, chance) in ACCESSORIES {
                    if *from == leaf
                        && rng.below(100) < *chance
                        && let Some(accessory) = shelves.accessory(main, to, &mut rng)
                    {
                        products.push(accessory);
                    }
                }
            }
            let mut lines: Vec<DemoOrderLine> = Vec::with_capacity(products.len());
            for product in products {
                if lines.iter().any(|l| l.product_id == product.id) {
                    continue;
                }
                lines.push(DemoOrderLine {
                    product_id: product.id,
                    quantity: if rng.below(10) == 0 { 2 } else { 1 },
                });
            }
            if lines.is_empty() {
                continue;
            }
            orders.push(DemoOrder {
                id: rng.uuid_v7(unix_ms),
                user_id,
                confirmed_at: DateTime::from_timestamp_millis(unix_ms as i64).unwrap_or_default(),
                lines,
            });
        }
    }
    orders.sort_by_key(|order| (order.confirmed_at, order.id));
    orders
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn is_deterministic() {
        assert_eq!(demo_orders(), demo_orders());
    }

    #[test]
    fn a_few_thousand_orders_of_demo_products() {
        let orders = demo_orders();
        assert!((2_000..=5_000).contains(&orders.len()), "{}", orders.len());
        let catalog = demo_catalog();
        let products: HashMap<Uuid, &SeedProduct> =
            catalog.products.iter().map(|p| (p.id, p)).collect();
        let shoppers: HashSet<Uuid> = orders.iter().map(|o| o.user_id).collect();
        assert!(shoppers.len() > 700, "{} shoppers", shoppers.len());
        let ids: HashSet<Uuid> = orders.iter().map(|o| o.id).collect();
        assert_eq!(ids.len(), orders.len(), "order ids are unique");
        for order in &orders {
            assert!(!order.lines.is_empty());
            let distinct: HashSet<Uuid> = order.lines.iter().map(|l| l.product_id).collect();
            assert_eq!(distinct.len(), order.lines.len(), "one line per product");
            for line in &order.lines {
                let product = products.get(&line.product_id).expect("a demo product");
                assert!(product.created_at < order.confirmed_at);
                assert!((1..=2).contains(&line.quantity));
            }
        }
        let bought: HashSet<Uuid> = orders
            .iter()
            .flat_map(|o| o.lines.iter().map(|l| l.product_id))
            .collect();
        assert!(bought.len() > 600, "{} products ever bought", bought.len());
    }

    #[test]
    fn laptops_come_with_bags() {
        let catalog = demo_catalog();
        let leaf_of = |slug: &str| {
            let id = catalog
                .categories
                .iter()
                .find(|c| c.slug == slug)
                .map(|c| c.id);
            let ids: HashSet<Uuid> = catalog
                .products
                .iter()
                .filter(|p| Some(p.category_id) == id)
                .map(|p| p.id)
                .collect();
            ids
        };
        let (laptops, bags) = (leaf_of("laptops"), leaf_of("bags"));
        let orders = demo_orders();
        let with_laptop: Vec<&DemoOrder> = orders
            .iter()
            .filter(|o| o.lines.iter().any(|l| laptops.contains(&l.product_id)))
            .collect();
        let with_both = with_laptop
            .iter()
            .filter(|o| o.lines.iter().any(|l| bags.contains(&l.product_id)))
            .count();
        assert!(
            with_laptop.len() > 100,
            "{} laptop orders",
            with_laptop.len()
        );
        assert!(
            with_both * 100 >= with_laptop.len() * 40,
            "{with_both} of {} laptop orders have a bag",
            with_laptop.len()
        );
    }
}
