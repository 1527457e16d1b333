//! Demo data shared by the services that seed it (svc-product: the catalog;
//! svc-inventory: initial stock per SKU; svc-recommendation: a purchase
//! history over the catalog), so every service agrees on the same SKUs and ids
//! without calling each other at start.

pub mod catalog;
pub mod orders;

pub use catalog::{Catalog, EXACT_MATCH_NAME, SeedCategory, SeedProduct, demo_catalog};
pub use orders::{DemoOrder, DemoOrderLine, demo_orders};
