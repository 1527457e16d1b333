//! Available units per SKU, in memory, for `Product.available_quantity`.
//!
//! The copy is loaded from `stock_levels` at start (so a restarted replica
//! answers at once) and then kept current by the stock subscription
//! ([`crate::stock`]), which records every level it stores. Reads never touch
//! PostgreSQL or Redis, so showing availability costs a hash lookup per
//! product. It is applied to each response as it leaves, never to the cached
//! copies of products and pages, which therefore never hold a stale level.

use std::collections::BTreeSet;

use shopmesh_inventory_client::{StockLevel, StockLevels};
use shopmesh_proto::shop::product::v1::Product;
use sqlx::PgPool;

use crate::store::stock::stored_levels;

/// The shared copy; clones see the same levels.
#[derive(Clone, Debug, Default)]
pub struct Availability {
    levels: StockLevels,
}

impl Availability {
    /// The levels stored so far (`stock_levels`).
    pub async fn load(db: &PgPool) -> sqlx::Result<Self> {
        let levels = stored_levels(db).await?;
        Ok(Self {
            levels: StockLevels::from_levels(levels),
        })
    }

    /// Takes reported levels; as in `stock_levels`, an older report than the
    /// one held changes nothing. Returns how many SKUs sold out or came back.
    pub fn record(&self, reported: &[StockLevel]) -> usize {
        self.levels.record(reported)
    }

    /// Forgets SKUs no live product has, like `forget_unlisted`, so a SKU
    /// reused later starts from inventory's next report.
    pub fn retain(&self, listed: &BTreeSet<String>) {
        self.levels.retain(listed);
    }

    /// Sets `available_quantity` on each product.
    pub fn fill<'a>(&self, products: impl IntoIterator<Item = &'a mut Product>) {
        let levels = self.levels.read();
        for product in products {
            product.available_quantity = levels.available(&product.sku);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn level(sku: &str, available: i64, at: i64) -> StockLevel {
        StockLevel {
            sku: sku.to_owned(),
            available,
            updated_at: DateTime::from_timestamp(at, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn products_get_the_level_of_their_sku_and_unlisted_skus_are_forgotten() {
        let availability = Availability::default();
        availability.record(&[level("A", 7, 1), level("B", 3, 1)]);
        availability.record(&[level("A", 9, 0)]);
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
        let mut b = [Product {
            sku: "B".into(),
            available_quantity: 5,
            ..Default::default()
        }];
        availability.fill(&mut b);
        assert_eq!(b[0].available_quantity, 0);
    }

    #[test]
    fn recording_counts_skus_that_sold_out_or_came_back() {
        let availability = Availability::default();
        assert_eq!(
            availability.record(&[level("A", 7, 1), level("B", 0, 1)]),
            1
        );
        assert_eq!(availability.record(&[level("A", 0, 0)]), 0, "older report");
        assert_eq!(
            availability.record(&[level("A", 0, 2), level("B", 2, 2)]),
            2
        );
        assert_eq!(
            availability.record(&[level("A", 4, 3), level("B", 1, 3)]),
            1
        );
    }
}
