//! svc-inventory and svc-product started together in the test's process, as
//! the tests of every service that reads the catalog need them (svc-cart,
//! svc-order, svc-recommendation, the gateway), with an admin to change stock
//! and products.

use shopmesh_proto::shop::inventory::v1::SetStockRequest;
use shopmesh_proto::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shopmesh_proto::shop::product::v1::DeleteProductRequest;
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;

use crate::identity::{TestIdentity, with_bearer};
use crate::service::TestService;

/// Nothing listens here: a dependency that is down.
pub const NOWHERE: &str = "http://127.0.0.1:9";

/// Whether svc-product follows svc-inventory's stock (`available` on its
/// products) or leaves its stock stream idle (pointed at [`NOWHERE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StockFeed {
    Followed,
    Ignored,
}

/// svc-inventory with the demo stock and svc-product with the demo catalog,
/// each on a fresh database.
pub struct Catalog {
    pub inventory: TestService,
    pub product: TestService,
    /// An admin's access token.
    admin: String,
}

impl Catalog {
    /// svc-inventory, then svc-product, both trusting `identity`, each with
    /// `common` on top of its test settings (the reservation sweeper off, a
    /// patient database pool).
    pub async fn start(identity: &TestIdentity, stock: StockFeed, common: &[(&str, &str)]) -> Self {
        let auth = identity.auth_url.as_str();
        let mut settings = vec![
            ("AUTH_GRPC_URL", auth),
            ("RESERVATION_SWEEP_SECONDS", "3600"),
            ("DB_ACQUIRE_TIMEOUT_SECONDS", "30"),
        ];
        settings.extend_from_slice(common);
        let inventory = TestService::spawn(&svc_inventory::SPEC, &settings, svc_inventory::build)
            .await
            .expect("svc-inventory starts");
        let inventory_url = match stock {
            StockFeed::Followed => inventory.endpoint(),
            StockFeed::Ignored => NOWHERE.to_owned(),
        };
        let mut settings = vec![
            ("AUTH_GRPC_URL", auth),
            ("INVENTORY_GRPC_URL", inventory_url.as_str()),
            ("DB_ACQUIRE_TIMEOUT_SECONDS", "30"),
        ];
        settings.extend_from_slice(common);
        let product = TestService::spawn(&svc_product::SPEC, &settings, svc_product::build)
            .await
            .expect("svc-product starts");
        let (_, _, admin) = identity
            .sign_in(&["admin"])
            .await
            .expect("the admin signs in");
        Self {
            inventory,
            product,
            admin,
        }
    }

    /// The admin sets a SKU's on-hand count.
    pub async fn set_stock(&self, sku: &str, on_hand: i64) {
        let channel = self
            .inventory
            .channel()
            .await
            .expect("svc-inventory answers");
        InventoryServiceClient::new(channel)
            .set_stock(with_bearer(
                SetStockRequest {
                    sku: sku.to_owned(),
                    on_hand,
                    reason: "test stocktake".into(),
                },
                &self.admin,
            ))
            .await
            .expect("the admin sets the stock");
    }

    /// The admin deletes a product.
    pub async fn delete_product(&self, product_id: &str) {
        let channel = self.product.channel().await.expect("svc-product answers");
        ProductServiceClient::new(channel)
            .delete_product(with_bearer(
                DeleteProductRequest {
                    id: product_id.to_owned(),
                },
                &self.admin,
            ))
            .await
            .expect("the admin deletes the product");
    }
}
