//! Available units per SKU, in memory, for `Product.available_quantity`.
//!
//! The copy is loaded from `stock_levels` at start (so a restarted replica
//! answers at once) and then kept current by the stock subscription
//! ([`crate::stock`]), which records every level it stores. Reads never touch
//! PostgreSQL or Redis, so showing availability costs a hash lookup per
//! product. It is applied to each response as it leaves, never to the cached
//! copies of products and pages, which therefore never hold a stale level.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use shopmesh_proto::shop::product::v1::Product;
use sqlx::PgPool;

use crate::store::stock::StockLevel;

#[derive(Clone, Copy, Debug)]
struct Level {
    available: i64,
    updated_at: DateTime<Utc>,
}

/// The shared copy; clones see the same levels.
#[derive(Clone, Debug, Default)]
pub struct Availability {
    levels: Arc<RwLock<HashMap<String, Level>>>,
}

impl Availability {
    /// The levels stored so far.
    pub async fn load(db: &PgPool) -> sqlx::Result<Self> {
        let rows: Vec<(String, i64, DateTime<Utc>)> =
            sqlx::query_as("SELECT sku, available, updated_at FROM stock_levels")
                .fetch_all(db)
                .await?;
        let levels = rows
            .into_iter()
            .map(|(sku, available, updated_at)| {
                (
                    sku,
                    Level {
                        available,
                        updated_at,
                    },
                )
            })
            .collect();
        Ok(Self {
            levels: Arc::new(RwLock::new(levels)),
        })
    }

    /// Takes reported levels; as in `stock_levels`, an older report than the
    /// one held changes nothing.
    pub fn record(&self, reported: &[StockLevel]) {
        let mut levels = self.levels.write().unwrap_or_else(PoisonError::into_inner);
        for level in reported {
            let incoming = Level {
                available: level.available.max(0),
                updated_at: level.updated_at,
            };
            levels
                .entry(level.sku.clone())
                .and_modify(|held| {
                    if held.updated_at <= incoming.updated_at {
                        *held = incoming;
                    }
                })
                .or_insert(incoming);
        }
    }

    /// Forgets SKUs no live product has, like `forget_unlisted`, so a SKU
    /// reused later starts from inventory's next report.
    pub fn retain(&self, listed: &BTreeSet<String>) {
        self.levels
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|sku, _| listed.contains(sku));
    }

    /// Units available for `sku`; 0 when inventory reported none.
    #[cfg(test)]
    fn available(&self, sku: &str) -> i64 {
        self.levels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sku)
            .map_or(0, |level| level.available)
    }

    /// Sets `available_quantity` on each product.
    pub fn fill<'a>(&self, products: impl IntoIterator<Item = &'a mut Product>) {
        let levels = self.levels.read().unwrap_or_else(PoisonError::into_inner);
        for product in products {
            product.available_quantity = levels.get(&product.sku).map_or(0, |l| l.available);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(sku: &str, available: i64, at: i64) -> StockLevel {
        StockLevel {
            sku: sku.to_owned(),
            available,
            updated_at: DateTime::from_timestamp(at, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn the_newest_report_wins_whatever_the_arrival_order() {
        let availability = Availability::default();
        availability.record(&[level("A", 5, 20)]);
        availability.record(&[level("A", 9, 10)]);
        assert_eq!(availability.available("A"), 5);
        availability.record(&[level("A", 2, 30), level("B", -1, 30)]);
        assert_eq!(availability.available("A"), 2);
        assert_eq!(availability.available("B"), 0);
        assert_eq!(availability.available("unknown"), 0);
    }

    #[test]
    fn products_get_the_level_of_their_sku_and_unlisted_skus_are_forgotten() {
        let availability = Availability::default();
        availability.record(&[level("A", 7, 1), level("B", 3, 1)]);
        let mut products = vec![
            Product {
                sku: "A".into(),
                ..Default::default()
            },
            Product {
                sku: "C".into(),
                available_quantity: 99,
                ..Default::default()
            },
        ];
        availability.fill(&mut products);
        assert_eq!(products[0].available_quantity, 7);
        assert_eq!(products[1].available_quantity, 0);
        availability.retain(&BTreeSet::from(["A".to_owned()]));
        assert_eq!(availability.available("B"), 0);
        assert_eq!(availability.available("A"), 7);
    }
}
