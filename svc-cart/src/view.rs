//! The cart as the shopper sees it: a stored cart plus what the catalog and
//! inventory say now. Nothing here is stored; every response is built afresh.
//!
//! - A line's name, image and price are the product's current ones. A product
//!   gone from the catalog is DISCONTINUED with a PRODUCT_UNAVAILABLE problem,
//!   shows the name and image it had when added, and has no price.
//! - Availability: at least the quantity available is IN_STOCK, fewer is
//!   INSUFFICIENT_STOCK ("Only 2 left in stock"), none is OUT_OF_STOCK. A SKU
//!   inventory does not know counts as none available.
//! - PRICE_CHANGED (informational) when the current price differs from the one
//!   seen when the line was first added.
//! - `subtotal` sums the priced lines; the catalog is single-currency, so it
//!   is set only when all priced lines share one currency. A cart mixing
//!   currencies (a catalog whose currency was changed under existing carts)
//!   has no subtotal and is not ready for checkout; it is logged. An empty
//!   cart has no subtotal either (no currency to state it in).
//! - `ready_for_checkout`: at least one line, no line with a blocking problem
//!   (anything but PRICE_CHANGED), and a subtotal. An empty cart is not
//!   ready: Checkout refuses it.

use shopmesh_proto::shop::cart::v1::{
    Availability, Cart, CartLine, CartLineProblem, CartLineProblemCode,
};
use shopmesh_proto::shop::common::v1::Money;

use crate::cart::{CartRecord, LineRecord};
use crate::catalog::Snapshot;

/// The cart with current prices, availability and problems.
pub fn cart_view(record: &CartRecord, snapshot: &Snapshot) -> Cart {
    let lines: Vec<CartLine> = record
        .lines
        .iter()
        .map(|line| line_view(line, snapshot))
        .collect();
    let item_count = lines.iter().map(|l| l.quantity).sum();
    let subtotal = subtotal(&lines);
    if subtotal.is_none() && lines.iter().any(|l| l.line_total.is_some()) {
        tracing::warn!(cart_id = %record.id, "cart lines are priced in different currencies");
    }
    let blocked = lines
        .iter()
        .flat_map(|l| &l.problems)
        .any(|p| p.code() != CartLineProblemCode::PriceChanged);
    Cart {
        id: record.id.clone(),
        user_id: record.user_id.clone(),
        item_count,
        ready_for_checkout: !lines.is_empty() && !blocked && subtotal.is_some(),
        subtotal,
        lines,
        create_time: Some(timestamp(record.create_time_ms)),
        update_time: Some(timestamp(record.update_time_ms)),
        expire_time: record.expire_time_ms.map(timestamp),
    }
}

fn line_view(line: &LineRecord, snapshot: &Snapshot) -> CartLine {
    let added = &line.added;
    let mut view = CartLine {
        sku: line.sku.clone(),
        product_id: added.product_id.clone(),
        name: added.name.clone(),
        image_url: added.image_url.clone(),
        quantity: line.quantity,
        add_time: Some(timestamp(added.add_time_ms)),
        ..CartLine::default()
    };
    let Some(product) = snapshot.product(&added.product_id) else {
        view.set_availability(Availability::Discontinued);
        view.problems.push(problem(
            CartLineProblemCode::ProductUnavailable,
            "This product is no longer available; remove it from the cart".to_owned(),
        ));
        return view;
    };
    view.name.clone_from(&product.name);
    view.image_url = product.image_urls.first().cloned().unwrap_or_default();
    if let Some(price) = &product.price {
        view.line_total = Some(Money {
            currency_code: price.currency_code.clone(),
            amount_minor: price.amount_minor.saturating_mul(i64::from(line.quantity)),
        });
        view.unit_price = Some(price.clone());
        if price.currency_code != added.price.currency_code
            || price.amount_minor != added.price.amount_minor
        {
            view.problems.push(problem(
                CartLineProblemCode::PriceChanged,
                format!(
                    "The price changed from {} to {}",
                    money_text(&added.price.currency_code, added.price.amount_minor),
                    money_text(&price.currency_code, price.amount_minor)
                ),
            ));
        }
    }
    let available = snapshot.available.get(&line.sku).copied().unwrap_or(0);
    view.available_quantity = available;
    if available <= 0 {
        view.set_availability(Availability::OutOfStock);
        view.problems.push(problem(
            CartLineProblemCode::OutOfStock,
            "Out of stock".to_owned(),
        ));
    } else if available < i64::from(line.quantity) {
        view.set_availability(Availability::InsufficientStock);
        view.problems.push(problem(
            CartLineProblemCode::InsufficientStock,
            format!("Only {available} left in stock"),
        ));
    } else {
        view.set_availability(Availability::InStock);
    }
    view
}

/// `(SKU, what is wrong)` for every line that stops checkout; a cart that is
/// blocked only as a whole (lines priced in several currencies) names every
/// line.
pub fn blocking_problems(view: &Cart) -> Vec<(String, String)> {
    let mut blocking: Vec<(String, String)> = view
        .lines
        .iter()
        .flat_map(|line| {
            line.problems
                .iter()
                .filter(|p| p.code() != CartLineProblemCode::PriceChanged)
                .map(|p| (line.sku.clone(), p.message.clone()))
        })
        .collect();
    if blocking.is_empty() {
        blocking = view
            .lines
            .iter()
            .map(|line| {
                let problem = "the cart's lines are priced in different currencies";
                (line.sku.clone(), problem.to_owned())
            })
            .collect();
    }
    blocking
}

/// The sum of the line totals, when they share one currency.
fn subtotal(lines: &[CartLine]) -> Option<Money> {
    let mut totals = lines.iter().filter_map(|l| l.line_total.as_ref());
    let first = totals.next()?;
    let mut sum = first.clone();
    for total in totals {
        if total.currency_code != sum.currency_code {
            return None;
        }
        sum.amount_minor = sum.amount_minor.saturating_add(total.amount_minor);
    }
    Some(sum)
}

fn problem(code: CartLineProblemCode, message: String) -> CartLineProblem {
    CartLineProblem {
        code: code.into(),
        message,
    }
}

/// "12.99 USD": an amount in major units with the currency's usual decimals.
pub fn money_text(currency: &str, amount_minor: i64) -> String {
    let decimals = minor_unit_digits(currency);
    if decimals == 0 {
        return format!("{amount_minor} {currency}");
    }
    let scale = 10_i64.pow(decimals);
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let scale = scale.unsigned_abs();
    format!(
        "{sign}{}.{:0width$} {currency}",
        abs / scale,
        abs % scale,
        width = decimals as usize
    )
}

/// ISO 4217 minor-unit digits for the currencies that do not use two.
fn minor_unit_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use shopmesh_proto::shop::product::v1::Product;

    use super::*;
    use crate::cart::{AddedLine, SeenPrice};

    fn line(sku: &str, product: &str, quantity: i32, seen_minor: i64) -> LineRecord {
        LineRecord {
            sku: sku.into(),
            quantity,
            seq: 1,
            added: AddedLine {
                product_id: product.into(),
                name: format!("{sku} as added"),
                image_url: String::new(),
                add_time_ms: 1_700_000_000_123,
                price: SeenPrice {
                    currency_code: "USD".into(),
                    amount_minor: seen_minor,
                },
            },
        }
    }

    fn cart(lines: Vec<LineRecord>) -> CartRecord {
        CartRecord {
            id: "cart".into(),
            user_id: String::new(),
            create_time_ms: 1,
            update_time_ms: 2,
            expire_time_ms: Some(3),
            lines,
        }
    }

    fn product(id: &str, currency: &str, minor: i64) -> Product {
        Product {
            id: id.into(),
            name: format!("{id} now"),
            price: Some(Money {
                currency_code: currency.into(),
                amount_minor: minor,
            }),
            image_urls: vec!["https://img/1".into(), "https://img/2".into()],
            ..Product::default()
        }
    }

    fn snapshot(products: &[Product], stock: &[(&str, i64)]) -> Snapshot {
        Snapshot {
            products: products.iter().map(|p| (p.id.clone(), p.clone())).collect(),
            missing: Default::default(),
            available: stock.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect(),
        }
    }

    fn codes(line: &CartLine) -> Vec<CartLineProblemCode> {
        line.problems.iter().map(|p| p.code()).collect()
    }

    #[test]
    fn current_prices_totals_and_stock() {
        let view = cart_view(
            &cart(vec![line("A", "pa", 2, 1000), line("B", "pb", 3, 250)]),
            &snapshot(
                &[product("pa", "USD", 1000), product("pb", "USD", 250)],
                &[("A", 10), ("B", 3)],
            ),
        );
        assert_eq!(view.item_count, 5);
        assert_eq!(view.subtotal.as_ref().unwrap().amount_minor, 2750);
        assert_eq!(
            view.lines[0].line_total.as_ref().unwrap().amount_minor,
            2000
        );
        assert_eq!(view.lines[0].name, "pa now");
        assert_eq!(view.lines[0].image_url, "https://img/1");
        assert_eq!(view.lines[1].availability(), Availability::InStock);
        assert!(view.ready_for_checkout);
        assert_eq!(view.lines[0].add_time.unwrap().nanos, 123_000_000);
        assert_eq!(view.expire_time.unwrap().nanos, 3_000_000);
    }

    #[test]
    fn short_stock_blocks_and_a_price_change_only_informs() {
        let view = cart_view(
            &cart(vec![line("A", "pa", 5, 1000), line("B", "pb", 1, 250)]),
            &snapshot(
                &[product("pa", "USD", 1000), product("pb", "USD", 300)],
                &[("A", 2)],
            ),
        );
        assert_eq!(
            view.lines[0].availability(),
            Availability::InsufficientStock
        );
        assert_eq!(view.lines[0].problems[0].message, "Only 2 left in stock");
        assert_eq!(view.lines[1].availability(), Availability::OutOfStock);
        assert_eq!(
            codes(&view.lines[1]),
            [
                CartLineProblemCode::PriceChanged,
                CartLineProblemCode::OutOfStock
            ]
        );
        assert_eq!(
            view.lines[1].problems[0].message,
            "The price changed from 2.50 USD to 3.00 USD"
        );
        assert!(!view.ready_for_checkout);

        let only_price = cart_view(
            &cart(vec![line("B", "pb", 1, 250)]),
            &snapshot(&[product("pb", "USD", 300)], &[("B", 9)]),
        );
        assert!(only_price.ready_for_checkout);
    }

    #[test]
    fn a_deleted_product_is_discontinued_without_a_price() {
        let view = cart_view(
            &cart(vec![line("A", "gone", 1, 1000), line("B", "pb", 1, 250)]),
            &snapshot(&[product("pb", "USD", 250)], &[("A", 5), ("B", 5)]),
        );
        let gone = &view.lines[0];
        assert_eq!(gone.availability(), Availability::Discontinued);
        assert_eq!(codes(gone), [CartLineProblemCode::ProductUnavailable]);
        assert_eq!(gone.name, "A as added");
        assert!(gone.unit_price.is_none() && gone.line_total.is_none());
        assert_eq!(view.subtotal.unwrap().amount_minor, 250);
        assert_eq!(view.item_count, 2);
        assert!(!view.ready_for_checkout);
    }

    #[test]
    fn mixed_currencies_and_empty_carts_have_no_subtotal() {
        let mixed = cart_view(
            &cart(vec![line("A", "pa", 1, 1000), line("B", "pb", 1, 250)]),
            &snapshot(
                &[product("pa", "USD", 1000), product("pb", "EUR", 250)],
                &[("A", 5), ("B", 5)],
            ),
        );
        assert!(mixed.subtotal.is_none());
        assert!(!mixed.ready_for_checkout);
        let empty = cart_view(&cart(vec![]), &Snapshot::default());
        assert!(empty.subtotal.is_none());
        assert_eq!(empty.item_count, 0);
        assert!(!empty.ready_for_checkout);
    }

    #[test]
    fn money_reads_with_the_currency_decimals() {
        assert_eq!(money_text("USD", 1299), "12.99 USD");
        assert_eq!(money_text("USD", 5), "0.05 USD");
        assert_eq!(money_text("JPY", 1200), "1200 JPY");
        assert_eq!(money_text("KWD", 12345), "12.345 KWD");
        assert_eq!(money_text("EUR", -150), "-1.50 EUR");
    }
}
