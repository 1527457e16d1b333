//! `shopper`: the checkout journey, the one scenario whose arrival is several
//! requests. A shopper from the pool (registered and logged in at setup) puts
//! one to three products in the cart, looks at it, checks out with a test
//! card (mostly approving ones, a few declines, as docs/payments.md lists
//! them) and polls the order until it is terminal. Each request is recorded
//! under its own kind, timed from when the previous one finished (a journey's
//! steps depend on each other, so they are closed-loop inside the journey);
//! the journey itself is recorded as `checkout_journey`, from its intended
//! start to the terminal status, and succeeds when the order ended as its
//! card says it should.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Uri};
use serde_json::{Value, json};

use crate::catalog::Catalog;
use crate::engine::{ArrivalFuture, Choice, Workload};
use crate::rest::{RestClient, path_uri};
use crate::rng::{Rng, Weighted};
use crate::shoppers::{Lent, Shoppers};
use crate::stats::{Done, Failure, Kind, KindId, Sample};

/// The simulated network's test cards: (number, weight, approves).
const CARDS: [(&str, u32, bool); 4] = [
    ("4242424242424242", 85, true),
    ("5555555555554444", 8, true),
    ("4000000000000002", 5, false), // declined: card_declined
    ("4000000000009995", 2, false), // declined: insufficient_funds
];

const JOURNEY: KindId = 0;
const CART_ADD: KindId = 1;
const CART_VIEW: KindId = 2;
const CHECKOUT: KindId = 3;
const ORDER_POLL: KindId = 4;
const CART_CLEAR: KindId = 5;

/// How often a shopper's page asks for the order's status.
const POLL_EVERY: Duration = Duration::from_millis(250);

pub struct CheckoutJourney {
    inner: Arc<Inner>,
    cards: Weighted,
}

struct Inner {
    rest: Arc<RestClient>,
    shoppers: Arc<Shoppers>,
    /// Bodies adding one unit of a stocked product.
    add_bodies: Vec<Bytes>,
    items_uri: Uri,
    cart_uri: Uri,
    checkout_uri: Uri,
    clear_uri: Uri,
    /// A terminal status not seen within this is `order_timeout`.
    order_deadline: Duration,
    /// Makes idempotency keys unique across runs.
    run_tag: String,
    journeys: AtomicU64,
}

impl CheckoutJourney {
    pub fn new(
        rest: Arc<RestClient>,
        catalog: &Catalog,
        shoppers: Arc<Shoppers>,
        order_deadline: Duration,
        run_tag: String,
    ) -> anyhow::Result<Self> {
        let add_bodies: Vec<Bytes> = catalog
            .stocked(10)
            .iter()
            .map(|p| Bytes::from(json!({"productId": p.id, "quantity": 1}).to_string()))
            .collect();
        anyhow::ensure!(!add_bodies.is_empty(), "no product with stock to buy");
        let weights: Vec<u32> = CARDS.iter().map(|c| c.1).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                rest,
                shoppers,
                add_bodies,
                items_uri: path_uri("/v1/carts/mine/items")?,
                cart_uri: path_uri("/v1/carts/mine")?,
                checkout_uri: path_uri("/v1/carts/mine:checkout")?,
                clear_uri: path_uri("/v1/carts/mine:clear")?,
                order_deadline,
                run_tag,
                journeys: AtomicU64::new(0),
            }),
            cards: Weighted::new(&weights)
                .ok_or_else(|| anyhow::anyhow!("no test card has a weight"))?,
        })
    }
}

impl Workload for CheckoutJourney {
    fn kinds(&self) -> Vec<Kind> {
        vec![
            Kind::journey("checkout_journey"),
            Kind::request("cart_add"),
            Kind::request("cart_view"),
            Kind::request("checkout"),
            Kind::request("order_poll"),
            Kind::request("cart_clear"),
        ]
    }

    fn choose(&self, rng: &mut Rng) -> Choice {
        Choice {
            kind: JOURNEY,
            action: self.cards.draw(rng) as u32,
        }
    }

    fn start(
        &self,
        choice: Choice,
        rng: &mut Rng,
        intended: Instant,
        base: KindId,
    ) -> ArrivalFuture {
        let inner = Arc::clone(&self.inner);
        let items: Vec<usize> = (0..1 + rng.below(3))
            .map(|_| rng.below(inner.add_bodies.len()))
            .collect();
        let (card, _, approves) = CARDS[choice.action as usize % CARDS.len()];
        Box::pin(async move {
            let Some(shopper) = inner.shoppers.lend() else {
                return Done::One(Sample {
                    kind: base + JOURNEY,
                    intended,
                    finished: Instant::now(),
                    outcome: Err(Failure::NoFreeShopper),
                });
            };
            let mut journey = Journey {
                inner: &inner,
                auth: shopper.auth(),
                base,
                at: intended,
                samples: Vec::with_capacity(10),
            };
            let outcome = journey.run(&shopper, &items, card, approves).await;
            if outcome.is_err() {
                shopper.mark_dirty();
            }
            let mut samples = journey.samples;
            samples.push(Sample {
                kind: base + JOURNEY,
                intended,
                finished: Instant::now(),
                outcome,
            });
            Done::Many(samples)
        })
    }
}

struct Journey<'a> {
    inner: &'a Inner,
    auth: HeaderValue,
    base: KindId,
    /// When the next request is meant to start: the previous one's end.
    at: Instant,
    samples: Vec<Sample>,
}

impl Journey<'_> {
    async fn run(
        &mut self,
        shopper: &Lent,
        items: &[usize],
        card: &str,
        approves: bool,
    ) -> Result<(), Failure> {
        let inner = self.inner;
        if shopper.take_dirty() {
            self.step(
                CART_CLEAR,
                Method::POST,
                inner.clear_uri.clone(),
                Some(Bytes::from_static(b"{}")),
            )
            .await?;
        }
        for item in items {
            let body = inner.add_bodies.get(*item).cloned();
            self.step(CART_ADD, Method::POST, inner.items_uri.clone(), body)
                .await?;
        }
        self.step(CART_VIEW, Method::GET, inner.cart_uri.clone(), None)
            .await?;
        let n = inner.journeys.fetch_add(1, Ordering::Relaxed);
        let body = json!({
            "idempotencyKey": format!("loadgen-{}-{n}", inner.run_tag),
            "shippingAddressId": shopper.address_id,
            "paymentMethod": {"testCardNumber": card},
        });
        let order = self
            .step(
                CHECKOUT,
                Method::POST,
                inner.checkout_uri.clone(),
                Some(Bytes::from(body.to_string())),
            )
            .await?;
        let id = order["id"].as_str().ok_or(Failure::BadResponse)?.to_owned();
        let order_uri = path_uri(&format!("/v1/orders/{id}")).map_err(|_| Failure::BadResponse)?;
        let mut status = order["status"].as_str().unwrap_or_default().to_owned();
        let deadline = Instant::now() + inner.order_deadline;
        while !terminal(&status) {
            if Instant::now() >= deadline {
                return Err(Failure::Order("order_timeout"));
            }
            tokio::time::sleep(POLL_EVERY).await;
            self.at = Instant::now();
            let order = self
                .step(ORDER_POLL, Method::GET, order_uri.clone(), None)
                .await?;
            status = order["status"].as_str().unwrap_or_default().to_owned();
        }
        if status != "ORDER_STATUS_CONFIRMED" {
            // A failed order leaves the cart as it was: empty it for the next journey.
            self.step(
                CART_CLEAR,
                Method::POST,
                inner.clear_uri.clone(),
                Some(Bytes::from_static(b"{}")),
            )
            .await?;
        }
        match (status.as_str(), approves) {
            ("ORDER_STATUS_CONFIRMED", true) | ("ORDER_STATUS_FAILED", false) => Ok(()),
            ("ORDER_STATUS_CONFIRMED", false) => Err(Failure::Order("order_not_declined")),
            ("ORDER_STATUS_FAILED", true) => Err(Failure::Order("order_failed")),
            _ => Err(Failure::Order("order_cancelled")),
        }
    }

    /// One request of the journey, recorded; its JSON body when it succeeded.
    async fn step(
        &mut self,
        kind: KindId,
        method: Method,
        uri: Uri,
        body: Option<Bytes>,
    ) -> Result<Value, Failure> {
        let keep = kind == CHECKOUT || kind == ORDER_POLL;
        let result = self
            .inner
            .rest
            .call(method, uri, Some(self.auth.clone()), body, keep)
            .await;
        let finished = Instant::now();
        self.samples.push(Sample {
            kind: self.base + kind,
            intended: self.at,
            finished,
            outcome: result.as_ref().map(drop).map_err(|f| *f),
        });
        self.at = finished;
        let reply = result?;
        if !keep {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&reply.body).map_err(|_| Failure::BadResponse)
    }
}

fn terminal(status: &str) -> bool {
    matches!(
        status,
        "ORDER_STATUS_CONFIRMED"
            | "ORDER_STATUS_FAILED"
            | "ORDER_STATUS_CANCELLED"
            | "ORDER_STATUS_REFUNDED"
    )
}
