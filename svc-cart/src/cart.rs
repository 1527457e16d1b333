//! What a cart is, whatever holds it: which cart a call names, its lines as
//! stored (each remembering what the shopper saw when adding it), and the
//! limits on them. How carts are kept is `store`; how they are shown, `view`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Lines a cart may hold.
pub const MAX_LINES: usize = 100;
/// Units a line may hold.
pub const MAX_QUANTITY: i32 = 99;

/// Which cart a call is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CartRef {
    /// A cart id from CreateCart.
    Anonymous(Uuid),
    /// "mine": the signed-in user's cart.
    User(Uuid),
}

/// A price as seen when a line was added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenPrice {
    pub currency_code: String,
    pub amount_minor: i64,
}

/// What a line remembers of the moment it was first added (`l:<sku>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedLine {
    pub product_id: String,
    /// Shown only once the product is gone from the catalog.
    pub name: String,
    pub image_url: String,
    pub add_time_ms: i64,
    pub price: SeenPrice,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRecord {
    pub sku: String,
    pub quantity: i32,
    /// Position: lines show in the order they were first added.
    pub seq: i64,
    pub added: AddedLine,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartRecord {
    pub id: String,
    /// The owner of a user's cart; empty for an anonymous cart.
    pub user_id: String,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
    /// When an anonymous cart expires unless changed (ms since the epoch).
    pub expire_time_ms: Option<i64>,
    /// In the order they were first added.
    pub lines: Vec<LineRecord>,
}

impl CartRecord {
    pub fn product_ids(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|l| l.added.product_id.as_str())
    }

    pub fn skus(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|l| l.sku.as_str())
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
