//! Carts in Redis: one hash per cart, changed only by Lua scripts ([`scripts`]).
//!
//! Keys:
//! - `cart:<cart id>`: an anonymous cart; its TTL is the idle lifetime
//!   (`CART_IDLE_TTL_SECONDS`), set again by every change, so Redis itself
//!   forgets a cart nobody touched for 7 days.
//! - `cart:user:<user id>`: a signed-in user's cart, created by the first call
//!   that names "mine"; no TTL. Its `id` is reachable only as "mine", never as
//!   `cart:<id>`, so nobody else can use it by id.
//!
//! Fields of a cart hash:
//! - `id` (cart UUIDv7), `user` (owner, empty for anonymous), `created` and
//!   `updated` (ms since the epoch), `seq` (the last line number handed out);
//! - per line, keyed by SKU: `q:<sku>` the quantity (an integer, so scripts
//!   add to it), `o:<sku>` the line's number (lines show in the order they were
//!   first added), `l:<sku>` a JSON [`AddedLine`]: product id, and the name,
//!   image and price seen when the line was added. The price is kept only to
//!   tell the shopper it changed (PRICE_CHANGED); every read shows current
//!   prices and stock from svc-product and svc-inventory.
//!
//! - `checkouts:user:<user id>`: the user's recent checkout attempts (see
//!   [`CheckoutAttempt`]), so a repeated Checkout replays the same order:
//!   field `<idempotency key>` holds the attempt as JSON; field
//!   `checked_out:<order id>` marks an order whose lines were taken out of the
//!   cart. Kept apart from the cart hash, whose every change answers with all
//!   its fields. It expires [`CHECKOUT_MEMORY`] after the last checkout.
//!
//! Atomicity: every change is one Lua script (EVAL), which Redis runs alone, so
//! the read-check-write of a change (does the line exist, does it fit 1..99,
//! does the cart have room for line 101) can never interleave with another
//! request's, whichever replica sent it. Two concurrent adds of one SKU both
//! count; a merge (one script over both carts) cannot lose a line added at the
//! same time. Each script answers with the cart as it left it, read in the same
//! atomic step. Merge touches two keys in one script: fine on a standalone or
//! Sentinel Redis; a Redis Cluster would need both keys in one hash slot.
//!
//! Every call is bounded by a timeout and refused at once while Redis is
//! disconnected (UNAVAILABLE to the client). A call cut off by the timeout may
//! still run: the shopper sees an error for a change that did happen, as with
//! any timed-out write, and sees the truth on the next read.

mod scripts;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fred::prelude::{Client, HashesInterface, LuaInterface, Value};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use shopmesh_platform::redis::bounded;
use shopmesh_proto::shop::order::v1::{CreateOrderLine, CreateOrderRequest};
use uuid::Uuid;

use crate::cart::{AddedLine, CartRecord, CartRef, LineRecord, MAX_LINES, MAX_QUANTITY, now_ms};
use crate::checkout::CheckoutAttempt;
use crate::error::CartError;
use scripts::{ADD, CHECKED_OUT, CLEAR, CREATE, MERGE, READ, RECORD_CHECKOUT, REMOVE, UPDATE};

/// How long one Redis call may take before the client is told UNAVAILABLE.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a user's checkout attempts are remembered after their last
/// checkout: the window in which a repeated Checkout replays its order.
pub const CHECKOUT_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// How an attempt is stored: JSON around the protobuf of the request.
#[derive(Serialize, Deserialize)]
struct StoredAttempt {
    shipping_address_id: String,
    /// Base64 of the `CreateOrderRequest` protobuf.
    create_order: String,
}

impl CheckoutAttempt {
    fn to_json(&self) -> String {
        let mut order = self.order.clone();
        order.payment_method = None;
        let stored = StoredAttempt {
            shipping_address_id: self.shipping_address_id.clone(),
            create_order: BASE64.encode(order.encode_to_vec()),
        };
        // Two strings: serializing cannot fail.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    fn from_json(json: &str) -> Result<Self, String> {
        let stored: StoredAttempt = serde_json::from_str(json).map_err(|err| err.to_string())?;
        let bytes = BASE64
            .decode(stored.create_order)
            .map_err(|err| err.to_string())?;
        let order = CreateOrderRequest::decode(bytes.as_slice()).map_err(|err| err.to_string())?;
        Ok(Self {
            shipping_address_id: stored.shipping_address_id,
            order,
        })
    }
}

/// Where a cart is in Redis, and how the store names it in a refusal.
impl CartRef {
    /// The cart's Redis key.
    fn key(&self) -> String {
        match self {
            Self::Anonymous(id) => format!("cart:{id}"),
            Self::User(user) => format!("cart:user:{user}"),
        }
    }

    /// How the cart is named to the client.
    fn label(&self) -> String {
        match self {
            Self::Anonymous(id) => id.to_string(),
            Self::User(_) => "mine".to_owned(),
        }
    }
}

/// A change's result: the cart as the change left it, and whether anything
/// changed (a repeated remove, or a merge of a cart already merged, does not).
#[derive(Debug)]
pub struct Changed {
    pub cart: CartRecord,
    pub changed: bool,
}

/// The carts, shared by every handler (cloning shares the connection).
#[derive(Clone)]
pub struct Carts {
    redis: Client,
    idle_ttl: Duration,
}

impl Carts {
    pub fn new(redis: Client, idle_ttl: Duration) -> Self {
        Self { redis, idle_ttl }
    }

    /// Starts an empty anonymous cart.
    pub async fn create(&self) -> Result<CartRecord, CartError> {
        let cart = CartRef::Anonymous(Uuid::now_v7());
        Ok(self.run(CREATE, &cart, &[], Vec::new()).await?.cart)
    }

    /// The cart; a user's cart is created on first use.
    pub async fn read(&self, cart: &CartRef) -> Result<CartRecord, CartError> {
        Ok(self.run(READ, cart, &[], Vec::new()).await?.cart)
    }

    /// Adds `units` of `sku`: a new line remembering `added`, or more of the
    /// line the cart already has.
    pub async fn add(
        &self,
        cart: &CartRef,
        sku: &str,
        units: i32,
        added: &AddedLine,
    ) -> Result<Changed, CartError> {
        let json = serde_json::to_string(added).map_err(|err| CartError::Corrupt {
            key: cart.key(),
            reason: err.to_string(),
        })?;
        let args = vec![
            sku.to_owned(),
            units.to_string(),
            json,
            MAX_LINES.to_string(),
            MAX_QUANTITY.to_string(),
        ];
        self.run(ADD, cart, &[], args)
            .await
            .map_err(|e| e.for_sku(sku))
    }

    /// Sets a line's quantity; 0 removes it.
    pub async fn update(
        &self,
        cart: &CartRef,
        sku: &str,
        quantity: i32,
    ) -> Result<Changed, CartError> {
        let args = vec![sku.to_owned(), quantity.to_string()];
        self.run(UPDATE, cart, &[], args)
            .await
            .map_err(|e| e.for_sku(sku))
    }

    pub async fn remove(&self, cart: &CartRef, sku: &str) -> Result<Changed, CartError> {
        self.run(REMOVE, cart, &[], vec![sku.to_owned()]).await
    }

    pub async fn clear(&self, cart: &CartRef) -> Result<Changed, CartError> {
        self.run(CLEAR, cart, &[], Vec::new()).await
    }

    /// Moves the lines of `anonymous` into `user`'s cart and deletes it.
    pub async fn merge(&self, user: Uuid, anonymous: Uuid) -> Result<Changed, CartError> {
        let from = CartRef::Anonymous(anonymous).key();
        let args = vec![MAX_LINES.to_string(), MAX_QUANTITY.to_string()];
        self.run(MERGE, &CartRef::User(user), &[from], args).await
    }

    /// The attempt recorded for `user`'s idempotency key `key`, if any.
    pub async fn checkout_attempt(
        &self,
        user: Uuid,
        key: &str,
    ) -> Result<Option<CheckoutAttempt>, CartError> {
        let attempts = checkouts_key(user);
        let json: Option<String> = bounded(
            &self.redis,
            REDIS_TIMEOUT,
            self.redis.hget(attempts.clone(), key),
        )
        .await?;
        json.map(|json| attempt_from_json(&attempts, &json))
            .transpose()
    }

    /// Records `attempt` under `key` unless one is recorded already; the
    /// attempt that stands for the key either way.
    pub async fn record_checkout(
        &self,
        user: Uuid,
        key: &str,
        attempt: &CheckoutAttempt,
    ) -> Result<CheckoutAttempt, CartError> {
        let attempts = checkouts_key(user);
        let args = vec![
            key.to_owned(),
            attempt.to_json(),
            CHECKOUT_MEMORY.as_secs().to_string(),
        ];
        let reply = self
            .eval(
                RECORD_CHECKOUT,
                &CartRef::User(user),
                std::slice::from_ref(&attempts),
                args,
            )
            .await?;
        let mut parts = reply.into_array().into_iter().skip(1);
        let json = parts
            .next()
            .and_then(Value::into_string)
            .ok_or_else(|| CartError::Corrupt {
                key: attempts.clone(),
                reason: "no attempt in the script's reply".to_owned(),
            })?;
        attempt_from_json(&attempts, &json)
    }

    /// Takes the lines of the confirmed order `order_id` out of `user`'s cart,
    /// once per order (a repeat is UNCHANGED).
    pub async fn checked_out(
        &self,
        user: Uuid,
        key: &str,
        order_id: &str,
        lines: &[CreateOrderLine],
    ) -> Result<Changed, CartError> {
        let mut args = vec![order_id.to_owned(), key.to_owned()];
        for line in lines {
            args.push(line.sku.clone());
            args.push(line.quantity.to_string());
        }
        self.run(
            CHECKED_OUT,
            &CartRef::User(user),
            &[checkouts_key(user)],
            args,
        )
        .await
    }

    /// Runs one script on `cart` (and `other_keys`) with the common arguments
    /// followed by `args`.
    async fn run(
        &self,
        script: &'static str,
        cart: &CartRef,
        other_keys: &[String],
        args: Vec<String>,
    ) -> Result<Changed, CartError> {
        let reply = self.eval(script, cart, other_keys, args).await?;
        decode(cart, &cart.key(), reply)
    }

    /// Runs one script with the common arguments followed by `args`; its raw
    /// reply.
    async fn eval(
        &self,
        script: &'static str,
        cart: &CartRef,
        other_keys: &[String],
        args: Vec<String>,
    ) -> Result<Value, CartError> {
        // An anonymous cart's id is its key's; a user's cart gets a new id
        // when this call creates it.
        let (id, owner, ttl) = match cart {
            CartRef::Anonymous(id) => (*id, String::new(), self.idle_ttl.as_secs()),
            CartRef::User(user) => (Uuid::now_v7(), user.to_string(), 0),
        };
        let mut keys = vec![cart.key()];
        keys.extend_from_slice(other_keys);
        let mut all_args = vec![now_ms().to_string(), ttl.to_string(), id.to_string(), owner];
        all_args.extend(args);
        let reply: Value = bounded(
            &self.redis,
            REDIS_TIMEOUT,
            self.redis.eval(script, keys, all_args),
        )
        .await?;
        Ok(reply)
    }
}

/// The Redis key of `user`'s checkout attempts.
fn checkouts_key(user: Uuid) -> String {
    format!("checkouts:user:{user}")
}

fn attempt_from_json(key: &str, json: &str) -> Result<CheckoutAttempt, CartError> {
    CheckoutAttempt::from_json(json).map_err(|err| CartError::Corrupt {
        key: key.to_owned(),
        reason: format!("a checkout attempt is unreadable: {err}"),
    })
}

/// Turns a script's `{status, number, fields}` into the cart or the refusal.
fn decode(cart: &CartRef, key: &str, reply: Value) -> Result<Changed, CartError> {
    let corrupt = |reason: &str| CartError::Corrupt {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let mut parts = reply.into_array().into_iter();
    let status = parts
        .next()
        .and_then(Value::into_string)
        .ok_or_else(|| corrupt("no status in the script's reply"))?;
    let number = parts.next().and_then(|v| v.as_i64()).unwrap_or_default();
    let fields: Vec<Value> = match parts.next() {
        Some(Value::Array(fields)) => fields,
        _ => Vec::new(),
    };
    let changed = match status.as_str() {
        "OK" => true,
        "UNCHANGED" => false,
        "NOT_FOUND" => return Err(CartError::CartNotFound(cart.label())),
        "LINE_NOT_FOUND" => return Err(CartError::LineNotFound(String::new())),
        "CART_FULL" => return Err(CartError::CartFull { lines: number }),
        "TOO_MANY_UNITS" => {
            return Err(CartError::TooManyUnits {
                sku: String::new(),
                units: number,
            });
        }
        other => return Err(corrupt(&format!("unknown script status {other:?}"))),
    };
    let mut pairs = Vec::with_capacity(fields.len() / 2);
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match (name.into_string(), value.into_string()) {
            (Some(name), Some(value)) => pairs.push((name, value)),
            _ => return Err(corrupt("a field is not text")),
        }
    }
    let ttl_ms = match cart {
        CartRef::Anonymous(_) => Some(number),
        CartRef::User(_) => None,
    };
    let record = cart_from_fields(pairs, ttl_ms).map_err(|reason| corrupt(&reason))?;
    Ok(Changed {
        cart: record,
        changed,
    })
}

/// Builds a cart from its hash fields; `ttl_ms` is the key's remaining time
/// to live for an anonymous cart.
fn cart_from_fields(
    fields: Vec<(String, String)>,
    ttl_ms: Option<i64>,
) -> Result<CartRecord, String> {
    let mut record = CartRecord {
        id: String::new(),
        user_id: String::new(),
        create_time_ms: 0,
        update_time_ms: 0,
        expire_time_ms: ttl_ms.filter(|ttl| *ttl >= 0).map(|ttl| now_ms() + ttl),
        lines: Vec::new(),
    };
    let mut quantities = std::collections::HashMap::new();
    let mut positions = std::collections::HashMap::new();
    let mut added = std::collections::HashMap::new();
    let number = |name: &str, value: &str| {
        value
            .parse::<i64>()
            .map_err(|_| format!("{name} is not a number: {value:?}"))
    };
    for (name, value) in fields {
        match name.split_once(':') {
            Some(("q", sku)) => {
                let quantity = i32::try_from(number(&name, &value)?)
                    .map_err(|_| format!("{name} is out of range"))?;
                quantities.insert(sku.to_owned(), quantity);
            }
            Some(("o", sku)) => {
                positions.insert(sku.to_owned(), number(&name, &value)?);
            }
            Some(("l", sku)) => {
                let line: AddedLine = serde_json::from_str(&value)
                    .map_err(|err| format!("{name} is not a line: {err}"))?;
                added.insert(sku.to_owned(), line);
            }
            _ => match name.as_str() {
                "id" => record.id = value,
                "user" => record.user_id = value,
                "created" => record.create_time_ms = number(&name, &value)?,
                "updated" => record.update_time_ms = number(&name, &value)?,
                _ => {}
            },
        }
    }
    for (sku, quantity) in quantities {
        let added = added
            .remove(&sku)
            .ok_or_else(|| format!("line {sku} has no l:{sku}"))?;
        let seq = positions.get(&sku).copied().unwrap_or(i64::MAX);
        record.lines.push(LineRecord {
            sku,
            quantity,
            seq,
            added,
        });
    }
    record
        .lines
        .sort_by(|a, b| a.seq.cmp(&b.seq).then_with(|| a.sku.cmp(&b.sku)));
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::SeenPrice;

    fn line_json(product: &str) -> String {
        serde_json::to_string(&AddedLine {
            product_id: product.into(),
            name: "Lamp".into(),
            image_url: String::new(),
            add_time_ms: 1,
            price: SeenPrice {
                currency_code: "USD".into(),
                amount_minor: 1999,
            },
        })
        .unwrap()
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn lines_come_back_in_the_order_they_were_added() {
        let (a, b) = (line_json("a"), line_json("b"));
        let record = cart_from_fields(
            fields(&[
                ("id", "c1"),
                ("user", ""),
                ("created", "10"),
                ("updated", "20"),
                ("seq", "2"),
                ("q:ZZ-1", "3"),
                ("o:ZZ-1", "1"),
                ("l:ZZ-1", &a),
                ("q:AA-2", "1"),
                ("o:AA-2", "2"),
                ("l:AA-2", &b),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(record.id, "c1");
        assert_eq!((record.create_time_ms, record.update_time_ms), (10, 20));
        let skus: Vec<_> = record.skus().collect();
        assert_eq!(skus, ["ZZ-1", "AA-2"]);
        assert_eq!(record.lines[0].quantity, 3);
        assert_eq!(record.expire_time_ms, None);
    }

    #[test]
    fn a_line_without_its_details_is_reported_not_dropped() {
        let err = cart_from_fields(fields(&[("id", "c1"), ("q:SKU-1", "1")]), None).unwrap_err();
        assert!(err.contains("SKU-1"), "{err}");
    }

    #[test]
    fn an_attempt_round_trips_without_its_payment_method() {
        use shopmesh_proto::shop::order::v1::ShippingAddress;
        use shopmesh_proto::shop::payment::v1::PaymentMethod;
        use shopmesh_proto::shop::payment::v1::payment_method::Method;
        let attempt = CheckoutAttempt {
            shipping_address_id: "a1".into(),
            order: CreateOrderRequest {
                idempotency_key: "k1".into(),
                user_id: "u1".into(),
                lines: vec![CreateOrderLine {
                    product_id: "p1".into(),
                    sku: "SKU-1".into(),
                    quantity: 2,
                }],
                shipping_address: Some(ShippingAddress {
                    recipient: "Ada".into(),
                    ..ShippingAddress::default()
                }),
                payment_method: Some(PaymentMethod {
                    method: Some(Method::TestCardNumber("4242424242424242".into())),
                }),
            },
        };
        let json = attempt.to_json();
        assert!(!json.contains("4242"), "{json}");
        let back = CheckoutAttempt::from_json(&json).unwrap();
        assert_eq!(back.order.payment_method, None);
        assert_eq!(back.order.lines, attempt.order.lines);
        assert_eq!(back.order.shipping_address, attempt.order.shipping_address);
        assert_eq!(back.shipping_address_id, "a1");
    }

    #[test]
    fn keys_keep_user_carts_apart_from_anonymous_ones() {
        let id = Uuid::now_v7();
        assert_eq!(CartRef::Anonymous(id).key(), format!("cart:{id}"));
        assert_eq!(CartRef::User(id).key(), format!("cart:user:{id}"));
    }
}
