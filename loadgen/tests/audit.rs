//! `loadgen audit` (the real binary) against real databases: the eight
//! service databases created on the test server (`TEST_DATABASE_URL`) under a
//! fresh suffix, migrated with the services' own migrations and, for the
//! services that publish or consume events, the outbox/inbox, and filled with a small world that balances
//! (two confirmed orders, one failed). Each other test breaks one thing and
//! expects exactly its invariant to report. Nothing here depends on timing:
//! the one test that lets the audit settle waits for its first failed check
//! before repairing the world.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;

use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use uuid::Uuid;

/// The services with a database, each with its migrations folder.
const SERVICES: [&str; 8] = [
    "order",
    "payment",
    "inventory",
    "notification",
    "recommendation",
    "product",
    "auth",
    "user",
];

/// The services with the events extension (outbox and inbox tables), as
/// their `ServiceSpec::extensions` say.
const WITH_EVENTS: [&str; 5] = ["order", "payment", "notification", "recommendation", "auth"];

/// Where the events migrations are recorded (events/src/schema.rs).
const EVENTS_MIGRATIONS_TABLE: &str = "_shopmesh_events_migrations";

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The one thing a world gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Break {
    Nothing,
    /// Order A is confirmed but its saga is still at capture_payment.
    PendingSaga,
    /// Failed order C's payment was captured (and the ledger heard of it).
    CapturedFailedOrder,
    /// svc-order's ledger never got A's PaymentCaptured.
    LostLedgerEvent,
    /// Failed order C's reservation was never released (levels agree).
    LeftoverReservation,
    /// svc-payment's outbox has a row the relay has not published.
    UnpublishedOutbox,
    /// B's purchase was recorded twice over (quantity doubled).
    DoubledPurchase,
    /// A's SMS notification is missing.
    LostNotification,
    /// svc-product's copy of AUD-2's level is stale.
    StaleProductStock,
}

struct Product {
    id: Uuid,
    sku: &'static str,
    price: i64,
}

struct Order {
    id: Uuid,
    user: Uuid,
    status: &'static str,
    /// (index into the products, quantity)
    lines: Vec<(usize, i64)>,
    payment: Uuid,
    /// The event that made it terminal (OrderConfirmed or OrderFailed).
    status_event: Uuid,
}

impl Order {
    fn total(&self, products: &[Product]) -> i64 {
        self.lines.iter().map(|&(p, n)| products[p].price * n).sum()
    }

    fn confirmed(&self) -> bool {
        self.status == "confirmed"
    }
}

/// One `stock_changes` row.
struct StockChange {
    sku: &'static str,
    kind: &'static str,
    on_hand: i64,
    reserved: i64,
    on_hand_after: i64,
    reserved_after: i64,
    order: Option<Uuid>,
}

/// Stock levels and the change log as svc-inventory writes them.
#[derive(Default)]
struct StockLedger {
    levels: BTreeMap<&'static str, (i64, i64)>,
    changes: Vec<StockChange>,
}

impl StockLedger {
    fn change(
        &mut self,
        sku: &'static str,
        kind: &'static str,
        on_hand: i64,
        reserved: i64,
        order: Option<Uuid>,
    ) {
        let level = self.levels.entry(sku).or_default();
        level.0 += on_hand;
        level.1 += reserved;
        self.changes.push(StockChange {
            sku,
            kind,
            on_hand,
            reserved,
            on_hand_after: level.0,
            reserved_after: level.1,
            order,
        });
    }
}

/// Eight service databases under one suffix, dropped with the value.
struct World {
    server: String,
    suffix: String,
    pools: BTreeMap<&'static str, PgPool>,
    orders: Vec<Order>,
}

impl World {
    async fn build(broken: Break) -> Self {
        let suffix = format!("_audit_test_{}", &Uuid::new_v4().simple().to_string()[..16]);
        let server = server_url();
        let options = PgConnectOptions::from_str(&server).unwrap();
        let mut admin = options.connect().await.unwrap();
        let mut world = World {
            server,
            suffix,
            pools: BTreeMap::new(),
            orders: Vec::new(),
        };
        for service in SERVICES {
            let name = format!("shop_{service}{}", world.suffix);
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .await
                .unwrap();
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .connect_with(options.clone().database(&name))
                .await
                .unwrap();
            let own = workspace().join(format!("svc-{service}/migrations"));
            Migrator::new(own).await.unwrap().run(&pool).await.unwrap();
            if WITH_EVENTS.contains(&service) {
                let mut events = Migrator::new(workspace().join("events/migrations/events"))
                    .await
                    .unwrap();
                events.dangerous_set_table_name(EVENTS_MIGRATIONS_TABLE);
                events.run(&pool).await.unwrap();
            }
            world.pools.insert(service, pool);
        }
        world.fill(broken).await;
        // No connection of ours left open: DROP DATABASE … WITH (FORCE)
        // would wait for each to go.
        for pool in world.pools.values() {
            pool.close().await;
        }
        world
    }

    /// A service database's pool while the world is being filled.
    fn db(&self, service: &str) -> &PgPool {
        &self.pools[service]
    }

    /// Runs one statement in a service's database, on a connection of its own.
    async fn execute(&self, service: &str, sql: &'static str) {
        let name = format!("shop_{service}{}", self.suffix);
        let mut db = PgConnectOptions::from_str(&self.server)
            .unwrap()
            .database(&name)
            .connect()
            .await
            .unwrap();
        sqlx::query(sql).execute(&mut db).await.unwrap();
        db.close().await.unwrap();
    }

    async fn fill(&mut self, broken: Break) {
        let products = [
            Product {
                id: Uuid::now_v7(),
                sku: "AUD-1",
                price: 1500,
            },
            Product {
                id: Uuid::now_v7(),
                sku: "AUD-2",
                price: 2500,
            },
            Product {
                id: Uuid::now_v7(),
                sku: "AUD-3",
                price: 999,
            },
        ];
        let (u1, u2) = (Uuid::now_v7(), Uuid::now_v7());
        let order = |user, status, lines| Order {
            id: Uuid::now_v7(),
            user,
            status,
            lines,
            payment: Uuid::now_v7(),
            status_event: Uuid::now_v7(),
        };
        self.orders = vec![
            order(u1, "confirmed", vec![(0, 2), (1, 1)]),
            order(u2, "confirmed", vec![(2, 3)]),
            order(u1, "failed", vec![(0, 1), (2, 1)]),
        ];
        self.fill_orders(&products, broken).await;
        self.fill_payments(&products, broken).await;
        let levels = self.fill_inventory(&products, broken).await;
        self.fill_product(&products, &levels, broken).await;
        self.fill_recommendation(&products, broken).await;
        self.fill_notifications(broken).await;
    }

    async fn fill_orders(&self, products: &[Product], broken: Break) {
        let db = self.db("order");
        for (n, order) in self.orders.iter().enumerate() {
            let total = order.total(products);
            sqlx::query(
                "INSERT INTO orders (id, user_id, idempotency_key, request_fingerprint, status, \
                     currency_code, subtotal_minor, total_minor, shipping_address, card_token, \
                     card_brand, card_last4, payment_id) \
                 VALUES ($1, $2, $3, 'fp', $4, 'EUR', $5, $5, '{}', 'tok', 'visa', '4242', $6)",
            )
            .bind(order.id)
            .bind(order.user)
            .bind(format!("key-{n}"))
            .bind(order.status)
            .bind(total)
            .bind(order.payment)
            .execute(db)
            .await
            .unwrap();
            for (position, &(p, quantity)) in order.lines.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO order_lines (order_id, position, product_id, sku, name, \
                         quantity, unit_price_minor) \
                     VALUES ($1, $2, $3, $4, $4, $5, $6)",
                )
                .bind(order.id)
                .bind(position as i32)
                .bind(products[p].id)
                .bind(products[p].sku)
                .bind(quantity as i32)
                .bind(products[p].price)
                .execute(db)
                .await
                .unwrap();
            }
            let (phase, step) = if broken == Break::PendingSaga && n == 0 {
                ("forward", "capture_payment")
            } else {
                ("done", "finish")
            };
            sqlx::query(
                "INSERT INTO order_sagas (order_id, phase, step, outcome, authorize_started, \
                     stock_committed, deadline) \
                 VALUES ($1, $2, $3, $4, true, $5, now())",
            )
            .bind(order.id)
            .bind(phase)
            .bind(step)
            .bind((!order.confirmed()).then_some("failed"))
            .bind(order.confirmed())
            .execute(db)
            .await
            .unwrap();
            // OrderCreated, and the status event (B's was pruned from the
            // outbox already: its notifications are found by their email).
            let mut events = vec![Uuid::now_v7()];
            if n != 1 {
                events.push(order.status_event);
            }
            for event in events {
                publish(
                    db,
                    event,
                    shopmesh_proto::topics::ORDER_EVENTS,
                    order.id,
                    true,
                )
                .await;
            }
            // What the payment events told svc-order.
            let (authorized, captured, failed) = match (order.confirmed(), broken) {
                (true, Break::LostLedgerEvent) if n == 0 => (total, 0, false),
                (true, _) => (total, total, false),
                (false, Break::CapturedFailedOrder) => (total, total, false),
                (false, _) => (0, 0, true),
            };
            sqlx::query(
                "INSERT INTO order_payment_ledger (payment_id, order_id, currency_code, \
                     authorized_minor, captured_minor, failed) \
                 VALUES ($1, $2, 'EUR', $3, $4, $5)",
            )
            .bind(order.payment)
            .bind(order.id)
            .bind(authorized)
            .bind(captured)
            .bind(failed)
            .execute(db)
            .await
            .unwrap();
        }
    }

    async fn fill_payments(&self, products: &[Product], broken: Break) {
        let db = self.db("payment");
        for order in &self.orders {
            let total = order.total(products);
            let (status, captured) = if order.confirmed() || broken == Break::CapturedFailedOrder {
                ("captured", total)
            } else {
                ("failed", 0)
            };
            sqlx::query(
                "INSERT INTO payments (id, idempotency_key, order_id, user_id, status, \
                     currency_code, amount_minor, captured_minor, provider, card_token, \
                     card_brand, card_last4, method_kind) \
                 VALUES ($1, $2, $3, $4, $5, 'EUR', $6, $7, 'simulated', 'tok', 'visa', \
                     '4242', 'token')",
            )
            .bind(order.payment)
            .bind(format!("order-{}", order.id))
            .bind(order.id)
            .bind(order.user)
            .bind(status)
            .bind(total)
            .bind(captured)
            .execute(db)
            .await
            .unwrap();
            publish(
                db,
                Uuid::now_v7(),
                shopmesh_proto::topics::PAYMENT_EVENTS,
                order.payment,
                true,
            )
            .await;
        }
        if broken == Break::UnpublishedOutbox {
            let payment = self.orders[0].payment;
            publish(
                db,
                Uuid::now_v7(),
                shopmesh_proto::topics::PAYMENT_EVENTS,
                payment,
                false,
            )
            .await;
        }
    }

    /// Returns the final levels (on hand, reserved) per SKU.
    async fn fill_inventory(
        &self,
        products: &[Product],
        broken: Break,
    ) -> BTreeMap<&'static str, (i64, i64)> {
        let db = self.db("inventory");
        let mut ledger = StockLedger::default();
        for product in products {
            ledger.change(product.sku, "set", 10, 0, None);
        }
        for order in &self.orders {
            for &(p, n) in &order.lines {
                ledger.change(products[p].sku, "reserve", 0, n, Some(order.id));
            }
            let status = if order.confirmed() {
                for &(p, n) in &order.lines {
                    ledger.change(products[p].sku, "commit", -n, -n, Some(order.id));
                }
                "committed"
            } else if broken == Break::LeftoverReservation {
                "reserved"
            } else {
                for &(p, n) in &order.lines {
                    ledger.change(products[p].sku, "release", 0, -n, Some(order.id));
                }
                "released"
            };
            sqlx::query(
                "INSERT INTO reservations (order_id, status, expires_at, actor) \
                 VALUES ($1, $2, now() + interval '1 hour', 'svc-order')",
            )
            .bind(order.id)
            .bind(status)
            .execute(db)
            .await
            .unwrap();
        }
        for (sku, (on_hand, reserved)) in &ledger.levels {
            sqlx::query("INSERT INTO stock (sku, on_hand, reserved) VALUES ($1, $2, $3)")
                .bind(sku)
                .bind(on_hand)
                .bind(reserved)
                .execute(db)
                .await
                .unwrap();
        }
        for order in &self.orders {
            for (position, &(p, n)) in order.lines.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO reservation_lines (order_id, sku, quantity, position) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(order.id)
                .bind(products[p].sku)
                .bind(n as i32)
                .bind(position as i16)
                .execute(db)
                .await
                .unwrap();
            }
        }
        for change in &ledger.changes {
            sqlx::query(
                "INSERT INTO stock_changes (id, sku, kind, on_hand_delta, reserved_delta, \
                     on_hand_after, reserved_after, reason, actor, order_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'test', 'test', $8)",
            )
            .bind(Uuid::now_v7())
            .bind(change.sku)
            .bind(change.kind)
            .bind(change.on_hand)
            .bind(change.reserved)
            .bind(change.on_hand_after)
            .bind(change.reserved_after)
            .bind(change.order)
            .execute(db)
            .await
            .unwrap();
        }
        ledger.levels
    }

    async fn fill_product(
        &self,
        products: &[Product],
        levels: &BTreeMap<&'static str, (i64, i64)>,
        broken: Break,
    ) {
        let db = self.db("product");
        let category = Uuid::now_v7();
        sqlx::query("INSERT INTO categories (id, slug, name) VALUES ($1, 'audit', 'Audit')")
            .bind(category)
            .execute(db)
            .await
            .unwrap();
        for product in products {
            sqlx::query(
                "INSERT INTO products (id, sku, name, category_id, price_minor, currency_code) \
                 VALUES ($1, $2, $2, $3, $4, 'EUR')",
            )
            .bind(product.id)
            .bind(product.sku)
            .bind(category)
            .bind(product.price)
            .execute(db)
            .await
            .unwrap();
            let (on_hand, reserved) = levels[product.sku];
            let stale = i64::from(broken == Break::StaleProductStock && product.sku == "AUD-2");
            sqlx::query(
                "INSERT INTO stock_levels (sku, available, updated_at) VALUES ($1, $2, now())",
            )
            .bind(product.sku)
            .bind(on_hand - reserved + stale)
            .execute(db)
            .await
            .unwrap();
        }
    }

    async fn fill_recommendation(&self, products: &[Product], broken: Break) {
        let db = self.db("recommendation");
        let insert = |order: Uuid, product: Uuid, user: Uuid, quantity: i64| {
            sqlx::query(
                "INSERT INTO purchases (order_id, product_id, user_id, quantity, purchased_at) \
                 VALUES ($1, $2, $3, $4, now())",
            )
            .bind(order)
            .bind(product)
            .bind(user)
            .bind(quantity as i32)
            .execute(db)
        };
        for (n, order) in self.orders.iter().enumerate() {
            if !order.confirmed() {
                continue;
            }
            for &(p, quantity) in &order.lines {
                let doubled = if broken == Break::DoubledPurchase && n == 1 {
                    2
                } else {
                    1
                };
                insert(order.id, products[p].id, order.user, quantity * doubled)
                    .await
                    .unwrap();
            }
        }
        // The demo history svc-recommendation seeds itself: not svc-order's.
        let demo = &shopmesh_demo::demo_orders()[0];
        for line in &demo.lines {
            insert(
                demo.id,
                line.product_id,
                demo.user_id,
                i64::from(line.quantity),
            )
            .await
            .unwrap();
        }
    }

    async fn fill_notifications(&self, broken: Break) {
        let db = self.db("notification");
        let insert = |user: Uuid,
                      channel: &'static str,
                      event_type: &'static str,
                      source: Uuid,
                      body: String| {
            sqlx::query(
                "INSERT INTO notifications (id, user_id, channel, event_type, source_event_id, \
                     subject, body, status) \
                 VALUES ($1, $2, $3, $4, $5, '', $6, $7)",
            )
            .bind(Uuid::now_v7())
            .bind(user)
            .bind(channel)
            .bind(event_type)
            .bind(source)
            .bind(body)
            .bind(if channel == "email" {
                "sent"
            } else {
                "skipped"
            })
            .execute(db)
        };
        for (n, order) in self.orders.iter().enumerate() {
            let short = &order.id.to_string()[..8];
            let (event_type, email, sms) = if order.confirmed() {
                (
                    "order_confirmed",
                    format!("Thank you for your order!\n\nOrder: {}\n", order.id),
                    format!("shopmesh: order {short} confirmed, EUR 55.00 charged."),
                )
            } else {
                (
                    "order_failed",
                    format!("We could not complete your order {}: declined.\n", order.id),
                    format!("shopmesh: order {short} could not be completed: declined."),
                )
            };
            insert(order.user, "email", event_type, order.status_event, email)
                .await
                .unwrap();
            if !(broken == Break::LostNotification && n == 0) {
                insert(order.user, "sms", event_type, order.status_event, sms)
                    .await
                    .unwrap();
            }
        }
        // Not about an order: left alone.
        let welcome = Uuid::now_v7();
        insert(
            self.orders[0].user,
            "email",
            "welcome",
            welcome,
            "Hi there".to_owned(),
        )
        .await
        .unwrap();
    }

    fn command(&self, settle: &str, json: &Path) -> tokio::process::Command {
        audit_command(&self.server, &self.suffix, settle, json)
    }

    async fn audit(&self, settle: &str) -> Audit {
        let json = scratch(&self.suffix);
        let output = self.command(settle, &json).output().await.unwrap();
        Audit::read(output, &json)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let server = self.server.clone();
        let names: Vec<String> = SERVICES
            .iter()
            .map(|service| format!("shop_{service}{}", self.suffix))
            .collect();
        // Drop runs on the test's runtime: the databases go on a thread of
        // their own (and go even when the test failed).
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // PostgreSQL 15 checkpoints for every DROP DATABASE (about a
            // second here): all eight at once share the wait.
            runtime.block_on(futures::future::join_all(names.into_iter().map(|name| {
                let server = server.clone();
                async move {
                    let mut admin = PgConnectOptions::from_str(&server)
                        .unwrap()
                        .connect()
                        .await
                        .unwrap();
                    admin
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .await
                        .unwrap();
                }
            })));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("could not drop the test databases");
        }
    }
}

/// Writes one outbox row, published or not.
async fn publish(db: &PgPool, event: Uuid, topic: &str, key: Uuid, published: bool) {
    sqlx::query(
        "INSERT INTO outbox (event_id, topic, key, envelope, published_at) \
         VALUES ($1, $2, $3, '\\x00', CASE WHEN $4 THEN now() END)",
    )
    .bind(event)
    .bind(topic)
    .bind(key.to_string())
    .bind(published)
    .execute(db)
    .await
    .unwrap();
}

fn scratch(suffix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("loadgen-audit{suffix}.json"))
}

fn audit_command(server: &str, suffix: &str, settle: &str, json: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command
        .args(["audit", "--database-url", server, "--db-suffix", suffix])
        .args(["--settle", settle, "--json"])
        .arg(json);
    command
}

/// What one audit run said.
struct Audit {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    json: Value,
}

impl Audit {
    fn read(output: std::process::Output, json: &Path) -> Self {
        let report = std::fs::read(json).ok();
        let _ = std::fs::remove_file(json);
        Self {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
            json: report.map_or(Value::Null, |bytes| serde_json::from_slice(&bytes).unwrap()),
        }
    }

    /// The invariants that did not hold.
    fn failing(&self) -> Vec<&str> {
        self.json["invariants"]
            .as_array()
            .unwrap_or_else(|| panic!("no report: {}\n{}", self.stdout, self.stderr))
            .iter()
            .filter(|i| i["holds"] == false)
            .map(|i| i["name"].as_str().unwrap())
            .collect()
    }

    /// The findings' subjects of one invariant.
    fn subjects(&self, invariant: &str) -> Vec<&str> {
        let invariants = self.json["invariants"].as_array().unwrap();
        let report = invariants.iter().find(|i| i["name"] == invariant).unwrap();
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["subject"].as_str().unwrap())
            .collect()
    }
}

/// Builds a world with `broken`, audits it once, and expects exactly
/// `invariant` to fail (exit 1, findings printed).
async fn only(broken: Break, invariant: &str) -> (World, Audit) {
    let world = World::build(broken).await;
    let audit = world.audit("0s").await;
    assert_eq!(
        audit.failing(),
        [invariant],
        "{broken:?}\n{}\n{}",
        audit.stdout,
        audit.stderr
    );
    assert_eq!(audit.code, Some(1), "{}", audit.stderr);
    assert!(
        audit.stdout.contains(&format!("FAIL {invariant}: ")),
        "{}",
        audit.stdout
    );
    assert!(audit.stderr.contains("audit failed"), "{}", audit.stderr);
    (world, audit)
}

#[tokio::test]
async fn a_world_that_balances_passes_with_a_summary() {
    let world = World::build(Break::Nothing).await;
    let audit = world.audit("10s").await;
    assert_eq!(audit.code, Some(0), "{}\n{}", audit.stdout, audit.stderr);
    assert_eq!(audit.failing(), Vec::<&str>::new());
    assert_eq!(audit.json["passed"], true);
    assert!(
        audit.stdout.contains("all 11 invariants hold"),
        "{}",
        audit.stdout
    );
    let summary = &audit.json["summary"];
    assert_eq!(summary["orders_by_status"]["confirmed"], 2);
    assert_eq!(summary["orders_by_status"]["failed"], 1);
    // A: 2 × 1500 + 2500; B: 3 × 999.
    assert_eq!(summary["confirmed_total_minor"]["EUR"], 8497);
    assert_eq!(summary["net_captured_minor"]["EUR"], 8497);
    assert_eq!(summary["skus"], 3);
    assert_eq!(summary["units_sold"], 6);
    assert_eq!(summary["purchases"], 3);
    let demo_lines = shopmesh_demo::demo_orders()[0].lines.len();
    assert_eq!(summary["demo_purchases"], demo_lines);
    assert_eq!(
        summary["outbox_rows"]["shop_order".to_owned() + &world.suffix],
        5
    );
}

#[tokio::test]
async fn a_saga_left_running_fails_orders_terminal() {
    let (world, audit) = only(Break::PendingSaga, "orders-terminal").await;
    assert_eq!(
        audit.subjects("orders-terminal"),
        [format!("order {}", world.orders[0].id)]
    );
    assert!(
        audit.stdout.contains("saga forward at capture_payment"),
        "{}",
        audit.stdout
    );
}

#[tokio::test]
async fn money_kept_for_a_failed_order_fails_money() {
    let (world, audit) = only(Break::CapturedFailedOrder, "money").await;
    assert_eq!(
        audit.subjects("money"),
        [format!("order {} (failed)", world.orders[2].id)]
    );
    assert!(
        audit
            .stdout
            .contains("expected net captured EUR 0, found EUR 2499"),
        "{}",
        audit.stdout
    );
}

#[tokio::test]
async fn a_lost_payment_event_fails_the_ledger() {
    only(Break::LostLedgerEvent, "payment-ledger").await;
}

#[tokio::test]
async fn stock_still_held_for_a_failed_order_fails_reservations() {
    let (world, audit) = only(Break::LeftoverReservation, "reservations").await;
    assert_eq!(
        audit.subjects("reservations"),
        [format!("order {} (failed)", world.orders[2].id)]
    );
}

#[tokio::test]
async fn an_unpublished_event_fails_outboxes() {
    let (world, audit) = only(Break::UnpublishedOutbox, "outboxes").await;
    assert_eq!(
        audit.subjects("outboxes"),
        [format!("shop_payment{}.outbox", world.suffix)]
    );
}

#[tokio::test]
async fn a_purchase_counted_twice_fails_purchases() {
    only(Break::DoubledPurchase, "purchases").await;
}

#[tokio::test]
async fn a_lost_notification_fails_notifications() {
    let (world, audit) = only(Break::LostNotification, "notifications").await;
    assert_eq!(
        audit.subjects("notifications"),
        [format!(
            "order {} (confirmed), order_confirmed by sms",
            world.orders[0].id
        )]
    );
}

#[tokio::test]
async fn a_stale_copy_of_stock_fails_product_stock() {
    let (_world, audit) = only(Break::StaleProductStock, "product-stock").await;
    assert_eq!(audit.subjects("product-stock"), ["sku AUD-2"]);
}

/// The audit keeps checking while things settle: it reports its first failed
/// check on stderr, the outbox is drained after that, and it then passes.
#[tokio::test]
async fn the_audit_waits_for_a_late_relay() {
    let world = World::build(Break::UnpublishedOutbox).await;
    let json = scratch(&world.suffix);
    let mut child = world
        .command("300s", &json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = loop {
        let line = stderr
            .next_line()
            .await
            .unwrap()
            .expect("the audit ended before its first recheck");
        if line.contains("rechecking") {
            break line;
        }
    };
    assert!(first.contains("outboxes"), "{first}");
    // Keep reading, so the audit never writes into a closed pipe.
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        while let Some(line) = stderr.next_line().await.unwrap() {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    world
        .execute(
            "payment",
            "UPDATE outbox SET published_at = now() WHERE published_at IS NULL",
        )
        .await;
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    let status = child.wait().await.unwrap();
    let rest = rest.await.unwrap();
    assert!(status.success(), "{stdout}\n{rest}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(report["passed"], true);
    assert!(report["checks"].as_u64().unwrap() >= 2, "{report}");
}

#[tokio::test]
async fn a_database_that_does_not_exist_is_named() {
    let suffix = format!("_audit_test_{}", &Uuid::new_v4().simple().to_string()[..16]);
    let json = scratch(&suffix);
    let output = audit_command(&server_url(), &suffix, "0s", &json)
        .output()
        .await
        .unwrap();
    let audit = Audit::read(output, &json);
    assert_eq!(audit.code, Some(1), "{}", audit.stderr);
    assert!(
        audit
            .stderr
            .contains(&format!("database shop_order{suffix} does not exist")),
        "{}",
        audit.stderr
    );
}

#[tokio::test]
async fn bad_arguments_exit_2() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["audit", "--settle", "5s"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--database-url"));
}
