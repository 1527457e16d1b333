//! What svc-inventory's integration tests share: the real service on its own
//! fresh database (no demo stock unless asked, the sweeper left to the test),
//! behind the platform's stand-in identity provider; an admin and a shopper
//! with valid access tokens; svc-order's service credential; and a second
//! replica on the same database.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

use shopmesh_platform::clients::Authenticated;
use shopmesh_proto::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shopmesh_proto::shop::inventory::v1::{
    AdjustStockRequest, CommitReservationRequest, GetStockRequest, ReleaseReservationRequest,
    Reservation, ReservationLine, ReserveStockRequest, SetStockRequest, Stock,
};
use shopmesh_testkit::{SignedIn, TestIdentity, TestService, as_service};
use sqlx::PgPool;
use tonic::Status;
use tonic::transport::Channel;
use uuid::Uuid;

pub type InventoryClient = InventoryServiceClient<Channel>;
pub type InternalClient = InventoryServiceClient<Authenticated>;

pub struct Harness {
    pub service: TestService,
    pub identity: TestIdentity,
    pub admin: SignedIn,
    channel: Channel,
}

/// Settings every test service gets unless the test says otherwise: no demo
/// stock, and a sweeper that never runs on its own during a test.
const DEFAULTS: &[(&str, &str)] = &[
    ("SEED_DEMO_STOCK", "false"),
    ("RESERVATION_SWEEP_SECONDS", "3600"),
    ("DB_ACQUIRE_TIMEOUT_SECONDS", "30"),
];

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts svc-inventory with `extra` settings on top of the test defaults.
    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        let identity = TestIdentity::start()
            .await
            .expect("identity provider starts");
        let mut settings = vec![("AUTH_GRPC_URL", identity.auth_url.as_str())];
        settings.extend_from_slice(DEFAULTS);
        settings.extend_from_slice(extra);
        let service = TestService::spawn(&svc_inventory::SPEC, &settings, svc_inventory::build)
            .await
            .expect("svc-inventory starts");
        let channel = service.channel().await.expect("connects");
        let admin = identity.signed_in(&["admin"]).await.unwrap();
        Self {
            service,
            identity,
            admin,
            channel,
        }
    }

    /// A client with no credentials of its own.
    pub fn client(&self) -> InventoryClient {
        InventoryServiceClient::new(self.channel.clone())
    }

    /// A client calling as svc-order does, with the service credential.
    pub fn as_svc_order(&self) -> InternalClient {
        internal_client(self.channel.clone())
    }

    /// A signed-in user without the admin role.
    pub async fn shopper(&self) -> SignedIn {
        self.identity.signed_in(&[]).await.unwrap()
    }

    pub async fn set_stock(&self, sku: &str, on_hand: i64) -> Stock {
        self.client()
            .set_stock(self.admin.request(SetStockRequest {
                sku: sku.to_owned(),
                on_hand,
                reason: "test stocktake".to_owned(),
            }))
            .await
            .unwrap()
            .into_inner()
            .stock
            .unwrap()
    }

    pub async fn adjust_stock(&self, sku: &str, delta: i64, key: &str) -> Result<Stock, Status> {
        self.client()
            .adjust_stock(self.admin.request(AdjustStockRequest {
                sku: sku.to_owned(),
                delta,
                reason: format!("test adjustment {delta:+}"),
                idempotency_key: key.to_owned(),
            }))
            .await
            .map(|r| r.into_inner().stock.unwrap())
    }

    pub async fn stock(&self, sku: &str) -> Stock {
        self.client()
            .get_stock(GetStockRequest {
                sku: sku.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .stock
            .unwrap()
    }

    pub async fn reserve(
        &self,
        order_id: Uuid,
        wanted: &[(&str, i32)],
        ttl: Option<Duration>,
    ) -> Result<Reservation, Status> {
        reserve(&mut self.as_svc_order(), order_id, wanted, ttl).await
    }

    pub async fn release(&self, order_id: Uuid) -> Result<Reservation, Status> {
        self.as_svc_order()
            .release_reservation(ReleaseReservationRequest {
                order_id: order_id.to_string(),
                reason: "payment declined".to_owned(),
            })
            .await
            .map(|r| r.into_inner().reservation.unwrap())
    }

    pub async fn commit(&self, order_id: Uuid) -> Result<Reservation, Status> {
        self.as_svc_order()
            .commit_reservation(CommitReservationRequest {
                order_id: order_id.to_string(),
            })
            .await
            .map(|r| r.into_inner().reservation.unwrap())
    }

    /// A second svc-inventory on the same database, as another replica runs.
    pub async fn second_replica(&self) -> Replica {
        let mut settings = vec![
            ("DATABASE_URL", self.service.database_url.as_str()),
            ("AUTH_GRPC_URL", self.identity.auth_url.as_str()),
        ];
        settings.extend_from_slice(DEFAULTS);
        let service = TestService::spawn(&svc_inventory::SPEC, &settings, svc_inventory::build)
            .await
            .expect("the second replica starts");
        let channel = service.channel().await.unwrap();
        Replica { channel, service }
    }

    pub async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}

/// Another replica of the service.
pub struct Replica {
    pub channel: Channel,
    service: TestService,
}

impl Replica {
    pub fn as_svc_order(&self) -> InternalClient {
        internal_client(self.channel.clone())
    }

    pub fn client(&self) -> InventoryClient {
        InventoryServiceClient::new(self.channel.clone())
    }

    pub async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}

fn internal_client(channel: Channel) -> InternalClient {
    InventoryServiceClient::new(as_service(channel, "svc-order"))
}

pub fn lines(wanted: &[(&str, i32)]) -> Vec<ReservationLine> {
    wanted
        .iter()
        .map(|(sku, quantity)| ReservationLine {
            sku: (*sku).to_owned(),
            quantity: *quantity,
        })
        .collect()
}

pub async fn reserve(
    client: &mut InternalClient,
    order_id: Uuid,
    wanted: &[(&str, i32)],
    ttl: Option<Duration>,
) -> Result<Reservation, Status> {
    client
        .reserve_stock(ReserveStockRequest {
            order_id: order_id.to_string(),
            lines: lines(wanted),
            ttl: ttl.map(|ttl| prost_types::Duration {
                seconds: ttl.as_secs() as i64,
                nanos: ttl.subsec_nanos() as i32,
            }),
        })
        .await
        .map(|r| r.into_inner().reservation.unwrap())
}

#[allow(unused_imports)] // not every test file asks for it
pub use shopmesh_testkit::error_reason as reason;

#[allow(unused_imports)] // not every test file asks for it
pub use shopmesh_platform::errors::violated_fields;

/// `(on_hand, reserved)` of a SKU straight from the table.
pub async fn levels(db: &PgPool, sku: &str) -> (i64, i64) {
    sqlx::query_as("SELECT on_hand, reserved FROM stock WHERE sku = $1")
        .bind(sku)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Per SKU, the units the live reservations' lines hold.
pub async fn held_by_live_reservations(db: &PgPool, sku: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(l.quantity), 0)::int8 FROM reservation_lines l \
         JOIN reservations r USING (order_id) WHERE r.status = 'reserved' AND l.sku = $1",
    )
    .bind(sku)
    .fetch_one(db)
    .await
    .unwrap()
}

/// A small deterministic PRNG (xorshift), so a failing mix can be replayed.
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
