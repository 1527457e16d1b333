//! Any set of real services started together in the test's process, wired to
//! each other as `make run` wires them: a [`Shop`] built with [`Shop::with`].
//!
//! ```ignore
//! let shop = Shop::with(&[Service::Inventory, Service::Product, Service::Cart])
//!     .settings(Service::Cart, &[("CART_IDLE_TTL_SECONDS", "60")])
//!     .start()
//!     .await;
//! let cart = CartServiceClient::new(shop[Service::Cart].channel().await?);
//! ```
//!
//! Every service trusts the shop's stand-in identity provider, gets a fresh
//! database and port 0 (as [`TestService::spawn`]), its test defaults
//! ([`Service::defaults`]), and for every service it calls the shop's one, or
//! [`NOWHERE`] when the shop has none (a dependency that is down). Services
//! start callees first, so a caller's channels find them up.

use std::collections::BTreeMap;
use std::ops::Index;

use shopmesh_proto::shop::inventory::v1::SetStockRequest;
use shopmesh_proto::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shopmesh_proto::shop::product::v1::DeleteProductRequest;
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;

use crate::identity::{SignedIn, TestIdentity};
use crate::service::TestService;

/// Nothing listens here: a dependency that is down.
pub const NOWHERE: &str = "http://127.0.0.1:9";

/// A service a [`Shop`] can start, in the order it starts them (every service
/// after the ones it calls). svc-auth is not one: the shop's
/// [`TestIdentity`] stands in for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Inventory,
    Product,
    User,
    Payment,
    Order,
    Cart,
    Notification,
    Recommendation,
}

impl Service {
    pub const ALL: [Service; 8] = [
        Service::Inventory,
        Service::Product,
        Service::User,
        Service::Payment,
        Service::Order,
        Service::Cart,
        Service::Notification,
        Service::Recommendation,
    ];

    /// The variable its callers find it by.
    pub fn url_variable(self) -> &'static str {
        match self {
            Service::Inventory => "INVENTORY_GRPC_URL",
            Service::Product => "PRODUCT_GRPC_URL",
            Service::User => "USER_GRPC_URL",
            Service::Payment => "PAYMENT_GRPC_URL",
            Service::Order => "ORDER_GRPC_URL",
            Service::Cart => "CART_GRPC_URL",
            Service::Notification => "NOTIFICATION_GRPC_URL",
            Service::Recommendation => "RECOMMENDATION_GRPC_URL",
        }
    }

    /// Settings it gets in a test unless the test says otherwise: a patient
    /// database pool (a test machine runs many services on a few cores) and
    /// no background work that would act on its own during a test.
    pub fn defaults(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Service::Inventory => &[
                ("DB_ACQUIRE_TIMEOUT_SECONDS", "30"),
                ("RESERVATION_SWEEP_SECONDS", "3600"),
            ],
            Service::Order => &[
                ("DB_ACQUIRE_TIMEOUT_SECONDS", "30"),
                ("ORDER_SAGA_LEASE_SECONDS", "10"),
            ],
            _ => &[("DB_ACQUIRE_TIMEOUT_SECONDS", "30")],
        }
    }

    /// Starts it with `settings` as its `main` would.
    pub async fn spawn(self, settings: &[(&str, &str)]) -> anyhow::Result<TestService> {
        match self {
            Service::Inventory => {
                TestService::spawn(&svc_inventory::SPEC, settings, svc_inventory::build).await
            }
            Service::Product => {
                TestService::spawn(&svc_product::SPEC, settings, svc_product::build).await
            }
            Service::User => TestService::spawn(&svc_user::SPEC, settings, svc_user::build).await,
            Service::Payment => {
                TestService::spawn(&svc_payment::SPEC, settings, svc_payment::build).await
            }
            Service::Order => {
                TestService::spawn(&svc_order::SPEC, settings, svc_order::build).await
            }
            Service::Cart => TestService::spawn(&svc_cart::SPEC, settings, svc_cart::build).await,
            Service::Notification => {
                TestService::spawn(&svc_notification::SPEC, settings, svc_notification::build).await
            }
            Service::Recommendation => {
                TestService::spawn(
                    &svc_recommendation::SPEC,
                    settings,
                    svc_recommendation::build,
                )
                .await
            }
        }
    }
}

/// What a [`Shop`] is to start: [`Shop::with`].
#[must_use]
pub struct ShopBuilder {
    services: Vec<Service>,
    common: Vec<(String, String)>,
    own: BTreeMap<Service, Vec<(String, String)>>,
}

impl ShopBuilder {
    /// `settings` for every service, on top of the wiring and the defaults
    /// (e.g. `KAFKA_BROKERS`).
    pub fn common(mut self, settings: &[(&str, &str)]) -> Self {
        self.common.extend(owned(settings));
        self
    }

    /// `settings` for `service`, on top of everything else: the last word,
    /// e.g. `("INVENTORY_GRPC_URL", NOWHERE)` to cut one of its dependencies.
    pub fn settings(mut self, service: Service, settings: &[(&str, &str)]) -> Self {
        self.own.entry(service).or_default().extend(owned(settings));
        self
    }

    /// Starts the identity provider, then the services, callees first.
    pub async fn start(self) -> Shop {
        let identity = TestIdentity::start()
            .await
            .expect("the identity provider starts");
        let mut services: BTreeMap<Service, TestService> = BTreeMap::new();
        let mut wanted = self.services;
        wanted.sort();
        wanted.dedup();
        for service in wanted {
            let mut settings = wiring(&identity, &services, service);
            settings.extend(self.common.iter().cloned());
            settings.extend(self.own.get(&service).into_iter().flatten().cloned());
            let started = service
                .spawn(&borrowed(&settings))
                .await
                .unwrap_or_else(|err| panic!("{service:?} starts: {err:#}"));
            services.insert(service, started);
        }
        let admin = identity
            .signed_in(&["admin"])
            .await
            .expect("the admin signs in");
        Shop {
            identity,
            services,
            admin,
        }
    }
}

/// Real services wired to each other, with the identity provider they trust
/// and an admin. `shop[Service::Product]` is a started service (it panics
/// for one the shop did not start).
pub struct Shop {
    pub identity: TestIdentity,
    services: BTreeMap<Service, TestService>,
    pub admin: SignedIn,
}

impl Shop {
    /// A shop of `services` (in any order).
    pub fn with(services: &[Service]) -> ShopBuilder {
        ShopBuilder {
            services: services.to_vec(),
            common: Vec::new(),
            own: BTreeMap::new(),
        }
    }

    /// The service, when the shop started it.
    pub fn get(&self, service: Service) -> Option<&TestService> {
        self.services.get(&service)
    }

    /// Takes `service` out of the shop: it runs until the caller drops or
    /// stops it (e.g. to start another one on its database).
    pub fn take(&mut self, service: Service) -> Option<TestService> {
        self.services.remove(&service)
    }

    /// The settings that wire another instance of `service` to this shop:
    /// its identity provider and every other service's URL (or
    /// [`NOWHERE`]), then its defaults. Add a database or more settings on top.
    pub fn wiring(&self, service: Service) -> Vec<(String, String)> {
        wiring(&self.identity, &self.services, service)
    }

    /// A new shopper with a live session.
    pub async fn shopper(&self) -> SignedIn {
        self.identity
            .signed_in(&[])
            .await
            .expect("the shopper signs in")
    }

    /// The admin sets a SKU's on-hand count in svc-inventory.
    pub async fn set_stock(&self, sku: &str, on_hand: i64) {
        let channel = self[Service::Inventory]
            .channel()
            .await
            .expect("svc-inventory answers");
        InventoryServiceClient::new(channel)
            .set_stock(self.admin.request(SetStockRequest {
                sku: sku.to_owned(),
                on_hand,
                reason: "test stocktake".into(),
            }))
            .await
            .expect("the admin sets the stock");
    }

    /// The admin deletes a product in svc-product.
    pub async fn delete_product(&self, product_id: &str) {
        let channel = self[Service::Product]
            .channel()
            .await
            .expect("svc-product answers");
        ProductServiceClient::new(channel)
            .delete_product(self.admin.request(DeleteProductRequest {
                id: product_id.to_owned(),
            }))
            .await
            .expect("the admin deletes the product");
    }
}

impl Index<Service> for Shop {
    type Output = TestService;

    fn index(&self, service: Service) -> &TestService {
        self.services
            .get(&service)
            .unwrap_or_else(|| panic!("the shop has no {service:?}"))
    }
}

/// `service`'s settings in a shop of `started`: the identity provider, every
/// other service's URL ([`NOWHERE`] for one not started), its defaults.
fn wiring(
    identity: &TestIdentity,
    started: &BTreeMap<Service, TestService>,
    service: Service,
) -> Vec<(String, String)> {
    let mut settings = vec![("AUTH_GRPC_URL".to_owned(), identity.auth_url.clone())];
    for callee in Service::ALL.into_iter().filter(|callee| *callee != service) {
        let url = started
            .get(&callee)
            .map_or_else(|| NOWHERE.to_owned(), TestService::endpoint);
        settings.push((callee.url_variable().to_owned(), url));
    }
    settings.extend(owned(service.defaults()));
    settings
}

/// Owned copies of settings pairs.
pub fn owned(settings: &[(&str, &str)]) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// Borrowed views of owned settings pairs, as [`TestService::spawn`] takes them.
pub fn borrowed(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}
