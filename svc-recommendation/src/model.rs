//! The trained model: one immutable snapshot built by training from the
//! catalog and the purchases, served from memory and swapped whole.
//!
//! - **Similar products**: the content model (`content`), TF-IDF over name,
//!   description and attributes plus category proximity, re-ranked by how
//!   often the same shoppers bought both (item-kNN cosine).
//! - **Bought together**: `algo::cooccur` over orders (one basket per order),
//!   cosine with a minimum support of two orders.
//! - **Also bought**: item-kNN over shoppers' whole histories (`algo::knn`).
//! - **Personal**: `algo::personal` (EASE) over shoppers' purchase sequences.
//! - **Popular**: purchases per product, overall and per leaf and root category.
//!
//! Items are dense indices `0..products.len()`; [`Model::index_of`] maps a
//! product id to its index. Serving takes an `allowed` predicate (live, in
//! stock, not bought) and never returns an item it refuses.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::algo::{
    Dataset, ItemKnn, ItemNeighbors, KnnParams, Measure, NeighborParams, Personal, PersonalParams,
    Popularity, top_k,
};
use crate::catalog::{Catalog, root_of};
use crate::content::{self, ContentParams, Document};
use crate::store::TrainingLine;

/// The longest list served for one product (similar, bought together).
pub const MAX_LIST: usize = 50;
/// Neighbours kept per product: a few more than served, so a list stays full
/// when some are sold out or deleted.
const NEIGHBOURS_KEPT: usize = MAX_LIST + 10;
/// Popular items kept overall, and per category.
const POPULAR_KEPT: usize = 200;
const POPULAR_PER_CATEGORY: usize = 100;
/// The most recent purchases whose neighbours seed a shopper's candidates,
/// and how much less each older one weighs.
const RECENT_PURCHASES: usize = 10;
const RECENCY: f32 = 0.85;
/// Shoppers with fewer distinct purchases get no personal-model scores, only
/// neighbours of what they bought and best sellers of their categories.
pub const MIN_PERSONAL_PURCHASES: usize = 3;
const PERSONAL_CANDIDATES: usize = 100;
const SIMILAR_PER_PURCHASE: usize = 20;
const POPULAR_PER_SHOPPER_CATEGORY: usize = 20;
/// Blend weights of a shopper's candidate sources (each source is in [0, 1]).
const W_PERSONAL: f32 = 1.0;
const W_ALSO_BOUGHT: f32 = 0.6;
const W_SIMILAR: f32 = 0.35;
const W_CATEGORY_POPULAR: f32 = 0.3;

/// What training reads besides the data.
#[derive(Clone, Debug)]
pub struct TrainParams {
    pub content: ContentParams,
    /// Bought together: cosine over orders, pairs in at least two orders.
    pub together: NeighborParams,
    pub also_bought: KnnParams,
    pub personal: PersonalParams,
    /// How much co-purchase (item-kNN cosine) adds to a content neighbour's score.
    pub similar_co_purchase: f32,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            content: ContentParams {
                top_n: NEIGHBOURS_KEPT,
                ..ContentParams::default()
            },
            together: NeighborParams {
                min_support: 2,
                top_n: NEIGHBOURS_KEPT,
                measure: Measure::Cosine,
            },
            also_bought: KnnParams {
                top_n: NEIGHBOURS_KEPT,
                min_support: 2,
            },
            personal: PersonalParams {
                max_items: 2000,
                ..PersonalParams::default()
            },
            similar_co_purchase: 0.25,
        }
    }
}

/// A product the model knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelProduct {
    pub id: Uuid,
    pub sku: String,
    /// Its (leaf) category and that category's root.
    pub category: Uuid,
    pub root: Uuid,
}

/// What GetModelInfo reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// Orders the persisted models by age.
    pub seq: i64,
    pub version: String,
    pub trained_at: DateTime<Utc>,
    pub duration: Duration,
    pub orders: i64,
    pub users: i64,
    pub products: i64,
    pub interactions: i64,
}

/// Per-item neighbour lists in one flat array.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Neighbours {
    offsets: Vec<u32>,
    entries: Vec<(u32, f32)>,
}

impl Neighbours {
    pub fn from_rows<I: IntoIterator<Item = Vec<(u32, f32)>>>(rows: I) -> Self {
        let mut offsets = vec![0u32];
        let mut entries = Vec::new();
        for row in rows {
            entries.extend(row);
            offsets.push(entries.len() as u32);
        }
        Self { offsets, entries }
    }

    fn from_item_neighbors(neighbors: &ItemNeighbors, n: usize) -> Self {
        Self::from_rows((0..n as u32).map(|i| neighbors.neighbors(i).to_vec()))
    }

    /// The parts as stored: offsets, items, scores.
    pub fn parts(&self) -> (&[u32], impl Iterator<Item = (u32, f32)> + '_) {
        (&self.offsets, self.entries.iter().copied())
    }

    /// Rebuilds from stored parts; `None` when they do not fit together.
    pub fn from_parts(
        offsets: Vec<u32>,
        items: Vec<u32>,
        scores: Vec<f32>,
        n: usize,
    ) -> Option<Self> {
        let fits = offsets.len() == n + 1
            && offsets.first() == Some(&0)
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets.last().map(|&l| l as usize) == Some(items.len())
            && items.len() == scores.len()
            && items.iter().all(|&i| (i as usize) < n);
        fits.then(|| Self {
            offsets,
            entries: items.into_iter().zip(scores).collect(),
        })
    }

    /// The item's neighbours, best first (empty for an unknown item).
    pub fn of(&self, item: u32) -> &[(u32, f32)] {
        let i = item as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&start), Some(&end)) => &self.entries[start as usize..end as usize],
            _ => &[],
        }
    }
}

/// Why an item is recommended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    AlsoBought,
    BoughtTogether,
    Similar,
    Popular,
}

/// One recommended item.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pick {
    pub item: u32,
    pub score: f32,
    pub reason: Reason,
    /// The item the reason refers to (`None` for POPULAR).
    pub based_on: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub info: ModelInfo,
    pub products: Vec<ModelProduct>,
    pub similar: Neighbours,
    pub together: Neighbours,
    pub also_bought: Neighbours,
    /// Purchases (order lines) per item.
    pub popularity: Vec<u32>,
    pub personal: Option<Personal>,
    index: HashMap<Uuid, u32>,
    /// Items bought at least once, best sellers first.
    popular: Vec<u32>,
    /// The same per leaf and per root category.
    popular_in: HashMap<Uuid, Vec<u32>>,
}

impl Model {
    /// Trains every part from the catalog and the purchase lines (per shopper,
    /// in purchase order). Lines of products not in the catalog are left out.
    /// The info's seq, version and times are the trainer's to set.
    pub fn train(catalog: &Catalog, lines: &[TrainingLine], params: &TrainParams) -> Self {
        let parents = catalog.parents();
        let products: Vec<ModelProduct> = catalog
            .products
            .iter()
            .map(|p| ModelProduct {
                id: p.id,
                sku: p.sku.clone(),
                category: p.category_id,
                root: root_of(&parents, p.category_id),
            })
            .collect();
        let n = products.len();
        let index: HashMap<Uuid, u32> = (0u32..).zip(&products).map(|(i, p)| (p.id, i)).collect();

        // Shoppers' sequences and orders' baskets, over known products only.
        let mut users: Vec<Vec<u32>> = Vec::new();
        let mut baskets: HashMap<Uuid, Vec<u32>> = HashMap::new();
        let mut last_user = None;
        let mut interactions = 0i64;
        for line in lines {
            let Some(&item) = index.get(&line.product_id) else {
                continue;
            };
            if last_user != Some(line.user_id) {
                users.push(Vec::new());
                last_user = Some(line.user_id);
            }
            if let Some(history) = users.last_mut() {
                history.push(item);
            }
            baskets.entry(line.order_id).or_default().push(item);
            interactions += 1;
        }
        let dataset = Dataset { n_items: n, users };
        let mut basket_list: Vec<(Uuid, Vec<u32>)> = baskets.into_iter().collect();
        basket_list.sort_unstable_by_key(|(order, _)| *order);
        let basket_list: Vec<Vec<u32>> = basket_list.into_iter().map(|(_, b)| b).collect();

        let popularity = Popularity::train(&dataset).counts().to_vec();
        let together = ItemNeighbors::build(&basket_list, n, &params.together);
        let knn = ItemKnn::train(&dataset, &params.also_bought);
        let also_bought = Neighbours::from_item_neighbors(knn.neighbors(), n);
        let personal = (interactions > 0).then(|| Personal::train(&dataset, &params.personal));

        let leaves = dense_ids(products.iter().map(|p| p.category));
        let roots = dense_ids(products.iter().map(|p| p.root));
        let docs: Vec<Document<'_>> = catalog
            .products
            .iter()
            .zip(&products)
            .map(|(p, m)| Document {
                name: &p.name,
                description: &p.description,
                attributes: &p.attributes,
                leaf: leaves[&m.category],
                root: roots[&m.root],
            })
            .collect();
        let candidates = content::similar(
            &docs,
            &ContentParams {
                top_n: params.content.top_n * 2,
                ..params.content
            },
        );
        let similar = Neighbours::from_rows(candidates.into_iter().enumerate().map(|(i, row)| {
            let co_bought = also_bought.of(i as u32);
            let mut row: Vec<(u32, f32)> = row
                .into_iter()
                .map(|(j, score)| {
                    let bonus = co_bought
                        .iter()
                        .find(|(k, _)| *k == j)
                        .map_or(0.0, |(_, s)| *s);
                    (j, score + params.similar_co_purchase * bonus)
                })
                .collect();
            row.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            row.truncate(params.content.top_n);
            row
        }));

        let info = ModelInfo {
            seq: 0,
            version: String::new(),
            trained_at: Utc::now(),
            duration: Duration::ZERO,
            orders: basket_list.len() as i64,
            users: dataset.users.len() as i64,
            products: n as i64,
            interactions,
        };
        let together = Neighbours::from_item_neighbors(&together, n);
        Self::from_parts(
            info,
            products,
            similar,
            together,
            also_bought,
            popularity,
            personal,
        )
    }

    /// Assembles a model from stored parts (see `snapshot`).
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        info: ModelInfo,
        products: Vec<ModelProduct>,
        similar: Neighbours,
        together: Neighbours,
        also_bought: Neighbours,
        popularity: Vec<u32>,
        personal: Option<Personal>,
    ) -> Self {
        let index = (0u32..).zip(&products).map(|(i, p)| (p.id, i)).collect();
        let mut model = Self {
            info,
            products,
            similar,
            together,
            also_bought,
            popularity,
            personal,
            index,
            popular: Vec::new(),
            popular_in: HashMap::new(),
        };
        model.derive();
        model
    }

    /// The best-seller lists, derived from the counts.
    fn derive(&mut self) {
        let mut sold: Vec<u32> = (0u32..)
            .zip(&self.popularity)
            .filter(|(_, c)| **c > 0)
            .map(|(i, _)| i)
            .collect();
        sold.sort_unstable_by(|&a, &b| {
            self.popularity[b as usize]
                .cmp(&self.popularity[a as usize])
                .then(a.cmp(&b))
        });
        let mut popular_in: HashMap<Uuid, Vec<u32>> = HashMap::new();
        for &item in &sold {
            let product = &self.products[item as usize];
            for category in [product.category, product.root] {
                let list = popular_in.entry(category).or_default();
                if list.len() < POPULAR_PER_CATEGORY && list.last() != Some(&item) {
                    list.push(item);
                }
            }
        }
        sold.truncate(POPULAR_KEPT);
        self.popular = sold;
        self.popular_in = popular_in;
    }

    pub fn index_of(&self, id: Uuid) -> Option<u32> {
        self.index.get(&id).copied()
    }

    pub fn product(&self, item: u32) -> Option<&ModelProduct> {
        self.products.get(item as usize)
    }

    fn popularity_of(&self, item: u32) -> f32 {
        self.popularity.get(item as usize).copied().unwrap_or(0) as f32
    }

    /// Neighbours of `item` in `list` that are allowed, best first.
    fn neighbours(
        &self,
        list: &Neighbours,
        item: u32,
        reason: Reason,
        allowed: &impl Fn(u32) -> bool,
    ) -> Vec<Pick> {
        list.of(item)
            .iter()
            .filter(|(j, _)| *j != item && allowed(*j))
            .map(|&(j, score)| Pick {
                item: j,
                score,
                reason,
                based_on: Some(item),
            })
            .collect()
    }

    /// Products similar to `item`, best first.
    pub fn similar_to(&self, item: u32, allowed: &impl Fn(u32) -> bool) -> Vec<Pick> {
        self.neighbours(&self.similar, item, Reason::Similar, allowed)
    }

    /// Products most often in the same order as `item`, best first.
    pub fn bought_with(&self, item: u32, allowed: &impl Fn(u32) -> bool) -> Vec<Pick> {
        self.neighbours(&self.together, item, Reason::BoughtTogether, allowed)
    }

    /// Best sellers of `category`, then of `root`, then overall (up to `limit`).
    pub fn popular_near(
        &self,
        category: Option<Uuid>,
        root: Option<Uuid>,
        allowed: &impl Fn(u32) -> bool,
        limit: usize,
    ) -> Vec<Pick> {
        let scoped = [category, root]
            .into_iter()
            .flatten()
            .filter_map(|c| self.popular_in.get(&c))
            .flatten();
        let mut picks: Vec<Pick> = Vec::with_capacity(limit);
        for &item in scoped.chain(&self.popular) {
            if picks.len() >= limit {
                break;
            }
            if allowed(item) && !picks.iter().any(|p| p.item == item) {
                picks.push(Pick {
                    item,
                    score: self.popularity_of(item),
                    reason: Reason::Popular,
                    based_on: None,
                });
            }
        }
        picks
    }

    /// A shopper's recommendations, best first, from their purchases (known
    /// items, not refunded, oldest first, each once). An empty history gets
    /// the best sellers.
    pub fn for_shopper(
        &self,
        history: &[u32],
        allowed: &impl Fn(u32) -> bool,
        limit: usize,
    ) -> Vec<Pick> {
        if history.is_empty() {
            return self.popular_near(None, None, allowed, limit);
        }
        let mut blend = Blend::default();
        let recent: Vec<(u32, f32)> = history
            .iter()
            .rev()
            .take(RECENT_PURCHASES)
            .scan(1.0f32, |weight, &item| {
                let this = *weight;
                *weight *= RECENCY;
                Some((item, this))
            })
            .collect();
        for &(h, weight) in &recent {
            for &(j, s) in self.also_bought.of(h) {
                if allowed(j) {
                    blend.add(j, W_ALSO_BOUGHT * weight * s, Reason::AlsoBought, Some(h));
                }
            }
            for &(j, s) in self.similar.of(h).iter().take(SIMILAR_PER_PURCHASE) {
                if allowed(j) {
                    blend.add(j, W_SIMILAR * weight * s, Reason::Similar, Some(h));
                }
            }
        }
        if history.len() >= MIN_PERSONAL_PURCHASES
            && let Some(personal) = &self.personal
        {
            let mut scores = vec![0f32; self.products.len()];
            personal.score(history, &mut scores);
            let top = top_k(&scores, PERSONAL_CANDIDATES, |i| !allowed(i));
            if let Some(max) = top.first().map(|t| t.1).filter(|m| *m > 0.0) {
                for (j, s) in top.into_iter().filter(|t| t.1 > 0.0) {
                    let based_on = self.explain(j, &recent);
                    blend.add(j, W_PERSONAL * s / max, Reason::AlsoBought, Some(based_on));
                }
            }
        }
        // The shopper's categories, by their share of the purchases.
        let mut shares: HashMap<Uuid, f32> = HashMap::new();
        for &item in history {
            if let Some(product) = self.product(item) {
                *shares.entry(product.category).or_default() += 1.0 / history.len() as f32;
            }
        }
        for (category, share) in shares {
            let Some(list) = self.popular_in.get(&category) else {
                continue;
            };
            let top = list
                .first()
                .map_or(1.0, |&i| self.popularity_of(i).max(1.0));
            for &j in list.iter().take(POPULAR_PER_SHOPPER_CATEGORY) {
                if allowed(j) {
                    let s = self.popularity_of(j) / top;
                    blend.add(j, W_CATEGORY_POPULAR * share * s, Reason::Popular, None);
                }
            }
        }
        let mut picks = blend.into_picks();
        picks.truncate(limit);
        if picks.len() < limit {
            let chosen: Vec<u32> = picks.iter().map(|p| p.item).collect();
            let more = self.popular_near(
                None,
                None,
                &|i| allowed(i) && !chosen.contains(&i),
                limit - picks.len(),
            );
            // Below every blended score, in best-seller order.
            let floor = picks.last().map_or(0.0, |p| p.score);
            let count = more.len() as f32;
            picks.extend(more.into_iter().enumerate().map(|(rank, p)| Pick {
                score: floor * (count - rank as f32) / (count + 1.0),
                ..p
            }));
        }
        picks
    }

    /// The recent purchase that best explains a personal-model pick: the one
    /// most often bought by the same shoppers, else the most recent.
    fn explain(&self, item: u32, recent: &[(u32, f32)]) -> u32 {
        recent
            .iter()
            .filter_map(|&(h, _)| {
                self.also_bought
                    .of(h)
                    .iter()
                    .find(|(j, _)| *j == item)
                    .map(|&(_, s)| (h, s))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or_else(|| recent.first().map_or(item, |r| r.0), |(h, _)| h)
    }
}

/// Candidates summed over their sources; each keeps the reason of its
/// largest single contribution.
#[derive(Default)]
struct Blend {
    candidates: HashMap<u32, (f32, f32, Reason, Option<u32>)>,
}

impl Blend {
    fn add(&mut self, item: u32, score: f32, reason: Reason, based_on: Option<u32>) {
        if score <= 0.0 || !score.is_finite() {
            return;
        }
        let entry =
            self.candidates
                .entry(item)
                .or_insert((0.0, f32::NEG_INFINITY, reason, based_on));
        entry.0 += score;
        if score > entry.1 {
            entry.1 = score;
            entry.2 = reason;
            entry.3 = based_on;
        }
    }

    fn into_picks(self) -> Vec<Pick> {
        let mut picks: Vec<Pick> = self
            .candidates
            .into_iter()
            .map(|(item, (score, _, reason, based_on))| Pick {
                item,
                score,
                reason,
                based_on,
            })
            .collect();
        picks.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
        picks
    }
}

/// Dense ids `0..` for the distinct values, in first-seen order.
fn dense_ids(values: impl Iterator<Item = Uuid>) -> HashMap<Uuid, u32> {
    let mut ids = HashMap::new();
    for value in values {
        let next = ids.len() as u32;
        ids.entry(value).or_insert(next);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CatalogCategory, CatalogProduct};

    /// Two roots; leaves: audio (headphones), bags, kitchen.
    struct Shop {
        catalog: Catalog,
        lines: Vec<TrainingLine>,
    }

    fn product(name: &str, category: Uuid) -> CatalogProduct {
        CatalogProduct {
            id: Uuid::now_v7(),
            sku: name.to_uppercase().replace(' ', "-"),
            name: name.to_owned(),
            description: format!("{name}, a fine product."),
            category_id: category,
            attributes: vec![("brand".to_owned(), "Acme".to_owned())],
        }
    }

    fn shop() -> Shop {
        let (tech, home) = (Uuid::now_v7(), Uuid::now_v7());
        let (audio, bags, kitchen) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let categories = vec![
            CatalogCategory {
                id: tech,
                parent_id: None,
            },
            CatalogCategory {
                id: home,
                parent_id: None,
            },
            CatalogCategory {
                id: audio,
                parent_id: Some(tech),
            },
            CatalogCategory {
                id: bags,
                parent_id: Some(tech),
            },
            CatalogCategory {
                id: kitchen,
                parent_id: Some(home),
            },
        ];
        let products = vec![
            product("Wireless Headphones One", audio), // 0
            product("Wireless Headphones Two", audio), // 1
            product("Laptop Sleeve", bags),            // 2
            product("Laptop Backpack", bags),          // 3
            product("Cast Iron Skillet", kitchen),     // 4
            product("Steel Saucepan", kitchen),        // 5
        ];
        let id = |i: usize| products[i].id;
        // Orders: headphones one with the sleeve (3 times), skillet with saucepan (2).
        let mut lines = Vec::new();
        let mut order = |user: Uuid, items: &[usize]| {
            let order_id = Uuid::now_v7();
            for &i in items {
                lines.push(TrainingLine {
                    order_id,
                    user_id: user,
                    product_id: id(i),
                });
            }
        };
        let (u1, u2, u3, u4) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        order(u1, &[0, 2]);
        order(u2, &[0, 2]);
        order(u3, &[0, 2, 3]);
        order(u4, &[4, 5]);
        order(u4, &[4, 5]);
        order(u4, &[0]);
        // Lines per user, in purchase order, as the store returns them.
        lines.sort_by_key(|l| l.user_id);
        Shop {
            catalog: Catalog {
                categories,
                products,
            },
            lines,
        }
    }

    fn items(picks: &[Pick]) -> Vec<u32> {
        picks.iter().map(|p| p.item).collect()
    }

    #[test]
    fn counts_and_popularity() {
        let shop = shop();
        let model = Model::train(&shop.catalog, &shop.lines, &TrainParams::default());
        assert_eq!(model.info.orders, 6);
        assert_eq!(model.info.users, 4);
        assert_eq!(model.info.products, 6);
        assert_eq!(model.info.interactions, 12);
        let popular = model.popular_near(None, None, &|_| true, 10);
        assert_eq!(items(&popular)[..2], [0, 2]);
        assert!(
            popular
                .iter()
                .all(|p| p.reason == Reason::Popular && p.based_on.is_none())
        );
        // Never-sold products are no best sellers.
        assert!(!items(&popular).contains(&1));
    }

    #[test]
    fn bought_together_follows_orders_and_similar_follows_content() {
        let shop = shop();
        let model = Model::train(&shop.catalog, &shop.lines, &TrainParams::default());
        let together = model.bought_with(0, &|_| true);
        assert_eq!(items(&together), [2], "{together:?}");
        assert_eq!(together[0].based_on, Some(0));
        assert_eq!(items(&model.bought_with(4, &|_| true)), [5]);
        // One order only: below the minimum support.
        assert!(model.bought_with(3, &|_| true).is_empty());

        let similar = model.similar_to(0, &|_| true);
        assert_eq!(similar[0].item, 1, "{similar:?}");
        assert!(similar.iter().all(|p| p.reason == Reason::Similar));
        let allowed = |i: u32| i != 1;
        assert!(!items(&model.similar_to(0, &allowed)).contains(&1));
    }

    #[test]
    fn a_shopper_gets_neighbours_of_purchases_and_never_what_is_refused() {
        let shop = shop();
        let model = Model::train(&shop.catalog, &shop.lines, &TrainParams::default());
        let bought = [0u32];
        let allowed = |i: u32| !bought.contains(&i);
        let picks = model.for_shopper(&bought, &allowed, 5);
        assert!(!items(&picks).contains(&0));
        assert_eq!(picks[0].item, 2, "{picks:?}");
        assert_eq!(picks[0].reason, Reason::AlsoBought);
        assert_eq!(picks[0].based_on, Some(0));
        assert!(
            picks.windows(2).all(|w| w[0].score >= w[1].score),
            "{picks:?}"
        );

        let newcomer = model.for_shopper(&[], &|i| i != 0, 3);
        assert_eq!(items(&newcomer), [2, 4, 5]);
        assert!(newcomer.iter().all(|p| p.reason == Reason::Popular));
    }

    #[test]
    fn neighbours_round_trip_through_parts() {
        let neighbours =
            Neighbours::from_rows([vec![(1, 0.5)], vec![], vec![(0, 0.25), (1, 0.125)]]);
        let (offsets, entries) = neighbours.parts();
        let offsets = offsets.to_vec();
        let (items, scores): (Vec<u32>, Vec<f32>) = entries.unzip();
        let back = Neighbours::from_parts(offsets.clone(), items.clone(), scores.clone(), 3);
        assert_eq!(back.as_ref(), Some(&neighbours));
        assert_eq!(neighbours.of(2), [(0, 0.25), (1, 0.125)]);
        assert!(neighbours.of(7).is_empty());
        assert!(Neighbours::from_parts(offsets, items, scores, 2).is_none());
    }
}

#[cfg(test)]
mod demo_tests {
    use super::*;
    use crate::catalog::{CatalogCategory, CatalogProduct};

    /// The demo catalog and history, as svc-product and the seed would give them.
    fn demo() -> (Catalog, Vec<TrainingLine>) {
        let demo = shopmesh_demo::demo_catalog();
        let catalog = Catalog {
            categories: demo
                .categories
                .iter()
                .map(|c| CatalogCategory {
                    id: c.id,
                    parent_id: c.parent_id,
                })
                .collect(),
            products: demo
                .products
                .iter()
                .map(|p| CatalogProduct {
                    id: p.id,
                    sku: p.sku.clone(),
                    name: p.name.clone(),
                    description: p.description.clone(),
                    category_id: p.category_id,
                    attributes: p.attributes.clone(),
                })
                .collect(),
        };
        let mut orders = shopmesh_demo::demo_orders();
        orders.sort_by_key(|o| (o.user_id, o.confirmed_at, o.id));
        let lines = orders
            .iter()
            .flat_map(|o| {
                o.lines.iter().map(|l| TrainingLine {
                    order_id: o.id,
                    user_id: o.user_id,
                    product_id: l.product_id,
                })
            })
            .collect();
        (catalog, lines)
    }

    #[test]
    fn the_demo_history_trains_a_sensible_model() {
        let (catalog, lines) = demo();
        let started = std::time::Instant::now();
        let model = Model::train(&catalog, &lines, &TrainParams::default());
        eprintln!(
            "demo model: {:?} in {:?}, {} bytes persisted",
            model.info,
            started.elapsed(),
            crate::snapshot::encode(&model).len()
        );
        let category_of = |item: u32| model.products[item as usize].category;
        let slugs: HashMap<Uuid, String> = shopmesh_demo::demo_catalog()
            .categories
            .into_iter()
            .map(|c| (c.id, c.slug))
            .collect();
        let slug_of = |item: u32| slugs[&category_of(item)].clone();
        // Similar products share the category (mostly).
        for item in [0u32, 300, 700, 1100] {
            let similar = model.similar_to(item, &|_| true);
            assert_eq!(similar.len(), NEIGHBOURS_KEPT);
            let same = similar[..10]
                .iter()
                .filter(|p| category_of(p.item) == category_of(item))
                .count();
            assert!(same >= 8, "{item}: {same} of 10 in its category");
        }
        // Laptops are bought with bags.
        let laptops: Vec<u32> = (0..model.products.len() as u32)
            .filter(|&i| slug_of(i) == "laptops" && !model.bought_with(i, &|_| true).is_empty())
            .collect();
        assert!(!laptops.is_empty());
        let with_bags = laptops
            .iter()
            .filter(|&&i| slug_of(model.bought_with(i, &|_| true)[0].item) == "bags")
            .count();
        assert!(
            with_bags * 2 >= laptops.len(),
            "{with_bags} of {}",
            laptops.len()
        );

        // Serving from memory is cheap: a shopper with a few purchases.
        let mut per_user: HashMap<Uuid, Vec<u32>> = HashMap::new();
        for line in &lines {
            if let Some(item) = model.index_of(line.product_id) {
                per_user.entry(line.user_id).or_default().push(item);
            }
        }
        let history = per_user
            .into_values()
            .max_by_key(|h| (h.len(), h.clone()))
            .unwrap_or_default();
        assert!(history.len() >= MIN_PERSONAL_PURCHASES);
        let started = std::time::Instant::now();
        for _ in 0..100 {
            let picks = model.for_shopper(&history, &|i| !history.contains(&i), 10);
            assert_eq!(picks.len(), 10);
        }
        eprintln!(
            "for_shopper ({} purchases): {:?} each",
            history.len(),
            started.elapsed() / 100
        );
    }
}
