//! Inventory rules independent of storage: what a valid SKU, stock change and
//! reservation request are, and the states a reservation goes through (the
//! errors the rules raise are in `error.rs`).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shopmesh_platform::errors::FieldViolations;
use shopmesh_proto::shop::inventory::v1::ReserveStockRequest;
use tonic::Status;
use uuid::Uuid;

/// Longest SKU inventory accepts (the catalog's are 12 characters).
pub const MAX_SKU_LEN: usize = 64;
/// Most SKUs one BatchGetStock or WatchStock may name.
pub const MAX_SKUS: usize = 100;
/// Most lines one reservation may have.
pub const MAX_LINES: usize = 100;
/// Units one reservation line may hold.
pub const LINE_QUANTITY: std::ops::RangeInclusive<i32> = 1..=99;
/// How long a reservation holds stock when the caller does not say.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
/// The longest a reservation may hold stock.
pub const MAX_TTL: Duration = Duration::from_secs(60 * 60);
/// Largest on-hand count SetStock takes, and largest AdjustStock delta: far
/// beyond any warehouse, small enough that sums never overflow.
pub const MAX_UNITS: i64 = 1_000_000_000;
pub const MAX_REASON_LEN: usize = 500;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

/// The actor of changes the service makes on its own (expiry, the demo seed).
pub const SERVICE_ACTOR: &str = "svc-inventory";

/// The levels of one SKU as stored. `version` grows with every change.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct StockLevel {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

impl StockLevel {
    /// Units that can be sold now.
    pub fn available(&self) -> i64 {
        (self.on_hand - self.reserved).max(0)
    }
}

/// What caused a stock change, as written to the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Set,
    Adjust,
    Reserve,
    Release,
    Commit,
    Expire,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Adjust => "adjust",
            Self::Reserve => "reserve",
            Self::Release => "release",
            Self::Commit => "commit",
            Self::Expire => "expire",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Set,
            Self::Adjust,
            Self::Reserve,
            Self::Release,
            Self::Commit,
            Self::Expire,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == raw)
    }
}

/// Where a reservation is in its life. `Reserved` is the only live state; the
/// other three are terminal and a reservation reaches exactly one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationStatus {
    Reserved,
    Committed,
    Released,
    Expired,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Reserved,
            Self::Committed,
            Self::Released,
            Self::Expired,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
    }
}

/// One line of a reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub sku: String,
    pub quantity: i32,
}

/// A reservation as stored, lines in the order they were asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: Uuid,
    pub status: ReservationStatus,
    pub lines: Vec<Line>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Whether two reservations hold the same units of the same SKUs, whatever the
/// order of their lines: what makes a repeated ReserveStock a replay.
pub fn same_lines(a: &[Line], b: &[Line]) -> bool {
    fn sorted(lines: &[Line]) -> Vec<(&str, i32)> {
        let mut pairs: Vec<(&str, i32)> =
            lines.iter().map(|l| (l.sku.as_str(), l.quantity)).collect();
        pairs.sort_unstable();
        pairs
    }
    sorted(a) == sorted(b)
}

/// Records a violation when `sku` is not a SKU: 1 to 64 printable ASCII
/// characters, no spaces.
pub fn check_sku(violations: &mut FieldViolations, field: &str, sku: &str) {
    if sku.is_empty() {
        violations.add(field, "is required");
    } else if sku.len() > MAX_SKU_LEN {
        violations.add(field, "must be at most 64 characters");
    } else if !sku.bytes().all(|b| b.is_ascii_graphic()) {
        violations.add(field, "must be printable ASCII without spaces");
    }
}

/// Records a violation when a required reason is missing or too long.
pub fn check_reason(violations: &mut FieldViolations, field: &str, reason: &str, required: bool) {
    if required && reason.trim().is_empty() {
        violations.add(field, "is required");
    } else if reason.chars().count() > MAX_REASON_LEN {
        violations.add(field, "must be at most 500 characters");
    }
}

/// Parses an order id field.
pub fn check_order_id(violations: &mut FieldViolations, field: &str, raw: &str) -> Option<Uuid> {
    match Uuid::parse_str(raw) {
        Ok(id) => Some(id),
        Err(_) if raw.is_empty() => {
            violations.add(field, "is required");
            None
        }
        Err(_) => {
            violations.add(field, "must be an order id (UUID)");
            None
        }
    }
}

/// A validated ReserveStock request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReserveCommand {
    pub order_id: Uuid,
    pub lines: Vec<Line>,
    pub ttl: Duration,
}

impl ReserveCommand {
    /// Validates every field, reporting all bad ones at once.
    pub fn from_request(request: &ReserveStockRequest) -> Result<Self, Status> {
        let mut violations = FieldViolations::new();
        // Placeholders stand in for bad fields, which are reported before use.
        let order_id =
            check_order_id(&mut violations, "order_id", &request.order_id).unwrap_or_default();
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
        let mut seen = HashSet::new();
        for (index, line) in request.lines.iter().enumerate() {
            let field = format!("lines[{index}].sku");
            check_sku(&mut violations, &field, &line.sku);
            if !line.sku.is_empty() && !seen.insert(line.sku.as_str()) {
                violations.add(field, "repeats the SKU of an earlier line");
            }
            if !LINE_QUANTITY.contains(&line.quantity) {
                violations.add(format!("lines[{index}].quantity"), "must be 1 to 99");
            }
        }
        let ttl = match request.ttl.as_ref().map(ttl_of) {
            None => DEFAULT_TTL,
            Some(Some(ttl)) if ttl <= MAX_TTL => ttl,
            Some(Some(_)) => {
                violations.add("ttl", "must be at most 1 hour");
                DEFAULT_TTL
            }
            Some(None) => {
                violations.add("ttl", "must be positive");
                DEFAULT_TTL
            }
        };
        violations.into_result()?;
        Ok(Self {
            order_id,
            lines: request
                .lines
                .iter()
                .map(|l| Line {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                })
                .collect(),
            ttl,
        })
    }
}

/// A positive protobuf duration as a std one.
fn ttl_of(ttl: &prost_types::Duration) -> Option<Duration> {
    let positive = ttl.seconds > 0 || (ttl.seconds == 0 && ttl.nanos > 0);
    if !positive || ttl.nanos < 0 {
        return None;
    }
    Some(Duration::new(ttl.seconds as u64, ttl.nanos as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopmesh_proto::shop::inventory::v1::ReservationLine;

    fn line(sku: &str, quantity: i32) -> ReservationLine {
        ReservationLine {
            sku: sku.into(),
            quantity,
        }
    }

    use shopmesh_platform::errors::violated_fields as fields;

    #[test]
    fn a_valid_request_gets_the_default_ttl() {
        let order = Uuid::now_v7();
        let command = ReserveCommand::from_request(&ReserveStockRequest {
            order_id: order.to_string(),
            lines: vec![line("EL-PHON-0001", 2), line("BK-NOVL-0003", 99)],
            ttl: None,
        })
        .unwrap();
        assert_eq!(command.order_id, order);
        assert_eq!(command.ttl, Duration::from_secs(900));
        assert_eq!(command.lines[1].quantity, 99);
    }

    #[test]
    fn every_bad_field_is_reported_together() {
        let status = ReserveCommand::from_request(&ReserveStockRequest {
            order_id: "order-1".into(),
            lines: vec![
                line("", 1),
                line("A B", 0),
                line("SKU-1", 100),
                line("SKU-1", 1),
            ],
            ttl: Some(prost_types::Duration {
                seconds: 3601,
                nanos: 0,
            }),
        })
        .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            fields(&status),
            [
                "order_id",
                "lines[0].sku",
                "lines[1].sku",
                "lines[1].quantity",
                "lines[2].quantity",
                "lines[3].sku",
                "ttl"
            ]
        );
    }

    #[test]
    fn limits_on_lines_and_ttl() {
        let order_id = Uuid::now_v7().to_string();
        let too_many = ReserveStockRequest {
            order_id: order_id.clone(),
            lines: (0..101).map(|i| line(&format!("SKU-{i}"), 1)).collect(),
            ttl: None,
        };
        assert_eq!(
            fields(&ReserveCommand::from_request(&too_many).unwrap_err()),
            ["lines"]
        );
        let hundred = ReserveStockRequest {
            lines: (0..100).map(|i| line(&format!("SKU-{i}"), 1)).collect(),
            ..too_many
        };
        assert!(ReserveCommand::from_request(&hundred).is_ok());
        for (seconds, nanos, ok) in [(3600, 0, true), (0, 1, true), (0, 0, false), (-1, 0, false)] {
            let request = ReserveStockRequest {
                order_id: order_id.clone(),
                lines: vec![line("SKU", 1)],
                ttl: Some(prost_types::Duration { seconds, nanos }),
            };
            assert_eq!(
                ReserveCommand::from_request(&request).is_ok(),
                ok,
                "{seconds}s {nanos}ns"
            );
        }
        let none = ReserveStockRequest {
            order_id,
            lines: vec![],
            ttl: None,
        };
        assert_eq!(
            fields(&ReserveCommand::from_request(&none).unwrap_err()),
            ["lines"]
        );
    }

    #[test]
    fn line_order_does_not_make_another_reservation() {
        let a = [
            Line {
                sku: "A".into(),
                quantity: 1,
            },
            Line {
                sku: "B".into(),
                quantity: 2,
            },
        ];
        let mut b = a.clone();
        b.reverse();
        assert!(same_lines(&a, &b));
        b[0].quantity = 3;
        assert!(!same_lines(&a, &b));
        assert!(!same_lines(&a, &a[..1]));
        assert!(!same_lines(&a, &[]));
    }

    #[test]
    fn kinds_and_statuses_round_trip_their_stored_names() {
        for kind in ["set", "adjust", "reserve", "release", "commit", "expire"] {
            assert_eq!(ChangeKind::parse(kind).unwrap().as_str(), kind);
        }
        for status in ["reserved", "committed", "released", "expired"] {
            assert_eq!(ReservationStatus::parse(status).unwrap().as_str(), status);
        }
        assert_eq!(ChangeKind::parse("SET"), None);
        assert_eq!(ReservationStatus::parse(""), None);
    }
}
