//! Order rules independent of storage and transport: statuses, what a valid
//! order request is, the fingerprint that tells a repeat from a different
//! order under the same key, and pricing lines from the catalog. The errors
//! the service raises are in `error.rs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shopmesh_platform::errors::FieldViolations;
use shopmesh_proto::shop::order::v1 as pb;
use uuid::Uuid;

use crate::error::PricingError;

pub const MAX_LINES: usize = 100;
pub const LINE_QUANTITY: std::ops::RangeInclusive<i32> = 1..=99;
pub use shopmesh_platform::errors::MAX_IDEMPOTENCY_KEY_LEN;
pub const MAX_REASON_LEN: usize = 500;
const MAX_ADDRESS_FIELD_LEN: usize = 200;
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

/// Where an order is in its lifecycle (the proto's `OrderStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    StockReserved,
    PaymentAuthorized,
    Confirmed,
    Cancelled,
    Failed,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::StockReserved,
        Self::PaymentAuthorized,
        Self::Confirmed,
        Self::Cancelled,
        Self::Failed,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::StockReserved => "stock_reserved",
            Self::PaymentAuthorized => "payment_authorized",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// CANCELLED, FAILED and REFUNDED: nothing changes any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Cancelled | Self::Failed | Self::Refunded)
    }

    /// Where WatchOrder and the waiting RPCs stop: terminal, or CONFIRMED.
    pub fn is_settled(self) -> bool {
        self.is_terminal() || self == Self::Confirmed
    }

    pub fn to_proto(self) -> pb::OrderStatus {
        match self {
            Self::Pending => pb::OrderStatus::Pending,
            Self::StockReserved => pb::OrderStatus::StockReserved,
            Self::PaymentAuthorized => pb::OrderStatus::PaymentAuthorized,
            Self::Confirmed => pb::OrderStatus::Confirmed,
            Self::Cancelled => pb::OrderStatus::Cancelled,
            Self::Failed => pb::OrderStatus::Failed,
            Self::Refunded => pb::OrderStatus::Refunded,
        }
    }

    pub fn from_proto(status: pb::OrderStatus) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_proto() == status)
    }
}

/// A shipping address as stored with the order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    pub recipient: String,
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country_code: String,
    pub phone: String,
}

impl Address {
    fn from_proto(address: &pb::ShippingAddress) -> Self {
        let t = |s: &str| s.trim().to_owned();
        Self {
            recipient: t(&address.recipient),
            line1: t(&address.line1),
            line2: t(&address.line2),
            city: t(&address.city),
            region: t(&address.region),
            postal_code: t(&address.postal_code),
            country_code: t(&address.country_code),
            phone: t(&address.phone),
        }
    }

    pub fn to_proto(&self) -> pb::ShippingAddress {
        pb::ShippingAddress {
            recipient: self.recipient.clone(),
            line1: self.line1.clone(),
            line2: self.line2.clone(),
            city: self.city.clone(),
            region: self.region.clone(),
            postal_code: self.postal_code.clone(),
            country_code: self.country_code.clone(),
            phone: self.phone.clone(),
        }
    }

    fn check(&self, violations: &mut FieldViolations) {
        for (field, value, required) in [
            ("recipient", &self.recipient, true),
            ("line1", &self.line1, true),
            ("line2", &self.line2, false),
            ("city", &self.city, true),
            ("region", &self.region, false),
            ("postal_code", &self.postal_code, false),
            ("phone", &self.phone, false),
        ] {
            let path = format!("shipping_address.{field}");
            if required {
                violations.check(!value.is_empty(), &path, "is required");
            }
            violations.check(
                value.chars().count() <= MAX_ADDRESS_FIELD_LEN,
                &path,
                "must be at most 200 characters",
            );
        }
        let country_ok = self.country_code.len() == 2
            && self.country_code.bytes().all(|b| b.is_ascii_uppercase());
        violations.check(
            country_ok,
            "shipping_address.country_code",
            "must be an ISO 3166-1 alpha-2 code, e.g. DE",
        );
        let phone_ok = self.phone.is_empty()
            || (self.phone.starts_with('+')
                && (8..=16).contains(&self.phone.len())
                && self.phone[1..].bytes().all(|b| b.is_ascii_digit()));
        violations.check(
            phone_ok,
            "shipping_address.phone",
            "must be an E.164 number or empty",
        );
    }
}

/// One line as asked for, before pricing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WantedLine {
    pub product_id: Uuid,
    pub sku: String,
    pub quantity: i32,
}

/// One priced line of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

impl OrderLine {
    pub fn line_total_minor(&self) -> i64 {
        self.unit_price_minor
            .saturating_mul(i64::from(self.quantity))
    }
}

/// A validated CreateOrder, payment method aside (it is tokenized, never kept).
#[derive(Clone, Debug)]
pub struct OrderRequest {
    pub idempotency_key: String,
    pub user_id: Uuid,
    pub lines: Vec<WantedLine>,
    pub address: Address,
}

impl OrderRequest {
    /// Validates everything but the payment method, naming every bad field.
    pub fn from_proto(request: &pb::CreateOrderRequest) -> Result<Self, tonic::Status> {
        let mut violations = FieldViolations::new();
        let key = &request.idempotency_key;
        violations.check(
            shopmesh_platform::errors::is_idempotency_key(key),
            "idempotency_key",
            "must be 1 to 128 printable ASCII characters",
        );
        let user_id = Uuid::parse_str(&request.user_id).ok();
        violations.check(user_id.is_some(), "user_id", "must be a UUID");
        violations.check(
            !request.lines.is_empty(),
            "lines",
            "must have at least one line",
        );
        violations.check(
            request.lines.len() <= MAX_LINES,
            "lines",
            "must have at most 100 lines",
        );
        let mut lines = Vec::with_capacity(request.lines.len());
        let mut seen = std::collections::HashSet::new();
        for (index, line) in request.lines.iter().enumerate() {
            let product_id = Uuid::parse_str(&line.product_id).ok();
            violations.check(
                product_id.is_some(),
                &format!("lines[{index}].product_id"),
                "must be a UUID",
            );
            if let Some(id) = product_id {
                violations.check(
                    seen.insert(id),
                    &format!("lines[{index}].product_id"),
                    "must not repeat a product of another line",
                );
            }
            violations.check(
                !line.sku.trim().is_empty() && line.sku.len() <= 64,
                &format!("lines[{index}].sku"),
                "must be 1 to 64 characters",
            );
            violations.check(
                LINE_QUANTITY.contains(&line.quantity),
                &format!("lines[{index}].quantity"),
                "must be 1 to 99",
            );
            lines.push(WantedLine {
                product_id: product_id.unwrap_or_default(),
                sku: line.sku.trim().to_owned(),
                quantity: line.quantity,
            });
        }
        let address = match &request.shipping_address {
            Some(address) => {
                let address = Address::from_proto(address);
                address.check(&mut violations);
                address
            }
            None => {
                violations.add("shipping_address", "is required");
                Address::default()
            }
        };
        violations.check(
            request
                .payment_method
                .as_ref()
                .is_some_and(|m| m.method.is_some()),
            "payment_method",
            "is required",
        );
        violations.into_result()?;
        Ok(Self {
            idempotency_key: key.clone(),
            user_id: user_id.unwrap_or_default(),
            lines,
            address,
        })
    }

    /// What makes two requests under one key the same order: the lines (in
    /// any order) and the shipping address; not the payment method, which
    /// tokenizes differently every time.
    pub fn fingerprint(&self) -> String {
        let mut lines: Vec<&WantedLine> = self.lines.iter().collect();
        lines.sort_by_key(|line| line.product_id);
        let canonical = serde_json::to_vec(&(lines, &self.address)).unwrap_or_default();
        let digest = Sha256::digest(canonical);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An order as stored, with its lines.
#[derive(Clone, Debug)]
pub struct Order {
    pub id: Uuid,
    pub user_id: Uuid,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub status: OrderStatus,
    pub status_reason: String,
    pub currency_code: String,
    pub subtotal_minor: i64,
    pub total_minor: i64,
    pub address: Address,
    pub card_brand: String,
    pub card_last4: String,
    pub payment_id: Option<Uuid>,
    pub lines: Vec<OrderLine>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One entry of an order's status history.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StatusChange {
    pub seq: i64,
    pub status: String,
    pub reason: String,
    pub changed_at: DateTime<Utc>,
}

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn money(currency: &str, amount_minor: i64) -> shopmesh_proto::shop::common::v1::Money {
    shopmesh_proto::shop::common::v1::Money {
        currency_code: currency.to_owned(),
        amount_minor,
    }
}

impl Order {
    pub fn lines_to_proto(&self) -> Vec<pb::OrderLine> {
        self.lines
            .iter()
            .map(|line| pb::OrderLine {
                product_id: line.product_id.to_string(),
                sku: line.sku.clone(),
                name: line.name.clone(),
                quantity: line.quantity,
                unit_price: Some(money(&self.currency_code, line.unit_price_minor)),
                line_total: Some(money(&self.currency_code, line.line_total_minor())),
            })
            .collect()
    }

    pub fn to_proto(&self) -> pb::Order {
        pb::Order {
            id: self.id.to_string(),
            user_id: self.user_id.to_string(),
            status: self.status.to_proto() as i32,
            lines: self.lines_to_proto(),
            subtotal: Some(money(&self.currency_code, self.subtotal_minor)),
            total: Some(money(&self.currency_code, self.total_minor)),
            currency_code: self.currency_code.clone(),
            status_reason: self.status_reason.clone(),
            idempotency_key: self.idempotency_key.clone(),
            payment_id: self.payment_id.map(|id| id.to_string()).unwrap_or_default(),
            shipping_address: Some(self.address.to_proto()),
            create_time: Some(timestamp(self.created_at)),
            update_time: Some(timestamp(self.updated_at)),
        }
    }
}

/// Prices wanted lines from catalog products (id → (sku, name, price, currency)).
pub fn price_lines(
    wanted: &[WantedLine],
    catalog: &std::collections::HashMap<Uuid, CatalogProduct>,
) -> Result<(Vec<OrderLine>, String), PricingError> {
    let mut lines = Vec::with_capacity(wanted.len());
    let mut currency: Option<&str> = None;
    for line in wanted {
        let product = catalog
            .get(&line.product_id)
            .ok_or(PricingError::UnknownProduct(line.product_id))?;
        if product.sku != line.sku {
            return Err(PricingError::SkuMismatch {
                product_id: line.product_id,
                given: line.sku.clone(),
                actual: product.sku.clone(),
            });
        }
        match currency {
            None => currency = Some(&product.currency_code),
            Some(c) if c != product.currency_code => return Err(PricingError::MixedCurrencies),
            Some(_) => {}
        }
        lines.push(OrderLine {
            product_id: line.product_id,
            sku: product.sku.clone(),
            name: product.name.clone(),
            quantity: line.quantity,
            unit_price_minor: product.price_minor,
        });
    }
    Ok((lines, currency.unwrap_or("USD").to_owned()))
}

/// What the catalog says about one product.
#[derive(Clone, Debug)]
pub struct CatalogProduct {
    pub sku: String,
    pub name: String,
    pub price_minor: i64,
    pub currency_code: String,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use shopmesh_proto::shop::payment::v1::{PaymentMethod, payment_method::Method};

    fn request(lines: &[(&str, &str, i32)]) -> pb::CreateOrderRequest {
        pb::CreateOrderRequest {
            idempotency_key: "key-1".into(),
            user_id: Uuid::now_v7().to_string(),
            lines: lines
                .iter()
                .map(|(id, sku, q)| pb::CreateOrderLine {
                    product_id: (*id).into(),
                    sku: (*sku).into(),
                    quantity: *q,
                })
                .collect(),
            shipping_address: Some(pb::ShippingAddress {
                recipient: "Ada".into(),
                line1: "1 Main St".into(),
                city: "Berlin".into(),
                country_code: "DE".into(),
                ..Default::default()
            }),
            payment_method: Some(PaymentMethod {
                method: Some(Method::TestCardNumber("4242424242424242".into())),
            }),
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let a = Uuid::now_v7().to_string();
        let mut bad = request(&[(&a, "SKU", 0), (&a, "", 100), ("nope", "X", 1)]);
        bad.idempotency_key = String::new();
        bad.shipping_address.as_mut().unwrap().country_code = "Germany".into();
        bad.payment_method = None;
        let status = OrderRequest::from_proto(&bad).unwrap_err();
        let fields = shopmesh_platform::errors::violated_fields(&status);
        for field in [
            "idempotency_key",
            "lines[0].quantity",
            "lines[1].product_id",
            "lines[1].sku",
            "lines[1].quantity",
            "lines[2].product_id",
            "shipping_address.country_code",
            "payment_method",
        ] {
            assert!(fields.contains(&field.to_owned()), "{field} in {fields:?}");
        }
        let mut empty = request(&[]);
        empty.shipping_address = None;
        let fields = shopmesh_platform::errors::violated_fields(
            &OrderRequest::from_proto(&empty).unwrap_err(),
        );
        assert!(fields.contains(&"lines".to_owned()));
        assert!(fields.contains(&"shipping_address".to_owned()));
    }

    #[test]
    fn the_fingerprint_ignores_line_order_and_payment_but_not_content() {
        let (a, b) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
        let one = OrderRequest::from_proto(&request(&[(&a, "A", 1), (&b, "B", 2)])).unwrap();
        let mut swapped = request(&[(&b, "B", 2), (&a, "A", 1)]);
        swapped.payment_method = Some(PaymentMethod {
            method: Some(Method::CardToken("tok".into())),
        });
        let two = OrderRequest::from_proto(&swapped).unwrap();
        assert_eq!(one.fingerprint(), two.fingerprint());
        let more = OrderRequest::from_proto(&request(&[(&a, "A", 2), (&b, "B", 2)])).unwrap();
        assert_ne!(one.fingerprint(), more.fingerprint());
        let mut moved = request(&[(&a, "A", 1), (&b, "B", 2)]);
        moved.shipping_address.as_mut().unwrap().city = "Paris".into();
        let moved = OrderRequest::from_proto(&moved).unwrap();
        assert_ne!(one.fingerprint(), moved.fingerprint());
    }

    #[test]
    fn lines_are_priced_from_the_catalog() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let product = |sku: &str, price, currency: &str| CatalogProduct {
            sku: sku.into(),
            name: format!("{sku} name"),
            price_minor: price,
            currency_code: currency.into(),
        };
        let catalog = HashMap::from([
            (a, product("A", 1999, "USD")),
            (b, product("B", 500, "USD")),
        ]);
        let wanted = |id, sku: &str, quantity| WantedLine {
            product_id: id,
            sku: sku.into(),
            quantity,
        };
        let (lines, currency) =
            price_lines(&[wanted(a, "A", 2), wanted(b, "B", 1)], &catalog).unwrap();
        assert_eq!(currency, "USD");
        assert_eq!(lines[0].line_total_minor(), 3998);
        assert_eq!(lines[1].name, "B name");
        assert_eq!(
            price_lines(&[wanted(a, "B", 1)], &catalog),
            Err(PricingError::SkuMismatch {
                product_id: a,
                given: "B".into(),
                actual: "A".into()
            })
        );
        let stranger = Uuid::now_v7();
        assert_eq!(
            price_lines(&[wanted(stranger, "X", 1)], &catalog),
            Err(PricingError::UnknownProduct(stranger))
        );
        let euro = HashMap::from([(a, product("A", 1, "USD")), (b, product("B", 1, "EUR"))]);
        assert_eq!(
            price_lines(&[wanted(a, "A", 1), wanted(b, "B", 1)], &euro),
            Err(PricingError::MixedCurrencies)
        );
    }

    #[test]
    fn statuses_round_trip() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            assert_eq!(OrderStatus::from_proto(status.to_proto()), Some(status));
        }
        assert!(OrderStatus::Confirmed.is_settled() && !OrderStatus::Confirmed.is_terminal());
    }
}
