//! What the cart asks other services at read time: products from svc-product
//! (`BatchGetProducts`: names, images, current prices, deletions) and stock
//! from svc-inventory (`BatchGetStock`), both at once.
//!
//! Channels connect lazily, so the cart starts while its dependencies are
//! down; every call has a deadline, and a dependency that cannot be reached
//! becomes [`CartError::Unavailable`] (UNAVAILABLE to the client), counted in
//! `cart_dependency_errors_total`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use shopmesh_platform::auth::ServiceCredentials;
use shopmesh_platform::clients::{Authenticated, LazyChannel};
use shopmesh_proto::shop::inventory::v1::BatchGetStockRequest;
use shopmesh_proto::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;
use shopmesh_proto::shop::product::v1::{BatchGetProductsRequest, Product};
use tonic::{Code, Status};

use crate::cart::CartRecord;
use crate::error::{CartError, Dependency};
use crate::settings::CartSettings;

/// How long one call to a dependency may take (also sent as `grpc-timeout`).
const CALL_DEADLINE: Duration = Duration::from_secs(2);
/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// svc-product and svc-inventory: connect on first use, so the cart starts
/// without its dependencies.
const DEPENDENCY: LazyChannel = LazyChannel::new(CONNECT_TIMEOUT).call_timeout(CALL_DEADLINE);
/// Ids or SKUs per batch call: the most both services accept, and the most
/// lines a cart holds.
const BATCH: usize = 100;

/// Clients of svc-product and svc-inventory.
#[derive(Clone)]
pub struct Catalog {
    products: ProductServiceClient<Authenticated>,
    inventory: InventoryServiceClient<Authenticated>,
}

/// What the catalog and inventory said about some products and SKUs.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Live products by id.
    pub products: HashMap<String, Product>,
    /// Product ids the catalog does not know (deleted or never existed).
    pub missing: HashSet<String>,
    /// Units available by SKU; a SKU inventory does not know counts as 0.
    pub available: HashMap<String, i64>,
}

impl Snapshot {
    /// The live product, if the catalog has it.
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.get(id)
    }

    fn knows_product(&self, id: &str) -> bool {
        self.products.contains_key(id) || self.missing.contains(id)
    }
}

impl Catalog {
    pub fn connect(
        settings: &CartSettings,
        credentials: ServiceCredentials,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            products: ProductServiceClient::new(
                DEPENDENCY.authenticated(&settings.product_url, credentials.clone())?,
            ),
            inventory: InventoryServiceClient::new(
                DEPENDENCY.authenticated(&settings.inventory_url, credentials)?,
            ),
        })
    }

    /// Looks up `product_ids` and `skus` (both at once), adding to `snapshot`
    /// only what it does not know yet.
    pub async fn fill<'a>(
        &self,
        snapshot: &mut Snapshot,
        product_ids: impl IntoIterator<Item = &'a str>,
        skus: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), CartError> {
        let ids = unique(product_ids, |id| !snapshot.knows_product(id));
        let skus = unique(skus, |sku| !snapshot.available.contains_key(sku));
        let (products, stock) = tokio::join!(self.products(ids), self.stock(skus));
        let (products, missing) = products?;
        snapshot.products.extend(products);
        snapshot.missing.extend(missing);
        snapshot.available.extend(stock?);
        Ok(())
    }

    /// Makes sure `snapshot` covers every line of `cart`.
    pub async fn fill_for(
        &self,
        snapshot: &mut Snapshot,
        cart: &CartRecord,
    ) -> Result<(), CartError> {
        self.fill(snapshot, cart.product_ids(), cart.skus()).await
    }

    /// Live products by id, and the ids the catalog does not have.
    async fn products(
        &self,
        ids: Vec<String>,
    ) -> Result<(HashMap<String, Product>, Vec<String>), CartError> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for chunk in ids.chunks(BATCH) {
            let mut request = tonic::Request::new(BatchGetProductsRequest {
                ids: chunk.to_vec(),
            });
            request.set_timeout(CALL_DEADLINE);
            let response = self
                .products
                .clone()
                .batch_get_products(request)
                .await
                .map_err(|status| failed(Dependency::Product, status))?
                .into_inner();
            found.extend(response.products.into_iter().map(|p| (p.id.clone(), p)));
            missing.extend(response.missing_ids);
        }
        Ok((found, missing))
    }

    /// Units available by SKU, 0 for SKUs inventory does not know.
    async fn stock(&self, skus: Vec<String>) -> Result<HashMap<String, i64>, CartError> {
        let mut available = HashMap::with_capacity(skus.len());
        for chunk in skus.chunks(BATCH) {
            let mut request = tonic::Request::new(BatchGetStockRequest {
                skus: chunk.to_vec(),
            });
            request.set_timeout(CALL_DEADLINE);
            let response = self
                .inventory
                .clone()
                .batch_get_stock(request)
                .await
                .map_err(|status| failed(Dependency::Inventory, status))?
                .into_inner();
            available.extend(chunk.iter().map(|sku| (sku.clone(), 0)));
            available.extend(
                response
                    .stocks
                    .into_iter()
                    .map(|s| (s.sku, s.available.max(0))),
            );
        }
        Ok(available)
    }
}

/// The distinct values of `values` that `wanted` accepts, in first-seen order.
fn unique<'a>(
    values: impl IntoIterator<Item = &'a str>,
    wanted: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut seen = HashSet::new();
    values
        .into_iter()
        .filter(|v| wanted(v) && seen.insert(*v))
        .map(str::to_owned)
        .collect()
}

/// A failed call: UNAVAILABLE when the dependency could not be reached or did
/// not answer in time, otherwise an error the cart did not expect.
pub fn failed(dependency: Dependency, status: Status) -> CartError {
    crate::metrics::dependency_error(dependency);
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            CartError::Unavailable(dependency, status)
        }
        _ => CartError::DependencyFailed(dependency, status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keeps_the_first_of_each_and_skips_what_is_known() {
        let got = unique(["a", "b", "a", "c", "b"], |v| v != "c");
        assert_eq!(got, ["a", "b"]);
    }
}
